"""The pure frontier arithmetic of bench/frontier.py, checked on power-law frontiers.

On a power law ``cost = k * risk**-p`` log-log interpolation is exact, so the readings have
closed forms: with the same exponent, ``1 - k_adaptive / k_fixed`` at equal risk and
``1 - (k_adaptive / k_fixed)**(1/p)`` at equal cost.
"""

from __future__ import annotations

import math
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # bench/ is scripts, not a package

from frontier import (
    GRID,
    PASSIVE,
    Point,
    cost_at_risk,
    gains_at_common_levels,
    linear_interpolate_logx,
    loglog_interpolate,
    non_monotone_pairs,
    passive_split,
    risk_at_cost,
)


def power_frontier(policy: str, scale: float, exponent: float, risks: list[float]) -> list[Point]:
    return [Point(policy, 0.0, 1, r, scale * r**-exponent, 0) for r in risks]


FIXED_RISKS = [2.0, 5.0, 11.0, 30.0, 70.0, 160.0]
ADAPTIVE_RISKS = [3.0, 8.0, 20.0, 45.0, 100.0, 400.0]  # other sweep points, so both curves are interpolated


def test_loglog_interpolation_is_exact_on_a_power_law() -> None:
    fixed = power_frontier("fixed", 5000.0, 1.5, FIXED_RISKS)
    for risk in (2.0, 3.7, 11.0, 50.0, 159.0):
        assert cost_at_risk(fixed, risk) == pytest.approx(5000.0 * risk**-1.5, rel=1e-12)
    for cost in (5000.0 * 100.0**-1.5, 5000.0 * 4.0**-1.5):
        assert risk_at_cost(fixed, cost) == pytest.approx((5000.0 / cost) ** (1 / 1.5), rel=1e-12)


def test_no_value_outside_the_range() -> None:
    fixed = power_frontier("fixed", 5000.0, 1.5, FIXED_RISKS)
    assert cost_at_risk(fixed, 1.9) is None
    assert cost_at_risk(fixed, 161.0) is None
    assert risk_at_cost(fixed, 5000.0 * 1.0**-1.5) is None
    assert loglog_interpolate([(1.0, 2.0)], 1.0) is None


def test_tie_in_x_takes_the_lower_y_and_non_positive_points_are_skipped() -> None:
    assert loglog_interpolate([(4.0, 9.0), (4.0, 3.0)], 4.0) == 3.0
    # The segment from x=1 touches y=0 (no logarithm): the next bracketing segment answers.
    assert loglog_interpolate([(1.0, 0.0), (2.0, 8.0), (4.0, 2.0)], 2.0) == pytest.approx(8.0)
    assert loglog_interpolate([(1.0, 0.0), (2.0, 8.0)], 1.5) is None


def test_non_monotone_sweep_is_read_on_its_first_bracketing_segment_and_reported() -> None:
    curve = [(1.0, 100.0), (2.0, 50.0), (4.0, 80.0), (8.0, 10.0)]
    # x=3 lies only on (2, 50)-(4, 80): the geometric midpoint of log x gives the geometric mean of y.
    assert loglog_interpolate(curve, 2.0 * math.sqrt(2.0)) == pytest.approx(math.sqrt(50.0 * 80.0))
    assert non_monotone_pairs(curve) == 1
    assert non_monotone_pairs([(1.0, 100.0), (2.0, 50.0), (8.0, 10.0)]) == 0


