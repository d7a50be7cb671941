"""Hedging cost, decomposed: fee, spread, slippage and funding of hedge fills, in quote currency.

Pure functions plus one small accumulator. The decomposition of one hedge fill (``side``
+1 buy / -1 sell, ``amount`` base units, ``price`` fill price), against the quote at the
moment the hedge was decided (``mid``, ``half_spread``):

- implementation shortfall ``side x (price - mid) x amount``: what the fill cost against
  the decision mid (negative when the fill was better than mid);
- spread ``half_spread x amount``: the part of it a taker expects to pay at that quote;
- slippage = shortfall - spread: what the market moved or the book's depth took on top
  (negative when the fill beat the quoted touch);
- fee: the venue's fee valued in the quote currency at fill time. A fee in the quote
  currency is taken as is; one in the base currency at the fill price; one in a third
  currency (BNB on Binance) at that currency's conversion price (``FEE/QUOTE``), which
  must be fresh. A missing or stale conversion is reported, never counted as zero silently;
- funding: what the hedge position paid in funding (a payment received counts negative),
  valued like a fee: in the quote currency as booked, in the coin of an inverse perpetual at
  the venue's price given with the payment, else at the hedge's mid (fresh at the funding
  time), else reported as not valued.

So fee + spread + slippage + funding = total, for every fill and every sum of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from hedgerd.models import ZERO, Fill, FundingPayment, split_symbol

COST_KINDS = ("fee", "spread", "slippage", "funding")


class FeeStatus(StrEnum):
    """How a fee was valued: ``ok`` or why it could not be (then its value is unknown)."""

    OK = "ok"
    MISSING = "missing_conversion"
    STALE = "stale_conversion"


@dataclass(frozen=True, slots=True)
class Conversion:
    """A conversion price of one currency in the quote currency (``mid`` of ``FEE/QUOTE``)
    and when it was seen (epoch seconds, the fill timestamps' clock)."""

    price: Decimal
    ts: float


@dataclass(frozen=True, slots=True)
class FeeValue:
    """A fee in quote currency; ``value`` is None when ``status`` is not ``ok``."""

    value: Decimal | None
    status: FeeStatus


@dataclass(frozen=True, slots=True)
class DecisionQuote:
    """The hedge venue's quote when a hedge was decided."""

    mid: Decimal
    half_spread: Decimal

    @classmethod
    def from_touch(cls, bid: Decimal, ask: Decimal) -> DecisionQuote:
        return cls(mid=(bid + ask) / 2, half_spread=(ask - bid) / 2)


def value_fee(fill: Fill, conversions: Callable[[str, str], Conversion | None], *,
              max_age: float) -> FeeValue:
    """``fill``'s fee in its symbol's quote currency.

    ``conversions(currency, quote)`` returns the latest price of ``currency`` in ``quote``
    (or None); a conversion older than ``max_age`` seconds at the fill's time is stale.
    """
    if not fill.fee:
        return FeeValue(ZERO, FeeStatus.OK)
    base, quote, settle = split_symbol(fill.symbol)
    currency = fill.fee_currency
    if currency is None or currency in (quote, settle):
        # ccxt leaves the currency out only when the venue charges in the quote/settle currency
        return FeeValue(fill.fee, FeeStatus.OK)
    if currency == base:
        return FeeValue(fill.fee * fill.price, FeeStatus.OK)
    conversion = conversions(currency, quote)
    if conversion is None or conversion.price <= 0:
        return FeeValue(None, FeeStatus.MISSING)
    if fill.ts - conversion.ts > max_age:
        return FeeValue(None, FeeStatus.STALE)
    return FeeValue(fill.fee * conversion.price, FeeStatus.OK)


def execution_cost(fill: Fill, decision: DecisionQuote) -> tuple[Decimal, Decimal]:
    """(spread, slippage) of a hedge fill against the quote it was decided on, quote currency."""
    shortfall = fill.side.sign * (fill.price - decision.mid) * fill.amount
    spread = decision.half_spread * fill.amount
    return spread, shortfall - spread


@dataclass(slots=True)
class HedgeCost:
    """One underlying's hedging cost so far, in its quote currency."""

    fee: Decimal = ZERO
    spread: Decimal = ZERO
    slippage: Decimal = ZERO
    funding: Decimal = ZERO
    unvalued_fees: int = 0  # fees left out of ``fee``: their conversion was missing or stale
    unmeasured_fills: int = 0  # hedge fills without a decision quote (e.g. decided before a restart)
    unvalued_funding: int = 0  # funding payments left out of ``funding``: no fresh conversion

    @property
    def total(self) -> Decimal:
        return self.fee + self.spread + self.slippage + self.funding

    def parts(self) -> dict[str, Decimal]:
        """Per kind of :data:`COST_KINDS`."""
        return {"fee": self.fee, "spread": self.spread, "slippage": self.slippage, "funding": self.funding}

    def as_status(self) -> dict[str, object]:
        """The ``hedging_cost`` object of ``/status`` (decimal strings)."""
        view: dict[str, object] = {kind: str(value) for kind, value in self.parts().items()}
        view["total"] = str(self.total)
        view["unvalued_fees"] = self.unvalued_fees
        view["unmeasured_fills"] = self.unmeasured_fills
        view["unvalued_funding"] = self.unvalued_funding
        return view


@dataclass(frozen=True, slots=True)
class FillCost:
    """What one hedge fill added, per kind (only the kinds it could be measured in)."""

    parts: Mapping[str, Decimal]
    fee_status: FeeStatus
    measured: bool


def add_fill(cost: HedgeCost, fill: Fill, decision: DecisionQuote | None,
             conversions: Callable[[str, str], Conversion | None], *, max_age: float) -> FillCost:
    """Add one hedge fill to ``cost``; returns what it added (for the counters)."""
    parts: dict[str, Decimal] = {}
    fee = value_fee(fill, conversions, max_age=max_age)
    if fee.value is None:
        cost.unvalued_fees += 1
    else:
        cost.fee += fee.value
        parts["fee"] = fee.value
    if decision is None:
        cost.unmeasured_fills += 1
    else:
        spread, slippage = execution_cost(fill, decision)
        cost.spread += spread
        cost.slippage += slippage
        parts["spread"], parts["slippage"] = spread, slippage
    return FillCost(parts, fee.status, decision is not None)


def value_funding(payment: FundingPayment, conversions: Callable[[str, str], Conversion | None], *,
                  max_age: float) -> FeeValue:
    """The cost of a funding payment in its symbol's quote currency: ``-amount`` (what was paid;
    a payment received is a negative cost). One in another currency than the quote (an inverse
    perpetual's coin) is valued at the price the venue gave with it, else at
    ``conversions(currency, quote)``, which must be no older than ``max_age`` seconds at the
    funding time."""
    quote = split_symbol(payment.symbol)[1]
    if payment.currency == quote:
        return FeeValue(-payment.amount, FeeStatus.OK)
    if payment.price is not None and payment.price > 0:  # the venue's own price at the funding time
        return FeeValue(-payment.amount * payment.price, FeeStatus.OK)
    conversion = conversions(payment.currency, quote)
    if conversion is None or conversion.price <= 0:
        return FeeValue(None, FeeStatus.MISSING)
    if payment.ts - conversion.ts > max_age:
        return FeeValue(None, FeeStatus.STALE)
    return FeeValue(-payment.amount * conversion.price, FeeStatus.OK)


def add_funding(cost: HedgeCost, payment: FundingPayment,
                conversions: Callable[[str, str], Conversion | None], *, max_age: float) -> FeeValue:
    """Add one funding payment to ``cost``; returns its value (None, counted, when not valued)."""
    value = value_funding(payment, conversions, max_age=max_age)
    if value.value is None:
        cost.unvalued_funding += 1
    else:
        cost.funding += value.value
    return value
