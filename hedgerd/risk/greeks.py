"""Black-76 greeks of a European option on the forward, pure and clock-free.

Black-76 prices an option on the forward ``F`` of its expiry (the venue's underlying price for
that expiry), so no dividend or funding yield is needed: with ``d1 = (ln(F/K) + v²T/2)/(v√T)``
and ``d2 = d1 - v√T``::

    call = e^{-rT} (F N(d1) - K N(d2))        delta_call = e^{-rT} N(d1)
    put  = e^{-rT} (K N(-d2) - F N(-d1))      delta_put  = e^{-rT} (N(d1) - 1)
    gamma = e^{-rT} φ(d1) / (F v √T)          vega = e^{-rT} F φ(d1) √T   (both kinds)

Delta and gamma are with respect to ``F``; vega is per unit of volatility (1.0 = 100 vol
points); theta is ``-∂price/∂T`` per year. Time is in years of 365 days, the convention of
crypto venues (they trade every day). Coin-settled options (premium paid in the underlying)
use :func:`premium_adjusted`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SECONDS_PER_YEAR = 365.0 * 24.0 * 3600.0
_SQRT2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def norm_cdf(x: float) -> float:
    """Standard normal CDF; erfc keeps full relative precision deep in the lower tail."""
    return 0.5 * math.erfc(-x / _SQRT2)


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return _INV_SQRT_2PI * math.exp(-0.5 * x * x)


def year_fraction(expiry: float, now: float) -> float:
    """Years from ``now`` to ``expiry`` (both epoch seconds), never negative."""
    return max(expiry - now, 0.0) / SECONDS_PER_YEAR


@dataclass(frozen=True, slots=True)
class Greeks:
    """Price and sensitivities of one option on one unit of the underlying, in quote units.

    ``delta`` is in underlying per underlying (dimensionless), ``gamma`` in underlying per
    unit of price, ``vega`` in quote per unit of volatility, ``theta`` in quote per year.
    """

    price: float
    delta: float
    gamma: float
    vega: float
    theta: float


def black76(*, forward: float, strike: float, t: float, vol: float, call: bool, rate: float = 0.0) -> Greeks:
    """Black-76 price and greeks of a call (``call=True``) or put on ``forward``.

    ``t`` is in years, ``vol`` an annualised fraction, ``rate`` the continuously compounded
    discount rate. With ``t <= 0`` or ``vol <= 0`` the option is worth its discounted
    intrinsic value: delta is the discounted step (a half at the money, the midpoint of the
    step's two sides) and gamma and vega are zero, not the infinite spike of the limit, so an
    expiring at-the-money book yields finite numbers. Raises ValueError when ``forward`` or
    ``strike`` is not a positive finite number or any input is NaN.
    """
    for name, value in (("forward", forward), ("strike", strike)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value}")
    for name, value in (("t", t), ("vol", vol), ("rate", rate)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    t = max(t, 0.0)
    discount = math.exp(-rate * t)
    if t == 0.0 or vol <= 0.0:
        if forward > strike:
            step = 1.0
        elif forward < strike:
            step = 0.0
        else:
            step = 0.5
        intrinsic = max(forward - strike, 0.0) if call else max(strike - forward, 0.0)
        price = discount * intrinsic
        delta = discount * (step if call else step - 1.0)
        return Greeks(price=price, delta=delta, gamma=0.0, vega=0.0, theta=rate * price)
    root_t = math.sqrt(t)
    vol_root_t = vol * root_t
    d1 = (math.log(forward / strike) + 0.5 * vol * vol * t) / vol_root_t
    d2 = d1 - vol_root_t
    pdf = norm_pdf(d1)
    if call:
        price = discount * (forward * norm_cdf(d1) - strike * norm_cdf(d2))
        delta = discount * norm_cdf(d1)
    else:
        price = discount * (strike * norm_cdf(-d2) - forward * norm_cdf(-d1))
        delta = -discount * norm_cdf(-d1)  # = e^{-rT}(N(d1) - 1) without the cancellation deep ITM
    # Rounding can push a far-OTM price a hair below zero; an option is never worth less than 0.
    price = max(price, 0.0)
    gamma = discount * pdf / (forward * vol_root_t)
    vega = discount * forward * pdf * root_t
    theta = -discount * forward * pdf * vol / (2.0 * root_t) + rate * price
    return Greeks(price=price, delta=delta, gamma=gamma, vega=vega, theta=theta)


def premium_adjusted(greeks: Greeks, forward: float) -> tuple[float, float]:
    """(delta, gamma) of a coin-settled option, whose premium is paid and held in the underlying.

    The option is worth ``price / F`` coins; the coins it holds are themselves long the
    underlying, so its delta as seen by a desk measuring in quote is the Black-Scholes delta
    minus its price in coin (Deribit's documented delta): ``Δ - C/F``, which equals
    ``F · ∂(C/F)/∂F``. Gamma is the derivative of that delta: ``Γ - (Δ - C/F)/F``.
    """
    if not (math.isfinite(forward) and forward > 0):
        raise ValueError(f"forward must be positive and finite, got {forward}")
    delta = greeks.delta - greeks.price / forward
    return delta, greeks.gamma - delta / forward
