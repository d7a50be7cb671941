"""What one committed ledger transaction changed, handed from the writer to the event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from hedgerd.ledger.accounting import TradeTotals, VenueTotals
from hedgerd.models import Fill, HedgeIntent, OrderStatus


@dataclass(slots=True)
class BatchOutcome:
    """What one committed transaction changed, handed from the writer to the event loop."""

    futures: list[asyncio.Future[Any]]
    results: list[Any]
    new_fills: int = 0
    duplicates: int = 0  # repeats of fills that are not our own orders' (see journal._is_echo)
    echoes: int = 0  # repeats of our own orders' fills
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    venues: dict[str, VenueTotals] = field(default_factory=dict)
    order_fills: dict[str, Decimal] = field(default_factory=dict)
    trades: dict[tuple[str, str], TradeTotals] = field(default_factory=dict)
    fills_by_symbol: dict[tuple[str, str], int] = field(default_factory=dict)
    hedge_fees: dict[str, Decimal] = field(default_factory=dict)  # fees of our own (client id) fills
    reopened: list[HedgeIntent] = field(default_factory=list)
    states: list[tuple[str, OrderStatus, Decimal]] = field(default_factory=list)
    seconds: float = 0.0  # BEGIN to COMMIT
    inserted: list[Fill] = field(default_factory=list)  # the new fills, in order
    last_fill_id: int = 0  # the largest fill id journaled by this batch (0: none)
    view_applied: bool = False  # the event loop's view already has this batch (commit hook)
