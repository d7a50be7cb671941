"""Simulated venues: shared seeded GBM price, Poisson client flow, perp matching, faults."""

from __future__ import annotations

import asyncio
import gc
import heapq
import itertools
import math
from collections.abc import Coroutine, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from hedgerd.config import SimSettings, VenueConfig, VenueKind, VenueRole, default_venues
from hedgerd.connectors.paper import SimPerpVenue, SimSpotVenue, build_sim_venues
from hedgerd.errors import (
    InsufficientFunds,
    InvalidOrder,
    OrderOutcomeUnknown,
    RateLimited,
    TransientVenueError,
    VenueError,
)
from hedgerd.models import Fill, HedgeIntent, OptionQuote, OrderReport, OrderStatus, OrderType, PriceUpdate, Side
from hedgerd.sim.market import SimMarketData

T = TypeVar("T")
PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"


class FakeClock:
    """Manual clock: ``advance`` wakes sleepers in deadline order, letting the loop settle."""

    def __init__(self, epoch: float = 1_700_000_000.0) -> None:
        self._epoch = epoch
        self._now = 0.0
        self._seq = itertools.count()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._epoch + self._now

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), future))
        await future

    def skip(self, seconds: float) -> None:
        """Move time without waking anyone (for code that only reads the clock)."""
        assert not self._sleepers
        self._now += seconds

    async def advance(self, seconds: float) -> None:
        target = self._now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
                await settle()
        self._now = target
        await settle()


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def drive(clock: FakeClock, coro: Coroutine[Any, Any, T], step: float = 0.001) -> T:
    """Run ``coro`` to completion while advancing the fake clock (venue latency sleeps on it)."""
    task = asyncio.ensure_future(coro)
    for _ in range(100_000):
        if task.done():
            break
        await clock.advance(step)
    return task.result()


class RecordingSink:
    """VenueEventSink that keeps every event in arrival order."""

    def __init__(self) -> None:
        self.events: list[PriceUpdate | Fill | OrderReport | OptionQuote] = []
        self.errors: list[tuple[str, str, str]] = []
        self.fail_next_fill = False

    @property
    def prices(self) -> list[PriceUpdate]:
        return [e for e in self.events if isinstance(e, PriceUpdate)]

    @property
    def fills(self) -> list[Fill]:
        return [e for e in self.events if isinstance(e, Fill)]

    @property
    def orders(self) -> list[OrderReport]:
        return [e for e in self.events if isinstance(e, OrderReport)]

    async def on_fill(self, fill: Fill) -> None:
        if self.fail_next_fill:
            self.fail_next_fill = False
            raise RuntimeError("disk full")
        self.events.append(fill)

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        for fill in fills:
            await self.on_fill(fill)

    async def on_price(self, price: PriceUpdate) -> None:
        self.events.append(price)

    async def on_option_quote(self, quote: OptionQuote) -> None:
        self.events.append(quote)

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        self.events.append(report)

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        self.errors.append((venue, kind, detail))


def configs(spot: dict[str, Any] | None = None, perp: dict[str, Any] | None = None) -> list[VenueConfig]:
    spot_sim = {"seed": 1, "symbol": SPOT, **(spot or {})}
    perp_sim = {"seed": 2, "symbol": PERP, "flow_rate": 0.0, "latency_ms": 0.0, **(perp or {})}
    return [
        VenueConfig(name="spot", role=VenueRole.INVENTORY, sim=SimSettings(**spot_sim)),
        VenueConfig(name="perp", role=VenueRole.HEDGE, sim=SimSettings(**perp_sim)),
    ]


def build(clock: FakeClock, spot: dict[str, Any] | None = None,
          perp: dict[str, Any] | None = None) -> tuple[SimSpotVenue, SimPerpVenue]:
    venues = build_sim_venues(configs(spot, perp), clock)
    spot_venue, perp_venue = venues["spot"], venues["perp"]
    assert isinstance(spot_venue, SimSpotVenue)
    assert isinstance(perp_venue, SimPerpVenue)
    return spot_venue, perp_venue


_ids = itertools.count(1)


