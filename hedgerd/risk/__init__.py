"""Risk arithmetic, pure: net delta and the price guard (:mod:`.delta`), hedged-book PnL (:mod:`.pnl`),
Black-76 greeks (:mod:`.greeks`) and per-instrument delta and gamma (:mod:`.exposure`)."""

from hedgerd.risk.delta import (
    CROSSED,
    INFINITE,
    NON_POSITIVE,
    NOT_A_NUMBER,
    OUT_OF_ORDER,
    WILD_JUMP,
    DeltaSnapshot,
    PriceGuard,
    inventory_delta,
    make_snapshot,
    net_delta,
)
from hedgerd.risk.pnl import book_keys, book_pnl, hedge_book_pnl, trade_pnl, untraded_quantity

__all__ = [
    "CROSSED", "INFINITE", "NON_POSITIVE", "NOT_A_NUMBER", "OUT_OF_ORDER", "WILD_JUMP", "DeltaSnapshot",
    "PriceGuard", "book_keys", "book_pnl", "hedge_book_pnl", "inventory_delta", "make_snapshot",
    "net_delta", "trade_pnl", "untraded_quantity",
]
