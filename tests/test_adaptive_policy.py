"""The adaptive (cost-aware cube-root band) policy, its estimators and its configuration."""

from __future__ import annotations

import math
import random
import statistics
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hedgerd.clock import RealClock
from hedgerd.config import AdaptivePolicyConfig, PolicyConfig, Settings, load_settings
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import MarketInfo, Side
from hedgerd.policy import (
    AdaptiveBandPolicy,
    AdaptiveParams,
    FixedThresholdPolicy,
    HedgeLimits,
    HedgePolicy,
    build_policy,
)
from hedgerd.policy.adaptive import (
    EwmaRate,
    FlowDrift,
    ShiftAwareRate,
    drift_rebalance,
    ewma_rate_error,
    optimal_band,
)

D = Decimal
SECONDS_PER_YEAR = 31_536_000


def cost_rate(trigger: float, rebalance: float, *, c: float, k: float, s2: float, a: float) -> float:
    """Long-run cost rate of "at |x| = trigger trade back to rebalance" (module docstring)."""
    return (k + c * (trigger - rebalance)) * s2 / (trigger ** 2 - rebalance ** 2) \
        + a * (trigger ** 2 + rebalance ** 2) / 6


def limits(threshold: str = "0.05", target: str = "0") -> HedgeLimits:
    return HedgeLimits(threshold=D(threshold), target=D(target), min_order=D("0.001"), max_order=D(100),
                       max_position=D(1000))


def market() -> MarketInfo:
    return MarketInfo(symbol="BTC/USDT:USDT", base="BTC", quote="USDT", amount_step=D("0.001"),
                      price_step=D("0.1"), min_amount=D("0.001"), min_notional=D(5), contract_size=D(1))


# ------------------------------------------------------------------------------ optimal_band

def test_without_fixed_cost_the_band_is_the_cube_root_law_traded_to_its_edge() -> None:
    c, s2, a = 30.0, 0.002, 0.05
    trigger, rebalance = optimal_band(cost_per_unit=c, order_cost=0.0, flow_variance=s2, risk_penalty=a)
    assert trigger == rebalance
    assert trigger == pytest.approx((3 * c * s2 / (4 * a)) ** (1 / 3), rel=1e-12)


def test_cube_root_scaling() -> None:
    base, _ = optimal_band(cost_per_unit=30.0, order_cost=0.0, flow_variance=0.002, risk_penalty=0.05)
    more_flow, _ = optimal_band(cost_per_unit=30.0, order_cost=0.0, flow_variance=0.016, risk_penalty=0.05)
    more_risk, _ = optimal_band(cost_per_unit=30.0, order_cost=0.0, flow_variance=0.002, risk_penalty=0.4)
    assert more_flow == pytest.approx(base * 2, rel=1e-12)  # 8x variance -> 2x band
    assert more_risk == pytest.approx(base / 2, rel=1e-12)  # 8x penalty -> half the band


