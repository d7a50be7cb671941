"""Cost-vs-risk frontiers of the fixed threshold against the adaptive and gamma bands, on simulated days.

Usage: python bench/frontier.py [--seeds 1,2,3] [--duration 4h] [--jobs 2] [--scenario FILE|NAME]
                                [--config FILE] [--thresholds 0.03,...] [--risk-aversions 3,...]
                                [--policies fixed,adaptive,gamma] [--risk pnl_std|net_delta] [--passive]
                                [--points FILE]

For every seed, runs ``hedgerd simulate`` (the real engine on virtual time, see
:mod:`hedgerd.sim.day`) once per fixed threshold and, for every other policy (``adaptive``, and
``gamma``: the adaptive band widened by the book's gamma), once per risk aversion, on the same
scenario (default: the built-in day, compressed into ``--duration``: scenario times are
fractions of the run). Risk is the standard deviation of the hedged PnL (``--risk pnl_std``) or
the time-averaged ``|net delta|`` notional (``--risk net_delta``, issue 20's measure); cost the
hedging cost (fees + spread + fixed order costs). The options book of issue 20::

    python bench/frontier.py --config config/paper-options.toml --scenario options-book \
        --policies fixed,adaptive,gamma --risk net_delta --seeds 1,2,3,4,5 --duration 24h \
        --thresholds 0.25,0.5,1,1.5,2.5,4,6 --risk-aversions 1,0.3,0.1,0.03,0.01,0.003,0.001

Printed per candidate policy: both frontiers side by side (means over seeds); for every candidate
point whose risk lies inside the fixed frontier of the same seed, the fixed policy's cost at that
same risk (interpolated log-log between the two neighbouring thresholds) and the saving
``1 - candidate cost / fixed cost``. Then the two headline readings the goal allows, each
computed per seed on both frontiers interpolated at the same 8 levels, log-spaced over the
range the two frontiers have in common, and averaged over levels and seeds:

* cost saving at equal risk: at each risk level, ``1 - candidate cost / fixed cost``;
* risk reduction at equal cost: at each cost level, ``1 - candidate risk / fixed risk``.

With ``--passive`` a third sweep runs: the adaptive band with ``executor.order_type = "passive"``
(post-only children at the touch, docs/passive.md), and a last reading compares it with the fixed
threshold on taker (market) orders at equal time-averaged ``|net delta x mid|`` on the total the
desk pays: execution cost plus the funding the hedge perpetual paid (``cost_decomposition``;
received funding counts negative). :func:`passive_split` reads it per seed at levels over the
exposure range all three sweeps share and splits it additively, in points of the fixed policy's
total: the band (fixed minus adaptive execution cost, both taker), the passive fills (adaptive
taker minus adaptive passive execution cost) and funding (fixed minus passive funding; the
funding rate path is the seed's, the same for every policy, so this is the positions held).

Interpolation (:func:`loglog_interpolate`) is the same for both: sweep points sorted along the
level's axis, the first pair of neighbours that brackets the level, a straight line between them
in log-log; no hull is taken, so a sweep that is not monotone is read on its first bracketing
segment (the script reports such sweeps). Outside a frontier's range there is no value.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import multiprocessing
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hedgerd.config import Settings, load_settings
from hedgerd.models import OrderType
from hedgerd.sim.day import run_simulation
from hedgerd.sim.scenario import load_scenario, parse_duration

DEFAULT_THRESHOLDS = (0.03, 0.06, 0.1, 0.15, 0.25, 0.4, 0.6, 0.9)
DEFAULT_RISK_AVERSIONS = (3.0, 1.0, 0.3, 0.1, 0.03, 0.01, 0.003)
GRID = 8
RISK_MEASURES = {"pnl_std": "std of hedged PnL", "net_delta": "time-averaged |net delta| notional"}
GOALS = {("adaptive", "pnl_std"): "(goal: >= 25%)", ("gamma", "net_delta"): "(issue 20 goal: >= 20%)"}


@dataclass(frozen=True)
class Point:
    policy: str
    parameter: float
    seed: int
    risk: float
    cost: float
    orders: int
    exposure: float = 0.0  # time-averaged |net delta x mid|
    funding: float = 0.0  # funding the hedge position paid (received: negative); not in ``cost``


PASSIVE = "adaptive-passive"


Job = tuple[str, float, int, float, Path | None, Path | None, str]


def _run(job: Job) -> Point:
    policy, parameter, seed, duration, config, scenario_file, measure = job
    settings = load_settings(config) if config is not None else Settings()
    if policy == PASSIVE:
        executor = settings.executor.model_copy(update={"order_type": OrderType.PASSIVE})
        settings = settings.model_copy(update={"executor": executor})
    if policy == "fixed":
        hedge = settings.hedges[0].model_copy(update={"threshold": Decimal(str(parameter))})
        settings = settings.model_copy(update={"hedges": [hedge]})
    else:
        adaptive = settings.policy.adaptive.model_copy(update={"risk_aversion": parameter})
        settings = settings.model_copy(update={"policy": settings.policy.model_copy(update={"adaptive": adaptive})})
    result = run_simulation(settings, load_scenario(scenario_file), seed=seed, duration=duration,
                            policy="adaptive" if policy == PASSIVE else policy)
    risk = result.hedged_pnl_std if measure == "pnl_std" else result.avg_abs_net_delta_notional
    return Point(policy, parameter, seed, risk, result.hedging_cost, result.hedge_orders,
                 result.avg_abs_net_delta_notional, result.cost_decomposition.get("funding", 0.0))


def loglog_interpolate(curve: Sequence[tuple[float, float]], x: float) -> float | None:
    """``y`` at ``x`` on a curve of sweep points ``(x, y)``, interpolated log-log.

    Points are sorted by ``x``; the first pair of neighbours with ``x`` between them (and positive
    values) is used; if they share the same ``x``, the lower ``y``. None outside the curve's range.
    """
    ordered = sorted(curve, key=lambda point: point[0])
    for (x_low, y_low), (x_high, y_high) in itertools.pairwise(ordered):
        if x_low <= x <= x_high and x_low > 0 and y_low > 0 and y_high > 0:
            if x_high == x_low:
                return min(y_low, y_high)
            weight = (math.log(x) - math.log(x_low)) / (math.log(x_high) - math.log(x_low))
            return math.exp(math.log(y_low) + weight * (math.log(y_high) - math.log(y_low)))
    return None


def cost_at_risk(frontier: Sequence[Point], risk: float) -> float | None:
    """A frontier's cost at ``risk``, interpolated log-log; None outside its range."""
    return loglog_interpolate([(p.risk, p.cost) for p in frontier], risk)


