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

Regime shifts (:class:`ShiftAwareRate`). A long half-life is precise but lags a shift of
volatility or flow intensity by about a half-life, during which the band is wrong in the costly
direction. Each estimate therefore also runs a fast EWMA (``fast_half_life``) and uses it when the
two disagree by more than ``shift_z`` standard errors of the fast one, else the slow one. The
standard error: an EWMA rate ``R = sum_i w_i v_i / W`` with weights ``w = exp(-k age)``
(``k = ln 2 / half-life``, ``W = integral w dt = 1/k`` once warm) of values arriving as a
point process with second-moment rate ``m2 = lambda E[v^2]`` has
``Var R = m2 integral w^2 dt / W^2 = m2 k / 2``; ``m2`` is itself estimated by a fast EWMA of
``v^2``. In a steady regime the test rarely fires and the slow estimate's precision is kept.

Flow drift (one-sided bursts). With a drift ``mu`` (base/s) on top of the diffusion the flow
pushes ``x`` towards one edge; trading back to ``+r`` on that side only buys the next trade.
Take the side the flow pushes to be ``+``. A cycle "from ``rho`` until ``x`` hits ``H``" has
``E[duration] = (H - rho) / mu`` and, solving ``s^2/2 g'' + mu g' = -x^2`` with ``g(H) = 0``
(the opposite barrier ignored: the drift dominates), ``E[integral x^2 dt] = G(rho) - G(H)`` with
``G(x) = -x^3/(3 mu) + s^2 x^2 / (2 mu^2) - s^4 x / (2 mu^3)``. With order size ``q = H - rho``
and centre ``m = (H + rho)/2`` the time average is
``E[x^2] = m^2 + q^2/12 - s^2 m / mu + s^4 / (2 mu^2)`` and the cost rate
``c mu + K mu / q`` (the ``c mu`` part is paid by any policy that keeps up). Minimising:
``m = s^2 / (2 mu)`` and ``q^3 = 6 K mu / a``, i.e. on the pushed side trade back to
``rho = s^2 / (2 |mu|) - q / 2`` — through the target when the drift is strong. The policy uses
``min(r, rho)`` there (a weak drift leaves the band as it was), never below ``-H``. ``mu`` is an
EWMA rate of signed fills with a short half-life (``drift_half_life``), shrunk towards zero by
``drift_z`` standard errors (``sqrt(m2 k / 2)`` as above) so that balanced flow shows no drift.

Limits of the model: fills are jumps, not a diffusion (a band of a few fill sizes is crossed
with an overshoot). An exact compound-Poisson version of ``J`` (exponential sizes) moves the
trigger in by about one mean fill; in simulation it did not improve the cost-vs-risk frontier,
so the closed form above is used. With a fixed cost per order the best band in one steady
regime saves far less than the ``1 - 1/sqrt(2)`` of the pure proportional-cost diffusion
(trading back to zero is itself the optimum when ``K`` dominates). Tried in simulation on the
built-in day and not adopted (no gain on the cost-vs-risk frontier): a faster EWMA that takes
over the drift when it disagrees with the slow one; a cascade of fast estimators for the
variances; a shift test on ``ln(fast/slow)`` with the steady-regime error from the slow EWMAs.
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


def ewma_rate_error(second_moment_rate: float, half_life: float) -> float:
    """Standard error of an :class:`EwmaRate` once warm: ``sqrt(m2 k / 2)`` (module doc).

    ``second_moment_rate`` is ``m2``, the rate of the squared values (itself an EWMA rate).
    """
    return math.sqrt(max(second_moment_rate, 0.0) * _LN2 / half_life / 2.0)


