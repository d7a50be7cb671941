"""Hedge policies: pure functions from net delta to an order (or nothing).

A policy answers one question: given the net delta of an underlying (already including
in-flight hedges), the current perp position, the configured limits and the instrument,
what order (if any) should be sent now? It does no I/O and reads no clock.

Every policy splits the work in two:

1. *what it wants*: a signed amount in base units (:class:`FixedThresholdPolicy`: back to
   the target once outside the band; an adaptive policy could trade to a band edge whose
   width it estimates online);
2. :func:`size_order`, shared by all policies: turn that wish into something the venue
   accepts and the limits allow — clamp to ``max_order``, the venue's ``max_amount`` and
   ``max_position``, round toward zero to whole contract steps, and hold (None) when what is
   left is below ``min_order``, the venue's ``min_amount`` or ``min_notional``.

Because every clamp and the rounding only ever *shrink* the order, the sized order never
overshoots the policy's wish and never takes ``|perp position|`` beyond ``max_position``
(an order that shrinks an already oversized position is allowed).

Policies may keep state (an adaptive one would estimate volatility and flow); the engine
keeps one policy instance per underlying and feeds it through :meth:`HedgePolicy.observe_price`
and :meth:`HedgePolicy.observe_flow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from hedgerd.models import ZERO, MarketInfo, Side

if TYPE_CHECKING:
    from hedgerd.config import HedgeConfig


@dataclass(frozen=True, slots=True)
class HedgeLimits:
    """Configured limits of one hedge, in base units of the underlying.

    ``threshold`` is the half-width of the no-trade band around ``target``: a hedge is due
    when ``|net_delta - target| > threshold``. ``max_position`` caps ``|perp position|``.
    """

    threshold: Decimal
    target: Decimal
    min_order: Decimal
    max_order: Decimal
    max_position: Decimal

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.min_order < 0:
            raise ValueError("threshold and min_order must be >= 0")
        if self.max_order <= 0 or self.max_position <= 0:
            raise ValueError("max_order and max_position must be > 0")
        if self.min_order > self.max_order:
            raise ValueError("min_order must not exceed max_order")

    @classmethod
    def from_config(cls, config: HedgeConfig) -> HedgeLimits:
        """The limits of a ``[[hedges]]`` config entry."""
        return cls(threshold=config.threshold, target=config.target, min_order=config.min_order,
                   max_order=config.max_order, max_position=config.max_position)


@dataclass(frozen=True, slots=True)
class HedgeDecision:
    """An order to send: ``amount`` in base units (positive, a whole number of contract steps)."""

    side: Side
    amount: Decimal
    reduce_only: bool
    reason: str

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.side is Side.BUY else -self.amount


class HedgePolicy(Protocol):
    """What the risk loop asks. ``name`` is the value of the ``--policy``/config option."""

    name: str

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        """The order to send now, or None to hold.

        ``net_delta`` includes in-flight hedges; ``price`` is the hedge instrument's mid (needed
        for the venue's ``min_notional``; without it a market with a notional minimum holds).
        """
        ...

    def observe_price(self, ts: float, mid: Decimal) -> None:
        """An accepted mid price of the hedge instrument (for policies that estimate volatility)."""
        ...

    def observe_flow(self, ts: float, signed_amount: Decimal) -> None:
        """A client (inventory) fill, signed base units (for policies that estimate flow)."""
        ...


def round_down(amount: Decimal, step: Decimal | None) -> Decimal:
    """Round ``amount`` toward zero to a multiple of ``step`` (like ``decimal.ROUND_DOWN``).

    No rounding when ``step`` is None or not positive. Exact: uses the Decimal remainder.
    """
    if step is None or step <= 0:
        return amount
    return amount - amount % step  # Decimal % keeps the dividend's sign: truncates toward zero


def round_price(price: Decimal, step: Decimal | None, side: Side) -> Decimal:
    """Round a limit price to ``step`` on the safe side of the cap.

    A buy limit is a ceiling, so it rounds down (never pay more than the cap); a sell limit is
    a floor, so it rounds up (never sell below it). No rounding when ``step`` is None or not
    positive. Raises ValueError for a non-positive price or one that rounds to zero.
    """
    if not price > 0:
        raise ValueError(f"price must be positive, got {price}")
    if step is None or step <= 0:
        return price
    floor = price - price % step
    rounded = floor if side is Side.BUY or floor == price else floor + step
    if rounded <= 0:
        raise ValueError(f"price {price} rounds to zero with step {step}")
    return rounded


@dataclass(frozen=True, slots=True)
class SizedOrder:
    """Result of :func:`size_order`.

    ``signed_amount`` is in base units and a whole number of contract steps; it is zero when
    the order is held, and then ``hold_reason`` says why. ``clamped_by`` names the limits that
    shrank the order (``max_order``, ``max_amount``, ``max_position``).
    """

    signed_amount: Decimal
    clamped_by: tuple[str, ...] = ()
    hold_reason: str | None = None


def base_step(market: MarketInfo | None) -> Decimal | None:
    """The amount step in base units (``amount_step`` contracts x ``contract_size``), or None."""
    if market is None or market.amount_step <= 0:
        return None
    return market.amount_step * market.contract_size


def size_order(desired: Decimal, perp_position: Decimal, limits: HedgeLimits, market: MarketInfo | None,
               *, price: Decimal | None = None) -> SizedOrder:
    """Turn a wished signed order (base units) into one the limits and the venue accept.

    Steps, each of which can only shrink ``|order|``:

    1. clamp to ``limits.max_order`` and to the venue's ``max_amount`` (contracts);
    2. clamp so that ``|perp_position + order| <= limits.max_position``; an order that shrinks
       ``|perp_position|`` is never cut by this (it moves an oversized position back in);
    3. round toward zero to the market's step in base units.

    Then hold when the result is zero, below ``limits.min_order``, below the venue's
    ``min_amount`` (contracts) or, when it has one, below its ``min_notional`` at ``price``
    (no price -> hold: fail closed). Without a market there is no step and no venue minimum.
    """
    if desired == 0:
        return SizedOrder(ZERO, hold_reason="nothing to do")
    sign = 1 if desired > 0 else -1
    size = abs(desired)
    clamped_by: list[str] = []

    if size > limits.max_order:
        size = limits.max_order
        clamped_by.append("max_order")
    if market is not None and market.max_amount is not None:
        venue_max = market.max_amount * market.contract_size
        if size > venue_max:
            size = venue_max
            clamped_by.append("max_amount")

    # How far the position may move in the order's direction before |position| > max_position.
    # Negative when already beyond the cap on that side: nothing may be added there.
    room = limits.max_position - sign * perp_position
    if size > room:
        size = max(room, ZERO)
        clamped_by.append("max_position")

    size = round_down(size, base_step(market))
    clamps = tuple(clamped_by)
    if size <= 0:
        return SizedOrder(ZERO, clamps, "nothing left after limits and rounding")
    if size < limits.min_order:
        return SizedOrder(ZERO, clamps, f"{size} below min_order {limits.min_order}")
    if market is not None:
        contracts = size / market.contract_size
        if contracts < market.min_amount:
            return SizedOrder(ZERO, clamps,
                              f"{contracts} contracts below venue min_amount {market.min_amount}")
        if market.min_notional > 0:
            if price is None:
                return SizedOrder(ZERO, clamps, "no price to check the venue min_notional")
            if size * price < market.min_notional:
                return SizedOrder(ZERO, clamps,
                                  f"notional {size * price} below venue min_notional {market.min_notional}")
    return SizedOrder(size * sign, clamps)


def reduces_position(perp_position: Decimal, signed_amount: Decimal) -> bool:
    """True when the order shrinks ``|perp_position|`` without flipping its sign."""
    if perp_position == 0 or signed_amount == 0:
        return False
    return (perp_position > 0) != (signed_amount > 0) and abs(signed_amount) <= abs(perp_position)


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