def risk_at_cost(frontier: Sequence[Point], cost: float) -> float | None:
    """A frontier's risk at ``cost``, interpolated log-log; None outside its range."""
    return loglog_interpolate([(p.cost, p.risk) for p in frontier], cost)


@dataclass(frozen=True)
class LevelGains:
    """Gains of one curve over a reference at common log-spaced levels of ``x``."""

    low: float
    high: float
    gains: list[float]  # 1 - y / reference y, one per level where both curves have a value


def gains_at_common_levels(reference: Sequence[tuple[float, float]], candidate: Sequence[tuple[float, float]],
                           levels: int = GRID) -> LevelGains | None:
    """``1 - candidate y / reference y`` at ``levels`` values of ``x`` log-spaced over the common range.

    Both curves are ``(x, y)`` sweep points read with :func:`loglog_interpolate`; None if their
    ``x`` ranges do not overlap (or the overlap is not positive).
    """
    low = max(min(x for x, _ in reference), min(x for x, _ in candidate))
    high = min(max(x for x, _ in reference), max(x for x, _ in candidate))
    if not 0 < low < high:
        return None
    gains = []
    for i in range(levels):
        level = low * (high / low) ** (i / (levels - 1))
        y_reference, y_candidate = loglog_interpolate(reference, level), loglog_interpolate(candidate, level)
        if y_reference and y_candidate:
            gains.append(1.0 - y_candidate / y_reference)
    return LevelGains(low, high, gains)


def non_monotone_pairs(curve: Sequence[tuple[float, float]]) -> int:
    """Pairs of neighbouring sweep points (sorted by ``x``) where ``y`` rises as ``x`` grows."""
    ordered = sorted(curve, key=lambda point: point[0])
    return sum(1 for (_, y_low), (_, y_high) in itertools.pairwise(ordered) if y_high > y_low)


