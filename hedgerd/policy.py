"""Hedge policies: pure functions from net delta to an order (or nothing).

A policy answers one question: given the net delta of an underlying (already including
in-flight hedges), the current perp position, the configured limits and the instrument,
what order (if any) should be sent now? It does no I/O and reads no clock.

Every policy splits the work in two:

1. *what it wants*: a signed amount in base units (:class:`FixedThresholdPolicy`: back to
   the target once outside a fixed band; :class:`AdaptiveBandPolicy`: back to the inner edge of
   a band whose width it estimates online);
2. :func:`size_order`, shared by all policies: turn that wish into something the venue
   accepts and the limits allow — clamp to ``max_order``, the venue's ``max_amount`` and
   ``max_position``, round toward zero to whole contract steps, and hold (None) when what is
   left is below ``min_order``, the venue's ``min_amount`` or ``min_notional``.

Because every clamp and the rounding only ever *shrink* the order, the sized order never
overshoots the policy's wish and never takes ``|perp position|`` beyond ``max_position``
(an order that shrinks an already oversized position is allowed).

Policies may keep state; the engine keeps one policy instance per underlying (built by
:func:`build_policy` from the ``[policy]`` config section) and feeds it through
:meth:`HedgePolicy.observe_price` and :meth:`HedgePolicy.observe_flow`.

The adaptive band (derivation)
------------------------------
Let ``x`` be the deviation of net delta from target (base units). Client flow moves it like a
random walk with variance rate ``s^2`` (base^2/s; compound Poisson flow of signed sizes ``q``
at intensity ``lambda`` gives ``s^2 = lambda E[q^2]``). Hedging moves it by trades that cost
``c`` per unit traded (quote/base: taker fee + half spread, times price) plus ``K`` per order
(quote). Holding ``x`` for ``dt`` adds ``x^2 sigma_P^2 dt`` to the variance of the hedged PnL
(``sigma_P^2`` = price variance rate, quote^2/base^2/s); we penalise it with
``a = risk_aversion * sigma_P^2`` (``risk_aversion`` in 1/quote; the mean-variance 1/2 is
folded into it). The policy minimises the long-run cost rate ``cost + a E[x^2]``.

Consider the band policy "when ``|x|`` reaches ``H``, trade back to ``sign(x) r``" (0 <= r < H).
Between trades ``x`` is a Brownian motion started at ``r`` and stopped at ``+-H``:

* expected time to the next trade: ``(H^2 - r^2) / s^2``;
* expected ``integral x^2 dt`` over it: ``(H^4 - r^4) / (6 s^2)`` (solve ``s^2/2 u'' = -x^2``,
  ``u(+-H) = 0``), so the time average is ``E[x^2] = (H^2 + r^2) / 6``;
* each trade costs ``K + c (H - r)``.

With ``p = H + r`` and ``q = H - r`` (``q`` is the order size) the cost rate is::

    J(p, q) = K s^2 / (p q) + c s^2 / p + a (p^2 + q^2) / 12

and its stationarity conditions are::

    dJ/dq = 0:  q^3 = 6 K s^2 / (a p)
    dJ/dp = 0:  p^3 = 6 s^2 (c + K/q) / a

Writing ``h = p/2`` (the middle of the trigger and the rebalance point) the second one is the
cube-root law ``h = (3 c_eff s^2 / (4 a))^(1/3)`` with ``c_eff = c + K/q``: the fixed per-order
cost amortised over the order size, exactly. Without a fixed cost (``K = 0``) ``q -> 0`` and
``H = r = h = (3 c s^2 / (4 a))^(1/3)``: a no-trade band traded back to its edge. With
``K > 0`` the pair is ``q = (3 K s^2 / (a h))^(1/3)``, trigger ``H = h + q/2``, rebalance point
``r = h - q/2`` (never negative: ``q <= 2h``, with equality when ``c = 0``, which gives the
classic impulse-control band ``H = (6 K s^2 / a)^(1/4)`` traded back to zero). Eliminating ``q``,
``h`` is the unique positive root of the convex ``h^3 - A c - B h^(1/3)`` (``A = 3 s^2 / (4a)``,
``B = (A K)^(2/3) / 4^(1/3)``), found by Newton's method from an upper bound
(:func:`optimal_band`).

Online estimates (:class:`EwmaRate`): ``s^2`` is an exponentially weighted sum of squared
client fill sizes per second of elapsed time; ``sigma_P^2`` is ``P^2`` times the same rate for
squared log returns of the mid. Both have configurable half-lives, so the band breathes with the
market (wider when flow is heavy or prices calm, narrower when prices are volatile).

Limits of the model: fills are jumps, not a diffusion (a band of a few fill sizes is crossed
with an overshoot), and one-sided bursts add a drift the band ignores (it widens with the burst's
flow variance where a drift calls for trading through the target). An exact compound-Poisson
version of ``J`` (exponential sizes) moves the trigger in by about one mean fill; in simulation
it did not improve the cost-vs-risk frontier, so the closed form above is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from hedgerd.models import ZERO, MarketInfo, Side

if TYPE_CHECKING:
    from hedgerd.config import AdaptivePolicyConfig, HedgeConfig, PolicyConfig


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


# --------------------------------------------------------------------------------------------
# Adaptive (cost-aware) band
# --------------------------------------------------------------------------------------------

_LN2 = math.log(2.0)
_BPS = Decimal(10_000)
_BAND_QUANTUM = Decimal("1e-8")
_NEWTON_STEPS = 60
_NEWTON_TOLERANCE = 1e-12


def optimal_band(*, cost_per_unit: float, order_cost: float, flow_variance: float,
                 risk_penalty: float) -> tuple[float, float]:
    """The cost-optimal band ``(trigger H, rebalance point r)`` in base units (see module doc).

    ``cost_per_unit`` is ``c`` (quote per base unit traded), ``order_cost`` is ``K`` (quote per
    order), ``flow_variance`` is ``s^2`` (base^2 per second) and ``risk_penalty`` is ``a``
    (quote per base^2 per second). Hedge when ``|deviation| > H``, back to ``sign * r``.
    No flow gives a zero band; no risk penalty an infinite one.
    """
    if cost_per_unit < 0 or order_cost < 0 or flow_variance < 0 or risk_penalty < 0:
        raise ValueError("band inputs must be >= 0")
    if flow_variance == 0 or (cost_per_unit == 0 and order_cost == 0):
        return 0.0, 0.0
    if risk_penalty == 0:
        return math.inf, math.inf
    a_coef = 3.0 * flow_variance / (4.0 * risk_penalty)
    if order_cost == 0:
        h = (a_coef * cost_per_unit) ** (1.0 / 3.0)
        return h, h
    b_coef = (a_coef * order_cost) ** (2.0 / 3.0) / 4.0 ** (1.0 / 3.0)
    ac = a_coef * cost_per_unit
    # f(h) = h^3 - A c - B h^(1/3) is convex on h > 0 with one positive root; Newton from an
    # upper bound (where f >= 0) decreases monotonically onto it.
    h = max((2.0 * ac) ** (1.0 / 3.0), (2.0 * b_coef) ** 0.375)
    for _ in range(_NEWTON_STEPS):
        f = h ** 3 - ac - b_coef * h ** (1.0 / 3.0)
        slope = 3.0 * h * h - b_coef / (3.0 * h ** (2.0 / 3.0))
        if slope <= 0:
            break
        step = f / slope
        h -= step
        if abs(step) <= _NEWTON_TOLERANCE * h:
            break
    q = min((4.0 * a_coef * order_cost / h) ** (1.0 / 3.0), 2.0 * h)
    return h + q / 2.0, h - q / 2.0


class EwmaRate:
    """Exponentially weighted rate per second of an observed quantity.

    ``add(ts, value)`` accumulates ``value``; :meth:`rate` is the decayed sum divided by the
    decayed elapsed time since :meth:`start` (both with the same ``half_life``), so a quiet
    stretch lowers the rate as time passes even without observations.
    """

    def __init__(self, half_life: float) -> None:
        if not half_life > 0:
            raise ValueError("half_life must be > 0")
        self.half_life = half_life
        self._decay_per_second = _LN2 / half_life
        self._total = 0.0
        self._weight = 0.0  # decayed seconds observed
        self._now: float | None = None
        self.started_at: float | None = None

    def start(self, ts: float) -> None:
        """Begin measuring elapsed time at ``ts`` (no-op once started)."""
        if self._now is None:
            self._now = self.started_at = ts

    def advance(self, ts: float) -> None:
        """Move the estimator's clock to ``ts`` (earlier times are ignored)."""
        if self._now is None:
            self.start(ts)
            return
        dt = ts - self._now
        if dt <= 0:
            return
        decay = math.exp(-self._decay_per_second * dt)
        self._total *= decay
        self._weight = self._weight * decay + (1.0 - decay) / self._decay_per_second
        self._now = ts

    def add(self, ts: float, value: float) -> None:
        """Accumulate ``value`` observed at ``ts``."""
        self.advance(ts)
        self._total += value

    @property
    def observed_for(self) -> float:
        """Seconds since :meth:`start` (0 before)."""
        if self._now is None or self.started_at is None:
            return 0.0
        return self._now - self.started_at

    def rate(self) -> float | None:
        """Sum per second, or None before any time has elapsed."""
        return self._total / self._weight if self._weight > 0 else None


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    """Parameters of :class:`AdaptiveBandPolicy` (the ``[policy.adaptive]`` config section).

    ``risk_aversion`` is in 1/quote; ``cost_bps`` is the taker fee plus half the spread, in bps
    of notional; ``order_cost`` is a fixed cost per order in quote units; ``warmup`` is the
    seconds of observation before the estimates are trusted (until then the fixed threshold
    applies); the band's trigger is clamped to ``[min_band, max_band]`` (base units).
    """

    risk_aversion: float = 1.0
    cost_bps: Decimal = Decimal(6)
    order_cost: Decimal = ZERO
    flow_half_life: float = 300.0
    price_half_life: float = 300.0
    warmup: float = 60.0
    min_band: Decimal = Decimal("0.001")
    max_band: Decimal = Decimal(5)

    def __post_init__(self) -> None:
        if not self.risk_aversion > 0:
            raise ValueError("risk_aversion must be > 0")
        if self.cost_bps < 0 or self.order_cost < 0 or self.warmup < 0:
            raise ValueError("cost_bps, order_cost and warmup must be >= 0")
        if self.min_band < 0 or self.max_band < self.min_band:
            raise ValueError("need 0 <= min_band <= max_band")

    @classmethod
    def from_config(cls, config: AdaptivePolicyConfig) -> AdaptiveParams:
        return cls(risk_aversion=config.risk_aversion, cost_bps=config.cost_bps, order_cost=config.order_cost,
                   flow_half_life=config.flow_half_life, price_half_life=config.price_half_life,
                   warmup=config.warmup, min_band=config.min_band, max_band=config.max_band)


