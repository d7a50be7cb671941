"""In-process paper venues: the embedded default (paper mode) and the venues of ``hedgerd simulate``.

Venues trading the same base asset share one :class:`~hedgerd.sim.market.SimMarketData`, a geometric Brownian
motion mid price that is a pure function of the seed and of the injected clock's time (tick
``k`` happens at ``origin + k * price_interval``), so a spot and a perp always quote around the
same mid and a run is reproducible on a simulated clock.

* :class:`SimSpotVenue` (role inventory) streams prices and synthetic client fills on the desk's
  account (:class:`~hedgerd.sim.market.ClientFlow`: Poisson arrivals, side 50/50, exponential
  size); the desk buys at the bid, sells at the ask.
* :class:`SimPerpVenue` (role hedge) fills our market / IOC orders at the bid or ask with a taker
  fee; post-only orders rest and fill from the market's trade flow by the rule of
  :class:`~hedgerd.sim.market.RestingOrder` (never at the touch, only through the price, behind
  the queue, the mid moving against a filled order: docs/passive.md), with the maker fee. It
  tracks the position, enforces its own request limit (:class:`~hedgerd.errors.RateLimited`)
  and latency, and echoes fills and order updates on a separate "user-data stream" task. It is a
  linear perpetual (``BTC/USDT:USDT``: contracts of ``contract_size`` BTC, fee in USDT) or an
  inverse one when the symbol settles in its base (``BTC/USD:BTC``: contracts of 10 USD, fee in
  BTC on the USD amount / price, as on Deribit's BTC-PERPETUAL); resting orders, funding (in
  the coin) and the margin account (:mod:`~hedgerd.connectors.paper_margin`) count it in
  contracts too.
* :class:`~hedgerd.connectors.paper_options.SimOptionsVenue` (role inventory, ``sim.options``)
  lists European options with client flow and streams their quotes (its own module).

Both take faults for tests through ``venue.faults.inject(...)``, ``stall_prices()`` and
``push_price()``. Every random draw comes from a :class:`random.Random` seeded from the config.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Literal, TypeVar, get_args

from hedgerd.clock import Clock
from hedgerd.config import SimSettings, VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.base import Venue, VenueEventSink
from hedgerd.connectors.paper_margin import PaperMargin
from hedgerd.errors import (
    InsufficientFunds,
    InvalidOrder,
    OrderOutcomeUnknown,
    PostOnlyRejected,
    RateLimited,
    ReduceOnlyRejected,
    TransientVenueError,
    VenueError,
)
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import (
    ZERO,
    Fill,
    FundingPayment,
    HedgeIntent,
    MarketInfo,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionRisk,
    PriceUpdate,
    Side,
    is_derivative,
    split_symbol,
)
from hedgerd.reconciliation import PositionSnapshot
from hedgerd.sim.funding import FundingSchedule
from hedgerd.sim.market import ClientFlow, RestingOrder, SimMarketData, TickFlow, TradeFlow

SPOT_AMOUNT_STEP = Decimal("0.0001")
PERP_AMOUNT_STEP = Decimal("0.001")
INVERSE_CONTRACT_SIZE = Decimal(10)  # USD per contract: Deribit's BTC-PERPETUAL
PERP_MIN_NOTIONAL = Decimal(5)
FEE_QUANTUM = Decimal("1e-8")
_BPS = Decimal(10_000)

FaultKind = Literal[
    "accept_then_timeout",
    "timeout_before_accept",
    "rate_limit",
    "reject_insufficient_funds",
    "reject_invalid",
    "transient",
]
Operation = Literal[
    "create_order",
    "fetch_order",
    "fetch_open_orders",
    "cancel_order",
    "fetch_positions",
    "fetch_fills_since",
    "fetch_funding_since",
    "load_markets",
    "any",
]
FAULT_KINDS: frozenset[str] = frozenset(get_args(FaultKind))
OPERATIONS: frozenset[str] = frozenset(get_args(Operation))
# Faults that only make sense on order placement; the others apply to any request.
ORDER_FAULTS: frozenset[str] = frozenset(
    {"accept_then_timeout", "timeout_before_accept", "reject_insufficient_funds", "reject_invalid"}
)

_T = TypeVar("_T")


class SimFaults:
    """Queue of injected failures, consumed by the venue's next matching requests.

    ``rate_limit`` and ``transient`` apply to any operation (``create_order`` by default, or
    ``"any"``); ``accept_then_timeout``, ``timeout_before_accept``, ``reject_insufficient_funds``
    and ``reject_invalid`` apply to ``create_order`` only.
    """

    def __init__(self) -> None:
        self._queue: list[list[str | int]] = []

    def inject(self, kind: FaultKind, count: int = 1, *, operation: Operation = "create_order") -> None:
        """Make the next ``count`` ``operation`` requests fail with ``kind``."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_KINDS)}")
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}; one of {sorted(OPERATIONS)}")
        if kind in ORDER_FAULTS and operation != "create_order":
            raise ValueError(f"fault {kind!r} applies to create_order only")
        if count < 1:
            raise ValueError("count must be at least 1")
        self._queue.append([kind, operation, count])

    def clear(self) -> None:
        """Drop every pending fault."""
        self._queue.clear()

    @property
    def pending(self) -> int:
        """Number of faults not yet consumed."""
        return sum(int(entry[2]) for entry in self._queue)

    def take(self, operation: str) -> str | None:
        """Consume and return the first pending fault for ``operation``, if any."""
        for index, entry in enumerate(self._queue):
            kind, target, remaining = entry
            if target in (operation, "any"):
                if int(remaining) <= 1:
                    del self._queue[index]
                else:
                    entry[2] = int(remaining) - 1
                return str(kind)
        return None