class ShiftAwareRate:
    """A slow :class:`EwmaRate` that defers to a fast one after a regime shift.

    :meth:`rate` is the fast estimate when it differs from the slow one by more than
    ``shift_z`` of its standard errors (:func:`ewma_rate_error`), else the slow estimate:
    precise in a steady regime, quick after a shift of volatility or flow intensity.
    Same interface as :class:`EwmaRate`.
    """

    def __init__(self, half_life: float, fast_half_life: float, shift_z: float) -> None:
        if not shift_z >= 0:
            raise ValueError("shift_z must be >= 0")
        self.slow = EwmaRate(half_life)
        self.fast = EwmaRate(fast_half_life)
        self._fast_squares = EwmaRate(fast_half_life)
        self.shift_z = shift_z

    def start(self, ts: float) -> None:
        """Begin measuring elapsed time at ``ts`` (no-op once started)."""
        for ewma in (self.slow, self.fast, self._fast_squares):
            ewma.start(ts)

    def advance(self, ts: float) -> None:
        """Move the estimators' clock to ``ts``."""
        for ewma in (self.slow, self.fast, self._fast_squares):
            ewma.advance(ts)

    def add(self, ts: float, value: float) -> None:
        """Accumulate ``value`` observed at ``ts``."""
        self.slow.add(ts, value)
        self.fast.add(ts, value)
        self._fast_squares.add(ts, value * value)

    @property
    def observed_for(self) -> float:
        """Seconds since :meth:`start` (0 before)."""
        return self.slow.observed_for

    @property
    def shifted(self) -> bool:
        """True when the fast estimate is significantly away from the slow one."""
        slow, fast, squares = self.slow.rate(), self.fast.rate(), self._fast_squares.rate()
        if slow is None or fast is None or squares is None:
            return False
        return abs(fast - slow) > self.shift_z * ewma_rate_error(squares, self.fast.half_life)

    def rate(self) -> float | None:
        """The fast estimate after a detected shift, else the slow one (None before any time)."""
        return self.fast.rate() if self.shifted else self.slow.rate()


class FlowDrift:
    """Significant drift of the client flow (base units per second, signed).

    An :class:`EwmaRate` of signed fill sizes, shrunk towards zero by ``z`` standard errors
    (:func:`ewma_rate_error` of the squared sizes): balanced flow reads as no drift, a burst
    of one-sided fills as a drift within a few half-lives.
    """

    def __init__(self, half_life: float, z: float) -> None:
        if not z >= 0:
            raise ValueError("drift z must be >= 0")
        self._signed = EwmaRate(half_life)
        self._squares = EwmaRate(half_life)
        self.z = z

    def start(self, ts: float) -> None:
        """Begin measuring elapsed time at ``ts`` (no-op once started)."""
        self._signed.start(ts)
        self._squares.start(ts)

    def advance(self, ts: float) -> None:
        """Move the estimators' clock to ``ts``."""
        self._signed.advance(ts)
        self._squares.advance(ts)

    def add(self, ts: float, signed_size: float) -> None:
        """A client fill of ``signed_size`` (as it moves net delta) at ``ts``."""
        self._signed.add(ts, signed_size)
        self._squares.add(ts, signed_size * signed_size)

    def rate(self) -> float:
        """The shrunk drift: 0.0 unless the flow is significantly one-sided."""
        mean, squares = self._signed.rate(), self._squares.rate()
        if mean is None or squares is None:
            return 0.0
        excess = abs(mean) - self.z * ewma_rate_error(squares, self._signed.half_life)
        return math.copysign(excess, mean) if excess > 0 else 0.0


