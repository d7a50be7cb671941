"""The daemon's running hedging cost per underlying: feeds each newly journaled hedge fill to
the pure arithmetic of :mod:`hedgerd.risk.cost` and exports the result (``/status``, metrics).

Fed by the engine: :meth:`CostBook.decided` when a hedge intent is made (it carries the decision
quote, journaled with it) and :meth:`CostBook.on_fills` with the fills a commit inserted (the
ledger has removed duplicates, so each fill counts once); by the funding poller
(:mod:`hedgerd.funding`) with the funding payments the ledger journaled as new. At start
:meth:`CostBook.rebuild` replays the ledger (hedge fills with their intents' decision quotes,
funding payments; a third-currency fee at the price it was valued at, which the cost book
journals as it values it), so the figures run over the ledger's whole life, across restarts.
The metric is a gauge holding the same running sum as ``/status``: slippage can be negative (a
fill better than the decision quote), which a Prometheus counter cannot express. A hedge market
with an instrument counts its fills in contracts: they are turned into base units first
(:func:`in_base_units`), live and in the rebuild alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from decimal import Decimal
from typing import Any

import structlog

from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.costs import CostJournal
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, FundingPayment, HedgeIntent, PriceUpdate, split_symbol
from hedgerd.risk.cost import (
    COST_KINDS,
    Conversion,
    DecisionQuote,
    FeeStatus,
    HedgeCost,
    add_fill,
    add_funding,
)

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

    def __init__(self, metrics: Metrics, prices: Mapping[tuple[str, str], PriceUpdate],
                 funding_received: dict[str, Decimal] | None = None, *, max_conversion_age: float = 60.0) -> None:
        self.metrics = metrics
        self.prices = prices
        self.max_conversion_age = max_conversion_age
        #: underlying -> funding received (quote; negative: paid), which the hedged book's PnL adds
        self.funding_received: dict[str, Decimal] = {} if funding_received is None else funding_received
        self.hedged: dict[tuple[str, str], str] = {}
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self.by_underlying: dict[str, HedgeCost] = {}
        self._decisions: OrderedDict[str, DecisionQuote] = OrderedDict()
        self._journal: CostJournal | None = None  # the ledger's, from the rebuild on
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

    def _conversion(self, venue: str, symbol: str | None = None) -> Callable[[str, str], Conversion | None]:
        def lookup(currency: str, quote: str) -> Conversion | None:
            # the spot pair, else the linear perpetual (a futures account often lists no spot pair),
            # else (funding of an inverse perpetual, in its coin) the hedge symbol itself
            price = (self.prices.get((venue, f"{currency}/{quote}"))
                     or self.prices.get((venue, f"{currency}/{quote}:{quote}")))
            if price is None and symbol is not None and split_symbol(symbol)[0] == currency:
                price = self.prices.get((venue, symbol))
            return None if price is None else Conversion(price.mid, price.ts)
        return lookup

    def on_fills(self, fills: Iterable[Fill]) -> None:
        """Add the hedge fills among newly journaled ``fills`` (our orders on a hedged symbol)."""
        for fill in fills:
            if fill.client_order_id is not None:
                self._add_fill(fill, self._decisions.get(fill.client_order_id))

    def on_funding(self, payments: Iterable[FundingPayment]) -> None:
        """Add newly journaled funding payments on hedged symbols (others are not the hedge's)."""
        for payment in payments:
            underlying = self.hedged.get((payment.venue, payment.symbol))
            if underlying is None:
                continue
            cost = self.by_underlying[underlying]
            value = add_funding(cost, payment, self._conversion(payment.venue, payment.symbol),
                                max_age=self.max_conversion_age)
            if value.value is None:
                log.warning("funding_not_valued", venue=payment.venue, symbol=payment.symbol,
                            payment_id=payment.payment_id, amount=str(payment.amount),
                            currency=payment.currency, reason=value.status.value)
                continue
            self.funding_received[underlying] = self.funding_received.get(underlying, ZERO) - value.value
            self._gauges[underlying]["funding"].set(float(cost.funding))

    async def rebuild(self, ledger: InventoryLedger) -> None:
        """Recount every tracked underlying from the ledger (at start, before new fills arrive):
        the hedge fills against their intents' decision quotes, then the funding payments; and
        remember the open intents' decision quotes for their fills still to come."""
        for underlying in self.by_underlying:
            self.by_underlying[underlying] = HedgeCost()
            self.funding_received.pop(underlying, None)
        journal = self._journal = ledger.costs
        conversions = journal.fee_conversions()
        for row in await journal.hedge_fills(list(self.hedged)):
            decision = None if row.decision_mid is None or row.decision_half_spread is None else \
                DecisionQuote(row.decision_mid, row.decision_half_spread)
            fill = row.fill
            known = conversions.get((fill.venue, fill.trade_id))  # the price its fee was valued at
            self._add_fill(fill, decision, quiet=True, conversion=None if known is None else _at(*known, fill.ts))
        self.on_funding(journal.funding_payments())
        for underlying, cost in self.by_underlying.items():
            for kind, value in cost.parts().items():
                self._gauges[underlying][kind].set(float(value))
            if cost.unvalued_fees:
                log.warning("fees_not_valued_after_restart", underlying=underlying, fees=cost.unvalued_fees,
                            detail="third-currency fees not valued when counted, or their conversion lost in a crash")
        self.decided(ledger.open_intents())

    def _add_fill(self, fill: Fill, decision: DecisionQuote | None, *, quiet: bool = False,
                  conversion: Callable[[str, str], Conversion | None] | None = None) -> None:
        underlying = self.hedged.get((fill.venue, fill.symbol))
        if underlying is None:
            return
        cost = self.by_underlying[underlying]
        lookup = conversion or self._conversion(fill.venue)
        instrument = self.instruments.get((fill.venue, fill.symbol))
        try:
            valued = fill if instrument is None else in_base_units(fill, instrument)
            added = add_fill(cost, valued, decision, lookup, max_age=self.max_conversion_age)
        except ArithmeticError:  # this runs in the ledger's commit hook: accounting must not stop hedging
            cost.unmeasured_fills += 1
            log.error("cost_not_measured", venue=fill.venue, trade_id=fill.trade_id, exc_info=True)
            return
        if quiet:  # a rebuild sets the gauges once at its end
            return
        if added.fee_status is FeeStatus.OK and self._journal is not None and valued.fee \
                and valued.fee_currency not in (None, *split_symbol(fill.symbol)):
            used = lookup(valued.fee_currency, split_symbol(fill.symbol)[1])  # a third currency: journal its price
            if used is not None:
                self._journal.record_fee_conversion(fill.venue, fill.trade_id, valued.fee_currency, used.price)
        gauges = self._gauges[underlying]
        for kind in added.parts:
            gauges[kind].set(float(getattr(cost, kind)))
        if added.fee_status is not FeeStatus.OK:
            self.metrics.fee_unvalued.labels(fill.venue, fill.fee_currency or "", added.fee_status.value).inc()
            log.warning("fee_not_valued", venue=fill.venue, trade_id=fill.trade_id, fee=str(fill.fee),
                        fee_currency=fill.fee_currency, reason=added.fee_status.value)

    def status(self, underlying: str) -> dict[str, object] | None:
        """``underlying``'s ``hedging_cost`` in ``/status`` (None when it is not tracked)."""
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


def _at(currency: str, price: Decimal, ts: float) -> Callable[[str, str], Conversion | None]:
    """A conversion lookup that knows one currency's price, as it was at ``ts``."""
    return lambda wanted, quote: Conversion(price, ts) if wanted == currency else None