class _RequestLimiter:
    """The venue's own token bucket: a request above the limit is refused, not delayed."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def admit(self) -> float | None:
        """Take a token; None if admitted, else the seconds until a token is available."""
        now = self._clock.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        return (1.0 - self._tokens) / self.rate


#: Fills an in-process venue keeps for :meth:`_SimVenue.fetch_fills_since`. Only reconciliation
#: asks, for the fills since the ledger's last one minus ``reconcile.backfill_overlap``, and an
#: in-process venue starts with the daemon: seconds of this run's flow are all it is asked for,
#: and every fill kept is memory held for the whole run.
HISTORY_LIMIT = 500
#: Hedge orders kept for lookups by client id: the executor looks one up while it settles
#: (seconds) and at reconciliation, which an in-process venue serves only for this run's orders.
ORDER_LIMIT = 256


class _SimVenue:
    """What both simulated venues share: price stream, accounting, limiter, latency, faults."""

    name: str

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: Clock,
                 *, history_limit: int = HISTORY_LIMIT, order_limit: int = ORDER_LIMIT) -> None:
        self.name = name
        self.settings = settings
        self.symbol = settings.symbol
        self.base, self.quote_asset, self.settle = split_symbol(settings.symbol)
        self.faults = SimFaults()
        self._market = market
        self._clock = clock
        self._spread_bps = settings.spread_bps
        self._half_latency = settings.latency_ms / 2000.0
        self._limiter = _RequestLimiter(settings.requests_per_second,
                                        max(1, round(settings.requests_per_second)), clock)
        self._positions: dict[str, Decimal] = {}
        self._history: deque[Fill] = deque(maxlen=history_limit)
        self._order_limit = order_limit
        # Unique across restarts: a restarted daemon starts at a later wall-clock millisecond.
        self.run_tag = f"{int(clock.time() * 1000):x}.{settings.seed}"
        self._trade_seq = 0
        self._sink: VenueEventSink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._stalled = False
        self._unstalled = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while started and every stream task is alive."""
        return self._running and all(not task.done() for task in self._tasks)

    @property
    def market(self) -> SimMarketData:
        """The shared price process of this venue's base asset."""
        return self._market

    async def start(self, sink: VenueEventSink) -> None:
        """Start the price stream (and the venue's other streams) into ``sink``."""
        if self._running:
            raise RuntimeError(f"venue {self.name} already started")
        self._sink = sink
        self._running = True
        self._tasks = [asyncio.create_task(self._price_stream(sink), name=f"{self.name}-prices")]
        self._tasks.extend(self._start_streams(sink))

    async def close(self) -> None:
        """Cancel the stream tasks and wait for them to finish. Idempotent."""
        self._running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sink = None

    def _start_streams(self, sink: VenueEventSink) -> list[asyncio.Task[None]]:
        return []

    # -- prices ----------------------------------------------------------------------------

    def quote(self) -> tuple[Decimal, Decimal]:
        """This venue's current (bid, ask)."""
        return self._market.quote(self._spread_bps)

    def stall_prices(self, stalled: bool = True) -> None:
        """Stop (True) or resume (False) the price stream; the market keeps moving."""
        self._stalled = stalled
        if stalled:
            self._unstalled.clear()
        else:
            self._unstalled.set()

    async def push_price(self, bid: Decimal, ask: Decimal) -> PriceUpdate:
        """Deliver an arbitrary (even NaN, crossed or wild) price on the stream now.

        Only the stream sees it; fills keep using the simulated market.
        """
        if self._sink is None:
            raise RuntimeError(f"venue {self.name} is not started")
        update = PriceUpdate(venue=self.name, symbol=self.symbol, bid=bid, ask=ask,
                             ts=self._clock.time(), received_at=self._clock.monotonic())
        await self._sink.on_price(update)
        return update

    async def _price_stream(self, sink: VenueEventSink) -> None:
        market, clock = self._market, self._clock
        next_step = market.current_step()
        while True:
            if self._stalled:  # no wake-up per tick while stalled: resume at the tick after the unstall
                await self._unstalled.wait()
                next_step = max(next_step, market.current_step() + 1)
                continue
            delay = market.step_time(next_step) - clock.monotonic()
            if delay > 0:
                await clock.sleep(delay)
            if not self._stalled:
                bid, ask = self.quote()
                self._on_tick(next_step, bid, ask)
                update = PriceUpdate(venue=self.name, symbol=self.symbol, bid=bid, ask=ask,
                                     ts=clock.time(), received_at=clock.monotonic())
                await self._deliver(sink, sink.on_price(update), "price")
                conversion = self.conversion_quote()
                if conversion is not None:
                    await self._deliver(sink, sink.on_price(conversion), "price")
            next_step = max(next_step, market.current_step()) + 1

    def conversion_quote(self) -> PriceUpdate | None:
        """A fee currency's quote streamed with the instrument's (none by default)."""
        return None

    def _on_tick(self, step: int, bid: Decimal, ask: Decimal) -> None:
        """What the venue does at price tick ``step`` with its new quote, before the tick is
        streamed (as an exchange matches before it publishes): nothing by default."""

    async def _deliver(self, sink: VenueEventSink, call: Awaitable[None], what: str) -> None:
        """Await a sink call; a failing sink is reported, never kills the stream."""
        try:
            await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            sink.on_venue_error(self.name, "sink_error", f"{what}: {exc!r}")

    # -- account ---------------------------------------------------------------------------

    def seed_position(self, symbol: str, amount: Decimal) -> None:
        """Set a position (derivative symbol) or balance (asset) without trading.

        Lets the daemon align a paper venue with its ledger after a restart.
        """
        self._positions[symbol] = amount

    async def fetch_positions(self) -> dict[str, Decimal]:
        """Signed positions: by symbol for derivatives, by asset for balances (incl. fees)."""
        return await self._round_trip("fetch_positions", lambda: dict(self._positions))

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        """The positions with the simulated venue's time of the answer as every position's cursor."""
        def answer() -> PositionSnapshot:
            now = self._clock.time()
            return PositionSnapshot(dict(self._positions), dict.fromkeys(self._positions, now))

        return await self._round_trip("fetch_positions", answer)

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        """Retained trades of this account with ``ts >= since``, oldest first."""
        return await self._round_trip(
            "fetch_fills_since",
            lambda: [fill for fill in self._history if since is None or fill.ts >= since])

    def _next_trade_id(self) -> str:
        self._trade_seq += 1
        return f"{self.run_tag}-{self._trade_seq}"

    def _book_fill(self, fill: Fill) -> None:
        """Apply a fill to the account (same accounting as the ledger) and keep it."""
        positions = self._positions
        signed = fill.signed_amount
        if is_derivative(fill.symbol):
            positions[fill.symbol] = positions.get(fill.symbol, ZERO) + signed
        else:
            base, quote, _ = split_symbol(fill.symbol)
            positions[base] = positions.get(base, ZERO) + signed
            positions[quote] = positions.get(quote, ZERO) - signed * fill.price
        if fill.fee and fill.fee_currency:
            positions[fill.fee_currency] = positions.get(fill.fee_currency, ZERO) - fill.fee
        self._history.append(fill)

    # -- requests --------------------------------------------------------------------------

    async def _leg(self) -> None:
        """One network leg (half the configured latency)."""
        if self._half_latency > 0:
            await self._clock.sleep(self._half_latency)

    def _admit(self, operation: str) -> str | None:
        """Venue-side admission: rate limit and injected request faults.

        Returns an order fault to be handled by the caller, raises request faults.
        """
        retry_after = self._limiter.admit()
        if retry_after is not None:
            raise RateLimited(f"{self.name}: request rate limit exceeded", retry_after=retry_after)
        fault = self.faults.take(operation)
        if fault == "rate_limit":
            raise RateLimited(f"{self.name}: injected rate limit", retry_after=1.0 / self._limiter.rate)
        if fault == "transient":
            raise TransientVenueError(f"{self.name}: injected transient error")
        return fault

    async def _round_trip(self, operation: str, handler: Callable[[], _T]) -> _T:
        """Request leg, admission, ``handler`` at the venue, response leg (also for errors)."""
        await self._leg()
        try:
            self._admit(operation)
            result = handler()
        except VenueError:
            await self._leg()
            raise
        await self._leg()
        return result


