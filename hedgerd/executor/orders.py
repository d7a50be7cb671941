"""What the executor tracks of one order: the journal it writes to and the order state machine."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from hedgerd.models import ZERO, Fill, HedgeIntent, OrderReport, OrderStatus

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
class _Order:
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


def _expected_fill(order: _Order) -> Decimal:
    """Base units an order may still fill in all: what the venue reported once it is final, else
    the whole size it was sent with."""
    return order.reported_filled if order.status.is_final else order.base_amount


def _can_advance(current: OrderStatus, current_filled: Decimal,
                 new: OrderStatus, new_filled: Decimal) -> bool:
    """Whether moving from ``current`` to ``new`` is a forward step of the state machine."""
    if current.is_final or new is OrderStatus.NEW:
        return False
    if new is OrderStatus.UNKNOWN:
        return current is OrderStatus.NEW
    if new is current:
        return new_filled > current_filled
    return _RANK[new] >= _RANK[current]
