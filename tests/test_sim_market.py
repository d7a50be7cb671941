"""The simulators' one market model: GBM steps, Poisson counts and client flow draws."""

from __future__ import annotations

import math
import random
from decimal import Decimal

import pytest

from hedgerd.sim.market import SECONDS_PER_YEAR, ClientFlow, gbm_step, poisson_count


def test_gbm_step_has_zero_drift_in_the_mean_and_the_volatility_over_the_step() -> None:
    drift, diffusion = gbm_step(0.8, 3600.0)
    years = 3600.0 / SECONDS_PER_YEAR
    assert diffusion == pytest.approx(0.8 * math.sqrt(years))
    assert drift == pytest.approx(-0.5 * diffusion * diffusion)  # E[exp(drift + diffusion Z)] = 1
    assert gbm_step(0.8, 0.0) == (0.0, 0.0)


def test_poisson_count_has_the_requested_mean_and_nothing_for_no_time() -> None:
    rng = random.Random(1)
    draws = [poisson_count(3.0, rng) for _ in range(20_000)]
    assert sum(draws) / len(draws) == pytest.approx(3.0, abs=5 * math.sqrt(3.0 / len(draws)))
    assert poisson_count(0.0, rng) == 0 and poisson_count(-1.0, rng) == 0


@pytest.mark.parametrize("distribution", ["exponential", "lognormal", "fixed"])
def test_client_flow_sizes_have_the_mean_size(distribution: str) -> None:
    flow = ClientFlow(rate=1.0, mean_size=Decimal("0.2"), size_distribution=distribution,  # type: ignore[arg-type]
                      size_sigma=0.5)
    rng = random.Random(2)
    sizes = [flow.size(rng) for _ in range(20_000)]
    assert all(size > 0 for size in sizes)
    assert sum(sizes) / len(sizes) == pytest.approx(0.2, rel=0.03)
    assert flow.size(rng, Decimal("1.5")) > 0  # an instrument's own mean
    if distribution == "fixed":
        assert set(sizes) == {0.2}


def test_client_flow_side_follows_the_buy_probability_and_arrivals_the_rate() -> None:
    rng = random.Random(3)
    flow = ClientFlow(rate=2.0, mean_size=Decimal(1), buy_probability=0.9)
    buys = sum(flow.desk_buys(rng) for _ in range(10_000))
    assert 8_800 < buys < 9_200
    waits = [flow.wait(rng) for _ in range(10_000)]
    assert sum(waits) / len(waits) == pytest.approx(0.5, rel=0.05)
    assert sum(flow.arrivals(1.0, rng) for _ in range(10_000)) / 10_000 == pytest.approx(2.0, rel=0.05)


def test_client_flow_draws_are_those_of_the_plain_random_calls() -> None:
    """The paper venues and the exchange simulator kept their random sequences when they adopted it."""
    flow = ClientFlow(rate=4.0, mean_size=Decimal("0.05"))
    a, b = random.Random(7), random.Random(7)
    assert flow.wait(a) == b.expovariate(4.0)
    assert flow.desk_buys(a) == (b.random() < 0.5)
    assert flow.size(a) == b.expovariate(1.0 / 0.05)
