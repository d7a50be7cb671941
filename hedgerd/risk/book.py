"""The exposure of one underlying's inventory, by source, from positions, instruments and quotes; pure.

The engine hands in the inventory as :class:`Holding` s (ledger amounts, with the instrument
when the venue gave one), the latest :class:`~hedgerd.models.OptionQuote` of each option, the
mids it has and ``now``; :func:`inventory_exposure` values each holding with
:func:`hedgerd.risk.exposure.position_exposure` and sums them by source (``spot``, ``linear``,
``inverse``, ``option``). Options are valued both ways when the quote allows it:

- ``model``: Black-76 on the quote's forward (``underlying_price``) and ``mark_iv``, with the
  premium adjustment by the quote's mark price for coin-settled options;
- ``venue``: the greeks the quote carries (``delta``, ``gamma`` and ``vega`` per unit of
  underlying, times contracts x contract size).

The configured one makes the delta; the option delta by each is kept for the cross-check. A
holding that cannot be valued (an option without a quote, an inverse contract without a
price, ``venue`` greeks missing) is named in ``unvalued`` and counts as zero: the risk pass
does not decide on such a book (the quote-age trigger halts it when the quote stays missing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import ZERO, OptionQuote, is_derivative
from hedgerd.risk.exposure import Exposure, OptionMarket, position_exposure

INVENTORY_SOURCES = ("spot", "linear", "inverse", "option")
DELTA_SOURCES = (*INVENTORY_SOURCES, "collateral", "hedge", "in_flight")
"""The ``source`` label values of ``hedgerd_delta``: what each part of net delta comes from."""

VOL_POINT = 0.01  # vega is reported per vol point (1 % of volatility), as venues publish it


@dataclass(frozen=True, slots=True)
class Holding:
    """One inventory position: ``amount`` as the ledger counts it (contracts of ``instrument`` when
    there is one; else base units, the legacy spot balance or linear perpetual). ``unlisted``: a
    derivative the venue no longer lists (its unit unknown: not valued)."""

    venue: str
    symbol: str
    amount: Decimal
    instrument: Instrument | None = None
    unlisted: bool = False


@dataclass(frozen=True, slots=True)
class InventoryExposure:
    """An inventory's exposure (before the hedge ratio).

    ``by_source`` maps each of :data:`INVENTORY_SOURCES` present to its delta (base units);
    ``total`` is their sum, added up holding by holding in the order given. ``gamma`` is in base
    units per unit of price, ``vega`` in quote per vol point. ``option_model`` / ``option_venue``
    are the options' delta by each greeks source (``option_venue`` None when some held option's
    quote carries no greeks). ``held_options`` are the unexpired options held, whose quotes must
    stay fresh; ``unvalued`` says which holdings could not be valued and why.
    """

    by_source: dict[str, Decimal]
    total: Decimal
    gamma: float = 0.0
    vega: float = 0.0
    option_model: Decimal = ZERO
    option_venue: Decimal | None = ZERO
    held_options: tuple[tuple[str, str], ...] = ()
    unvalued: tuple[str, ...] = ()

    @property
    def disagreement(self) -> Decimal | None:
        """|options delta by model - by venue| (base units), None when the venue's is not known."""
        return None if self.option_venue is None else abs(self.option_model - self.option_venue)


def _float_decimal(x: float) -> Decimal:
    return Decimal(repr(x))  # the shortest decimal that round-trips, not the binary expansion


def venue_option_exposure(instrument: Instrument, contracts: Decimal, quote: OptionQuote) -> Exposure | None:
    """``contracts`` of an option valued with the greeks its venue published (None without them)."""
    greeks = quote.greeks
    if greeks is None or not all(math.isfinite(g) for g in (greeks.delta, greeks.gamma, greeks.vega)):
        return None
    size = contracts * instrument.contract_size
    return Exposure(delta=size * _float_decimal(greeks.delta), gamma=float(size) * greeks.gamma,
                    vega=float(size) * greeks.vega)