def test_pure_fixed_cost_gives_the_impulse_control_band_traded_to_zero() -> None:
    k, s2, a = 2.0, 0.002, 0.05
    trigger, rebalance = optimal_band(cost_per_unit=0.0, order_cost=k, flow_variance=s2, risk_penalty=a)
    assert rebalance == pytest.approx(0.0, abs=1e-9)
    assert trigger == pytest.approx((6 * k * s2 / a) ** 0.25, rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(c=st.floats(0.5, 100), k=st.floats(0.01, 20), s2=st.floats(1e-5, 0.05), a=st.floats(1e-3, 10))
def test_band_satisfies_the_stationarity_conditions(c: float, k: float, s2: float, a: float) -> None:
    trigger, rebalance = optimal_band(cost_per_unit=c, order_cost=k, flow_variance=s2, risk_penalty=a)
    p, q = trigger + rebalance, trigger - rebalance
    assert 0 <= rebalance < trigger
    assert q ** 3 == pytest.approx(6 * k * s2 / (a * p), rel=1e-6)
    assert p ** 3 == pytest.approx(6 * s2 * (c + k / q) / a, rel=1e-6)


@pytest.mark.parametrize(("c", "k"), [(30.0, 1.0), (5.0, 5.0), (60.0, 0.2)])
def test_band_minimises_the_cost_rate(c: float, k: float) -> None:
    s2, a = 0.0013, 0.07
    trigger, rebalance = optimal_band(cost_per_unit=c, order_cost=k, flow_variance=s2, risk_penalty=a)
    best = cost_rate(trigger, rebalance, c=c, k=k, s2=s2, a=a)
    for dt in (-0.1, -0.02, 0.02, 0.1):
        for dr in (-0.1, -0.02, 0.0, 0.02, 0.1):
            t, r = trigger * (1 + dt), max(rebalance + dr * trigger, 0.0)
            if t > r:
                assert cost_rate(t, r, c=c, k=k, s2=s2, a=a) >= best


def test_band_edge_cases() -> None:
    assert optimal_band(cost_per_unit=30.0, order_cost=1.0, flow_variance=0.0, risk_penalty=0.1) == (0.0, 0.0)
    assert optimal_band(cost_per_unit=0.0, order_cost=0.0, flow_variance=0.01, risk_penalty=0.1) == (0.0, 0.0)
    assert optimal_band(cost_per_unit=30.0, order_cost=1.0, flow_variance=0.01, risk_penalty=0.0) == (
        math.inf, math.inf)
    with pytest.raises(ValueError):
        optimal_band(cost_per_unit=-1.0, order_cost=0.0, flow_variance=0.01, risk_penalty=0.1)


# ------------------------------------------------------------------------------ EwmaRate

def test_ewma_rate_converges_to_a_constant_rate() -> None:
    ewma = EwmaRate(half_life=60.0)
    ewma.start(0.0)
    for i in range(1, 4001):
        ewma.add(i * 0.25, 0.5)  # 0.5 every 0.25 s = 2 per second
    rate = ewma.rate()
    assert rate is not None and rate == pytest.approx(2.0, rel=0.01)


def test_ewma_rate_moves_halfway_in_one_half_life_and_decays_when_quiet() -> None:
    ewma = EwmaRate(half_life=100.0)
    ewma.start(0.0)
    t = 0.0
    while t < 5_000:  # steady state at 1 per second
        t += 0.1
        ewma.add(t, 0.1)
    end = t
    while t < end + 100.0:  # one half-life at 3 per second
        t += 0.1
        ewma.add(t, 0.3)
    assert ewma.rate() == pytest.approx(2.0, rel=0.01)
    ewma.advance(t + 100.0)  # one half-life with nothing
    assert ewma.rate() == pytest.approx(1.0, rel=0.01)
    assert ewma.observed_for == pytest.approx(t + 100.0)


def test_ewma_rate_needs_elapsed_time() -> None:
    ewma = EwmaRate(half_life=10.0)
    assert ewma.rate() is None
    ewma.add(5.0, 1.0)
    assert ewma.rate() is None
    with pytest.raises(ValueError):
        EwmaRate(half_life=0.0)


# ------------------------------------------------------------------------------ policy

def feed(policy: AdaptiveBandPolicy, *, seconds: int, vol: float, fill: str, fills_per_second: int = 1,
         start: float = 0.0, mid: float = 60_000.0) -> float:
    """Alternating up/down price moves of annualised ``vol`` each second and +/- fills."""
    step = vol / math.sqrt(SECONDS_PER_YEAR)
    for i in range(seconds):
        ts = start + i + 1
        mid *= math.exp(step if i % 2 == 0 else -step)
        policy.observe_price(ts, D(repr(mid)))
        for j in range(fills_per_second):
            policy.observe_flow(ts, D(fill) if (i + j) % 2 == 0 else -D(fill))
    return mid


def test_adaptive_satisfies_the_protocol_and_warms_up_on_the_fixed_threshold() -> None:
    policy: HedgePolicy = AdaptiveBandPolicy(AdaptiveParams(warmup=60.0))
    assert policy.name == "adaptive"
    fixed = FixedThresholdPolicy()
    adaptive = AdaptiveBandPolicy(AdaptiveParams(warmup=60.0))
    feed(adaptive, seconds=30, vol=0.8, fill="0.05")
    for delta in ("0.03", "0.2", "-0.4"):
        ours = adaptive.decide(D(delta), D(0), limits(), market(), price=D(60000))
        theirs = fixed.decide(D(delta), D(0), limits(), market(), price=D(60000))
        assert (ours and ours.signed_amount) == (theirs and theirs.signed_amount)
    assert adaptive.band is None


@pytest.mark.parametrize("order_cost", ["0", "2"])
def test_band_matches_the_formula_on_the_estimates(order_cost: str) -> None:
    params = AdaptiveParams(risk_aversion=0.5, cost_bps=D(6), order_cost=D(order_cost), warmup=10.0)
    policy = AdaptiveBandPolicy(params)
    mid = feed(policy, seconds=3_000, vol=0.8, fill="0.05")
    band = policy.current_band()
    assert band is not None
    s2 = 0.05 ** 2  # one fill of 0.05 per second
    return_variance = (0.8 / math.sqrt(SECONDS_PER_YEAR)) ** 2
    trigger, rebalance = optimal_band(cost_per_unit=mid * 6e-4, order_cost=float(order_cost), flow_variance=s2,
                                      risk_penalty=0.5 * mid * mid * return_variance)
    assert float(band.trigger) == pytest.approx(trigger, rel=0.02)
    assert float(band.rebalance) == pytest.approx(rebalance, rel=0.02)


def test_band_breathes_with_volatility_and_flow() -> None:
    def band_for(vol: float, fill: str) -> Decimal:
        policy = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=0.5, order_cost=D(1), warmup=10.0))
        feed(policy, seconds=2_000, vol=vol, fill=fill)
        band = policy.current_band()
        assert band is not None
        return band.trigger

    calm, wild = band_for(0.3, "0.05"), band_for(1.2, "0.05")
    quiet, busy = band_for(0.8, "0.02"), band_for(0.8, "0.1")
    assert wild < calm
    assert quiet < busy


