"""Test doubles: a fake clock, an in-memory ledger and a fault-injecting venue."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from hedgerd.connectors.base import VenueEventSink
from hedgerd.errors import InvalidOrder, OrderOutcomeUnknown, VenueError
from hedgerd.instruments import InstrumentKind
from hedgerd.models import (
    ZERO,
    Fill,
    HedgeIntent,
    MarketInfo,
    OrderReport,
    OrderStatus,
    OrderType,
    Side,
)
from hedgerd.reconciliation import PositionSnapshot


class FakeClock:
    """A clock whose ``sleep`` advances time at once and yields to the event loop.

    A sleeper never wakes before its deadline: time only moves forward, to the latest
    deadline asked for so far. ``sleeps`` records every requested sleep.
    """

    def __init__(self, start: float = 1_000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self._now + self._wall_offset

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += max(0.0, seconds)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._now = max(self._now, self._now + max(0.0, seconds))
        await asyncio.sleep(0)


class MemoryLedger:
    """In-memory stand-in for :class:`hedgerd.ledger.InventoryLedger` (order journal part)."""

    def __init__(self, ledger_id: str = "0badc0de") -> None:
        self.ledger_id = ledger_id
        self.intents: dict[str, HedgeIntent] = {}
        self.states: dict[str, list[tuple[OrderStatus, Decimal, str]]] = {}
        self.fills: dict[tuple[str, str], Fill] = {}
        self.duplicate_fills = 0
        self._next_id = 1

    async def new_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                         created_at: float, reduce_only: bool = False,
                         order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                         reason: str = "", client_id_prefix: str = "hgd") -> HedgeIntent:
        await asyncio.sleep(0)
        intent_id = self._next_id
        self._next_id += 1
        cid = f"{client_id_prefix}{self.ledger_id}x{intent_id}"
        intent = HedgeIntent(intent_id=intent_id, client_order_id=cid,
                             underlying=underlying, venue=venue, symbol=symbol, side=side, amount=amount,
                             created_at=created_at, reduce_only=reduce_only, order_type=order_type,
                             limit_price=limit_price, reason=reason)
        self.intents[intent.client_order_id] = intent
        self.states[intent.client_order_id] = [(OrderStatus.NEW, ZERO, "")]
        return intent

    async def record_fill(self, fill: Fill) -> bool:
        await asyncio.sleep(0)
        return self._journal_fill(fill)

    def submit_fill(self, fill: Fill) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        future.set_result(self._journal_fill(fill))
        return future

    def _journal_fill(self, fill: Fill) -> bool:
        key = (fill.venue, fill.trade_id)
        if key in self.fills:
            self.duplicate_fills += 1
            return False
        self.fills[key] = fill
        return True

    async def record_order_state(self, client_order_id: str, status: OrderStatus, filled: Decimal = ZERO,
                                 average_price: Decimal | None = None, venue_order_id: str | None = None,
                                 ts: float = 0.0, detail: str = "") -> None:
        await asyncio.sleep(0)
        self.states.setdefault(client_order_id, []).append((status, Decimal(filled), detail))

    def filled_for(self, client_order_id: str) -> Decimal:
        return sum((f.amount for f in self.fills.values() if f.client_order_id == client_order_id), ZERO)

    def order_state(self, client_order_id: str) -> tuple[OrderStatus, Decimal] | None:
        states = self.states.get(client_order_id)
        return (states[-1][0], states[-1][1]) if states else None

    def open_intents(self) -> list[HedgeIntent]:
        return [i for cid, i in self.intents.items() if not self.states[cid][-1][0].is_final]

    def history(self, client_order_id: str) -> list[OrderStatus]:
        """Every journaled status of an order, oldest first."""
        return [s for s, _, _ in self.states.get(client_order_id, [])]

    def detail(self, client_order_id: str) -> str:
        return self.states[client_order_id][-1][2]


class Fault(StrEnum):
    """Faults a :class:`FakeVenue` can inject into ``create_order``."""

    ACCEPT_THEN_TIMEOUT = "accept_then_timeout"  # placed; the caller gets OrderOutcomeUnknown
    TIMEOUT_BEFORE_ACCEPT = "timeout_before_accept"  # OrderOutcomeUnknown; nothing placed
    ACCEPT_LATE = "accept_late"  # OrderOutcomeUnknown; placed only after the next lookup missed it
    HANG_BEFORE_ACCEPT = "hang_before_accept"  # never answers; nothing placed
    HANG_AFTER_ACCEPT = "hang_after_accept"  # placed; never answers


@dataclass(frozen=True)
class VenueCall:
    """One request the fake venue received."""

    method: str
    client_order_id: str
    at: float  # clock monotonic
    amount: Decimal | None = None
    price: Decimal | None = None


class FakeVenue:
    """A perpetuals venue double that fills at ``price``, with scripted faults.

    ``create_faults`` / ``fetch_faults`` / ``cancel_faults`` are queues: each request pops one
    entry (a :class:`Fault` for create, or an exception instance, which is raised). A client
    order id is unique: a second create with a known id raises InvalidOrder, like Binance.
    ``mode = "rest"`` leaves orders open (SUBMITTED) instead of filling them;
    ``fill_fraction`` below 1 fills IOC-style part and expires the rest; with
    ``report_fills = False`` the fills go to ``unreported_fills`` (as if only streamed).
    """

    def __init__(self, clock: FakeClock, market: MarketInfo, *, name: str = "perp",
                 price: Decimal = Decimal(60000), fee_rate: Decimal = Decimal("0.0005")) -> None:
        self.name = name
        self.clock = clock
        self.market = market
        self.price = price
        self.fee_rate = fee_rate
        self.mode = "fill"
        self.fill_fraction = Decimal(1)
        self.report_fills = True
        self.create_faults: deque[Fault | VenueError] = deque()
        self.fetch_faults: deque[VenueError] = deque()
        self.cancel_faults: deque[VenueError] = deque()
        self.orders: dict[str, OrderReport] = {}
        self.calls: list[VenueCall] = []
        self.unreported_fills: list[Fill] = []
        self.position = ZERO
        self._late: dict[str, tuple[HedgeIntent, Decimal, Decimal | None]] = {}
        self._trade_seq = 0

    def calls_of(self, method: str) -> list[VenueCall]:
        return [c for c in self.calls if c.method == method]

    # Venue protocol -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return True

    async def start(self, sink: VenueEventSink) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_markets(self) -> dict[str, MarketInfo]:
        return {self.market.symbol: self.market}

    async def fetch_positions(self) -> dict[str, Decimal]:
        return {self.market.symbol: self.position}

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(await self.fetch_positions())

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        return []

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        return [r for r in self.orders.values() if not r.status.is_final]

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        cid = intent.client_order_id
        self.calls.append(VenueCall("create", cid, self.clock.monotonic(), amount, price))
        await asyncio.sleep(0)
        fault = self.create_faults.popleft() if self.create_faults else None
        if isinstance(fault, VenueError):
            raise fault
        if fault is Fault.TIMEOUT_BEFORE_ACCEPT:
            raise OrderOutcomeUnknown("request timed out")
        if fault is Fault.HANG_BEFORE_ACCEPT:
            await asyncio.Event().wait()
        if cid in self.orders or cid in self._late:
            raise InvalidOrder("Duplicate order sent.")
        if fault is Fault.ACCEPT_LATE:
            self._late[cid] = (intent, amount, price)
            raise OrderOutcomeUnknown("request timed out")
        report = self._place(intent, amount, price)
        if fault is Fault.ACCEPT_THEN_TIMEOUT:
            raise OrderOutcomeUnknown("request timed out")
        if fault is Fault.HANG_AFTER_ACCEPT:
            await asyncio.Event().wait()
        return report

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        self.calls.append(VenueCall("fetch", client_order_id, self.clock.monotonic()))
        await asyncio.sleep(0)
        if self.fetch_faults:
            raise self.fetch_faults.popleft()
        report = self.orders.get(client_order_id)
        late = self._late.pop(client_order_id, None)
        if late is not None:  # the delayed request lands just after this lookup missed it
            self._place(*late)
        return report

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        self.calls.append(VenueCall("cancel", client_order_id, self.clock.monotonic()))
        await asyncio.sleep(0)
        if self.cancel_faults:
            raise self.cancel_faults.popleft()
        report = self.orders.get(client_order_id)
        if report is None or report.status.is_final:
            return None
        canceled = OrderReport(client_order_id, symbol, OrderStatus.CANCELED, report.filled,
                               venue_order_id=report.venue_order_id, ts=self.clock.time())
        self.orders[client_order_id] = canceled
        return canceled

    # matching ---------------------------------------------------------------------------
    def _place(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        cid = intent.client_order_id
        venue_order_id = f"V{len(self.orders) + 1}"
        if self.mode == "rest":
            report = OrderReport(cid, intent.symbol, OrderStatus.SUBMITTED, venue_order_id=venue_order_id,
                                 ts=self.clock.time())
            self.orders[cid] = report
            return report
        crosses = price is None or (price >= self.price if intent.side is Side.BUY else price <= self.price)
        # A market with an instrument counts in contracts (the contract's own unit), else base units.
        unit = self.market.contract_size if self.market.instrument is None else Decimal(1)
        base = amount * unit * (self.fill_fraction if crosses else ZERO)
        fills: tuple[Fill, ...] = ()
        if base > 0:
            self._trade_seq += 1
            fee = base * self.price * self.fee_rate
            fee_currency = self.market.quote
            instrument = self.market.instrument
            if instrument is not None and instrument.kind is InstrumentKind.INVERSE:
                # an inverse contract's fee is a fraction of its USD size, charged in the coin
                fee, fee_currency = base * instrument.contract_size / self.price * self.fee_rate, instrument.settle
            fill = Fill(venue=self.name, trade_id=f"T{self._trade_seq}", symbol=intent.symbol,
                        side=intent.side, amount=base, price=self.price, fee=fee,
                        fee_currency=fee_currency, ts=self.clock.time(), client_order_id=cid)
            self.position += fill.signed_amount
            if self.report_fills:
                fills = (fill,)
            else:
                self.unreported_fills.append(fill)
        complete = base == amount * unit
        report = OrderReport(cid, intent.symbol, OrderStatus.FILLED if complete else OrderStatus.EXPIRED,
                             filled=base, average_price=self.price if base > 0 else None,
                             fee=sum((f.fee for f in fills), ZERO), venue_order_id=venue_order_id,
                             ts=self.clock.time(), fills=fills)
        self.orders[cid] = report
        return report
