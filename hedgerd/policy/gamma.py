"""The gamma-aware no-trade band (Whalley-Wilmott), pure.

An options book's delta moves with the price alone: ``dΔ = Γ dS``. Whalley and Wilmott's
asymptotic band for hedging it with proportional costs has the half-width::

    w = (3 c Γ² S / (2 a))^(1/3)

``c`` the proportional cost (fraction of notional: fee + half spread), ``Γ`` the book's gamma
(coin per unit of price), ``S`` the price (quote per coin), ``a`` the risk aversion (1/quote,
the coefficient of exponential utility); ``w`` is then in coin. It is the adaptive policy's
cube-root law (docs/policy.md) with the deviation's variance rate ``Γ² vol²`` from the price
instead of client flow, and the risk penalty ``a vol² / 2``: vol cancels.

Both sources move the deviation independently, so their variance rates add, and with the same
cost and risk aversion the cube-root law gives ``h³ = h_inventory³ + w³``. That is how
:func:`gamma_band` combines them: with no gamma it is exactly today's inventory band, and it
tends to ``w`` when gamma dominates. The sum is exact without a fixed per-order cost and an
approximation with one (the inventory band then also carries the order-cost term).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.policy.adaptive import AdaptiveBandPolicy, AdaptiveParams, Band
from hedgerd.policy.base import HedgeLimits


def whalley_wilmott_half_width(*, gamma: float, price: float, cost: float, risk_aversion: float) -> float:
    """``(3 c Γ² S / (2 a))^(1/3)`` in coin; the sign of gamma does not matter (long or short).

    No cost or no gamma gives 0; no risk aversion an infinite band. Raises ValueError for a
    negative cost or risk aversion, a non-positive price or a non-finite input.
    """
    for name, value in (("gamma", gamma), ("price", price), ("cost", cost), ("risk_aversion", risk_aversion)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    if cost < 0 or risk_aversion < 0:
        raise ValueError("cost and risk_aversion must be >= 0")
    if gamma == 0 or cost == 0:
        return 0.0
    if risk_aversion == 0:
        return math.inf
    return float((3.0 * cost * gamma * gamma * price / (2.0 * risk_aversion)) ** (1.0 / 3.0))


@dataclass(frozen=True, slots=True)
class GammaBand:
    """A band half-width (coin) and where it came from: ``"gamma"`` or ``"inventory"`` (the fallback)."""

    half_width: float
    source: str
    gamma_width: float  # the Whalley-Wilmott width alone, for metrics


def gamma_band(*, gamma: float, price: float, cost: float, risk_aversion: float, inventory_band: float,
               negligible_gamma: float) -> GammaBand:
    """The band half-width for a book with gamma ``gamma`` and an inventory band ``inventory_band``.

    When ``|gamma| <= negligible_gamma`` (coin per unit of price; a setting) the band is the
    inventory band unchanged, so a book without options keeps today's behaviour exactly.
    Otherwise it is ``(inventory_band³ + w³)^(1/3)`` (see the module docstring).
    """
    if not (inventory_band >= 0 and negligible_gamma >= 0):
        raise ValueError("inventory_band and negligible_gamma must be >= 0")
    width = whalley_wilmott_half_width(gamma=gamma, price=price, cost=cost, risk_aversion=risk_aversion)
    if abs(gamma) <= negligible_gamma:
        return GammaBand(half_width=inventory_band, source="inventory", gamma_width=width)
    if math.isinf(width) or math.isinf(inventory_band):
        return GammaBand(half_width=math.inf, source="gamma", gamma_width=width)
    # Scaled so the cubes cannot overflow whatever the magnitudes.
    scale = max(inventory_band, width)
    if scale == 0:
        return GammaBand(half_width=0.0, source="gamma", gamma_width=width)
    combined = scale * float(((inventory_band / scale) ** 3 + (width / scale) ** 3) ** (1.0 / 3.0))
    return GammaBand(half_width=combined, source="gamma", gamma_width=width)


class GammaBandPolicy(AdaptiveBandPolicy):
    """The adaptive band combined with the book's gamma through :func:`gamma_band`.

    The engine tells it the book's gamma (coin per unit of price) before each decision with
    :meth:`observe_gamma`. The trigger is the adaptive policy's (its band, or the fixed
    threshold while warming up) widened to ``(h³ + w³)^(1/3)``, capped at ``max_band``; the
    rebalance point moves out by as much, so the gap between trigger and rebalance point (the
    fixed-order-cost term) is kept. With ``|gamma| <= negligible_gamma`` it decides exactly as
    the adaptive policy does. ``c`` and ``a`` are the adaptive policy's ``cost_bps`` and
    ``risk_aversion``.
    """

    name = "gamma"

    def __init__(self, params: AdaptiveParams | None = None, negligible_gamma: float = 1e-9) -> None:
        super().__init__(params)
        if not negligible_gamma >= 0:
            raise ValueError("negligible_gamma must be >= 0")
        self.negligible_gamma = negligible_gamma
        self.gamma = 0.0
        self.gamma_band: GammaBand | None = None
        """The combination of the last decision (None without a price)."""

    def observe_gamma(self, gamma: float) -> None:
        """The book's gamma as of the coming decision (coin per unit of price)."""
        self.gamma = gamma

    def edges(self, band: Band | None, limits: HedgeLimits, side: int,
              price: Decimal | None) -> tuple[Decimal, Decimal, str]:
        trigger, back_to, label = super().edges(band, limits, side, price)
        mid = float(price) if price is not None and price > 0 else None
        if mid is None or not math.isfinite(self.gamma):
            self.gamma_band = None
            return trigger, back_to, label
        combined = gamma_band(gamma=self.gamma, price=mid, cost=float(self.params.cost_bps) / 10_000.0,
                              risk_aversion=self.params.risk_aversion, inventory_band=float(trigger),
                              negligible_gamma=self.negligible_gamma)
        self.gamma_band = combined
        if combined.source != "gamma":
            return trigger, back_to, label
        widened = _band_decimal(min(combined.half_width, float(self.params.max_band)))
        if widened <= trigger:
            return trigger, back_to, label
        return widened, back_to + side * (widened - trigger), f"{label} + gamma {self.gamma:.3g}"


def _band_decimal(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(Decimal("1e-8"))