def intent(side: Side = Side.BUY, amount: str = "0.5", *, cid: str | None = None,
           order_type: OrderType = OrderType.MARKET, limit: Decimal | None = None,
           reduce_only: bool = False, symbol: str = PERP) -> HedgeIntent:
    n = next(_ids)
    return HedgeIntent(intent_id=n, client_order_id=cid or f"hgdtestx{n}", underlying="BTC", venue="perp",
                       symbol=symbol, side=side, amount=Decimal(amount), created_at=0.0,
                       reduce_only=reduce_only, order_type=order_type, limit_price=limit)


async def place(perp: SimPerpVenue, order: HedgeIntent) -> OrderReport:
    return await perp.create_order(order, order.amount, order.limit_price)


# -- price process and client flow ---------------------------------------------------------------


async def _run_default(seed_spot: int, seconds: float) -> tuple[list[tuple[Decimal, Decimal, float]],
                                                               list[tuple[Side, Decimal, Decimal, float]]]:
    clock = FakeClock()
    cfgs = default_venues()
    cfgs[0] = cfgs[0].model_copy(update={"sim": cfgs[0].sim.model_copy(update={"seed": seed_spot})})
    venues = build_sim_venues(cfgs, clock)
    sink = RecordingSink()
    await venues["sim-spot"].start(sink)
    await clock.advance(seconds)
    await venues["sim-spot"].close()
    prices = [(p.bid, p.ask, p.ts) for p in sink.prices]
    fills = [(f.side, f.amount, f.price, f.ts) for f in sink.fills]
    return prices, fills


async def test_price_path_and_client_flow_are_deterministic_for_a_seed() -> None:
    prices_a, fills_a = await _run_default(1, 30.0)
    prices_b, fills_b = await _run_default(1, 30.0)
    assert prices_a == prices_b
    assert fills_a == fills_b
    assert len(prices_a) == 121  # one at start, then every 0.25 s
    assert len({bid for bid, _, _ in prices_a}) > 10  # the price does move
    assert len(fills_a) > 60

    prices_c, fills_c = await _run_default(3, 30.0)
    assert [p[:2] for p in prices_c] != [p[:2] for p in prices_a]
    assert fills_c != fills_a


async def test_spot_and_perp_quote_the_same_mid() -> None:
    clock = FakeClock()
    venues = build_sim_venues(default_venues(), clock)
    spot, perp = venues["sim-spot"], venues["sim-perp"]
    assert isinstance(spot, SimSpotVenue) and isinstance(perp, SimPerpVenue)
    assert spot.market is perp.market
    spot_sink, perp_sink = RecordingSink(), RecordingSink()
    await spot.start(spot_sink)
    await perp.start(perp_sink)
    await clock.advance(10.0)
    await spot.close()
    await perp.close()
    spot_mids = {p.ts: p.mid for p in spot_sink.prices}
    perp_mids = {p.ts: p.mid for p in perp_sink.prices}
    assert len(spot_mids) == 41
    assert spot_mids == perp_mids
    assert all(p.symbol == PERP and p.venue == "sim-perp" for p in perp_sink.prices)
    for p in perp_sink.prices:
        assert p.bid < p.ask
        assert p.bid % Decimal("0.1") == 0 and p.ask % Decimal("0.1") == 0


async def test_market_parameters_come_from_the_lowest_seed_and_bases_are_separate() -> None:
    clock = FakeClock()
    cfgs = [
        VenueConfig(name="spot", role=VenueRole.INVENTORY,
                    sim=SimSettings(seed=7, symbol=SPOT, initial_price=Decimal(60000))),
        VenueConfig(name="perp", role=VenueRole.HEDGE,
                    sim=SimSettings(seed=3, symbol=PERP, initial_price=Decimal(50000))),
        VenueConfig(name="eth", role=VenueRole.INVENTORY,
                    sim=SimSettings(seed=1, symbol="ETH/USDT", initial_price=Decimal(3000))),
        VenueConfig(name="real", kind=VenueKind.CCXT, exchange="binanceusdm", role=VenueRole.HEDGE),
    ]
    venues = build_sim_venues(cfgs, clock)
    assert set(venues) == {"spot", "perp", "eth"}
    spot, perp, eth = venues["spot"], venues["perp"], venues["eth"]
    assert isinstance(spot, SimSpotVenue) and isinstance(perp, SimPerpVenue) and isinstance(eth, SimSpotVenue)
    assert spot.market is perp.market
    assert spot.market.seed == 3
    assert spot.market.mid() == Decimal(50000)
    assert eth.market is not spot.market
    assert eth.market.mid() == Decimal(3000)
    assert eth.market.tick == Decimal("0.01")


