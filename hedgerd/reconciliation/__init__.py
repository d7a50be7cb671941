"""Startup reconciliation: pure decisions (:mod:`.decisions`) and the orchestrator that makes the
venue round trips (:mod:`.reconciler`, imported from there: it needs the ledger, the decisions
do not, and venues import :class:`PositionSnapshot` from here)."""

from hedgerd.reconciliation.decisions import (
    Cut,
    Decision,
    PositionCheck,
    PositionSnapshot,
    Verdict,
    check_position,
    decide,
    locate_cut,
    pending_fills,
    position_deltas,
    trade_order,
    usable_cursor,
)

__all__ = [
    "Cut", "Decision", "PositionCheck", "PositionSnapshot", "Verdict", "check_position", "decide", "locate_cut",
    "pending_fills", "position_deltas", "trade_order", "usable_cursor",
]
