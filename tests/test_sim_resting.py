"""The in-process venues' fill model for resting (post-only) orders: never at the touch, only
through the price, behind the queue, with the mid moving against a filled order."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from hedgerd.config import Settings, SimSettings
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.errors import PostOnlyRejected
from hedgerd.models import Fill, HedgeIntent, OrderReport, OrderStatus, OrderType, PriceUpdate, Side
from hedgerd.sim.day import run_simulation
from hedgerd.sim.market import RestingOrder, SimMarketData, TickFlow, TradeFlow
from tests.test_sim import FakeClock, settle

PERP = "BTC/USDT:USDT"
D = Decimal
STEP = D("0.001")


def flow(sell: str = "0", buy: str = "0", low: str = "100", high: str = "101") -> TickFlow:
    return TickFlow(sell_volume=D(sell), buy_volume=D(buy), low=D(low), high=D(high))


def test_flow_at_the_price_works_the_queue_down_but_never_fills() -> None:
    order = RestingOrder(side_buy=True, price=D(100), remaining=D(1), queue_ahead=D(3))
    assert order.match(flow(sell="2", low="100"), STEP) == 0  # printed at our price: not through
    assert order.queue_ahead == D(1)
    assert order.match(flow(sell="50", low="100"), STEP) == 0  # however much trades at the touch
    assert order.queue_ahead == 0 and order.remaining == D(1)


def test_flow_through_the_price_fills_what_is_left_after_the_queue() -> None:
    order = RestingOrder(side_buy=True, price=D(100), remaining=D(1), queue_ahead=D(3))
    assert order.match(flow(sell="3.4", low="99.9"), STEP) == D("0.400")  # 3 ahead of us, 0.4 to us
    assert order.remaining == D("0.600") and order.queue_ahead == 0
    assert order.match(flow(sell="5", low="99.5"), STEP) == D("0.600")
    assert order.remaining == 0


def test_flow_that_does_not_reach_the_price_changes_nothing() -> None:
    order = RestingOrder(side_buy=False, price=D(101), remaining=D(1), queue_ahead=D(2))
    assert order.match(flow(buy="9", high="100.9"), STEP) == 0
    assert order.queue_ahead == D(2)
    assert order.match(flow(buy="2.5", high="101.1"), STEP) == D("0.500")  # a sell fills on buys through


def test_trade_flow_is_a_function_of_seed_and_tick() -> None:
    a = TradeFlow(7, D(2), 0.1, D("0.1"))
    b = TradeFlow(7, D(2), 0.1, D("0.1"))
    quotes = ((D(100), D(101)), (D("99.5"), D("100.5")))
    assert a.at(5, *quotes, 1.0) == b.at(5, *quotes, 1.0)
    tick = a.at(5, *quotes, 1.0)
    assert tick.low <= D("99.5") and tick.high >= D(101)  # spans the move, and maybe beyond
    assert a.at(6, *quotes, 1.0) != tick


class Sink:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.updates: list[OrderReport] = []

    async def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    async def on_fills(self, fills: Any) -> None:
        self.fills.extend(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        pass

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        self.updates.append(report)

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        raise AssertionError(detail)


def post_only(cid: str, side: Side, price: Decimal, amount: str = "0.5") -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id=cid, underlying="BTC", venue="perp", symbol=PERP, side=side,
                       amount=D(amount), created_at=0.0, order_type=OrderType.POST_ONLY, limit_price=price)


@pytest.fixture
async def perp() -> Any:
    clock = FakeClock()
    settings = SimSettings(symbol=PERP, seed=3, latency_ms=0, volatility=0.8, price_interval=1.0,
                           market_volume=D(4), touch_depth=D(1), maker_fee_bps=D(2), adverse_selection_bps=D(1))
    venue = SimPerpVenue("perp", settings, SimMarketData("BTC", settings, clock), clock)
    sink = Sink()
    await venue.start(sink)
    await settle()
    yield venue, clock, sink
    await venue.close()


async def test_a_post_only_order_that_would_cross_is_rejected(perp: Any) -> None:
    venue, _, _ = perp
    bid, ask = venue.quote()
    with pytest.raises(PostOnlyRejected):
        await venue.create_order(post_only("x1", Side.BUY, ask), D("0.5"), ask)
    with pytest.raises(PostOnlyRejected):
        await venue.create_order(post_only("x2", Side.SELL, bid), D("0.5"), bid)
    assert await venue.fetch_order(PERP, "x1") is None  # nothing of it rests


async def test_resting_orders_fill_only_when_traded_through_at_their_price(perp: Any) -> None:
    venue, clock, sink = perp
    placed: dict[str, tuple[Side, Decimal]] = {}
    for n in range(40):  # a fresh order at the touch every tick, on both sides
        bid, ask = venue.quote()
        for side, price in ((Side.BUY, bid), (Side.SELL, ask)):
            cid = f"r{n}{side.value}"
            report = await venue.create_order(post_only(cid, side, price), D("0.5"), price)
            assert report.status is OrderStatus.SUBMITTED
            placed[cid] = (side, price)
        await clock.advance(1.0)
    assert sink.fills, "some resting order must fill in 40 ticks"
    for fill in sink.fills:
        side, price = placed[fill.client_order_id or ""]
        assert fill.side is side and fill.price == price  # at its limit, never better
        assert fill.fee == (fill.amount * price * D("0.0002")).quantize(D("1e-8"))  # the maker fee
    filled_ids = {f.client_order_id for f in sink.fills}
    assert len(filled_ids) < len(placed)  # not every order fills: the queue and the through rule


async def test_a_filled_resting_order_sees_the_mid_move_against_it(perp: Any) -> None:
    venue, clock, sink = perp
    bid, _ = venue.quote()
    await venue.create_order(post_only("b1", Side.BUY, bid, amount="0.2"), D("0.2"), bid)
    for _ in range(200):
        before = venue.market.mid()
        await clock.advance(1.0)
        if sink.fills:
            break
    assert sink.fills, "the buy must fill within 200 ticks"
    fill = sink.fills[0]
    assert venue.market.mid() < fill.price  # bought above where the market then stood
    assert venue.market.mid() < before


async def test_one_tick_hook_resting_fills_move_the_margin_account_and_a_liquidation_cancels_what_rests() -> None:
    clock = FakeClock()
    settings = SimSettings(symbol=PERP, seed=3, latency_ms=0, volatility=0.8, price_interval=1.0,
                           market_volume=D(4), touch_depth=D(1), maker_fee_bps=D(2), adverse_selection_bps=D(1),
                           margin_balance=D(1000))  # 0.2 BTC long is liquidated a few thousand below its entry
    venue = SimPerpVenue("perp", settings, SimMarketData("BTC", settings, clock), clock)
    sink = Sink()
    await venue.start(sink)
    await settle()
    try:
        await _fill_then_liquidate(venue, clock, sink)
    finally:
        await venue.close()


async def _fill_then_liquidate(venue: SimPerpVenue, clock: FakeClock, sink: Sink) -> None:
    bid, _ = venue.quote()
    await venue.create_order(post_only("m1", Side.BUY, bid, amount="0.2"), D("0.2"), bid)
    for _ in range(200):
        await clock.advance(1.0)
        if sink.fills:
            break
    assert sink.fills, "the buy must fill within 200 ticks"
    assert venue.margin.position == venue.position() == sum(f.amount for f in sink.fills)  # the account saw it
    far = venue.quote()[1] + 1000 * venue.market_info.price_step  # a sell the fall never reaches
    await venue.create_order(post_only("m2", Side.SELL, far, amount="0.1"), D("0.1"), far)
    liquidation = venue.margin.liquidation_price()
    assert liquidation is not None
    venue.market.set_mid(liquidation - 200)  # the long is liquidated at the next tick (a tick moves ~10)
    await clock.advance(1.0)
    assert venue.liquidations == 1 and venue.position() == 0
    resting = await venue.fetch_order(PERP, "m2")
    assert resting is not None and resting.status is OrderStatus.CANCELED  # cancelled by the venue first
    assert any(u.client_order_id == "m2" and u.status is OrderStatus.CANCELED for u in sink.updates)


def test_simulate_hedges_with_passive_orders_that_fill_as_makers() -> None:
    settings = Settings()
    passive = settings.model_copy(update={"executor": settings.executor.model_copy(
        update={"order_type": OrderType.PASSIVE})})
    taker = run_simulation(settings, seed=2, duration=1800, policy="fixed")
    maker = run_simulation(passive, seed=2, duration=1800, policy="fixed")
    assert maker.trading_state == "active" and maker.hedge_orders > 0
    mid = 60_000  # the default day's price, roughly: only the ratio of fee rates matters here
    assert taker.fees / (taker.hedged_volume * mid) == pytest.approx(0.0004, rel=0.05)  # all taker
    # some of it filled at the maker fee (2 bps; how much depends on the escalation settings)
    assert maker.fees / (maker.hedged_volume * mid) < 0.97 * taker.fees / (taker.hedged_volume * mid)
    assert maker.max_abs_net_delta < 10 * taker.max_abs_net_delta  # escalation keeps the book hedged