def test_mid_follows_gbm_with_the_configured_volatility() -> None:
    clock = FakeClock()
    volatility, interval, steps = 2.0, 1.0, 4000
    market = SimMarketData("BTC", SimSettings(volatility=volatility, price_interval=interval), clock)
    mids = [market.mid()]
    for _ in range(steps):
        clock.skip(interval)
        mids.append(market.mid())
    assert market.current_step() == steps
    returns = [math.log(b / a) for a, b in itertools.pairwise(mids)]
    mean = sum(returns) / steps
    sd = math.sqrt(sum((r - mean) ** 2 for r in returns) / (steps - 1))
    expected_sd = volatility * math.sqrt(interval / 31_536_000)
    assert abs(sd / expected_sd - 1) < 0.1  # sampling error of the sd is ~1.1% here
    assert all(m % market.tick == 0 for m in mids)


def test_volatility_can_change_during_a_run() -> None:
    clock = FakeClock()
    market = SimMarketData("BTC", SimSettings(volatility=0.0), clock)
    start = market.mid()
    clock.skip(100.0)
    assert market.mid() == start == Decimal(60000)
    market.set_volatility(1.5)
    clock.skip(100.0)
    assert market.mid() != start
    bid, ask = market.quote(Decimal(2))
    assert bid < market.mid() < ask


async def test_client_flow_rate_sides_and_sizes_match_the_parameters() -> None:
    clock = FakeClock()
    spot, _ = build(clock, spot={"flow_rate": 4.0, "flow_mean_size": Decimal("0.05"), "price_interval": 5.0})
    sink = RecordingSink()
    await spot.start(sink)
    seconds = 500.0
    await clock.advance(seconds)
    await spot.close()
    fills = sink.fills
    expected = 4.0 * seconds
    assert abs(len(fills) - expected) < 5 * math.sqrt(expected)  # Poisson: sd = sqrt(mean)
    buys = sum(1 for f in fills if f.side is Side.BUY)
    assert abs(buys / len(fills) - 0.5) < 5 * math.sqrt(0.25 / len(fills))
    sizes = [f.amount for f in fills]
    assert all(s > 0 and s % Decimal("0.0001") == 0 for s in sizes)
    mean_size = float(sum(sizes)) / len(sizes)
    assert abs(mean_size - 0.05) < 5 * 0.05 / math.sqrt(len(sizes))  # exponential: sd = mean
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(fills)]
    assert all(g > 0 for g in gaps)
    assert len({f.trade_id for f in fills}) == len(fills)


async def test_client_fills_are_at_the_bid_when_the_desk_buys_and_the_ask_when_it_sells() -> None:
    clock = FakeClock()
    spot, _ = build(clock)
    sink = RecordingSink()
    await spot.start(sink)
    await clock.advance(20.0)
    await spot.close()
    last: PriceUpdate | None = None
    checked: set[Side] = set()
    for event in sink.events:
        if isinstance(event, PriceUpdate):
            last = event
        elif isinstance(event, Fill):
            assert last is not None
            assert event.price == (last.bid if event.side is Side.BUY else last.ask)
            assert event.fee == 0 and event.client_order_id is None and event.symbol == SPOT
            checked.add(event.side)
    assert checked == {Side.BUY, Side.SELL}