@dataclass(frozen=True, slots=True)
class Band:
    """A no-trade band around target: hedge when ``|deviation| > trigger``, back to ``rebalance``."""

    trigger: Decimal
    rebalance: Decimal


class AdaptiveBandPolicy:
    """Cost-aware no-trade band whose width follows the cube-root law (see module doc).

    Hedges when ``|net_delta - target|`` exceeds the band's trigger, back to the band's
    rebalance point on the same side (the band edge without fixed costs). Until ``warmup``
    seconds of prices have been observed it behaves like :class:`FixedThresholdPolicy`.
    Estimates are fed by :meth:`observe_price` and :meth:`observe_flow` (timestamps from the
    engine's monotonic clock); ``decide`` reads no clock.
    """

    name = "adaptive"

    def __init__(self, params: AdaptiveParams | None = None) -> None:
        self.params = params or AdaptiveParams()
        self._flow = EwmaRate(self.params.flow_half_life)
        self._returns = EwmaRate(self.params.price_half_life)
        self._last_mid: float | None = None
        self.band: Band | None = None
        """The band of the last decision (None while warming up)."""

    def observe_price(self, ts: float, mid: Decimal) -> None:
        """A mid of the hedge instrument: updates the return variance estimate."""
        value = float(mid)
        if not value > 0 or not math.isfinite(value):
            return
        self._flow.start(ts)
        if self._last_mid is None:
            self._returns.start(ts)
        else:
            log_return = math.log(value / self._last_mid)
            self._returns.add(ts, log_return * log_return)
        self._flow.advance(ts)
        self._last_mid = value

    def observe_flow(self, ts: float, signed_amount: Decimal) -> None:
        """A client fill, in base units as it moves net delta: updates the flow variance."""
        size = float(signed_amount)
        self._flow.add(ts, size * size)
        self._returns.advance(ts)

    def estimates(self) -> tuple[float, float] | None:
        """``(flow variance rate s^2, log-return variance rate)`` once warmed up, else None."""
        flow, returns = self._flow.rate(), self._returns.rate()
        if flow is None or returns is None or self._returns.observed_for < self.params.warmup:
            return None
        return flow, returns

    def current_band(self, price: Decimal | None = None) -> Band | None:
        """The band for the current estimates at ``price`` (last observed mid if None)."""
        estimates = self.estimates()
        mid = float(price) if price is not None and price > 0 else self._last_mid
        if estimates is None or mid is None:
            return None
        flow_variance, return_variance = estimates
        params = self.params
        trigger, rebalance = optimal_band(
            cost_per_unit=mid * float(params.cost_bps / _BPS), order_cost=float(params.order_cost),
            flow_variance=flow_variance, risk_penalty=params.risk_aversion * mid * mid * return_variance)
        top = float(params.max_band)
        trigger_d = _to_decimal(min(max(trigger, float(params.min_band)), top))
        rebalance_d = min(_to_decimal(min(rebalance, top)), trigger_d)
        return Band(trigger=trigger_d, rebalance=max(rebalance_d, ZERO))

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        band = self.current_band(price)
        self.band = band
        if band is None:
            trigger, rebalance, label = limits.threshold, ZERO, "warming up, fixed threshold"
        else:
            trigger, rebalance, label = band.trigger, band.rebalance, "adaptive band"
        deviation = net_delta - limits.target
        if abs(deviation) <= trigger:
            return None
        back_to = rebalance if deviation > 0 else -rebalance
        sized = size_order(back_to - deviation, perp_position, limits, market, price=price)
        if sized.hold_reason is not None:
            return None
        amount = sized.signed_amount
        reason = (f"net delta {net_delta} outside {limits.target} +/- {trigger} ({label}); "
                  f"back to {limits.target + back_to}")
        if sized.clamped_by:
            reason += f"; clamped by {', '.join(sized.clamped_by)}"
        return HedgeDecision(side=Side.for_delta(amount), amount=abs(amount),
                             reduce_only=reduces_position(perp_position, amount), reason=reason)


def _to_decimal(value: float) -> Decimal:
    return Decimal(value).quantize(_BAND_QUANTUM) if math.isfinite(value) else Decimal(value)


POLICY_NAMES = ("fixed", "adaptive")


def build_policy(config: PolicyConfig | None = None, name: str | None = None) -> HedgePolicy:
    """A fresh policy instance: ``name`` (else ``config.name``, else "fixed") with ``config``'s parameters."""
    chosen = name or (config.name if config is not None else "fixed")
    if chosen == "fixed":
        return FixedThresholdPolicy()
    if chosen == "adaptive":
        params = AdaptiveParams.from_config(config.adaptive) if config is not None else AdaptiveParams()
        return AdaptiveBandPolicy(params)
    raise ValueError(f"unknown policy {chosen!r} (one of {', '.join(POLICY_NAMES)})")
