"""The executor's orders: the record of one order, its state machine, the tracker that knows what
is still in flight, the journal they are written to, and the pure checks before a send."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from hedgerd.instruments import InstrumentKind
from hedgerd.models import ZERO, Fill, HedgeIntent, MarketInfo, OrderReport, OrderStatus, OrderType
from hedgerd.policy.sizing import round_price

# Forward order of the state machine; UNKNOWN sits with NEW (no venue answer yet).
_RANK = {
    OrderStatus.NEW: 0,
    OrderStatus.UNKNOWN: 0,
    OrderStatus.SUBMITTED: 1,
    OrderStatus.PARTIALLY_FILLED: 2,
    OrderStatus.FILLED: 3,
    OrderStatus.CANCELED: 3,
    OrderStatus.REJECTED: 3,
    OrderStatus.EXPIRED: 3,
}


class OrderJournal(Protocol):
    """The part of :class:`hedgerd.ledger.InventoryLedger` the executor uses."""

    def submit_fill(self, fill: Fill) -> asyncio.Future[bool]: ...

    async def record_order_state(self, client_order_id: str, status: OrderStatus, filled: Decimal = ...,
                                 average_price: Decimal | None = ..., venue_order_id: str | None = ...,
                                 ts: float = ..., detail: str = ...) -> None: ...

    def filled_for(self, client_order_id: str) -> Decimal: ...

    def order_state(self, client_order_id: str) -> tuple[OrderStatus, Decimal] | None: ...

    def open_intents(self) -> list[HedgeIntent]: ...


@dataclass(eq=False)
class TrackedOrder:
    """What the executor knows of one of its orders."""

    intent: HedgeIntent
    contracts: Decimal
    base_amount: Decimal  # what was (or will be) requested, in base units
    status: OrderStatus = OrderStatus.NEW
    reported_filled: Decimal = ZERO  # base units, as last reported by the venue
    maybe_live: bool = False  # an order with this client id may exist at the venue
    acknowledged: bool = False  # the venue has reported on it at least once
    executing: bool = False  # execute() is working on it
    last_sent_at: float = 0.0  # wall-clock time of the last send (intent creation if recovered)
    last_report: OrderReport | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def expected_fill(order: TrackedOrder) -> Decimal:
    """Base units an order may still fill in all: what the venue reported once it is final, else
    the whole size it was sent with."""
    return order.reported_filled if order.status.is_final else order.base_amount


def can_advance(current: OrderStatus, current_filled: Decimal,
                 new: OrderStatus, new_filled: Decimal) -> bool:
    """Whether moving from ``current`` to ``new`` is a forward step of the state machine."""
    if current.is_final or new is OrderStatus.NEW:
        return False
    if new is OrderStatus.UNKNOWN:
        return current is OrderStatus.NEW
    if new is current:
        return new_filled > current_filled
    return _RANK[new] >= _RANK[current]


def send_refusal(intent: HedgeIntent, market: MarketInfo | None, contracts: Decimal,
                 reference_price: Decimal | None) -> tuple[str, str] | None:
    """(metric label, detail) when the order must not be sent at all, else None."""
    if market is None:
        return "no_market", f"no market info for {intent.symbol}"
    if contracts <= 0 or contracts < market.min_amount:
        return "below_minimum", "below venue minimum"
    price = intent.limit_price if intent.limit_price is not None else reference_price
    if (price is not None and market.min_notional > 0
            and order_notional(market, contracts, price) < market.min_notional):
        return "below_minimum", "below venue minimum"
    if intent.order_type is OrderType.LIMIT_IOC and price is None:
        return "no_price", "limit order without a reference price"
    return None


def order_notional(market: MarketInfo, contracts: Decimal, price: Decimal) -> Decimal:
    """Quote value of ``contracts``: an inverse contract's size is quote already, not coin."""
    if market.instrument is not None and market.instrument.kind is InstrumentKind.INVERSE:
        return contracts * market.contract_size
    return contracts * market.contract_size * price


def limit_price(intent: HedgeIntent, market: MarketInfo | None, reference_price: Decimal | None,
                max_slippage_bps: Decimal) -> Decimal | None:
    """The IOC limit to send: the intent's own, else ``reference_price`` moved by the allowed
    slippage against us; rounded to the price step on the safe side. None for other order types.

    Raises ValueError for a price that cannot be rounded (see :func:`round_price`).
    """
    if intent.order_type is not OrderType.LIMIT_IOC:
        return None
    step = market.price_step if market is not None else None
    if intent.limit_price is not None:
        return round_price(intent.limit_price, step, intent.side)
    assert reference_price is not None  # checked by send_refusal
    slippage = max_slippage_bps / Decimal(10_000)
    cap = reference_price * (1 + intent.side.sign * slippage)
    return round_price(cap, step, intent.side)


class OrderTracker:
    """An executor's orders by client order id, each forgotten once settled.

    Settled: nothing of it can exist at the venue, or everything it can fill has landed in the
    ledger. Until then what it may still fill counts as in flight.
    """

    def __init__(self, ledger: OrderJournal) -> None:
        self._ledger = ledger
        self.by_id: dict[str, TrackedOrder] = {}

    def outstanding(self, order: TrackedOrder) -> Decimal:
        """Base units the order may still add to the position (not yet journaled)."""
        if not (order.maybe_live or order.executing):
            return ZERO
        landed = self._ledger.filled_for(order.intent.client_order_id)
        return max(expected_fill(order) - landed, ZERO)

    def settled(self, order: TrackedOrder) -> bool:
        """Nothing can exist at the venue, or everything it can fill has landed in the ledger."""
        return not order.executing and (not order.maybe_live or self.outstanding(order) <= 0)

    def live(self, symbol: str | None) -> list[TrackedOrder]:
        """Unsettled orders (on ``symbol`` if given); settled ones are forgotten on the way."""
        live: list[TrackedOrder] = []
        for cid, order in list(self.by_id.items()):
            if self.settled(order):
                del self.by_id[cid]
            elif symbol is None or order.intent.symbol == symbol:
                live.append(order)
        return live

    def release(self, order: TrackedOrder) -> None:
        """``execute`` is done with ``order``: forget it if it is settled."""
        order.executing = False
        if self.settled(order):
            self.by_id.pop(order.intent.client_order_id, None)