def drift_rebalance(*, order_cost: float, flow_variance: float, drift: float, risk_penalty: float) -> float:
    """Where to trade back to on the side a drifting flow pushes (module doc), in base units.

    ``rho = s^2 / (2 |mu|) - q / 2`` with ``q = (6 K |mu| / a)^(1/3)``, measured towards the pushed
    side (negative: through the target). No drift gives +inf (no change to the band).
    """
    if order_cost < 0 or flow_variance < 0 or risk_penalty < 0:
        raise ValueError("drift band inputs must be >= 0")
    speed = abs(drift)
    if speed == 0:
        return math.inf
    if risk_penalty == 0:
        return -math.inf
    size = math.cbrt(6.0 * order_cost * speed / risk_penalty)
    return flow_variance / (2.0 * speed) - size / 2.0


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    """Parameters of :class:`AdaptiveBandPolicy` (the ``[policy.adaptive]`` config section).

    ``risk_aversion`` is in 1/quote; ``cost_bps`` is the taker fee plus half the spread, in bps
    of notional; ``order_cost`` is a fixed cost per order in quote units; ``warmup`` is the
    seconds of observation before the estimates are trusted (until then the fixed threshold
    applies); the band's trigger is clamped to ``[min_band, max_band]`` (base units).
    ``fast_half_life`` and ``shift_z`` drive the regime-shift test of :class:`ShiftAwareRate`;
    ``drift_half_life`` and ``drift_z`` the flow drift (:class:`FlowDrift`), used only when
    ``flow_drift`` is on. Half-lives are in seconds.
    """

    risk_aversion: float = 1.0
    cost_bps: Decimal = Decimal(6)
    order_cost: Decimal = ZERO
    flow_half_life: float = 300.0
    price_half_life: float = 300.0
    warmup: float = 60.0
    min_band: Decimal = Decimal("0.001")
    max_band: Decimal = Decimal(5)
    fast_half_life: float = 60.0
    shift_z: float = 3.0
    flow_drift: bool = True
    drift_half_life: float = 15.0
    drift_z: float = 3.0

    def __post_init__(self) -> None:
        if not self.risk_aversion > 0:
            raise ValueError("risk_aversion must be > 0")
        if self.cost_bps < 0 or self.order_cost < 0 or self.warmup < 0:
            raise ValueError("cost_bps, order_cost and warmup must be >= 0")
        if self.min_band < 0 or self.max_band < self.min_band:
            raise ValueError("need 0 <= min_band <= max_band")
        half_lives = (self.flow_half_life, self.price_half_life, self.fast_half_life, self.drift_half_life)
        if not all(h > 0 for h in half_lives):
            raise ValueError("half-lives must be > 0")
        if not (self.shift_z >= 0 and self.drift_z >= 0):
            raise ValueError("shift_z and drift_z must be >= 0")

    @classmethod
    def from_config(cls, config: AdaptivePolicyConfig) -> AdaptiveParams:
        return cls(risk_aversion=config.risk_aversion, cost_bps=config.cost_bps, order_cost=config.order_cost,
                   flow_half_life=config.flow_half_life, price_half_life=config.price_half_life,
                   warmup=config.warmup, min_band=config.min_band, max_band=config.max_band,
                   fast_half_life=config.fast_half_life, shift_z=config.shift_z, flow_drift=config.flow_drift,
                   drift_half_life=config.drift_half_life, drift_z=config.drift_z)


@dataclass(frozen=True, slots=True)
class Band:
    """A no-trade band around target: hedge when ``|deviation| > trigger``, back to ``rebalance``.

    ``rebalance`` is measured towards the side the deviation is on. When the client flow drifts
    (``pushed_side`` +1: pushing the deviation up, -1: down, 0: no significant drift), a
    deviation on the pushed side goes back to ``pushed_rebalance`` instead, which may be
    negative (through the target) but never below ``-trigger``.
    """

    trigger: Decimal
    rebalance: Decimal
    pushed_side: int = 0
    pushed_rebalance: Decimal | None = None

    def back_to(self, deviation_sign: int) -> Decimal:
        """The rebalance point (signed, relative to target) for a deviation of that sign."""
        if self.pushed_side != 0 and deviation_sign == self.pushed_side and self.pushed_rebalance is not None:
            return self.pushed_rebalance * deviation_sign
        return self.rebalance * deviation_sign