def test_equal_exponents_give_constant_saving_and_risk_reduction() -> None:
    ratio, exponent = 0.6, 1.5
    fixed = power_frontier("fixed", 5000.0, exponent, FIXED_RISKS)
    adaptive = power_frontier("adaptive", 5000.0 * ratio, exponent, ADAPTIVE_RISKS)

    at_risk = gains_at_common_levels([(p.risk, p.cost) for p in fixed], [(p.risk, p.cost) for p in adaptive])
    assert at_risk is not None
    assert (at_risk.low, at_risk.high) == (3.0, 160.0)  # the common risk range only
    assert len(at_risk.gains) == GRID
    assert at_risk.gains == pytest.approx([1 - ratio] * GRID, rel=1e-12)

    at_cost = gains_at_common_levels([(p.cost, p.risk) for p in fixed], [(p.cost, p.risk) for p in adaptive])
    assert at_cost is not None
    assert at_cost.low == pytest.approx(max(5000.0 * 160.0**-exponent, 3000.0 * 400.0**-exponent))
    assert at_cost.high == pytest.approx(min(5000.0 * 2.0**-exponent, 3000.0 * 3.0**-exponent))
    assert at_cost.gains == pytest.approx([1 - ratio ** (1 / exponent)] * GRID, rel=1e-12)


def test_different_exponents_give_the_analytic_mean_over_log_levels() -> None:
    # fixed: cost = 4000 r^-1.2, adaptive: cost = 1500 r^-1.0, so the saving at risk r is
    # 1 - (1500/4000) r^0.2, and the risk reduction at cost c is 1 - (1500/c) / (4000/c)^(1/1.2).
    fixed = power_frontier("fixed", 4000.0, 1.2, FIXED_RISKS)
    adaptive = power_frontier("adaptive", 1500.0, 1.0, ADAPTIVE_RISKS)
    levels = [3.0 * (160.0 / 3.0) ** (i / (GRID - 1)) for i in range(GRID)]

    at_risk = gains_at_common_levels([(p.risk, p.cost) for p in fixed], [(p.risk, p.cost) for p in adaptive])
    assert at_risk is not None
    expected = [1 - 0.375 * r**0.2 for r in levels]
    assert at_risk.gains == pytest.approx(expected, rel=1e-9)
    assert statistics.fmean(at_risk.gains) == pytest.approx(statistics.fmean(expected), rel=1e-9)

    at_cost = gains_at_common_levels([(p.cost, p.risk) for p in fixed], [(p.cost, p.risk) for p in adaptive],
                                     levels=5)
    assert at_cost is not None
    low = max(4000.0 * 160.0**-1.2, 1500.0 / 400.0)
    high = min(4000.0 * 2.0**-1.2, 1500.0 / 3.0)
    costs = [low * (high / low) ** (i / 4) for i in range(5)]
    assert at_cost.gains == pytest.approx([1 - (1500.0 / c) / (4000.0 / c) ** (1 / 1.2) for c in costs], rel=1e-9)


def test_disjoint_frontiers_have_no_reading() -> None:
    assert gains_at_common_levels([(1.0, 5.0), (2.0, 3.0)], [(3.0, 2.0), (4.0, 1.0)]) is None


def test_linear_interpolation_in_log_x_is_exact_on_a_log_law_and_takes_negative_values() -> None:
    curve = [(x, -40.0 + 3.0 * math.log(x)) for x in (100.0, 300.0, 2000.0, 9000.0)]
    for x in (100.0, 170.0, 2000.0, 8999.0):
        assert linear_interpolate_logx(curve, x) == pytest.approx(-40.0 + 3.0 * math.log(x), rel=1e-12)
    assert linear_interpolate_logx(curve, 99.0) is None
    assert linear_interpolate_logx(curve, 9001.0) is None
    assert linear_interpolate_logx([(5.0, 0.0), (5.0, -2.0)], 5.0) == -2.0


def exposure_sweep(policy: str, scale: float, exposures: list[float],
                   funding: Callable[[float], float] = lambda exposure: 0.0) -> list[Point]:
    """Execution cost ``scale * exposure**-1.3`` (exact under log-log interpolation) and funding
    ``funding(exposure)`` at each sweep point."""
    return [Point(policy, 0.0, 1, 0.0, scale * e**-1.3, 0, e, funding(e)) for e in exposures]


FIXED_EXPOSURES = [1000.0, 2500.0, 6000.0, 15000.0]
ADAPTIVE_EXPOSURES = [1500.0, 4000.0, 9000.0, 20000.0]
PASSIVE_EXPOSURES = [1200.0, 3000.0, 7000.0, 12000.0]