def test_regime_change_moves_the_band_within_a_few_half_lives() -> None:
    policy = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=0.5, price_half_life=300.0, flow_half_life=300.0,
                                               warmup=10.0))
    mid = feed(policy, seconds=3_000, vol=0.4, fill="0.05")
    calm = policy.current_band()
    feed(policy, seconds=1_500, vol=1.6, fill="0.05", start=3_000, mid=mid)
    wild = policy.current_band()
    assert calm is not None and wild is not None
    # 16x the price variance -> the band shrinks by about 16^(1/3) = 2.5
    assert float(calm.trigger) / float(wild.trigger) == pytest.approx(16 ** (1 / 3), rel=0.15)


def test_decisions_trade_back_to_the_rebalance_point() -> None:
    policy = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=0.5, order_cost=D(2), warmup=10.0))
    feed(policy, seconds=2_000, vol=0.8, fill="0.05")
    band = policy.current_band(D(60000))
    assert band is not None and band.rebalance < band.trigger
    inside = band.trigger - D("0.001")
    assert policy.decide(inside, D(0), limits(target="0"), market(), price=D(60000)) is None
    outside = band.trigger + D("0.3")
    decision = policy.decide(outside, D(0), limits(), market(), price=D(60000))
    assert decision is not None and decision.side is Side.SELL
    # back to +rebalance, rounded toward zero to the 0.001 step (so it never overshoots)
    assert outside - decision.amount >= band.rebalance
    assert outside - decision.amount - band.rebalance < D("0.001")
    short = -outside + D(1)  # around a target of +1
    decision = policy.decide(short, D(0), limits(target="1"), market(), price=D(60000))
    assert decision is not None and decision.side is Side.BUY
    assert short + decision.amount <= D(1) - band.rebalance


def test_band_is_clamped() -> None:
    wide = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=1e-9, max_band=D("0.7"), warmup=1.0))
    feed(wide, seconds=200, vol=0.8, fill="0.05")
    narrow = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=1e9, min_band=D("0.02"), warmup=1.0))
    feed(narrow, seconds=200, vol=0.8, fill="0.05")
    wide_band, narrow_band = wide.current_band(), narrow.current_band()
    assert wide_band is not None and wide_band.trigger == D("0.7")
    assert narrow_band is not None and narrow_band.trigger == D("0.02")


def test_params_validation() -> None:
    with pytest.raises(ValueError):
        AdaptiveParams(risk_aversion=0.0)
    with pytest.raises(ValueError):
        AdaptiveParams(min_band=D(2), max_band=D(1))


# ------------------------------------------------------------------------------ config + engine

def test_build_policy_from_config() -> None:
    assert isinstance(build_policy(None), FixedThresholdPolicy)
    config = PolicyConfig(name="adaptive", adaptive=AdaptivePolicyConfig(risk_aversion=0.2, order_cost=D(3)))
    policy = build_policy(config)
    assert isinstance(policy, AdaptiveBandPolicy)
    assert policy.params.risk_aversion == 0.2 and policy.params.order_cost == D(3)
    assert isinstance(build_policy(config, name="fixed"), FixedThresholdPolicy)
    with pytest.raises(ValueError):
        build_policy(config, name="clairvoyant")


