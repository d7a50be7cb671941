"""The fixed-threshold policy: back to target once outside a fixed band."""

from __future__ import annotations

from decimal import Decimal

from hedgerd.models import MarketInfo, Side
from hedgerd.policy.base import HedgeDecision, HedgeLimits
from hedgerd.policy.sizing import reduces_position, size_order


class FixedThresholdPolicy:
    """Hedge back to ``target`` whenever ``|net_delta - target|`` exceeds ``threshold``.

    The wished order is ``target - net_delta``; :func:`size_order` fits it to the limits and
    the venue. Inside the band, or when the sized order would be below a minimum, it holds.
    Stateless; the observe hooks are no-ops.
    """

    name = "fixed"

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        deviation = net_delta - limits.target
        if abs(deviation) <= limits.threshold:
            return None
        sized = size_order(-deviation, perp_position, limits, market, price=price)
        if sized.hold_reason is not None:
            return None
        amount = sized.signed_amount
        reason = f"net delta {net_delta} outside {limits.target} +/- {limits.threshold}"
        if sized.clamped_by:
            reason += f"; clamped by {', '.join(sized.clamped_by)}"
        return HedgeDecision(side=Side.for_delta(amount), amount=abs(amount),
                             reduce_only=reduces_position(perp_position, amount), reason=reason)

    def observe_price(self, ts: float, mid: Decimal) -> None:
        """No-op: the fixed band does not depend on volatility."""

    def observe_flow(self, ts: float, signed_amount: Decimal) -> None:
        """No-op: the fixed band does not depend on client flow."""

