"""AdaptiveBandPolicy.current_band reuses its last band only while its inputs are unchanged."""

from __future__ import annotations

import random
from decimal import Decimal

from hedgerd.policy import AdaptiveBandPolicy, AdaptiveParams, HedgeLimits

PARAMS = AdaptiveParams(risk_aversion=0.1, order_cost=Decimal(1), warmup=10.0)
LIMITS = HedgeLimits(threshold=Decimal("0.05"), target=Decimal(0), min_order=Decimal("0.001"),
                     max_order=Decimal(5), max_position=Decimal(100))


def _feed(policy: AdaptiveBandPolicy, *, seed: int, until: float, one_sided_from: float | None = None) -> None:
    rng = random.Random(seed)
    mid = 60_000.0
    t = 0.0
    while t < until:
        if int(t * 2) % 4 == 0:
            mid *= 1 + rng.gauss(0, 1e-4)
            policy.observe_price(t, Decimal(str(round(mid, 1))))
        if rng.random() < 0.3:
            sign = 1 if one_sided_from is not None and t >= one_sided_from else rng.choice((1, -1))
            policy.observe_flow(t, Decimal(str(round(rng.expovariate(25.0), 3) + 0.001)) * sign)
        t += 0.5


def test_band_is_reused_while_nothing_changes_and_equals_a_fresh_computation() -> None:
    policy = AdaptiveBandPolicy(PARAMS)
    _feed(policy, seed=3, until=600.0)
    price = Decimal("60010.5")
    first = policy.current_band(price)
    assert first is not None
    assert policy.current_band(price) is first  # same inputs: the cached object
    twin = AdaptiveBandPolicy(PARAMS)  # same observations, no cache history
    _feed(twin, seed=3, until=600.0)
    assert twin.current_band(price) == first


def test_band_is_recomputed_when_the_price_or_the_estimates_move() -> None:
    policy, twin = AdaptiveBandPolicy(PARAMS), AdaptiveBandPolicy(PARAMS)
    for p in (policy, twin):
        _feed(p, seed=5, until=400.0)
    before = policy.current_band(Decimal(60_000))
    moved = policy.current_band(Decimal(61_000))
    assert moved is not None and moved != before  # a higher price: a larger risk penalty
    assert moved == twin.current_band(Decimal(61_000))
    policy.observe_flow(400.5, Decimal("0.5"))
    twin.observe_flow(400.5, Decimal("0.5"))
    after_flow = policy.current_band(Decimal(61_000))
    assert after_flow != moved and after_flow == twin.current_band(Decimal(61_000))


def test_decisions_with_the_cache_match_a_policy_that_recomputes_every_time() -> None:
    cached, fresh_feed = AdaptiveBandPolicy(PARAMS), AdaptiveBandPolicy(PARAMS)
    _feed(cached, seed=7, until=300.0, one_sided_from=200.0)
    _feed(fresh_feed, seed=7, until=300.0, one_sided_from=200.0)
    assert cached.drift() != 0.0  # the one-sided stretch shows as drift: the pushed-side band is exercised
    price = Decimal("60000.1")
    for delta in (Decimal("0.01"), Decimal("0.4"), Decimal("-0.4"), Decimal("1.2"), Decimal("-0.9")):
        fresh_feed._band_inputs = None  # forget the last band: computed from scratch
        assert cached.decide(delta, Decimal(0), LIMITS, None, price=price) == \
            fresh_feed.decide(delta, Decimal(0), LIMITS, None, price=price)
