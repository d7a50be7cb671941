"""``hedgerd simulate`` on the command line: the runs, their figures as text or JSON, the plot.

Figures carry their units: sizes in the hedge symbol's base currency, money in its settlement
currency (BTC and USDT on the default config). A PnL standard deviation is over the whole run, so
its horizon (the ``--duration``) is printed with it. Several policies (``--policy fixed,adaptive``
or ``--compare``) run on the same seed and scenario, hence on the same price path and client flow;
they are printed side by side and drawn on one figure with shared scales.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from hedgerd.config import Settings
from hedgerd.errors import ConfigError
from hedgerd.sim.day import SimulationResult, run_simulation
from hedgerd.sim.scenario import load_scenario, parse_duration

PLOT_NEEDS = "--plot needs matplotlib: pip install 'hedgerd[plot]'"


class _ProgressBar:
    """A one-line progress bar on a terminal (stderr), redrawn at most 10 times a second."""

    def __init__(self, stream: TextIO, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.monotonic()
        self.drawn_at = 0.0

    def __call__(self, fraction: float) -> None:
        now = time.monotonic()
        if fraction < 1.0 and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        width = 30
        filled = round(fraction * width)
        self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {fraction:6.1%} "
                          f"{now - self.started:6.1f}s")
        if fraction >= 1.0:
            self.stream.write("\n")
        self.stream.flush()


def horizon(seconds: float) -> str:
    """A run's duration as people say it: ``24 h``, ``90 min``, ``45 s``."""
    if seconds >= 3600:
        return f"{seconds / 3600:.4g} h"
    if seconds >= 60:
        return f"{seconds / 60:.4g} min"
    return f"{seconds:.4g} s"


def _decomposed(parts: dict[str, float], q: str) -> str:
    return (f"{parts['total']:,.2f} {q}  (fee {parts['fee']:,.2f} + spread {parts['spread']:,.2f} + slippage "
            f"{parts['slippage']:,.2f} + funding {parts['funding']:,.2f}; against the decision quote)")


def _part(kind: str) -> Callable[[SimulationResult], str]:
    return lambda r: f"{r.cost_decomposition[kind]:,.2f}"