def linear_interpolate_logx(curve: Sequence[tuple[float, float]], x: float) -> float | None:
    """``y`` at ``x`` on sweep points ``(x, y)``, linear in ``y`` against ``log x`` (``y`` may be
    zero or negative, as funding is); the same bracketing rule as :func:`loglog_interpolate`."""
    ordered = sorted(curve, key=lambda point: point[0])
    for (x_low, y_low), (x_high, y_high) in itertools.pairwise(ordered):
        if x_low <= x <= x_high and x_low > 0:
            if x_high == x_low:
                return min(y_low, y_high)
            weight = (math.log(x) - math.log(x_low)) / (math.log(x_high) - math.log(x_low))
            return y_low + weight * (y_high - y_low)
    return None


@dataclass(frozen=True)
class PassiveSplit:
    """Adaptive + passive against fixed + taker at common exposure levels of one seed, each value
    a fraction of the fixed policy's total (execution + funding) at that level; ``total`` is the
    sum of the three parts, ``execution_only`` the saving with funding left out of both sides."""

    low: float
    high: float
    total: list[float]
    band: list[float]
    passive: list[float]
    funding: list[float]
    execution_only: list[float]


def passive_split(fixed: Sequence[Point], adaptive: Sequence[Point], passive: Sequence[Point],
                  levels: int = GRID) -> PassiveSplit | None:
    """Saving of ``passive`` over ``fixed`` at equal exposure, funding included, and its parts.

    At ``levels`` exposures log-spaced over the range all three sweeps share: execution costs
    ``X`` read log-log, funding ``F`` linear in log exposure; with ``T = X_fixed + F_fixed``,
    band ``(X_fixed - X_adaptive) / T``, passive fills ``(X_adaptive - X_passive) / T``, funding
    ``(F_fixed - F_passive) / T``, total their sum ``= 1 - (X_passive + F_passive) / T``. Levels
    where a value is missing or ``T <= 0`` are skipped. None if the ranges do not overlap.
    """
    sweeps = [fixed, adaptive, passive]
    if not all(sweeps):
        return None
    low = max(min(p.exposure for p in sweep) for sweep in sweeps)
    high = min(max(p.exposure for p in sweep) for sweep in sweeps)
    if not 0 < low < high:
        return None
    split = PassiveSplit(low, high, [], [], [], [], [])
    for i in range(levels):
        level = low * (high / low) ** (i / (levels - 1))
        x = [loglog_interpolate([(p.exposure, p.cost) for p in sweep], level) for sweep in sweeps]
        f = [linear_interpolate_logx([(p.exposure, p.funding) for p in sweep], level) for sweep in sweeps]
        x_fixed, x_adaptive, x_passive = x
        f_fixed, f_passive = f[0], f[2]
        if x_fixed is None or x_adaptive is None or x_passive is None or f_fixed is None or f_passive is None:
            continue
        total_fixed = x_fixed + f_fixed
        if total_fixed <= 0:
            continue
        split.band.append((x_fixed - x_adaptive) / total_fixed)
        split.passive.append((x_adaptive - x_passive) / total_fixed)
        split.funding.append((f_fixed - f_passive) / total_fixed)
        split.total.append(1.0 - (x_passive + f_passive) / total_fixed)
        split.execution_only.append(1.0 - x_passive / x_fixed)
    return split