def test_policy_section_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "hedgerd.toml"
    path.write_text('[policy]\nname = "adaptive"\n[policy.adaptive]\nrisk_aversion = 0.3\nmax_band = 2\n')
    loaded = load_settings(path, env={})
    assert loaded.policy.name == "adaptive"
    assert loaded.policy.adaptive.risk_aversion == 0.3 and loaded.policy.adaptive.max_band == D(2)
    assert load_settings(None, env={"HEDGERD_POLICY__NAME": "adaptive"}).policy.name == "adaptive"
    path.write_text('[policy.adaptive]\nmin_band = 3\nmax_band = 2\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    assert excinfo.value.path == "policy.adaptive.min_band"
    path.write_text('[policy]\nname = "psychic"\n')
    with pytest.raises(ConfigError) as excinfo:
        load_settings(path, env={})
    assert excinfo.value.path == "policy.name"


def test_engine_keeps_one_policy_per_underlying_from_config(tmp_path: Path) -> None:
    settings = Settings(policy=PolicyConfig(name="adaptive"))
    engine = HedgeEngine(settings, {}, InventoryLedger(tmp_path / "l.sqlite"), RealClock(), Metrics())
    first = engine.policy_for("BTC")
    assert isinstance(first, AdaptiveBandPolicy)
    assert engine.policy_for("BTC") is first
    assert engine.policy_for("ETH") is not first
    injected = FixedThresholdPolicy()
    shared = HedgeEngine(settings, {}, InventoryLedger(tmp_path / "m.sqlite"), RealClock(), Metrics(),
                         policy=injected)
    assert shared.policy_for("BTC") is injected and shared.policy_for("ETH") is injected


# ------------------------------------------------------------------------------ regime shifts and flow drift

def test_ewma_rate_error_matches_the_spread_of_the_estimate() -> None:
    # Poisson arrivals of +/-1 at 2/s: m2 = 2, so the standard error is sqrt(2 k / 2) = sqrt(k).
    half_life = 20.0
    estimates = []
    for seed in range(200):
        rng = random.Random(seed)
        ewma = EwmaRate(half_life)
        ewma.start(0.0)
        ts = 0.0
        while ts < 400.0:
            ts += rng.expovariate(2.0)
            ewma.add(ts, 1.0 if rng.random() < 0.5 else -1.0)
        ewma.advance(400.0)
        rate = ewma.rate()
        assert rate is not None
        estimates.append(rate)
    expected = ewma_rate_error(2.0, half_life)
    assert expected == pytest.approx(math.sqrt(math.log(2) / half_life))
    assert statistics.pstdev(estimates) == pytest.approx(expected, rel=0.15)


def test_shift_aware_rate_keeps_the_slow_estimate_in_a_steady_regime_and_follows_a_shift() -> None:
    rate = ShiftAwareRate(half_life=300.0, fast_half_life=30.0, shift_z=3.0)
    rate.start(0.0)
    for i in range(1, 3_001):
        rate.add(float(i), 1.0)
    assert not rate.shifted
    assert rate.rate() == rate.slow.rate()
    for i in range(3_001, 3_121):  # the value quadruples for 4 fast half-lives
        rate.add(float(i), 4.0)
    slow, fast = rate.slow.rate(), rate.fast.rate()
    assert slow is not None and fast is not None
    assert rate.shifted and rate.rate() == fast
    assert fast == pytest.approx(4.0, rel=0.1) and slow < 2.0
    with pytest.raises(ValueError):
        ShiftAwareRate(300.0, 30.0, -1.0)


def test_flow_drift_reads_zero_for_balanced_flow_and_the_sign_of_a_burst() -> None:
    drift = FlowDrift(half_life=15.0, z=3.0)
    drift.start(0.0)
    for i in range(1, 601):
        drift.add(float(i), 0.05 if i % 2 else -0.05)
    assert drift.rate() == 0.0
    for i in range(601, 661):  # 60 s of sells to the desk at 0.05/s
        drift.add(float(i), -0.05)
    assert drift.rate() < 0
    # the shrunk drift stays below the true rate: shrinkage by z standard errors
    assert abs(drift.rate()) < 0.05


def test_drift_rebalance_centres_the_cycle_and_is_neutral_without_drift() -> None:
    k, s2, mu, a = 1.0, 0.004, 0.07, 3.0
    rho = drift_rebalance(order_cost=k, flow_variance=s2, drift=mu, risk_penalty=a)
    size = (6 * k * mu / a) ** (1 / 3)
    assert rho == pytest.approx(s2 / (2 * mu) - size / 2, rel=1e-12)
    assert rho < 0  # a strong drift: trade through the target
    assert drift_rebalance(order_cost=k, flow_variance=s2, drift=-mu, risk_penalty=a) == rho  # symmetric
    assert drift_rebalance(order_cost=k, flow_variance=s2, drift=0.0, risk_penalty=a) == math.inf

    # the centre s^2 / (2 mu) minimises the time-averaged x^2 of the drift cycle (module doc)
    def mean_square(centre: float) -> float:
        return centre ** 2 + size ** 2 / 12 - s2 * centre / mu + s2 ** 2 / (2 * mu ** 2)
    best = s2 / (2 * mu)
    assert all(mean_square(best) <= mean_square(best + d) for d in (-0.01, -0.001, 0.001, 0.01))
    with pytest.raises(ValueError):
        drift_rebalance(order_cost=-1.0, flow_variance=s2, drift=mu, risk_penalty=a)


def burst(policy: AdaptiveBandPolicy, *, start: float, seconds: int, fill: str, mid: float = 60_000.0) -> None:
    """One-sided client flow (``fill`` signed) every half second, with a flat price each second."""
    for i in range(seconds * 2):
        ts = start + (i + 1) / 2
        if i % 2 == 1:
            policy.observe_price(ts, D(repr(mid)))
        policy.observe_flow(ts, D(fill))


def test_one_sided_flow_trades_through_the_target_on_the_pushed_side_only() -> None:
    policy = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=0.5, order_cost=D(1), warmup=10.0))
    mid = feed(policy, seconds=1_200, vol=0.8, fill="0.05")
    steady = policy.current_band(D(60000))
    assert steady is not None and steady.pushed_side == 0
    burst(policy, start=1_200, seconds=40, fill="0.05", mid=mid)
    band = policy.current_band(D(60000))
    assert band is not None and band.pushed_side == 1 and band.pushed_rebalance is not None
    assert -band.trigger <= band.pushed_rebalance < band.rebalance
    outside = band.trigger + D("0.05")
    decision = policy.decide(outside, D(0), limits(), market(), price=D(60000))
    assert decision is not None and decision.side is Side.SELL
    assert outside - decision.amount < band.rebalance  # deeper than the usual rebalance point
    assert outside - decision.amount >= band.pushed_rebalance
    # against the flow the usual rebalance point applies
    decision = policy.decide(-outside, D(0), limits(), market(), price=D(60000))
    assert decision is not None and -outside + decision.amount <= -band.rebalance