def format_result(result: SimulationResult) -> str:
    """A human-readable table of one run's figures, each with its unit."""
    q, b = result.quote_currency, result.base_currency
    rows = [
        ("scenario", result.scenario),
        ("policy", result.policy),
        ("seed", str(result.seed)),
        ("simulated", f"{horizon(result.duration_s)} in {result.wall_seconds:.1f} s"),
        ("hedging cost", f"{result.hedging_cost:,.2f} {q}  (fees {result.fees:,.2f} + spread "
                         f"{result.spread_paid:,.2f} + order costs {result.order_costs:,.2f})"),
        ("cost as the daemon sees it", _decomposed(result.cost_decomposition, q)),
        ("avg |net delta notional|", f"{result.avg_abs_net_delta_notional:,.2f} {q}"),
        (f"hedged PnL std over {horizon(result.duration_s)}",
         f"{result.hedged_pnl_std:,.2f} {q}  (unhedged {result.unhedged_pnl_std:,.2f} {q})"),
        ("hedge orders", f"{result.hedge_orders}  (volume {result.hedged_volume:.4f} {b})"),
        ("max |net delta|", f"{result.max_abs_net_delta:.4f} {b}"),
        ("client fills", str(result.client_fills)),
        ("trading state", result.trading_state),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def format_comparison(results: Sequence[SimulationResult]) -> str:
    """Several runs of one scenario and seed side by side, one column per policy."""
    first = results[0]
    q, b, over = first.quote_currency, first.base_currency, horizon(first.duration_s)
    figures: list[tuple[str, Callable[[SimulationResult], str]]] = [
        (f"hedging cost ({q})", lambda r: f"{r.hedging_cost:,.2f}"),
        (f"  fees ({q})", lambda r: f"{r.fees:,.2f}"),
        (f"  spread paid ({q})", lambda r: f"{r.spread_paid:,.2f}"),
        (f"  order costs ({q})", lambda r: f"{r.order_costs:,.2f}"),
        (f"daemon's cost total ({q})", lambda r: f"{r.cost_decomposition['total']:,.2f}"),
        *((f"  {kind} ({q})", _part(kind)) for kind in ("fee", "spread", "slippage", "funding")),
        (f"avg |net delta notional| ({q})", lambda r: f"{r.avg_abs_net_delta_notional:,.2f}"),
        (f"hedged PnL std over {over} ({q})", lambda r: f"{r.hedged_pnl_std:,.2f}"),
        (f"unhedged PnL std over {over} ({q})", lambda r: f"{r.unhedged_pnl_std:,.2f}"),
        ("hedge orders", lambda r: str(r.hedge_orders)),
        (f"hedged volume ({b})", lambda r: f"{r.hedged_volume:.4f}"),
        (f"max |net delta| ({b})", lambda r: f"{r.max_abs_net_delta:.4f}"),
        ("client fills", lambda r: str(r.client_fills)),
        ("trading state", lambda r: r.trading_state),
        ("wall time (s)", lambda r: f"{r.wall_seconds:.1f}"),
    ]
    table = [("", [r.policy for r in results])] + [(name, [value(r) for r in results]) for name, value in figures]
    label_width = max(len(name) for name, _ in table)
    widths = [max(len(cells[i]) for _, cells in table) for i in range(len(results))]
    lines = [f"scenario {first.scenario}, seed {first.seed}, {over} simulated (same price path and client flow "
             "for every policy)"]
    for name, cells in table:
        lines.append(f"{name:<{label_width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
    return "\n".join(lines)


def _import_pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend; RuntimeError saying how to install it."""
    try:  # optional dependency (extra "plot"), imported dynamically: no stubs needed
        matplotlib: Any = importlib.import_module("matplotlib")
        matplotlib.use("Agg")
        return importlib.import_module("matplotlib.pyplot")
    except ImportError as exc:
        raise RuntimeError(PLOT_NEEDS) from exc


def write_plot(results: Sequence[SimulationResult], path: Path) -> None:
    """One PNG for one or several runs of a scenario and seed: the price path, then each policy's
    net delta against its band (one panel each, the same scale), then every policy's
    cumulative hedging cost on one panel, all over the same simulated hours.

    Needs matplotlib (``pip install 'hedgerd[plot]'``); raises RuntimeError without it.
    """
    plt = _import_pyplot()
    first = results[0]
    q, b = first.quote_currency, first.base_currency
    count = len(results)
    fig, axes = plt.subplots(count + 2, 1, sharex=True, figsize=(11, 2.3 * (count + 2)),
                             gridspec_kw={"height_ratios": [1.0] + [1.2] * count + [1.0]})
    price_ax, delta_axes, cost_ax = axes[0], axes[1:-1], axes[-1]
    price_ax.plot(first.series["hours"], first.series["mid"], lw=0.7, color="black")
    price_ax.set_ylabel(f"mid ({q})")
    price_ax.set_title("mid of the hedge instrument (the adaptive band narrows when it moves faster, "
                       "widens with more client flow)", loc="left", fontsize=9)
    # One symmetric scale for every net-delta panel, so their excursions compare at a glance.
    extent = max((abs(v) for r in results for key in ("net_delta", "band") for v in r.series[key]
                  if not math.isnan(v)), default=0.0) * 1.1 or 1.0
    for index, (ax, result) in enumerate(zip(delta_axes, results, strict=True)):
        series = result.series
        ax.plot(series["hours"], series["net_delta"], lw=0.7, color=f"C{index}", label=f"net delta, {result.policy}")
        ax.plot(series["hours"], series["band"], lw=0.8, color="grey", label="band trigger")
        ax.plot(series["hours"], [-v for v in series["band"]], lw=0.8, color="grey")
        ax.axhline(0.0, lw=0.4, color="black")
        ax.set_ylim(-extent, extent)
        ax.set_ylabel(f"net delta ({b})")
        ax.legend(loc="upper left", fontsize=8)
    for index, result in enumerate(results):
        cost_ax.plot(result.series["hours"], result.series["cost"], lw=0.9, color=f"C{index}",
                     label=f"{result.policy}: {result.hedging_cost:,.0f} {q}, {result.hedge_orders} orders")
    cost_ax.set_ylabel(f"cumulative hedging\ncost ({q})")
    cost_ax.set_xlabel("simulated hours")
    cost_ax.legend(loc="upper left", fontsize=8)
    policies = " vs ".join(r.policy for r in results)
    fig.suptitle(f"{first.scenario}, seed {first.seed}, {horizon(first.duration_s)}: {policies}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_cli(settings: Settings, *, scenario_file: Path | None, seed: int, duration: str,
            policies: Sequence[str | None], as_json: bool, plot: Path | None) -> int:
    """``hedgerd simulate``: returns the exit code (0 ok, 1 failure, 2 bad arguments/config).

    ``policies``: the policies to run, in order (``[None]``: the config's ``policy.name``).
    """
    try:
        seconds = parse_duration(duration)
        scenario = load_scenario(scenario_file)
    except ValueError as exc:
        print(f"hedgerd: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"hedgerd: config error at {exc.path}: {exc.reason}", file=sys.stderr)
        return 2
    if plot is not None:
        try:
            _import_pyplot()
        except RuntimeError as exc:
            print(f"hedgerd: {exc}", file=sys.stderr)
            return 2
    results: list[SimulationResult] = []
    for policy in policies:
        label = f"simulating {duration}" + (f" ({policy})" if policy is not None else "")
        progress = _ProgressBar(sys.stderr, label) if sys.stderr.isatty() else None
        try:
            results.append(run_simulation(settings, scenario, seed=seed, duration=seconds, policy=policy,
                                          progress=progress))
        except ConfigError as exc:
            print(f"hedgerd: config error at {exc.path}: {exc.reason}", file=sys.stderr)
            return 2
    if plot is not None:
        write_plot(results, plot)
    if as_json:
        figures = [r.figures() for r in results]
        print(json.dumps(figures[0] if len(figures) == 1 else figures, indent=2))
    else:
        print(format_result(results[0]) if len(results) == 1 else format_comparison(results))
    return 0