def passive_reading(points: Sequence[Point], seeds: Sequence[int], aversions: Sequence[float]) -> str:
    """The passive sweep against the fixed threshold on taker orders at equal time-averaged
    exposure, funding included: total saving and its three parts (:func:`passive_split`)."""
    lines = [f"\n{'policy':>16} {'param':>7} {'exposure':>9} {'cost':>9} {'funding':>8} {'orders':>6}   (means)"]
    for policy in ("fixed", "adaptive", PASSIVE):
        for parameter in sorted({p.parameter for p in points if p.policy == policy}):
            sweep = [p for p in points if p.policy == policy and p.parameter == parameter]
            lines.append(f"{policy:>16} {parameter:>7g} {statistics.fmean(p.exposure for p in sweep):>9.0f} "
                         f"{statistics.fmean(p.cost for p in sweep):>9.1f} "
                         f"{statistics.fmean(p.funding for p in sweep):>8.1f} "
                         f"{statistics.fmean(p.orders for p in sweep):>6.0f}")
    pooled: dict[str, list[float]] = {"total": [], "band": [], "passive": [], "funding": [], "execution_only": []}
    per_seed: list[str] = []
    for seed in seeds:
        sweeps = [[p for p in points if p.policy == policy and p.seed == seed]
                  for policy in ("fixed", "adaptive", PASSIVE)]
        split = passive_split(*sweeps)
        if split is None or not split.total:
            per_seed.append(f"seed {seed}: no common exposure range")
            continue
        for key, values in pooled.items():
            values += getattr(split, key)
        per_seed.append(f"seed {seed}: {statistics.fmean(split.total):.1%} over exposure "
                        f"{split.low:.0f}-{split.high:.0f}")
    if not pooled["total"]:
        return "\n".join(lines) + "\npassive: the three sweeps do not overlap in exposure: widen them"
    mean = {key: statistics.fmean(values) for key, values in pooled.items()}
    lines.append(f"cost saving of adaptive + passive over fixed + taker at equal time-averaged |net delta x mid|, "
                 f"funding included ({GRID} common levels per seed): mean {mean['total']:.1%}, "
                 f"median {statistics.median(pooled['total']):.1%} (goal: >= 40%)\n  " + "; ".join(per_seed))
    lines.append(f"  of which (points of the fixed policy's total): the band {mean['band']:.1%}, the passive fills "
                 f"{mean['passive']:.1%}, funding {mean['funding']:.1%} "
                 f"(fixed minus passive funding: the positions held)")
    lines.append(f"  the same levels with funding left out of both: {mean['execution_only']:.1%}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--duration", default="4h", help="simulated time per run (the scenario is scaled to it)")
    parser.add_argument("--jobs", type=int, default=2, help="parallel simulations")
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--scenario", type=Path, default=None, help="a scenario file or a built-in name")
    parser.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)))
    parser.add_argument("--risk-aversions", default=",".join(map(str, DEFAULT_RISK_AVERSIONS)))
    parser.add_argument("--policies", default="fixed,adaptive", help="fixed and the candidates compared to it")
    parser.add_argument("--risk", choices=sorted(RISK_MEASURES), default="pnl_std")
    parser.add_argument("--policy-aversions", default="", help=(
        "risk aversions of one candidate instead of --risk-aversions, e.g. 'adaptive=1,0.01'; ';' between policies"))
    parser.add_argument("--passive", action="store_true",
                        help="also sweep the adaptive band on passive orders and compare it with the fixed "
                             "threshold on taker orders at equal time-averaged |net delta|, funding included "
                             "(adds adaptive to --policies if missing)")
    parser.add_argument("--points", type=Path, default=None,
                        help="also write every run's point as JSON lines to this file (to read again later)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    duration = parse_duration(args.duration)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    candidates = [p for p in args.policies.split(",") if p != "fixed"]
    if args.passive and "adaptive" not in candidates:
        candidates.append("adaptive")  # the passive reading splits its saving against adaptive on taker orders
    aversions_of = {policy: [float(a) for a in args.risk_aversions.split(",")] for policy in candidates}
    for entry in filter(None, args.policy_aversions.split(";")):
        policy, _, values = entry.partition("=")
        aversions_of[policy.strip()] = [float(a) for a in values.split(",")]
    jobs: list[Job] = [("fixed", t, seed, duration, args.config, args.scenario, args.risk)
                       for seed in seeds for t in thresholds]
    jobs += [(policy, a, seed, duration, args.config, args.scenario, args.risk)
             for policy in candidates for seed in seeds for a in aversions_of[policy]]
    if args.passive:
        jobs += [(PASSIVE, a, seed, duration, args.config, args.scenario, args.risk)
                 for seed in seeds for a in aversions_of["adaptive"]]
    started = time.perf_counter()
    print(f"{len(jobs)} simulations of {args.duration} each, seeds {seeds}, {args.jobs} in parallel ...",
          file=sys.stderr)
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        points = pool.map(_run, jobs, chunksize=1)
    wall = time.perf_counter() - started
    if args.points is not None:
        args.points.write_text("".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in points))
    for candidate in candidates:
        report(points, candidate, seeds, thresholds, aversions_of[candidate], args.risk, args.duration)
    if args.passive:
        print(passive_reading(points, seeds, aversions_of["adaptive"]))
    print(f"wall time {wall:.0f} s", file=sys.stderr)
    return 0


