"""Delta and gamma of a position in any instrument, in units of its underlying; pure.

Sign convention: positive = long the underlying. Positions are signed contracts (see
:mod:`hedgerd.instruments`). Per kind, with ``n`` contracts of size ``cs``::

    SPOT, LINEAR  delta = n x cs                         gamma = 0
    INVERSE       delta = n x cs / mark                   gamma = -n x cs / mark²
    OPTION        delta = n x cs x Δ                      gamma = n x cs x Γ      (Black-76 on the forward)
      coin-settled: Δ - (option mark in coin), and the gamma of that (premium-adjusted)
    expired       delta = gamma = 0   (the venue has settled it in cash)

An inverse position is a fixed USD amount, so the coins it is worth - its delta - change with
the price: it has a gamma of its own. Delta stays Decimal (it is what orders are sized on);
gamma and vega are floats because the model that produces them is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.models import ZERO
from hedgerd.risk.greeks import black76, premium_adjusted, year_fraction


@dataclass(frozen=True, slots=True)
class OptionMarket:
    """What an option's greeks need from the market, all from the venue's ticker.

    ``forward`` is the venue's underlying price for the option's expiry (quote per coin),
    ``vol`` the mark implied volatility (annualised fraction, 0.6 = 60 %), ``rate`` the
    discount rate (Deribit uses 0). ``mark_price_coin`` is the option's mark price in coin
    per unit of underlying, used for the premium adjustment of a coin-settled option; None
    uses the model's own ``price / forward``.
    """

    forward: float
    vol: float
    rate: float = 0.0
    mark_price_coin: float | None = None


@dataclass(frozen=True, slots=True)
class Exposure:
    """Delta (underlying units), gamma (underlying per unit of price), vega (quote per unit of vol)."""

    delta: Decimal = ZERO
    gamma: float = 0.0
    vega: float = 0.0

    def __add__(self, other: Exposure) -> Exposure:
        return Exposure(self.delta + other.delta, self.gamma + other.gamma, self.vega + other.vega)


NO_EXPOSURE = Exposure()


def _as_decimal(x: float) -> Decimal:
    if not math.isfinite(x):
        raise ValueError(f"greek is not finite: {x}")
    return Decimal(repr(x))  # repr: the shortest decimal that round-trips, not the binary expansion


def position_exposure(instrument: Instrument, contracts: Decimal, *, now: float, mark: Decimal | None = None,
                      option: OptionMarket | None = None) -> Exposure:
    """Delta, gamma and vega of ``contracts`` (signed) of ``instrument`` at time ``now`` (epoch seconds).

    ``mark`` (quote per coin) is required for an inverse contract; ``option`` for a live
    option. Raises ValueError when what the kind needs is missing or not positive: a delta
    cannot be guessed. An expired option is worth nothing more to hedge: zero exposure,
    whatever the inputs.
    """
    if contracts == 0:
        return NO_EXPOSURE
    size = contracts * instrument.contract_size
    kind = instrument.kind
    if kind in (InstrumentKind.SPOT, InstrumentKind.LINEAR):
        return Exposure(delta=size)
    if kind is InstrumentKind.INVERSE:
        if mark is None or not mark > 0:
            raise ValueError(f"{instrument.symbol}: an inverse position needs a positive mark price, got {mark}")
        # size is USD here: long N USD of an inverse contract is long N/mark coins.
        return Exposure(delta=size / mark, gamma=-float(size) / float(mark) ** 2)
    if instrument.expired(now):
        return NO_EXPOSURE
    if option is None:
        raise ValueError(f"{instrument.symbol}: an option position needs its forward and implied volatility")
    assert instrument.strike is not None and instrument.expiry is not None  # checked by Instrument
    greeks = black76(forward=option.forward, strike=float(instrument.strike),
                     t=year_fraction(instrument.expiry, now), vol=option.vol, rate=option.rate,
                     call=instrument.option_type is OptionType.CALL)
    delta, gamma = greeks.delta, greeks.gamma
    if instrument.coin_settled:
        if option.mark_price_coin is None:
            delta, gamma = premium_adjusted(greeks, option.forward)
        else:
            # Deribit's definition with its own mark; the gamma of the adjustment is the model's.
            delta = greeks.delta - option.mark_price_coin
            gamma = greeks.gamma - delta / option.forward
    units = float(size)
    return Exposure(delta=size * _as_decimal(delta), gamma=units * gamma, vega=units * greeks.vega)


def collateral_exposure(equity_coin: Decimal) -> Exposure:
    """Coin held as equity on a coin-margined account is long that coin, one for one."""
    return Exposure(delta=equity_coin)


def total_exposure(exposures: Iterable[Exposure]) -> Exposure:
    """Sum of exposures of the same underlying."""
    total = NO_EXPOSURE
    for exposure in exposures:
        total = total + exposure
    return total
