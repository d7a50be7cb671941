"""The event loop's view of the ledger: what the last commit left, read without I/O.

Positions, venue and trade totals and the open intents are held whole; per-order fill sums and
states of closed orders sit in bounded caches that fall back to the database (``read_one``), so
memory stays flat in the number of fills and orders. Only the event loop's thread touches it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from hedgerd.ledger.accounting import Snapshot, TradeTotals, VenueTotals
from hedgerd.ledger.caches import CACHE_SIZE, LRU
from hedgerd.ledger.client_ids import issued_intent_id
from hedgerd.ledger.outcome import BatchOutcome
from hedgerd.models import Fill, HedgeIntent, OrderStatus

ZERO = Decimal(0)
#: Trade ids of our own orders' fills journaled lately. Each such fill arrives up to three times
#: (the order's response, the order stream, the trade stream); a repeat found here is answered as
#: the repeat it is (an echo, see ``_is_echo``) without a commit. A repeat older than this goes to
#: the UNIQUE index as before.
_RECENT_OWN_FILLS = 4_096

ReadOne = Callable[..., "tuple[Any, ...] | None"]
"""``read_one(sql, *params)``: one row from the ledger's read-only connection, or None."""


class LedgerView:
    """Positions, totals and order states as of the last commit (see the module docstring)."""

    def __init__(self, read_one: ReadOne) -> None:
        self._read_one = read_one
        self.positions: dict[tuple[str, str], Decimal] = {}
        self.venues: dict[str, VenueTotals] = {}
        self.trades: dict[tuple[str, str], TradeTotals] = {}
        self.filled_cache: LRU[str, Decimal] = LRU(CACHE_SIZE)
        self.state_cache: LRU[str, tuple[OrderStatus, Decimal]] = LRU(CACHE_SIZE)
        self.recent_own_fills: LRU[tuple[str, str], bool] = LRU(_RECENT_OWN_FILLS)  # committed only
        self.open_intents: dict[str, HedgeIntent] = {}
        self.open_states: dict[str, tuple[OrderStatus, Decimal]] = {}

    def load(self, snapshot: Snapshot,
             open_intents: Iterable[tuple[HedgeIntent, OrderStatus, Decimal, Decimal]]) -> None:
        """Start from what opening the file found: the aggregates and the open intents with their
        (status, filled as reported, filled as journaled)."""
        self.positions = dict(snapshot.positions)
        self.venues = {v: VenueTotals(t.fills, t.fees, t.last_fill_ts) for v, t in snapshot.venues.items()}
        self.trades = dict(snapshot.trades)
        for intent, status, reported, journaled in open_intents:
            self.open_intents[intent.client_order_id] = intent
            self.open_states[intent.client_order_id] = (status, reported)
            self.filled_cache.put(intent.client_order_id, journaled)

    def snapshot(self) -> Snapshot:
        """Positions and totals as a :class:`Snapshot` (no per-order sums), to verify against."""
        return Snapshot(dict(self.positions), self.venues, {}, dict(self.trades))

    def add_intent(self, intent: HedgeIntent) -> None:
        """A new intent counts as open (NEW, nothing filled) from the moment it is made."""
        client_order_id = intent.client_order_id
        self.open_intents[client_order_id] = intent
        self.open_states[client_order_id] = (OrderStatus.NEW, ZERO)
        self.filled_cache.put(client_order_id, ZERO)

    def apply(self, outcome: BatchOutcome) -> None:
        """Move positions, totals and order states forward by a committed batch."""
        self.positions.update(outcome.positions)
        self.venues.update(outcome.venues)
        self.trades.update(outcome.trades)
        for cid, filled in outcome.order_fills.items():
            self.filled_cache.put(cid, filled)
        for intent in outcome.reopened:  # a non-final state after a final one
            self.open_intents[intent.client_order_id] = intent
        for cid, status, filled in outcome.states:
            if cid in self.open_intents:
                if status.is_final:
                    self.open_states.pop(cid, None)
                    del self.open_intents[cid]
                    self.state_cache.put(cid, (status, filled))
                else:
                    self.open_states[cid] = (status, filled)
            else:
                self.state_cache.put(cid, (status, filled))

    def committed(self, inserted: Iterable[Fill]) -> None:
        """Remember the new fills of our own orders: a repeat of these needs no commit."""
        recent = self.recent_own_fills
        for fill in inserted:
            if fill.client_order_id is not None:
                recent.put((fill.venue, fill.trade_id), True)

    def filled_for(self, client_order_id: str) -> Decimal:
        """Sum of the amounts of journaled fills carrying ``client_order_id``."""
        cached = self.filled_cache.get(client_order_id)
        if cached is not None:
            return cached
        row = self._read_one("SELECT filled FROM order_fills WHERE client_order_id = ?", client_order_id)
        filled = Decimal(row[0]) if row is not None else ZERO
        self.filled_cache.put(client_order_id, filled)
        return filled

    def order_state(self, client_order_id: str, ledger_id: str) -> tuple[OrderStatus, Decimal] | None:
        """Last recorded (status, filled) of ``client_order_id`` (see
        :meth:`hedgerd.ledger.InventoryLedger.order_state`)."""
        state = self.open_states.get(client_order_id) or self.state_cache.get(client_order_id)
        if state is not None:
            return state
        intent_id = issued_intent_id(client_order_id, ledger_id)
        if intent_id is None:
            return None
        row = self._read_one("SELECT status, filled FROM intents WHERE intent_id = ? AND client_order_id = ?",
                             intent_id, client_order_id)
        if row is None:
            return None
        state = (OrderStatus(row[0]), Decimal(row[1]))
        self.state_cache.put(client_order_id, state)
        return state
