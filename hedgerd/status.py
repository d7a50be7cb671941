"""What the engine shows: readiness (``/readyz``), the ``/status`` view and the gauges that a risk
pass, a trading-state change or a scrape sets.

The functions here only assemble what the engine hands them; :class:`EngineGauges` keeps the
labelled metric children so that a risk pass on every event costs a dict lookup, not a label lookup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hedgerd.config import HedgeConfig, Mode
from hedgerd.killswitch import KillSwitch
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, OptionQuote
from hedgerd.risk.delta import DeltaSnapshot


class _GaugeChild:
    """A labelled gauge child set only when its value changes (the risk loop runs on every
    event; most passes leave these values as they were)."""

    __slots__ = ("_child", "_last")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._last: object = None

    def set(self, value: Decimal | float) -> None:
        if value != self._last:
            self._last = value
            self._child.set(float(value))


@dataclass(frozen=True)
class UnderlyingGauges:
    """The labelled metric children the risk loop sets (looked up once). The price age is set
    right before each scrape (:meth:`EngineGauges.refresh`)."""

    net_delta: _GaugeChild
    in_flight: _GaugeChild
    net_delta_notional: _GaugeChild
    realized_pnl: _GaugeChild
    gamma: _GaugeChild
    vega: _GaugeChild
    greeks_disagreement: _GaugeChild
    option_quote_age: _GaugeChild
    by_source: dict[str, _GaugeChild]  # filled as sources appear


class EngineGauges:
    """The engine's gauges: per underlying, per ledger position, the trading state, readiness."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._by_underlying: dict[str, UnderlyingGauges] = {}
        self._inventory: dict[tuple[str, str], Any] = {}

    def underlying(self, underlying: str) -> UnderlyingGauges:
        gauges = self._by_underlying.get(underlying)
        if gauges is None:
            m = self.metrics
            gauges = self._by_underlying[underlying] = UnderlyingGauges(
                net_delta=_GaugeChild(m.net_delta.labels(underlying)),
                in_flight=_GaugeChild(m.in_flight.labels(underlying)),
                net_delta_notional=_GaugeChild(m.net_delta_notional.labels(underlying)),
                realized_pnl=_GaugeChild(m.realized_pnl.labels(underlying)),
                gamma=_GaugeChild(m.gamma.labels(underlying)), vega=_GaugeChild(m.vega.labels(underlying)),
                greeks_disagreement=_GaugeChild(m.greeks_disagreement.labels(underlying)),
                option_quote_age=_GaugeChild(m.option_quote_age.labels(underlying)), by_source={})
        return gauges

    def set_book(self, snap: DeltaSnapshot, quote_age: float | None) -> None:
        """The by-source, greeks and quote-age gauges of one underlying's snapshot (the quote age is
        0 while no option is held: nothing can be stale)."""
        gauges = self.underlying(snap.underlying)
        for source, delta in snap.delta_by_source().items():
            child = gauges.by_source.get(source)
            if child is None:
                child = gauges.by_source[source] = _GaugeChild(self.metrics.delta.labels(snap.underlying, source))
            child.set(delta)
        book = snap.book
        if book is not None:
            gauges.gamma.set(book.gamma)
            gauges.vega.set(book.vega)
            if book.greeks_disagreement is not None:
                gauges.greeks_disagreement.set(book.greeks_disagreement)
        gauges.option_quote_age.set(quote_age or 0.0)

    def set_inventory(self, positions: Mapping[tuple[str, str], Decimal]) -> None:
        """One inventory gauge per ledger position (for a ledger that does not keep them itself)."""
        inventory_gauges = self._inventory
        for key, qty in positions.items():
            gauge = inventory_gauges.get(key)
            if gauge is None:
                gauge = inventory_gauges[key] = self.metrics.inventory.labels(*key)
            gauge.set(float(qty))

    def publish_trading_state(self, ks: KillSwitch) -> None:
        self.metrics.trading_state.set(int(ks.state))
        self.metrics.kill_reason.clear()
        self.metrics.kill_reason.labels(ks.state.name.lower(), ks.reason[:200], ks.source).set(1)

    def refresh(self, price_ages: Iterable[tuple[str, float]], ready: bool) -> None:
        """Time-dependent gauges, right before a scrape: each hedged symbol's price age, readiness."""
        for symbol, age in price_ages:
            self.metrics.price_age.labels(symbol).set(age)
        self.metrics.ready.set(1 if ready else 0)