def test_flow_drift_can_be_switched_off() -> None:
    policy = AdaptiveBandPolicy(AdaptiveParams(risk_aversion=0.5, order_cost=D(1), warmup=10.0, flow_drift=False))
    mid = feed(policy, seconds=1_200, vol=0.8, fill="0.05")
    burst(policy, start=1_200, seconds=40, fill="0.05", mid=mid)
    band = policy.current_band(D(60000))
    assert band is not None and band.pushed_side == 0 and policy.drift() == 0.0


def test_new_params_are_validated_and_read_from_config() -> None:
    for bad in ({"fast_half_life": 0.0}, {"drift_half_life": -1.0}, {"shift_z": -0.1}, {"drift_z": -2.0}):
        with pytest.raises(ValueError):
            AdaptiveParams(**bad)  # type: ignore[arg-type]
    config = AdaptivePolicyConfig(fast_half_life=45.0, shift_z=2.5, flow_drift=False, drift_half_life=20.0,
                                  drift_z=4.0)
    params = AdaptiveParams.from_config(config)
    assert (params.fast_half_life, params.shift_z, params.flow_drift, params.drift_half_life, params.drift_z) \
        == (45.0, 2.5, False, 20.0, 4.0)
    with pytest.raises(ValidationError):
        AdaptivePolicyConfig(fast_half_life=0.0)
    with pytest.raises(ValidationError):
        AdaptivePolicyConfig(drift_z=-1.0)