async def test_spot_balances_and_history_follow_the_client_fills() -> None:
    clock = FakeClock()
    spot, _ = build(clock)
    sink = RecordingSink()
    await spot.start(sink)
    await clock.advance(15.0)
    await spot.close()
    fills = sink.fills
    positions = await drive(clock, spot.fetch_positions())
    assert positions["BTC"] == sum(f.signed_amount for f in fills)
    assert positions["USDT"] == -sum(f.signed_amount * f.price for f in fills)
    assert await drive(clock, spot.fetch_fills_since(None)) == fills
    snapshot = await drive(clock, spot.fetch_position_snapshot())
    assert snapshot.positions == positions
    # the cursor is the answer's time: every fill so far is stamped before it, none after
    assert set(snapshot.as_of) == set(positions) and len(set(snapshot.as_of.values())) == 1
    assert fills[-1].ts < snapshot.as_of["BTC"] <= clock.time()
    since = fills[len(fills) // 2].ts
    assert await drive(clock, spot.fetch_fills_since(since)) == [f for f in fills if f.ts >= since]
    with pytest.raises(InvalidOrder):
        await drive(clock, spot.create_order(intent(symbol=SPOT), Decimal("0.5"), None))


async def test_set_flow_switches_the_client_flow_on_and_off() -> None:
    clock = FakeClock()
    spot, _ = build(clock, spot={"flow_rate": 0.0})
    sink = RecordingSink()
    await spot.start(sink)
    await clock.advance(10.0)
    assert sink.fills == []
    spot.set_flow(10.0, Decimal("0.2"))
    await clock.advance(10.0)
    assert len(sink.fills) > 30
    await spot.close()


async def test_a_failing_sink_is_reported_and_the_stream_goes_on() -> None:
    clock = FakeClock()
    spot, _ = build(clock)
    sink = RecordingSink()
    sink.fail_next_fill = True
    await spot.start(sink)
    await clock.advance(10.0)
    assert spot.connected
    assert [(v, k) for v, k, _ in sink.errors] == [("spot", "sink_error")]
    assert len(sink.fills) > 10
    await spot.close()


# -- perp matching -------------------------------------------------------------------------------


async def test_market_orders_fill_at_the_ask_or_bid_with_the_taker_fee() -> None:
    clock = FakeClock()
    _, perp = build(clock, perp={"taker_fee_bps": Decimal(5)})
    bid, ask = perp.quote()
    buy = await place(perp, intent(Side.BUY, "0.5"))
    assert buy.status is OrderStatus.FILLED and buy.filled == Decimal("0.5")
    assert buy.average_price == ask
    (fill,) = buy.fills
    assert fill.price == ask and fill.side is Side.BUY and fill.amount == Decimal("0.5")
    assert fill.fee == Decimal("0.5") * ask * Decimal(5) / Decimal(10_000)
    assert fill.fee_currency == "USDT" and buy.fee == fill.fee
    assert fill.client_order_id == buy.client_order_id and buy.venue_order_id

    sell = await place(perp, intent(Side.SELL, "0.2"))
    assert sell.average_price == bid and sell.fills[0].price == bid


async def test_positions_track_fills_fees_and_seeding() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    buy = await place(perp, intent(Side.BUY, "0.5"))
    sell = await place(perp, intent(Side.SELL, "0.2"))
    positions = await perp.fetch_positions()
    assert positions[PERP] == Decimal("0.3")
    assert positions["USDT"] == -(buy.fee + sell.fee)
    history = await perp.fetch_fills_since(None)
    assert history == [*buy.fills, *sell.fills]
    perp.seed_position(PERP, Decimal("-1.5"))
    assert (await perp.fetch_positions())[PERP] == Decimal("-1.5")
    assert perp.position() == Decimal("-1.5")


async def test_a_duplicate_client_order_id_is_rejected() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    first = intent(cid="hgdabcx1")
    await place(perp, first)
    with pytest.raises(InvalidOrder, match="duplicate clientOrderId"):
        await place(perp, intent(Side.SELL, "0.1", cid="hgdabcx1"))
    assert perp.position() == Decimal("0.5")
    report = await perp.fetch_order(PERP, "hgdabcx1")
    assert report is not None and report.filled == Decimal("0.5")


async def test_requests_above_the_venue_limit_are_refused_with_retry_after() -> None:
    clock = FakeClock()
    _, perp = build(clock, perp={"requests_per_second": 5.0})
    for _ in range(4):
        await perp.fetch_positions()
    await place(perp, intent())  # fifth request: the burst is 5
    with pytest.raises(RateLimited) as caught:
        await place(perp, intent(cid="hgdlimx1"))
    assert caught.value.retry_after == pytest.approx(0.2)
    assert perp.position() == Decimal("0.5")
    await clock.advance(0.4)  # two tokens back
    assert await perp.fetch_order(PERP, "hgdlimx1") is None  # the refused order never existed
    report = await place(perp, intent(cid="hgdlimx1"))
    assert report.status is OrderStatus.FILLED


async def test_ioc_orders_fill_only_when_marketable() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    bid, ask = perp.quote()
    below = await place(perp, intent(Side.BUY, "0.1", order_type=OrderType.LIMIT_IOC, limit=ask - 1))
    assert below.status is OrderStatus.EXPIRED and below.filled == 0 and below.fills == ()
    assert below.average_price is None and below.fee == 0
    above = await place(perp, intent(Side.SELL, "0.1", order_type=OrderType.LIMIT_IOC, limit=bid + 1))
    assert above.status is OrderStatus.EXPIRED and above.filled == 0
    assert perp.position() == 0
    through = await place(perp, intent(Side.BUY, "0.1", order_type=OrderType.LIMIT_IOC, limit=ask + 50))
    assert through.status is OrderStatus.FILLED and through.average_price == ask  # fills at the book
    with pytest.raises(InvalidOrder):
        await place(perp, intent(Side.BUY, "0.1", order_type=OrderType.LIMIT_IOC, limit=None))


async def test_reduce_only_never_increases_the_position() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    with pytest.raises(InvalidOrder):
        await place(perp, intent(Side.SELL, "0.1", reduce_only=True))
    await place(perp, intent(Side.BUY, "0.3"))
    capped = await place(perp, intent(Side.SELL, "0.5", reduce_only=True))
    assert capped.filled == Decimal("0.3") and capped.status is OrderStatus.EXPIRED
    assert perp.position() == 0


@pytest.mark.parametrize(("order", "settings"), [
    (intent(amount="0.0005"), {}),                      # below the amount step
    (intent(amount="0.0015"), {}),                      # not a multiple of the step
    (intent(amount="0.01"), {"initial_price": Decimal(100)}),  # notional 1 < 5
    (intent(symbol="ETH/USDT:USDT"), {}),               # not this venue's instrument
])
async def test_malformed_orders_are_invalid(order: HedgeIntent, settings: dict[str, Any]) -> None:
    clock = FakeClock()
    _, perp = build(clock, perp={**settings, "seed": 0})
    with pytest.raises(InvalidOrder):
        await place(perp, order)
    assert perp.position() == 0


async def test_load_markets_describes_the_perp() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    info = (await perp.load_markets())[PERP]
    assert (info.base, info.quote) == ("BTC", "USDT")
    assert info.amount_step == Decimal("0.001") and info.min_amount == Decimal("0.001")
    assert info.price_step == Decimal("0.1") and info.min_notional == 5 and info.contract_size == 1


async def test_fills_and_order_updates_are_also_streamed() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    sink = RecordingSink()
    await perp.start(sink)
    report = await place(perp, intent())
    expired = await place(perp, intent(order_type=OrderType.LIMIT_IOC, limit=Decimal("0.1")))
    await settle()
    assert sink.fills == list(report.fills)
    assert sink.orders == [report, expired]
    await perp.close()


async def test_latency_is_spent_on_the_clock_and_matching_happens_at_the_venue() -> None:
    clock = FakeClock()
    _, perp = build(clock, perp={"latency_ms": 10.0})
    task = asyncio.ensure_future(place(perp, intent()))
    await clock.advance(0.002)
    perp.market.set_mid(Decimal(50000))  # the market moves while the request travels
    await clock.advance(0.007)
    assert not task.done()
    await clock.advance(0.002)
    report = task.result()
    assert Decimal(50000) < report.fills[0].price < Decimal(50020)
    assert report.fills[0].ts - clock.time() == pytest.approx(-0.006, abs=1e-6)


# -- faults --------------------------------------------------------------------------------------


async def test_accept_then_timeout_fills_at_the_venue_but_the_outcome_is_unknown() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    sink = RecordingSink()
    await perp.start(sink)
    perp.faults.inject("accept_then_timeout")
    order = intent(Side.SELL, "0.4")
    with pytest.raises(OrderOutcomeUnknown):
        await place(perp, order)
    await settle()
    found = await perp.fetch_order(PERP, order.client_order_id)
    assert found is not None and found.status is OrderStatus.FILLED and found.filled == Decimal("0.4")
    assert perp.position() == Decimal("-0.4")
    assert sink.fills == list(found.fills)
    with pytest.raises(InvalidOrder, match="duplicate"):
        await place(perp, order)
    await perp.close()


async def test_timeout_before_accept_leaves_no_trace_and_the_retry_goes_through() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    perp.faults.inject("timeout_before_accept")
    order = intent()
    with pytest.raises(OrderOutcomeUnknown):
        await place(perp, order)
    assert await perp.fetch_order(PERP, order.client_order_id) is None
    assert perp.position() == 0
    assert (await place(perp, order)).status is OrderStatus.FILLED


@pytest.mark.parametrize(("kind", "error"), [
    ("rate_limit", RateLimited),
    ("transient", TransientVenueError),
    ("reject_insufficient_funds", InsufficientFunds),
    ("reject_invalid", InvalidOrder),
])
async def test_rejecting_faults_raise_and_the_order_never_exists(kind: Any, error: type[VenueError]) -> None:
    clock = FakeClock()
    _, perp = build(clock)
    perp.faults.inject(kind)
    order = intent()
    with pytest.raises(error):
        await place(perp, order)
    assert await perp.fetch_order(PERP, order.client_order_id) is None
    assert perp.position() == 0
    assert perp.faults.pending == 0
    assert (await place(perp, order)).status is OrderStatus.FILLED


async def test_fault_count_and_operation_targeting() -> None:
    clock = FakeClock()
    spot, perp = build(clock)
    perp.faults.inject("transient", count=2)
    perp.faults.inject("rate_limit", operation="fetch_positions")
    assert perp.faults.pending == 3
    await perp.fetch_order(PERP, "nope")  # not targeted
    with pytest.raises(RateLimited):
        await perp.fetch_positions()
    for _ in range(2):
        with pytest.raises(TransientVenueError):
            await place(perp, intent())
    await place(perp, intent())
    assert perp.faults.pending == 0

    spot.faults.inject("transient", operation="any")
    with pytest.raises(TransientVenueError):
        await drive(clock, spot.fetch_fills_since(None))
    with pytest.raises(ValueError):
        perp.faults.inject("accept_then_timeout", operation="fetch_order")
    with pytest.raises(ValueError):
        perp.faults.inject("explode")  # type: ignore[arg-type]


async def test_stalled_prices_stop_and_pushed_prices_pass_through() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    sink = RecordingSink()
    await perp.start(sink)
    await clock.advance(1.0)
    before = len(sink.prices)
    assert before == 5
    perp.stall_prices(True)
    await clock.advance(3.0)
    assert len(sink.prices) == before
    pushed = await perp.push_price(Decimal("NaN"), Decimal("-1"))
    assert sink.prices[-1] is pushed and pushed.bid.is_nan()
    perp.stall_prices(False)
    await clock.advance(1.0)
    assert len(sink.prices) == before + 1 + 4
    await perp.close()


# -- identity and lifecycle ----------------------------------------------------------------------


async def test_trade_ids_are_unique_across_restarts() -> None:
    clock = FakeClock()
    seen_trades: list[str] = []
    seen_orders: list[str] = []
    for _ in range(2):
        spot, perp = build(clock)
        sink = RecordingSink()
        await spot.start(sink)
        await perp.start(sink)
        await clock.advance(5.0)
        report = await place(perp, intent())
        await spot.close()
        await perp.close()
        assert report.venue_order_id is not None
        seen_orders.append(report.venue_order_id)
        seen_trades.extend(f.trade_id for f in sink.fills if f.venue == "spot")
        seen_trades.extend(f.trade_id for f in report.fills)
        await clock.advance(1.0)  # the daemon restarts a moment later
    assert len(seen_trades) > 20
    assert len(set(seen_trades)) == len(seen_trades)
    assert len(set(seen_orders)) == 2


async def test_close_cancels_every_task_cleanly() -> None:
    loop = asyncio.get_running_loop()
    problems: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    clock = FakeClock()
    spot, perp = build(clock)
    assert not spot.connected
    sink = RecordingSink()
    await spot.start(sink)
    await perp.start(sink)
    assert spot.connected and perp.connected
    with pytest.raises(RuntimeError):
        await spot.start(sink)
    await clock.advance(2.0)
    await spot.close()
    await perp.close()
    await spot.close()  # idempotent
    assert not spot.connected and not perp.connected
    assert asyncio.all_tasks() == {asyncio.current_task()}
    gc.collect()
    await settle()
    assert problems == []
    loop.set_exception_handler(None)