def model_option_exposure(instrument: Instrument, contracts: Decimal, quote: OptionQuote, now: float) -> Exposure:
    """``contracts`` of an option valued with Black-76 on the quote (vega per vol point); ValueError
    when the quote's forward or volatility cannot be used."""
    forward = float(quote.underlying_price)
    if not (math.isfinite(quote.mark_iv) and quote.mark_iv >= 0 and math.isfinite(forward) and forward > 0):
        raise ValueError(f"{instrument.symbol}: unusable quote (iv {quote.mark_iv}, forward {quote.underlying_price})")
    mark_coin = float(quote.mark_price) if instrument.coin_settled else None
    exposure = position_exposure(instrument, contracts, now=now, option=OptionMarket(
        forward=forward, vol=quote.mark_iv, mark_price_coin=mark_coin))
    return Exposure(delta=exposure.delta, gamma=exposure.gamma, vega=exposure.vega * VOL_POINT)


def instrument_delta(instrument: Instrument | None, amount: Decimal, mark: Decimal | None) -> Exposure | None:
    """A hedge position (or order) of ``amount`` in ``instrument``'s unit, valued at ``mark``: None for
    an inverse contract without a mark; legacy (no instrument) amounts are base units already."""
    if instrument is None:
        return Exposure(delta=amount)
    if instrument.kind is InstrumentKind.INVERSE and (mark is None or not mark > 0):
        return None if amount else Exposure()
    return position_exposure(instrument, amount, now=0.0, mark=mark)


def _source(holding: Holding) -> str:
    if holding.instrument is None:
        return "linear" if is_derivative(holding.symbol) else "spot"
    return holding.instrument.kind.value


def inventory_exposure(holdings: Iterable[Holding], *, quotes: Mapping[tuple[str, str], OptionQuote],
                       mark_of: Callable[[tuple[str, str]], Decimal | None], fallback_mark: Decimal | None,
                       now: float, greeks_source: str = "model") -> InventoryExposure:
    """Value every holding (see the module docstring); ``now`` in epoch seconds.

    ``mark_of`` gives the mid of a ``(venue, symbol)`` if known: an inverse holding is valued at its
    own, else at ``fallback_mark`` (the hedge instrument's mid, the same underlying).
    """
    by_source: dict[str, Decimal] = {}
    total = ZERO
    gamma = vega = 0.0
    option_model, option_venue = ZERO, ZERO
    venue_known = True
    held: list[tuple[str, str]] = []
    unvalued: list[str] = []
    for holding in holdings:
        instrument, key = holding.instrument, (holding.venue, holding.symbol)
        source = _source(holding)
        exposure: Exposure | None
        if holding.unlisted:
            if holding.amount:
                unvalued.append(f"{holding.symbol} on {holding.venue}: not listed by the venue")
            continue
        if instrument is None:
            exposure = Exposure(delta=holding.amount)
        elif instrument.kind is InstrumentKind.OPTION:
            if instrument.expired(now) or not holding.amount:
                continue  # settled by the venue: no delta left, no quote needed
            held.append(key)
            quote = quotes.get(key)
            if quote is None:
                unvalued.append(f"{holding.symbol} on {holding.venue}: no option quote")
                continue
            try:
                model = model_option_exposure(instrument, holding.amount, quote, now)
            except ValueError as exc:
                unvalued.append(f"{holding.symbol} on {holding.venue}: {exc}")
                continue
            by_venue = venue_option_exposure(instrument, holding.amount, quote)
            option_model += model.delta
            if by_venue is None:
                venue_known = False
            else:
                option_venue += by_venue.delta
            exposure = model if greeks_source == "model" else by_venue
            if exposure is None:
                unvalued.append(f"{holding.symbol} on {holding.venue}: the venue published no greeks")
                continue
        else:
            exposure = instrument_delta(instrument, holding.amount, mark_of(key) or fallback_mark)
            if exposure is None:
                unvalued.append(f"{holding.symbol} on {holding.venue}: no price to value it")
                continue
        by_source[source] = by_source.get(source, ZERO) + exposure.delta
        total += exposure.delta
        gamma += exposure.gamma
        vega += exposure.vega
    return InventoryExposure(by_source=by_source, total=total, gamma=gamma, vega=vega, option_model=option_model,
                             option_venue=option_venue if venue_known else None, held_options=tuple(held),
                             unvalued=tuple(unvalued))