def report(points: Sequence[Point], candidate: str, seeds: Sequence[int], thresholds: Sequence[float],
           aversions: Sequence[float], measure: str, duration: str) -> None:
    """Print the fixed frontier against ``candidate``'s and the two headline readings."""
    by_seed_fixed = {seed: [p for p in points if p.policy == "fixed" and p.seed == seed] for seed in seeds}

    def mean_of(policy: str, parameter: float, attr: str) -> float:
        return statistics.fmean(getattr(p, attr) for p in points if p.policy == policy and p.parameter == parameter)

    savings: dict[float, list[float]] = {a: [] for a in aversions}
    fixed_at: dict[float, list[float]] = {a: [] for a in aversions}
    for p in points:
        if p.policy != candidate:
            continue
        reference = cost_at_risk(by_seed_fixed[p.seed], p.risk)
        if reference is not None:
            savings[p.parameter].append(1.0 - p.cost / reference)
            fixed_at[p.parameter].append(reference)

    print(f"\nfixed vs {candidate}: frontiers, means over seeds {list(seeds)}; risk = {RISK_MEASURES[measure]}, "
          f"cost = fees + spread + order costs (quote), {duration} simulated per run")
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
            right = (f"{a:>7g} {mean_of(candidate, a, 'risk'):>8.1f} {mean_of(candidate, a, 'cost'):>9.1f} "
                     f"{mean_of(candidate, a, 'orders'):>6.0f} {ref} {sav} {len(s):>2}")
        print(f"{left} | {right}")
    all_savings = [s for values in savings.values() for s in values]
    point_reductions = []
    for p in points:
        fixed_risk = risk_at_cost(by_seed_fixed[p.seed], p.cost) if p.policy == candidate else None
        if fixed_risk is not None:
            point_reductions.append(1.0 - p.risk / fixed_risk)
    if all_savings:
        print(f"\nat the {candidate} points: mean saving {statistics.fmean(all_savings):.1%}, "
              f"median {statistics.median(all_savings):.1%} over {len(all_savings)} points")
    if point_reductions:
        print(f"at the {candidate} points: mean risk reduction at equal cost "
              f"{statistics.fmean(point_reductions):.1%}, median {statistics.median(point_reductions):.1%} "
              f"over {len(point_reductions)} points")
    # Both frontiers interpolated at the same levels (log-spaced over their common range), so
    # that the average does not depend on where the sweeps happen to land: risk levels for the
    # cost saving, cost levels for the risk reduction.
    goal = GOALS.get((candidate, measure), "")
    readings = {"risk": (f"cost saving of {candidate} at equal risk", "risk", goal),
                "cost": (f"risk reduction of {candidate} at equal cost", "cost", "(the goal's other reading)")}
    not_monotone: list[str] = []
    for axis, (title, unit, note) in readings.items():
        pooled: list[float] = []
        per_seed: list[str] = []
        for seed in seeds:
            curves = {}
            for policy in ("fixed", candidate):
                sweep = [p for p in points if p.policy == policy and p.seed == seed]
                curves[policy] = ([(p.risk, p.cost) for p in sweep] if axis == "risk"
                                  else [(p.cost, p.risk) for p in sweep])
                if axis == "risk" and (bad := non_monotone_pairs(curves[policy])):
                    not_monotone.append(f"seed {seed} {policy} ({bad})")
            reading = gains_at_common_levels(curves["fixed"], curves[candidate])
            if reading is None or not reading.gains:
                per_seed.append(f"seed {seed}: no common {unit} range")
                continue
            pooled += reading.gains
            per_seed.append(f"seed {seed}: {statistics.fmean(reading.gains):.1%} over {unit} "
                            f"{reading.low:.0f}-{reading.high:.0f}")
        if pooled:
            print(f"{title} ({GRID} common {unit} levels per seed): mean {statistics.fmean(pooled):.1%}, "
                  f"median {statistics.median(pooled):.1%} {note}\n  " + "; ".join(per_seed))
        else:
            print(f"\nthe frontiers do not overlap in {unit}: widen the sweeps")
    if not_monotone:
        print("sweeps where cost does not fall as risk grows (neighbouring pairs; read on their first "
              "bracketing segment): " + ", ".join(not_monotone))


if __name__ == "__main__":
    sys.exit(main())
