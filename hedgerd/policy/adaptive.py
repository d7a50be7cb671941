"""The adaptive policy: a cost-aware no-trade band whose width it estimates online.

The band follows the cube-root law of the cost-vs-risk trade-off, with a fixed cost per order,
regime-shift detection and a flow-drift correction; the derivation is in docs/policy.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from hedgerd.models import ZERO, MarketInfo, Side
from hedgerd.policy.base import HedgeDecision, HedgeLimits
from hedgerd.policy.sizing import reduces_position, size_order

if TYPE_CHECKING:
    from hedgerd.config import AdaptivePolicyConfig

_LN2 = math.log(2.0)
_BPS = Decimal(10_000)
_BAND_QUANTUM = Decimal("1e-8")
_NEWTON_STEPS = 60
_NEWTON_TOLERANCE = 1e-12


def optimal_band(*, cost_per_unit: float, order_cost: float, flow_variance: float,
                 risk_penalty: float) -> tuple[float, float]:
    """The cost-optimal band ``(trigger H, rebalance point r)`` in base units (see docs/policy.md).

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
    """Standard error of an :class:`EwmaRate` once warm: ``sqrt(m2 k / 2)`` (docs/policy.md).

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
    """Where to trade back to on the side a drifting flow pushes (docs/policy.md), in base units.

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
    """Cost-aware no-trade band whose width follows the cube-root law (see docs/policy.md).

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
        self.trigger: Decimal | None = None
        """The trigger of the last decision (the band's, or the fixed threshold while warming up)."""

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

    def edges(self, band: Band | None, limits: HedgeLimits, side: int,
              price: Decimal | None) -> tuple[Decimal, Decimal, str]:
        """(trigger, signed rebalance point relative to target, label) for a deviation of sign
        ``side``: the band's, or the fixed threshold back to target while warming up."""
        if band is None:
            return limits.threshold, ZERO, "warming up, fixed threshold"
        label = "adaptive band" if band.pushed_side != side else "adaptive band, flow drifting this way"
        return band.trigger, band.back_to(side), label

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        band = self.current_band(price)
        self.band = band
        deviation = net_delta - limits.target
        side = 1 if deviation > 0 else -1
        trigger, back_to, label = self.edges(band, limits, side, price)
        self.trigger = trigger
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