def test_passive_split_without_funding_is_the_execution_saving_and_its_parts_add_up() -> None:
    fixed = exposure_sweep("fixed", 1e7, FIXED_EXPOSURES)
    adaptive = exposure_sweep("adaptive", 0.9e7, ADAPTIVE_EXPOSURES)
    passive = exposure_sweep(PASSIVE, 0.7e7, PASSIVE_EXPOSURES)
    split = passive_split(fixed, adaptive, passive)
    assert split is not None
    assert (split.low, split.high) == (1500.0, 12000.0)  # the range all three share
    assert len(split.total) == GRID
    assert split.total == pytest.approx([0.3] * GRID, rel=1e-12)
    assert split.execution_only == pytest.approx(split.total, rel=1e-12)
    assert split.band == pytest.approx([0.1] * GRID, rel=1e-12)
    assert split.passive == pytest.approx([0.2] * GRID, rel=1e-12)
    assert split.funding == [0.0] * GRID


def test_passive_split_with_funding_counts_it_in_the_total_and_as_its_own_part() -> None:
    # Funding linear in log exposure (exact under its interpolation); the passive sweep pays 5 more
    # at every exposure, the adaptive sweep's funding plays no part in the split.
    def fixed_funding(e: float) -> float:
        return 20.0 - 2.0 * math.log(e)

    fixed = exposure_sweep("fixed", 1e7, FIXED_EXPOSURES, fixed_funding)
    adaptive = exposure_sweep("adaptive", 0.9e7, ADAPTIVE_EXPOSURES, lambda e: 1e6)
    passive = exposure_sweep(PASSIVE, 0.7e7, PASSIVE_EXPOSURES, lambda e: fixed_funding(e) + 5.0)
    split = passive_split(fixed, adaptive, passive, levels=4)
    assert split is not None
    levels = [1500.0 * 8.0 ** (i / 3) for i in range(4)]
    totals = [1e7 * e**-1.3 + fixed_funding(e) for e in levels]
    assert split.band == pytest.approx([0.1e7 * e**-1.3 / t for e, t in zip(levels, totals, strict=True)], rel=1e-9)
    assert split.passive == pytest.approx([0.2e7 * e**-1.3 / t for e, t in zip(levels, totals, strict=True)],
                                          rel=1e-9)
    assert split.funding == pytest.approx([-5.0 / t for t in totals], rel=1e-9)
    assert split.total == pytest.approx(
        [1 - (0.7e7 * e**-1.3 + fixed_funding(e) + 5.0) / t for e, t in zip(levels, totals, strict=True)], rel=1e-9)
    for total, band, passive_part, funding in zip(split.total, split.band, split.passive, split.funding, strict=True):
        assert total == pytest.approx(band + passive_part + funding, rel=1e-12)
    assert split.execution_only == pytest.approx([0.3] * 4, rel=1e-12)


def test_passive_split_skips_levels_where_the_fixed_total_is_not_positive() -> None:
    # Funding received larger than the execution cost at the low-cost (high exposure) end.
    fixed = exposure_sweep("fixed", 1e7, FIXED_EXPOSURES, lambda e: -1e7 * 5000.0**-1.3)
    adaptive = exposure_sweep("adaptive", 0.9e7, ADAPTIVE_EXPOSURES)
    passive = exposure_sweep(PASSIVE, 0.7e7, PASSIVE_EXPOSURES)
    split = passive_split(fixed, adaptive, passive)
    assert split is not None
    kept = [e for e in (1500.0 * 8.0 ** (i / (GRID - 1)) for i in range(GRID)) if e < 5000.0]
    assert 0 < len(split.total) == len(kept) < GRID


def test_passive_split_without_a_common_range_has_no_reading() -> None:
    fixed = exposure_sweep("fixed", 1e7, [1000.0, 2000.0])
    adaptive = exposure_sweep("adaptive", 0.9e7, [1500.0, 4000.0])
    assert passive_split(fixed, adaptive, exposure_sweep(PASSIVE, 0.7e7, [3000.0, 5000.0])) is None
    assert passive_split(fixed, adaptive, []) is None
