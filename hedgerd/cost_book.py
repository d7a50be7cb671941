"""The daemon's running hedging cost per underlying: feeds each newly journaled hedge fill to
the pure arithmetic of :mod:`hedgerd.risk.cost` and exports the result (``/status``, metrics).

Fed by the engine in two places only: :meth:`CostBook.decided` when a hedge intent is made
(it carries the decision quote, journaled with it) and :meth:`CostBook.on_fills` with the
fills a commit inserted (the ledger has removed duplicates, so each fill counts once).
The figures are since the daemon started. The metric is a gauge holding the same running sum
as ``/status``: slippage can be negative (a fill better than the decision quote), which a
Prometheus counter cannot express. A hedge market with an instrument counts its fills in
contracts: they are turned into base units first (:func:`in_base_units`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import structlog

from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, PriceUpdate
from hedgerd.risk.cost import COST_KINDS, Conversion, DecisionQuote, FeeStatus, HedgeCost, add_fill

log = structlog.get_logger(__name__)

#: Decision quotes kept for the fills still to come. A hedge order's fills arrive within seconds
#: of its decision, so the orders that need one are those in flight and those settled lately (as
#: for the ledger's per-order caches); an older order's late fill counts as unmeasured.
_MAX_DECISIONS = 256


class CostBook:
    """Hedging cost per underlying for the hedges in ``hedged`` ((venue, symbol) -> underlying).

    ``prices`` is the engine's latest quote per (venue, symbol): a fee in a third currency is
    valued at the mid of ``CURRENCY/QUOTE`` on the fill's venue, if that quote is no older than
    ``max_conversion_age`` seconds at the fill's time.
    """

    def __init__(self, metrics: Metrics, prices: Mapping[tuple[str, str], PriceUpdate], *,
                 max_conversion_age: float = 60.0) -> None:
        self.metrics = metrics
        self.prices = prices
        self.max_conversion_age = max_conversion_age
        self.hedged: dict[tuple[str, str], str] = {}
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self.by_underlying: dict[str, HedgeCost] = {}
        self._decisions: OrderedDict[str, DecisionQuote] = OrderedDict()
        # Each underlying's gauge per cost kind, looked up once: labels() is a dict lookup under
        # a lock, and this runs for every hedge fill inside the ledger's commit hook.
        self._gauges: dict[str, dict[str, Any]] = {}

    def track(self, underlying: str, venue: str, symbol: str, instrument: Instrument | None = None) -> None:
        """Count the hedge fills of ``symbol`` on ``venue`` for ``underlying`` (exported at 0 from here);
        ``instrument``: the market's, when its fills are counted in contracts."""
        self.hedged[(venue, symbol)] = underlying
        if instrument is not None:
            self.instruments[(venue, symbol)] = instrument
        self.by_underlying.setdefault(underlying, HedgeCost())
        self._gauges[underlying] = {kind: self.metrics.hedge_cost.labels(underlying, kind) for kind in COST_KINDS}

    def decided(self, intents: Iterable[HedgeIntent]) -> None:
        """Remember the decision quote of each intent (new ones, or open ones after a restart)."""
        for intent in intents:
            if intent.decision_mid is not None and intent.decision_half_spread is not None:
                self._decisions[intent.client_order_id] = DecisionQuote(intent.decision_mid,
                                                                        intent.decision_half_spread)
                self._decisions.move_to_end(intent.client_order_id)
        while len(self._decisions) > _MAX_DECISIONS:
            self._decisions.popitem(last=False)

    def _conversion(self, venue: str) -> Callable[[str, str], Conversion | None]:
        def lookup(currency: str, quote: str) -> Conversion | None:
            # the spot pair, else the linear perpetual (a futures account often lists no spot pair)
            price = (self.prices.get((venue, f"{currency}/{quote}"))
                     or self.prices.get((venue, f"{currency}/{quote}:{quote}")))
            return None if price is None else Conversion(price.mid, price.ts)
        return lookup

    def on_fills(self, fills: Iterable[Fill]) -> None:
        """Add the hedge fills among newly journaled ``fills`` (our orders on a hedged symbol)."""
        for fill in fills:
            if fill.client_order_id is None:
                continue
            underlying = self.hedged.get((fill.venue, fill.symbol))
            if underlying is None:
                continue
            cost = self.by_underlying[underlying]
            try:
                instrument = self.instruments.get((fill.venue, fill.symbol))
                valued = fill if instrument is None else in_base_units(fill, instrument)
                added = add_fill(cost, valued, self._decisions.get(fill.client_order_id),
                                 self._conversion(fill.venue), max_age=self.max_conversion_age)
            except ArithmeticError:  # this runs in the ledger's commit hook: accounting must not stop hedging
                cost.unmeasured_fills += 1
                log.error("cost_not_measured", venue=fill.venue, trade_id=fill.trade_id, exc_info=True)
                continue
            gauges = self._gauges[underlying]
            for kind in added.parts:
                gauges[kind].set(float(getattr(cost, kind)))
            if added.fee_status is not FeeStatus.OK:
                self.metrics.fee_unvalued.labels(fill.venue, fill.fee_currency or "", added.fee_status.value).inc()
                log.warning("fee_not_valued", venue=fill.venue, trade_id=fill.trade_id, fee=str(fill.fee),
                            fee_currency=fill.fee_currency, reason=added.fee_status.value)

    def status(self, underlying: str) -> dict[str, object] | None:
        cost = self.by_underlying.get(underlying)
        return None if cost is None else cost.as_status()

    def total(self, underlying: str) -> Decimal | None:
        cost = self.by_underlying.get(underlying)
        return None if cost is None else cost.total


def in_base_units(fill: Fill, instrument: Instrument) -> Fill:
    """A fill counted in contracts of ``instrument``, as :mod:`hedgerd.risk.cost` values fills: its
    amount in base units (an inverse contract's USD size at the fill price), and a fee an inverse
    contract charges in its coin valued in the quote at the fill price."""
    if instrument.kind is not InstrumentKind.INVERSE:
        return replace(fill, amount=fill.amount * instrument.contract_size)
    amount = fill.amount * instrument.contract_size / fill.price
    if fill.fee and fill.fee_currency in (None, instrument.settle) and instrument.coin_settled:
        return replace(fill, amount=amount, fee=fill.fee * fill.price, fee_currency=instrument.quote)
    return replace(fill, amount=amount)