class AdaptiveBandPolicy:
    """Cost-aware no-trade band whose width follows the cube-root law (see module doc).

    Hedges when ``|net_delta - target|`` exceeds the band's trigger, back to the band's
    rebalance point on the same side (the band edge without fixed costs), or deeper on the side
    a drifting flow pushes (:class:`Band`). Until ``warmup`` seconds of prices have been
    observed it behaves like :class:`FixedThresholdPolicy`. Estimates are fed by
    :meth:`observe_price` and :meth:`observe_flow` (timestamps from the engine's monotonic
    clock); ``decide`` reads no clock.
    """

    name = "adaptive"

    def __init__(self, params: AdaptiveParams | None = None) -> None:
        self._params = params = params or AdaptiveParams()
        self._flow = ShiftAwareRate(params.flow_half_life, params.fast_half_life, params.shift_z)
        self._returns = ShiftAwareRate(params.price_half_life, params.fast_half_life, params.shift_z)
        self._drift = FlowDrift(params.drift_half_life, params.drift_z)
        self._last_mid: float | None = None
        # Constants of current_band, converted once (the same floats as converting per call).
        self._cost_fraction = float(params.cost_bps / _BPS)
        self._order_cost = float(params.order_cost)
        self._min_band, self._max_band = float(params.min_band), float(params.max_band)
        self._band_inputs: tuple[float, float, float, float] | None = None
        self._band_output: Band | None = None
        self.band: Band | None = None
        """The band of the last decision (None while warming up)."""

    @property
    def params(self) -> AdaptiveParams:
        """The parameters the estimators and constants were built from (fixed: a new config
        builds a new policy)."""
        return self._params

    def observe_price(self, ts: float, mid: Decimal) -> None:
        """A mid of the hedge instrument: updates the return variance estimate."""
        value = float(mid)
        if not value > 0 or not math.isfinite(value):
            return
        self._flow.start(ts)
        self._drift.start(ts)
        if self._last_mid is None:
            self._returns.start(ts)
        else:
            log_return = math.log(value / self._last_mid)
            self._returns.add(ts, log_return * log_return)
        self._flow.advance(ts)
        self._drift.advance(ts)
        self._last_mid = value

    def observe_flow(self, ts: float, signed_amount: Decimal) -> None:
        """A client fill, in base units as it moves net delta: updates flow variance and drift."""
        size = float(signed_amount)
        self._flow.add(ts, size * size)
        self._drift.add(ts, size)
        self._returns.advance(ts)

    def drift(self) -> float:
        """The client flow's significant drift (base/s, signed; 0.0 when off or balanced)."""
        return self._drift.rate() if self.params.flow_drift else 0.0

    def estimates(self) -> tuple[float, float] | None:
        """``(flow variance rate s^2, log-return variance rate)`` once warmed up, else None."""
        flow, returns = self._flow.rate(), self._returns.rate()
        if flow is None or returns is None or self._returns.observed_for < self.params.warmup:
            return None
        return flow, returns

    def current_band(self, price: Decimal | None = None) -> Band | None:
        """The band for the current estimates at ``price`` (last observed mid if None).

        A pure function of the estimates, the drift and the mid: the last result is reused while
        none of them has changed (the risk loop asks on every pass, the estimates move only with
        observations).
        """
        estimates = self.estimates()
        mid = float(price) if price is not None and price > 0 else self._last_mid
        if estimates is None or mid is None:
            return None
        flow_variance, return_variance = estimates
        drift = self.drift()
        inputs = (flow_variance, return_variance, mid, drift)
        if inputs == self._band_inputs:
            return self._band_output
        band = self._band(flow_variance, return_variance, mid, drift)
        self._band_inputs, self._band_output = inputs, band
        return band

    def _band(self, flow_variance: float, return_variance: float, mid: float, drift: float) -> Band:
        risk_penalty = self.params.risk_aversion * mid * mid * return_variance
        trigger, rebalance = optimal_band(
            cost_per_unit=mid * self._cost_fraction, order_cost=self._order_cost,
            flow_variance=flow_variance, risk_penalty=risk_penalty)
        top = self._max_band
        trigger_d = _to_decimal(min(max(trigger, self._min_band), top))
        rebalance_d = max(min(_to_decimal(min(rebalance, top)), trigger_d), ZERO)
        if drift == 0:
            return Band(trigger=trigger_d, rebalance=rebalance_d)
        through = drift_rebalance(order_cost=self._order_cost, flow_variance=flow_variance,
                                  drift=drift, risk_penalty=risk_penalty)
        pushed = max(min(float(rebalance_d), through), -float(trigger_d))
        return Band(trigger=trigger_d, rebalance=rebalance_d, pushed_side=1 if drift > 0 else -1,
                    pushed_rebalance=_to_decimal(pushed))

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        band = self.current_band(price)
        self.band = band
        deviation = net_delta - limits.target
        side = 1 if deviation > 0 else -1
        if band is None:
            trigger, back_to, label = limits.threshold, ZERO, "warming up, fixed threshold"
        else:
            trigger, back_to = band.trigger, band.back_to(side)
            label = "adaptive band" if band.pushed_side != side else "adaptive band, flow drifting this way"
        if abs(deviation) <= trigger:
            return None
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