class _InventoryOnlyVenue(_SimVenue):
    """A simulated venue that only holds inventory: hedge orders are refused, none are ever open,
    and no funding is paid (spot balances, options)."""

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        """Always refused: an inventory venue is not a hedge venue."""
        def refuse() -> OrderReport:
            raise InvalidOrder(f"{self.name} is an inventory venue and takes no hedge orders")
        return await self._round_trip("create_order", refuse)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return await self._round_trip("fetch_order", lambda: None)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        return await self._round_trip("fetch_open_orders", list)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return await self._round_trip("cancel_order", lambda: None)

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        return await self._round_trip("fetch_funding_since", list)


class SimSpotVenue(_InventoryOnlyVenue):
    """Inventory venue: prices plus synthetic client fills on the desk's account.

    Takes no hedge orders: :meth:`create_order` raises :class:`~hedgerd.errors.InvalidOrder`.
    """

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: Clock,
                 *, history_limit: int = HISTORY_LIMIT) -> None:
        super().__init__(name, settings, market, clock, history_limit=history_limit)
        self._flow_rng = random.Random(f"hedgerd-flow/{name}/{settings.seed}")
        self.flow = ClientFlow(rate=settings.flow_rate, mean_size=settings.flow_mean_size)
        self._flow_changed = asyncio.Event()
        self._positions = {self.base: ZERO, self.quote_asset: ZERO}

    def set_flow(self, rate: float, mean_size: Decimal | None = None) -> None:
        """Change the client flow intensity (fills/s) and mean size from the next arrival."""
        if rate < 0:
            raise ValueError("rate must be >= 0")
        self.flow.rate = rate
        if mean_size is not None:
            if not mean_size > 0:
                raise ValueError("mean_size must be > 0")
            self.flow.mean_size = mean_size
        self._flow_changed.set()

    def _start_streams(self, sink: VenueEventSink) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._client_flow(sink), name=f"{self.name}-flow")]

    async def _client_flow(self, sink: VenueEventSink) -> None:
        rng, clock = self._flow_rng, self._clock
        while True:
            if self.flow.rate <= 0:
                self._flow_changed.clear()
                await self._flow_changed.wait()
                continue
            await clock.sleep(self.flow.wait(rng))
            fill = self._client_fill(rng)
            self._book_fill(fill)
            await self._deliver(sink, sink.on_fill(fill), "fill")

    def _client_fill(self, rng: random.Random) -> Fill:
        side = Side.BUY if self.flow.desk_buys(rng) else Side.SELL
        raw = Decimal(self.flow.size(rng))
        amount = max(raw.quantize(SPOT_AMOUNT_STEP, rounding=ROUND_HALF_EVEN), SPOT_AMOUNT_STEP)
        bid, ask = self.quote()
        return Fill(venue=self.name, trade_id=self._next_trade_id(), symbol=self.symbol, side=side,
                    amount=amount, price=bid if side is Side.BUY else ask, ts=self._clock.time(),
                    received_at=self._clock.monotonic())

    async def load_markets(self) -> dict[str, MarketInfo]:
        """The spot instrument."""
        info = MarketInfo(symbol=self.symbol, base=self.base, quote=self.quote_asset,
                          amount_step=SPOT_AMOUNT_STEP, price_step=self._market.tick,
                          min_amount=SPOT_AMOUNT_STEP)
        return await self._round_trip("load_markets", lambda: {self.symbol: info})


