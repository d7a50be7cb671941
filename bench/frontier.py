"""Cost-vs-risk frontiers of the fixed threshold and the adaptive band, on simulated days.

Usage: python bench/frontier.py [--seeds 1,2,3] [--duration 4h] [--jobs 2] [--scenario FILE]
                                [--config FILE] [--thresholds 0.03,...] [--risk-aversions 3,...]

For every seed, runs ``hedgerd simulate`` (the real engine on virtual time, see
:mod:`hedgerd.simulate`) once per fixed threshold and once per adaptive risk aversion, on the
same scenario (default: the built-in day, compressed into ``--duration``: scenario times are
fractions of the run). Risk is the standard deviation of the hedged PnL, cost the hedging cost
(fees + spread + fixed order costs).

Printed: both frontiers side by side (means over seeds); for every adaptive point whose risk
lies inside the fixed frontier of the same seed, the fixed policy's cost at that same risk
(interpolated log-log between the two neighbouring thresholds) and the saving
``1 - adaptive cost / fixed cost``; then the headline: per seed, both frontiers interpolated at
8 risk levels log-spaced over their common range, savings averaged over levels and seeds.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import statistics
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hedgerd.config import Settings, load_settings
from hedgerd.simulate import load_scenario, parse_duration, run_simulation

DEFAULT_THRESHOLDS = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6, 0.9)
DEFAULT_RISK_AVERSIONS = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003)
GRID = 8


@dataclass(frozen=True)
class Point:
    policy: str
    parameter: float
    seed: int
    risk: float
    cost: float
    orders: int


def _run(job: tuple[str, float, int, float, Path | None, Path | None]) -> Point:
    policy, parameter, seed, duration, config, scenario_file = job
    settings = load_settings(config) if config is not None else Settings()
    if policy == "fixed":
        hedge = settings.hedges[0].model_copy(update={"threshold": Decimal(str(parameter))})
        settings = settings.model_copy(update={"hedges": [hedge]})
    else:
        adaptive = settings.policy.adaptive.model_copy(update={"risk_aversion": parameter})
        settings = settings.model_copy(update={"policy": settings.policy.model_copy(update={"adaptive": adaptive})})
    result = run_simulation(settings, load_scenario(scenario_file), seed=seed, duration=duration, policy=policy)
    return Point(policy, parameter, seed, result.hedged_pnl_std, result.hedging_cost, result.hedge_orders)


def fixed_cost_at(frontier: list[Point], risk: float) -> float | None:
    """A frontier's cost at ``risk``, interpolated log-log; None outside its range."""
    points = sorted(frontier, key=lambda p: p.risk)
    for low, high in itertools.pairwise(points):
        if low.risk <= risk <= high.risk and low.risk > 0 and low.cost > 0 and high.cost > 0:
            if high.risk == low.risk:
                return min(low.cost, high.cost)
            weight = (math.log(risk) - math.log(low.risk)) / (math.log(high.risk) - math.log(low.risk))
            return math.exp(math.log(low.cost) + weight * (math.log(high.cost) - math.log(low.cost)))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--duration", default="4h", help="simulated time per run (the scenario is scaled to it)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel simulations")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--scenario", type=Path, default=None)
    parser.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)))
    parser.add_argument("--risk-aversions", default=",".join(map(str, DEFAULT_RISK_AVERSIONS)))
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    duration = parse_duration(args.duration)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    aversions = [float(a) for a in args.risk_aversions.split(",")]
    jobs = [("fixed", t, seed, duration, args.config, args.scenario) for seed in seeds for t in thresholds]
    jobs += [("adaptive", a, seed, duration, args.config, args.scenario) for seed in seeds for a in aversions]
    started = time.perf_counter()
    print(f"{len(jobs)} simulations of {args.duration} each, seeds {seeds}, {args.jobs} in parallel ...",
          file=sys.stderr)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        points = pool.map(_run, jobs, chunksize=1)
    wall = time.perf_counter() - started

    by_seed_fixed = {seed: [p for p in points if p.policy == "fixed" and p.seed == seed] for seed in seeds}

    def mean_of(policy: str, parameter: float, attr: str) -> float:
        return statistics.fmean(getattr(p, attr) for p in points if p.policy == policy and p.parameter == parameter)

    savings: dict[float, list[float]] = {a: [] for a in aversions}
    fixed_at: dict[float, list[float]] = {a: [] for a in aversions}
    for p in points:
        if p.policy != "adaptive":
            continue
        reference = fixed_cost_at(by_seed_fixed[p.seed], p.risk)
        if reference is not None:
            savings[p.parameter].append(1.0 - p.cost / reference)
            fixed_at[p.parameter].append(reference)

    print(f"\nfrontiers, means over seeds {seeds}; risk = std of hedged PnL, cost = fees + spread + order costs"
          f" (quote), {args.duration} simulated per run")
    head = (f"{'threshold':>9} {'risk':>8} {'cost':>9} {'orders':>6} | {'risk_av':>7} {'risk':>8} {'cost':>9} "
            f"{'orders':>6} {'fixed@risk':>10} {'saving':>7} {'n':>2}")
    print(head)
    print("-" * len(head))
    for i in range(max(len(thresholds), len(aversions))):
        left = " " * 35
        if i < len(thresholds):
            t = thresholds[i]
            left = (f"{t:>9g} {mean_of('fixed', t, 'risk'):>8.1f} {mean_of('fixed', t, 'cost'):>9.1f} "
                    f"{mean_of('fixed', t, 'orders'):>6.0f}")
        right = ""
        if i < len(aversions):
            a = aversions[i]
            s = savings[a]
            ref = f"{statistics.fmean(fixed_at[a]):>10.1f}" if fixed_at[a] else f"{'-':>10}"
            sav = f"{statistics.fmean(s):>7.1%}" if s else f"{'-':>7}"
            right = (f"{a:>7g} {mean_of('adaptive', a, 'risk'):>8.1f} {mean_of('adaptive', a, 'cost'):>9.1f} "
                     f"{mean_of('adaptive', a, 'orders'):>6.0f} {ref} {sav} {len(s):>2}")
        print(f"{left} | {right}")
    all_savings = [s for values in savings.values() for s in values]
    if all_savings:
        print(f"\nat the adaptive points: mean saving {statistics.fmean(all_savings):.1%}, "
              f"median {statistics.median(all_savings):.1%} over {len(all_savings)} points")
    # Both frontiers interpolated at the same risk levels (log-spaced over their common range),
    # so that the average does not depend on where the sweeps happen to land.
    grid_savings: list[float] = []
    per_seed: list[str] = []
    for seed in seeds:
        adaptive = [p for p in points if p.policy == "adaptive" and p.seed == seed]
        fixed = by_seed_fixed[seed]
        low = max(min(p.risk for p in fixed), min(p.risk for p in adaptive))
        high = min(max(p.risk for p in fixed), max(p.risk for p in adaptive))
        if not 0 < low < high:
            continue
        levels = [low * (high / low) ** (i / (GRID - 1)) for i in range(GRID)]
        seed_savings = []
        for level in levels:
            cost_fixed, cost_adaptive = fixed_cost_at(fixed, level), fixed_cost_at(adaptive, level)
            if cost_fixed and cost_adaptive:
                seed_savings.append(1.0 - cost_adaptive / cost_fixed)
        grid_savings += seed_savings
        per_seed.append(f"seed {seed}: {statistics.fmean(seed_savings):.1%} over risk {low:.0f}-{high:.0f}")
    if grid_savings:
        print(f"cost saving of adaptive at equal risk ({GRID} common risk levels per seed): "
              f"mean {statistics.fmean(grid_savings):.1%}, median {statistics.median(grid_savings):.1%} "
              f"(goal: >= 25%)\n  " + "; ".join(per_seed))
    else:
        print("\nthe frontiers do not overlap in risk: widen the sweeps")
    print(f"wall time {wall:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
