"""The hedge leg's realized PnL per underlying, by average cost and by FIFO
(:mod:`hedgerd.risk.realized`), for ``/status`` and the metrics.

Since the ledger began: at startup each hedge's journaled fills are replayed into its lots
(:meth:`PnlBook.track`, before reconciliation journals anything), then the engine hands it
every newly journaled fill (:meth:`PnlBook.on_fills`, all fills on the hedge instrument, ours
or not, as the position counts them). A position no trade accounts for (adopted at startup)
opens at the first mid marked after it appears. Both methods are kept, so ``risk.pnl_method``
only picks which one ``/status`` shows and a reload switches it at once. Fees are left out:
the cost book counts them.

A hedge market with an instrument counts its fills and position in contracts: a linear one's
are turned into base units (times the contract size). An inverse hedge's PnL is in its coin and
not linear in the price, which :mod:`hedgerd.risk.realized` does not model: it is not tracked
(no ``hedge_pnl`` in ``/status``, as the hedged book's PnL of such a book is not valued yet).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from hedgerd.config import HedgeConfig
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, PriceUpdate
from hedgerd.risk.realized import PNL_METHODS, PnlMethod, PositionPnl

#: /status shows figures to this many decimal places (an average cost's partial close is a
#: 60-digit quotient).
_SHOWN = Decimal("1e-10")


class PnlBook:
    """Realized and unrealized PnL of each tracked hedge position (see the module docstring).

    ``position(venue, symbol)`` is the ledger's position; ``method()`` the configured method,
    read on every call (a reload changes it); ``prices`` the engine's latest quotes.
    """

    def __init__(self, metrics: Metrics, position: Callable[[str, str], Decimal],
                 method: Callable[[], PnlMethod], prices: Mapping[tuple[str, str], PriceUpdate] | None = None) -> None:
        self.metrics = metrics
        self.prices: Mapping[tuple[str, str], PriceUpdate] = {} if prices is None else prices
        self._position = position
        self._method = method
        self.hedged: dict[tuple[str, str], str] = {}  # (venue, symbol) -> underlying
        self._unit: dict[tuple[str, str], Decimal] = {}  # base units per unit of the ledger's amounts
        self.by_underlying: dict[str, PositionPnl] = {}
        self._gauges: dict[str, dict[PnlMethod, Any]] = {}

    @property
    def method(self) -> PnlMethod:
        """The method ``/status`` shows now."""
        return self._method()

    def track(self, underlying: str, venue: str, symbol: str,
              trades: Iterable[tuple[Decimal, Decimal]] = (), instrument: Instrument | None = None) -> None:
        """Follow the position of ``symbol`` on ``venue``, the hedge of ``underlying``, from its
        journaled ``(signed amount, price)`` trades so far, oldest first; ``instrument``: the
        market's, when its amounts are contracts (an inverse one is not tracked)."""
        if instrument is not None and instrument.kind is InstrumentKind.INVERSE:
            return
        unit = self._unit[(venue, symbol)] = Decimal(1) if instrument is None else instrument.contract_size
        self.hedged[(venue, symbol)] = underlying
        pnl = self.by_underlying[underlying] = PositionPnl()
        self._gauges[underlying] = {m: self.metrics.hedge_realized_pnl.labels(underlying, m) for m in PNL_METHODS}
        for signed, price in trades:
            pnl.fill(signed * unit, price)
        self._export(underlying)

    def on_fills(self, fills: Iterable[Fill]) -> None:
        """Apply the newly journaled ``fills`` that are on a tracked hedge instrument."""
        touched: set[str] = set()
        for fill in fills:
            underlying = self.hedged.get((fill.venue, fill.symbol))
            if underlying is not None:
                unit = self._unit[(fill.venue, fill.symbol)]
                self.by_underlying[underlying].fill(fill.signed_amount * unit, fill.price)
                touched.add(underlying)
        for underlying in touched:
            self._export(underlying)

    def mark(self, underlying: str, venue: str, symbol: str, mid: Decimal) -> dict[str, object]:
        """The ``/status`` view of one hedge at ``mid``: method, realized, unrealized, open basis.

        A position the ledger holds beyond what the trades add up to is opened at ``mid`` first.
        """
        pnl = self.by_underlying[underlying]
        untraded = self._position(venue, symbol) * self._unit[(venue, symbol)] - pnl.average.position
        if untraded:
            pnl.fill(untraded, mid)
        method = self.method
        position, basis = ((pnl.average.position, pnl.average.basis) if method == "average"
                           else (pnl.fifo.position, pnl.fifo.basis))
        open_price = basis / position if position else None
        self._export(underlying)
        return {"method": method,
                "realized": _shown(pnl.realized(method)),
                "unrealized": _shown(pnl.unrealized(method, mid)),
                "open_lots": len(pnl.fifo.lots) if method == "fifo" else (1 if pnl.average.position else 0),
                "cost_price": None if open_price is None else _shown(open_price)}

    def status(self, hedge: HedgeConfig) -> dict[str, object] | None:
        """:meth:`mark` at the hedge's latest mid; None before its first price or when not tracked."""
        price = self.prices.get((hedge.venue, hedge.symbol))
        if price is None or (hedge.venue, hedge.symbol) not in self.hedged:
            return None
        return self.mark(hedge.underlying, hedge.venue, hedge.symbol, price.mid)

    def realized(self, underlying: str) -> Decimal:
        """Realized PnL of the hedge leg by the configured method (0 for an untracked underlying)."""
        pnl = self.by_underlying.get(underlying)
        return ZERO if pnl is None else pnl.realized(self.method)

    def _export(self, underlying: str) -> None:
        pnl = self.by_underlying[underlying]
        for method, gauge in self._gauges[underlying].items():
            gauge.set(float(pnl.realized(method)))


def _shown(value: Decimal) -> str:
    """``value`` to :data:`_SHOWN`, without trailing zeros (``1000``, ``-0.5``)."""
    text = f"{value.quantize(_SHOWN):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