def readiness_problems(*, reconciled: bool, reconcile_mismatch: str | None, foreign_order: str | None,
                       ledger_failed: str | None, disconnected: Iterable[str],
                       prices: Iterable[tuple[str, float | None, float]],
                       unvalued: Iterable[str] = ()) -> list[str]:
    """Why the engine is not ready to hedge (empty when it is).

    ``prices``: per hedge, ``(symbol, seconds since its last price or None if none yet, max age)``;
    ``unvalued``: holdings the last risk pass could not value (their book is not hedged).
    """
    problems: list[str] = []
    if not reconciled:
        problems.append("startup reconciliation not done")
    elif reconcile_mismatch:
        problems.append(reconcile_mismatch)
    if foreign_order:
        problems.append(foreign_order)
    if ledger_failed:
        problems.append(f"ledger failed: {ledger_failed}")
    for name in disconnected:
        problems.append(f"venue {name} not connected")
    for symbol, age, max_age in prices:
        if age is None:
            problems.append(f"no price yet for {symbol}")
        elif age > max_age:
            problems.append(f"price for {symbol} is stale")
    problems += [f"not valued: {what}" for what in unvalued]
    return problems


def underlying_status(snap: DeltaSnapshot, cfg: HedgeConfig, price_age: float,
                      realized_pnl: Decimal | None, hedging_cost: dict[str, object] | None = None,
                      hedge_pnl: dict[str, object] | None = None) -> dict[str, Any]:
    """One underlying's entry in ``/status``; ``hedging_cost`` as :meth:`hedgerd.risk.cost.HedgeCost.as_status`,
    ``hedge_pnl`` as :meth:`hedgerd.pnl_book.PnlBook.mark` (None before the first price)."""
    return {
        "net_delta": str(snap.net_delta), "inventory": str(snap.inventory),
        "hedge_ratio": str(snap.hedge_ratio), "perp_position": str(snap.perp_position),
        "in_flight": str(snap.in_flight),
        "notional": None if snap.notional is None else str(snap.notional),
        "mid": None if snap.mid is None else str(snap.mid),  # the hedge instrument's, as valued
        "threshold": str(cfg.threshold), "hedge_venue": cfg.venue,
        "hedge_symbol": cfg.symbol,
        "price_age_seconds": round(price_age, 3),
        "realized_pnl": str(realized_pnl) if realized_pnl is not None else None,
        "hedging_cost": hedging_cost,
        "delta_by_source": {source: str(delta) for source, delta in snap.delta_by_source().items()},
        "gamma": snap.book.gamma if snap.book is not None else 0.0,
        "vega": snap.book.vega if snap.book is not None else 0.0,
        "greeks_source": cfg.greeks_source,
        "greeks_disagreement": (None if snap.book is None or snap.book.greeks_disagreement is None
                                else str(snap.book.greeks_disagreement)),
        "unvalued": list(snap.book.unvalued) if snap.book is not None else [],
        "hedge_pnl": hedge_pnl,
    }


def option_quotes_status(quotes: Mapping[tuple[str, str], OptionQuote],
                         positions: Mapping[tuple[str, str], Decimal]) -> dict[str, dict[str, Any]]:
    """The latest quote of every held option, as the risk pass values it: ``venue:symbol`` ->
    mark price, mark IV, forward and the venue's timestamp (so /status can be checked by hand)."""
    return {f"{venue}:{symbol}": {"mark_price": str(q.mark_price), "mark_iv": q.mark_iv,
                                  "underlying_price": str(q.underlying_price), "ts": q.ts}
            for (venue, symbol), q in sorted(quotes.items()) if positions.get((venue, symbol))}


def engine_status(*, mode: Mode, kill_switch: KillSwitch, ready: bool, problems: list[str], underlyings: dict[str, Any],
                  ledger: InventoryLedger, consecutive_order_errors: int,
                  quotes: Mapping[tuple[str, str], OptionQuote] | None = None,
                  now: float | None = None) -> dict[str, Any]:
    """JSON-able view for ``/status`` (never contains secrets). ``quotes`` (the latest option quotes)
    and ``now`` (epoch seconds) are what ``underlyings`` were valued with, in the same instant:
    the held options' quotes and the time are shown so the figures can be checked by hand."""
    ks = kill_switch
    return {
        "mode": mode.value,
        "trading_state": ks.state.name.lower(),
        "reason": ks.reason,
        "source": ks.source,
        "since": ks.since if ks.history else None,  # never changed: since start, not epoch 0
        "latches": sorted(ks.latches),
        "ready": ready,
        "not_ready": problems,
        "underlyings": underlyings,
        "positions": {f"{v}:{a}": str(q) for (v, a), q in sorted(ledger.positions().items())},
        "open_orders": [
            {"client_order_id": i.client_order_id, "venue": i.venue, "symbol": i.symbol,
             "side": i.side.value, "amount": str(i.amount),
             "status": (ledger.order_state(i.client_order_id) or ("?", ZERO))[0]}
            for i in ledger.open_intents()
        ],
        "fills": ledger.fill_count,
        "duplicate_fills": ledger.duplicate_fills,
        "fill_echoes": ledger.fill_echoes,
        "consecutive_order_errors": consecutive_order_errors,
        "option_quotes": option_quotes_status(quotes or {}, ledger.positions()),
        "valued_at": now,
    }