def perp_instrument(settings: SimSettings) -> Instrument:
    """The simulated perpetual of ``settings.symbol``: inverse when it settles in its base."""
    base, quote, settle = split_symbol(settings.symbol)
    settle = settle or quote
    kind = InstrumentKind.INVERSE if settle == base else InstrumentKind.LINEAR
    default_size = INVERSE_CONTRACT_SIZE if kind is InstrumentKind.INVERSE else Decimal(1)
    return Instrument(symbol=settings.symbol, kind=kind, underlying=base, quote=quote, settle=settle,
                      contract_size=settings.contract_size or default_size)


class SimPerpVenue(_SimVenue):
    """Hedge venue: a linear or inverse perpetual that fills our orders at the bid/ask with a taker fee.

    Amounts are contracts (:mod:`hedgerd.instruments`): ``contract_size`` base units on a linear
    perpetual, ``contract_size`` USD on an inverse one, whose fee is charged in the coin.

    Market orders fill fully; IOC limit orders fill fully when marketable, else expire; post-only
    orders rest and fill from the market's trade flow with the maker fee (:meth:`_on_tick`). A
    reduce-only order never increases the position (it is rejected, or capped and the rest
    expires). Funding is charged on its own clock; at each tick, after the resting orders
    match, the position is liquidated if the mid reached its liquidation price. Fills and order
    updates are also delivered on a separate stream task.
    """

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: Clock,
                 *, history_limit: int = HISTORY_LIMIT, order_limit: int = ORDER_LIMIT) -> None:
        super().__init__(name, settings, market, clock, history_limit=history_limit,
                         order_limit=order_limit)
        # A third fee currency (BNB on Binance) is charged at a fixed price, streamed as
        # FEE/QUOTE alongside the perpetual's quote so the daemon can value the fee.
        self.fee_currency = settings.fee_currency or self.settle or self.quote_asset
        self._fee_price = settings.fee_currency_price if settings.fee_currency else None
        self._fee_discount = settings.fee_currency_discount if settings.fee_currency else ZERO
        self.instrument = perp_instrument(settings)
        inverse = self.instrument.kind is InstrumentKind.INVERSE
        step = Decimal(1) if inverse else PERP_AMOUNT_STEP  # whole contracts on an inverse perpetual
        self.market_info = MarketInfo(symbol=self.symbol, base=self.base, quote=self.quote_asset,
                                      amount_step=step, price_step=market.tick, min_amount=step,
                                      min_notional=PERP_MIN_NOTIONAL,
                                      contract_size=self.instrument.contract_size,
                                      # linear: the legacy market (base units = contracts of 1)
                                      instrument=self.instrument if inverse else None)
        self._taker_fee = settings.taker_fee_bps / _BPS
        self._maker_fee = settings.maker_fee_bps / _BPS
        self._flow = TradeFlow(settings.seed, settings.market_volume, settings.sweep_probability, market.tick)
        self._queue_rng = random.Random(f"hedgerd-queue/{self.symbol}/{settings.seed}")
        self._resting: dict[str, RestingOrder] = {}
        self._last_quote: tuple[Decimal, Decimal] | None = None
        self._orders: OrderedDict[str, OrderReport] = OrderedDict()
        self._order_seq = 0
        self._events: asyncio.Queue[Fill | OrderReport] = asyncio.Queue()
        self._positions = {self.symbol: ZERO}
        # its own random stream: funding leaves the price path and the client flow as they were
        self._funding = FundingSchedule(
            random.Random(f"hedgerd-funding/{name}/{settings.seed}"), start=clock.time(),
            interval=settings.funding_interval, interest=float(settings.funding_interest_rate),
            std=settings.funding_premium_std) if settings.funding else None
        self._payments: deque[FundingPayment] = deque(maxlen=history_limit)
        self.margin = PaperMargin(settings.margin_balance, settings.maintenance_margin_rate,
                                  inverse_size=self.instrument.contract_size if inverse else None)
        self.liquidations = 0

    def position(self, symbol: str | None = None) -> Decimal:
        """Signed position (base units) without a venue request."""
        return self._positions.get(symbol or self.symbol, ZERO)

    def _start_streams(self, sink: VenueEventSink) -> list[asyncio.Task[None]]:
        tasks = [asyncio.create_task(self._user_stream(sink), name=f"{self.name}-user")]
        if self._funding is not None:
            tasks.append(asyncio.create_task(self._funding_clock(self._funding), name=f"{self.name}-funding"))
        return tasks

    async def _funding_clock(self, schedule: FundingSchedule) -> None:
        """Charge funding at each funding time (the clock's, virtual in a simulation)."""
        clock = self._clock
        while True:
            now = clock.time()
            await clock.sleep(max(0.0, (now // schedule.interval + 1) * schedule.interval - now))
            self._charge_funding()

    def _charge_funding(self) -> None:
        """Book the funding of every funding time passed since the last call, on the position
        held then (a fill books it first, so the position is the one before the fill)."""
        if self._funding is None:
            return
        for ts, rate in self._funding.due(self._clock.time()):
            position = self._positions.get(self.symbol, ZERO)
            if not position or not rate:
                continue
            # on the position's value in the settle currency: USDT on a linear, the coin on an inverse one
            received = -(self._notional(position, self._market.mid()) * Decimal(repr(rate))).quantize(FEE_QUANTUM)
            currency = self.settle or self.quote_asset
            self._positions[currency] = self._positions.get(currency, ZERO) + received
            self._payments.append(FundingPayment(venue=self.name, symbol=self.symbol,
                                                 payment_id=FundingPayment.key(self.symbol, ts),
                                                 amount=received, currency=currency, ts=ts))

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        """Retained funding payments with a funding time at or after ``since``, oldest first."""
        def answer() -> list[FundingPayment]:
            self._charge_funding()
            return [p for p in self._payments if since is None or p.ts >= since]

        return await self._round_trip("fetch_funding_since", answer)

    def _book_fill(self, fill: Fill) -> None:
        self._charge_funding()
        super()._book_fill(fill)

    def conversion_quote(self) -> PriceUpdate | None:
        """The fee currency's quote in the quote currency (fixed price, the perpetual's spread), when
        fees are charged in a third currency."""
        if self._fee_price is None:
            return None
        half = self._fee_price * self.settings.spread_bps / _BPS / 2
        return PriceUpdate(venue=self.name, symbol=f"{self.fee_currency}/{self.quote_asset}",
                           bid=self._fee_price - half, ask=self._fee_price + half, ts=self._clock.time(),
                           received_at=self._clock.monotonic())

    def seed_position(self, symbol: str, amount: Decimal) -> None:
        """:meth:`_SimVenue.seed_position`, the margin account's position entered at the mid."""
        self._charge_funding()  # on the position held until now
        super().seed_position(symbol, amount)
        if symbol == self.symbol:
            bid, ask = self.quote()
            self.margin.seed(amount, (bid + ask) / 2)

    async def fetch_position_risk(self, symbol: str) -> PositionRisk | None:
        """The position's liquidation price and margin ratio at the mid (``paper_margin``)."""
        def answer() -> PositionRisk | None:
            bid, ask = self.quote()
            return self.margin.risk(self.name, self.symbol, (bid + ask) / 2, self._clock.time())

        return await self._round_trip("fetch_positions", answer) if symbol == self.symbol else None

    def _liquidate_at(self, mid: Decimal) -> None:
        """Liquidate the position once the mid reaches its liquidation price (``paper_margin``);
        the venue first cancels the account's resting orders, as Binance does before it takes the
        position over."""
        position = self.margin.position
        if not position or not self.margin.liquidates_at(mid):
            return
        for client_id in list(self._resting):
            self._cancel_resting(client_id, report_it=True)
        fee = self.margin.clearance_fee(mid).quantize(FEE_QUANTUM)
        self.liquidations += 1
        fill = Fill(venue=self.name, trade_id=f"{self._next_trade_id()}-liq", symbol=self.symbol,
                    side=Side.for_delta(-position), amount=abs(position), price=mid, fee=fee,
                    fee_currency=self.settle or self.quote_asset, ts=self._clock.time(),
                    received_at=self._clock.monotonic(), client_order_id=None)
        self._book_fill(fill)
        self.margin.fill(-position, mid, fee)
        if self._running:
            self._events.put_nowait(fill)

    async def _user_stream(self, sink: VenueEventSink) -> None:
        while True:
            event = await self._events.get()
            if isinstance(event, Fill):
                await self._deliver(sink, sink.on_fill(event), "fill")
            else:
                await self._deliver(sink, sink.on_order_update(self.name, event), "order update")

    async def load_markets(self) -> dict[str, MarketInfo]:
        """The perpetual instrument."""
        return await self._round_trip("load_markets", lambda: {self.symbol: self.market_info})

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        """Place and match ``intent`` (``amount`` in contracts = base units here).

        Raises :class:`RateLimited` above the venue's request limit, :class:`InvalidOrder` for
        a duplicate client order id or a malformed order, and the injected faults.
        """
        await self._leg()
        try:
            fault = self._admit("create_order")
            if fault == "timeout_before_accept":
                raise OrderOutcomeUnknown(
                    f"{self.name}: timeout, order {intent.client_order_id} never reached the venue")
            report = self._place(intent, amount, price, fault)
        except VenueError:
            await self._leg()
            raise
        await self._leg()
        if fault == "accept_then_timeout":
            raise OrderOutcomeUnknown(f"{self.name}: timeout after sending {intent.client_order_id}")
        return report

    def _place(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None,
               fault: str | None) -> OrderReport:
        client_id = intent.client_order_id
        if client_id in self._orders:
            raise InvalidOrder("duplicate clientOrderId")
        self._validate(intent, amount, price)
        if fault == "reject_insufficient_funds":
            raise InsufficientFunds(f"{self.name}: margin is insufficient (injected)")
        if fault == "reject_invalid":
            raise InvalidOrder(f"{self.name}: order rejected (injected)")

        bid, ask = self.quote()
        if intent.order_type is OrderType.POST_ONLY:
            assert price is not None
            return self._rest(intent, amount, price, bid, ask)
        fill_price = ask if intent.side is Side.BUY else bid
        fill_amount = amount  # contracts, like the position
        if intent.order_type is OrderType.LIMIT_IOC:
            assert price is not None
            marketable = price >= ask if intent.side is Side.BUY else price <= bid
            if not marketable:
                fill_amount = ZERO
        if intent.reduce_only:
            position = self._positions.get(self.symbol, ZERO)
            if position * intent.side.sign >= 0:
                raise ReduceOnlyRejected("ReduceOnly Order is rejected: it would increase the position")
            fill_amount = min(fill_amount, abs(position))

        self._order_seq += 1
        venue_order_id = f"{self.run_tag}-o{self._order_seq}"
        now = self._clock.time()
        fills: tuple[Fill, ...] = ()
        fee = ZERO
        if fill_amount > 0:
            fee = self._notional(fill_amount, fill_price) * self._taker_fee * (1 - self._fee_discount)
            fee = (fee if self._fee_price is None else fee / self._fee_price).quantize(FEE_QUANTUM)
            fill = Fill(venue=self.name, trade_id=self._next_trade_id(), symbol=self.symbol, side=intent.side,
                        amount=fill_amount, price=fill_price, fee=fee, fee_currency=self.fee_currency, ts=now,
                        received_at=self._clock.monotonic(), client_order_id=client_id)
            self._book_fill(fill)
            self.margin.fill(fill.signed_amount, fill_price, fee if self._fee_price is None else ZERO)
            fills = (fill,)
        status = OrderStatus.FILLED if fill_amount == amount else OrderStatus.EXPIRED
        report = OrderReport(client_order_id=client_id, symbol=self.symbol, status=status, filled=fill_amount,
                             average_price=fill_price if fills else None, fee=fee,
                             venue_order_id=venue_order_id, ts=now, fills=fills)
        self._orders[client_id] = report
        while len(self._orders) > self._order_limit:
            self._orders.popitem(last=False)
        if self._running:
            for fill in fills:
                self._events.put_nowait(fill)
            self._events.put_nowait(report)
        return report

    def _rest(self, intent: HedgeIntent, amount: Decimal, price: Decimal, bid: Decimal, ask: Decimal) -> OrderReport:
        """Place a post-only order: refused if it would take liquidity (as Binance's -5022), else
        it rests behind the volume already queued at its price (docs/passive.md)."""
        buy = intent.side is Side.BUY
        if (price >= ask) if buy else (price <= bid):
            raise PostOnlyRejected(f"{self.name}: post-only order at {price} would trade against the book "
                                   f"({bid} / {ask})")
        if intent.reduce_only and self._positions.get(self.symbol, ZERO) * intent.side.sign >= 0:
            raise ReduceOnlyRejected("ReduceOnly Order is rejected: it would increase the position")
        touch = bid if buy else ask
        behind = price < touch if buy else price > touch
        # a new best price has nothing ahead of it; at (or behind) the touch, the queue already there
        depth = float(self.settings.touch_depth)
        queue = self._contracts(Decimal(repr(round(self._queue_rng.expovariate(1 / depth), 6))), price) \
            if depth > 0 and (price == touch or behind) else ZERO
        self._order_seq += 1
        report = OrderReport(client_order_id=intent.client_order_id, symbol=self.symbol,
                             status=OrderStatus.SUBMITTED, venue_order_id=f"{self.run_tag}-o{self._order_seq}",
                             ts=self._clock.time())
        self._orders[intent.client_order_id] = report
        self._resting[intent.client_order_id] = RestingOrder(
            side_buy=buy, price=price, remaining=amount, queue_ahead=queue)
        if self._running:
            self._events.put_nowait(report)
        return report

    def _on_tick(self, step: int, bid: Decimal, ask: Decimal) -> None:
        """Match the resting orders against this tick's market trade flow, then liquidate the
        position if the tick's mid reached its liquidation price."""
        before = self._last_quote or (bid, ask)
        self._last_quote = (bid, ask)
        if self._resting:
            flow = self._flow.at(step, before, (bid, ask), self._market.interval)
            for client_id, resting in list(self._resting.items()):
                filled = resting.match(self._flow_in_contracts(flow, resting.price), self.market_info.amount_step)
                if filled > 0:
                    self._fill_resting(client_id, resting, filled)
        self._liquidate_at((bid + ask) / 2)

    def _fill_resting(self, client_id: str, resting: RestingOrder, filled: Decimal) -> None:
        """Book a fill of a resting order at its price with the maker fee; report it on the stream."""
        report = self._orders.get(client_id)
        if report is None:
            self._resting.pop(client_id, None)
            return
        side = Side.BUY if resting.side_buy else Side.SELL
        # Adverse selection beyond the trade-through rule: the flow that filled us keeps going,
        # the mid moves against the order as it fills (its markout is part of the fill's cost).
        adverse = self.settings.adverse_selection_bps / _BPS
        if adverse > 0:
            self._market.set_mid(self._market.mid() * (1 - side.sign * adverse))
        fee = self._notional(filled, resting.price) * self._maker_fee * (1 - self._fee_discount)
        fee = (fee if self._fee_price is None else fee / self._fee_price).quantize(FEE_QUANTUM)
        now = self._clock.time()
        fill = Fill(venue=self.name, trade_id=self._next_trade_id(), symbol=self.symbol, side=side, amount=filled,
                    price=resting.price, fee=fee, fee_currency=self.fee_currency, ts=now,
                    received_at=self._clock.monotonic(), client_order_id=client_id)
        self._book_fill(fill)
        self.margin.fill(fill.signed_amount, resting.price, fee if self._fee_price is None else ZERO)
        total = report.filled + filled
        done = resting.remaining <= 0
        if done:
            del self._resting[client_id]
        updated = OrderReport(client_order_id=client_id, symbol=self.symbol,
                              status=OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED,
                              filled=total, average_price=resting.price, fee=report.fee + fee,
                              venue_order_id=report.venue_order_id, ts=now, fills=(*report.fills, fill))
        self._orders[client_id] = updated
        if self._running:
            self._events.put_nowait(fill)
            self._events.put_nowait(updated)

    def _validate(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> None:
        info = self.market_info
        if intent.symbol != self.symbol:
            raise InvalidOrder(f"{self.name}: unknown symbol {intent.symbol!r}")
        if not amount > 0 or amount % info.amount_step != 0:
            raise InvalidOrder(
                f"{self.name}: amount {amount} is not a positive multiple of {info.amount_step}")
        if amount < info.min_amount:
            raise InvalidOrder(f"{self.name}: amount {amount} below minimum {info.min_amount}")
        if intent.order_type in (OrderType.LIMIT_IOC, OrderType.POST_ONLY):
            if price is None or not price > 0:
                raise InvalidOrder(f"{self.name}: limit order needs a positive limit price")
            if price % info.price_step != 0:
                raise InvalidOrder(f"{self.name}: price {price} is not a multiple of {info.price_step}")
        if not intent.reduce_only:
            usd = amount * info.contract_size  # an inverse contract's size is its notional
            notional = usd if self.instrument.kind is InstrumentKind.INVERSE else usd * self._market.mid()
            if notional < info.min_notional:
                raise InvalidOrder(f"{self.name}: notional below {info.min_notional}")

    def _notional(self, contracts: Decimal, price: Decimal) -> Decimal:
        """What ``contracts`` at ``price`` are worth in the settle currency (the fee's base)."""
        size = contracts * self.instrument.contract_size
        return size / price if self.instrument.kind is InstrumentKind.INVERSE else size * price

    def _contracts(self, base: Decimal, price: Decimal) -> Decimal:
        """``base`` units of the market's volume as contracts at ``price`` (resting orders count
        in contracts; the trade flow and the queue are drawn in base units)."""
        if self.instrument.kind is InstrumentKind.INVERSE:
            return base * price / self.instrument.contract_size
        return base  # the linear perpetual's legacy market: contracts are base units

    def _flow_in_contracts(self, flow: TickFlow, price: Decimal) -> TickFlow:
        if self.instrument.kind is not InstrumentKind.INVERSE:
            return flow
        return dataclasses.replace(flow, buy_volume=self._contracts(flow.buy_volume, price),
                                   sell_volume=self._contracts(flow.sell_volume, price))

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """The order with that client id, or None if the venue never received it."""
        return await self._round_trip("fetch_order", lambda: self._orders.get(client_order_id))

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Orders not yet final (market and IOC orders are final at once)."""
        return await self._round_trip(
            "fetch_open_orders",
            lambda: [r for r in self._orders.values()
                     if not r.status.is_final and (symbol is None or r.symbol == symbol)])

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Cancel an open order; None if it is unknown or already final."""
        return await self._round_trip("cancel_order", lambda: self._cancel_resting(client_order_id))

    def _cancel_resting(self, client_order_id: str, *, report_it: bool = False) -> OrderReport | None:
        """Cancel an open order now; None if it is unknown or already final. ``report_it``: also
        stream the update (a cancel the venue makes on its own, e.g. before a liquidation)."""
        report = self._orders.get(client_order_id)
        if report is None or report.status.is_final:
            return None
        canceled = OrderReport(client_order_id=report.client_order_id, symbol=report.symbol,
                               status=OrderStatus.CANCELED, filled=report.filled,
                               average_price=report.average_price, fee=report.fee,
                               venue_order_id=report.venue_order_id, ts=self._clock.time(),
                               fills=report.fills)
        self._orders[client_order_id] = canceled
        self._resting.pop(client_order_id, None)
        if report_it and self._running:
            self._events.put_nowait(canceled)
        return canceled


def build_sim_venues(configs: list[VenueConfig], clock: Clock) -> dict[str, Venue]:
    """Build every ``kind = "sim"`` venue in ``configs``, by name.

    Venues trading the same base asset share one :class:`SimMarketData`, whose parameters
    (seed, initial price, volatility, tick interval) come from the lowest-seeded of them.
    Role ``inventory`` gives a :class:`SimSpotVenue`, or with ``sim.options`` a
    :class:`~hedgerd.connectors.paper_options.SimOptionsVenue`; role ``hedge`` a :class:`SimPerpVenue`.
    """
    from hedgerd.connectors.paper_options import SimOptionsVenue  # it builds on this module

    sims = [config for config in configs if config.kind is VenueKind.SIM]
    groups: dict[str, list[VenueConfig]] = {}
    for config in sims:
        groups.setdefault(split_symbol(config.sim.symbol)[0], []).append(config)
    markets = {base: SimMarketData(base, min(group, key=lambda c: c.sim.seed).sim, clock)
               for base, group in groups.items()}
    venues: dict[str, Venue] = {}
    for config in sims:
        market = markets[split_symbol(config.sim.symbol)[0]]
        if config.role is VenueRole.HEDGE:
            venues[config.name] = SimPerpVenue(config.name, config.sim, market, clock)
        elif config.sim.options is not None:
            venues[config.name] = SimOptionsVenue(config.name, config.sim, market, clock)
        else:
            venues[config.name] = SimSpotVenue(config.name, config.sim, market, clock)
    return venues
