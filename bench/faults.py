"""Fault soak: the long variant of tests/fault/, printing one table with every figure of issue 5.

Usage: python bench/faults.py [--only NAME,...] [--protocols binance,deribit] [--dir DIR] [--seed N]
                              [--restarts N] [--ws-seconds S] [--rounds N] [--kill-observe S] [--ha-kills N]

Scenarios (``--only`` takes these names); crash, ws and unknown run once per simulator protocol
(``--protocols``): Binance (spot inventory hedged on the USD-M perpetual) and Deribit
(config/deribit-sim.toml: options inventory hedged on BTC-PERPETUAL):
  crash    kill -9 of a live daemon (subprocess) at random points of its hedging cycle, --restarts
           times in a row on one ledger, against the venue simulator (Binance: a subprocess;
           Deribit: a thread of this process)
  ws       user-data and market-data streams closed every 3 s for --ws-seconds while fills flow
  unknown  hedge orders into accept-then-timeout (hang, drop), 5xx (executed or not), a latency
           spike, and the rate limits (Binance: 429 on the weight and the order-count limits;
           Deribit: 10028 on the credits and the matching credits, which also ends the websocket
           sessions) -- --rounds times each
  kill     SIGUSR1 and POST /kill while a hedge storm saturates the executor's rate limiter (Binance)
  ha       an active/standby pair on a real PostgreSQL (tests/pgserver.py): the leader killed -9
           --ha-kills times under client flow, then cut off the database (its lock connection
           terminated, the server stopped for a second), frozen (SIGSTOP) and with its ledger
           sessions terminated; takeover times, duplicates, who sent what

Every scenario is a function returning rows (scenario, figure, value, goal, ok); add one to
SCENARIOS to extend the table. Daemon logs of the in-process scenarios go to DIR/bench.log,
subprocess logs stay in DIR/<scenario>/. Exit code 1 if any figure misses its goal.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from tests.fault.harness import Row, format_table, row
from tests.fault.scenarios import (
    PROTOCOLS,
    crash_scenario,
    kill_under_load_scenario,
    unknown_outcome_scenario,
    ws_drop_scenario,
)

ScenarioFn = Callable[[argparse.Namespace, Path], list[Row]]


def _say(message: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def crash_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    for protocol in args.protocols:
        started = time.monotonic()
        result = crash_scenario(workdir / protocol, restarts=args.restarts, seed=args.seed, protocol=protocol,
                                say=_say)
        for note in result.notes:
            _say(f"crash ({protocol}): {note}")
        per_cycle = (time.monotonic() - started) / max(1, result.restarts + 1)
        rows += [*result.rows(), row(f"crash mid-hedge ({protocol})", "seconds per kill/restart cycle", per_cycle,
                                     "info", True)]
    return rows


def ws_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    # Deribit's client flow is on options: fewer fills per second, each moving the delta more
    rates = {"binance": 4.0, "deribit": 2.0}
    return [r for protocol in args.protocols for r in asyncio.run(ws_drop_scenario(
        workdir / protocol, seconds=args.ws_seconds, flow_rate=rates[protocol], seed=args.seed + 1,
        protocol=protocol, say=_say)).rows()]


def unknown_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    return [r for protocol in args.protocols for r in asyncio.run(unknown_outcome_scenario(
        workdir / protocol, rounds=args.rounds, seed=args.seed + 2, protocol=protocol, say=_say)).rows()]


def kill_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    return kill_under_load_scenario(workdir, observe=args.kill_observe, say=_say).rows()


def ha_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """Failover of an active/standby pair (tests/fault/ha_scenarios.py) on a throw-away PostgreSQL."""
    from tests.fault.ha_scenarios import cutoff_scenario, failover_scenario
    from tests.pgserver import PgServer

    with PgServer() as server:
        result = failover_scenario(workdir / "kill", server.create_database(), kills=args.ha_kills,
                                   seed=args.seed + 3, say=_say)
        for note in result.notes:
            _say(f"ha: {note}")
        _say(f"ha: takeovers {[round(t, 2) for t in result.takeovers]} s")
        rows = result.rows()
        rows += cutoff_scenario(workdir / "terminate", server.create_database(), how="terminate",
                                seed=args.seed + 4, say=_say).rows()

        def outage() -> None:
            server.stop()
            time.sleep(1.0)
            server.start()

        rows += cutoff_scenario(workdir / "server", server.create_database(), how="server", stop_server=outage,
                                seed=args.seed + 5, say=_say).rows()
        rows += cutoff_scenario(workdir / "freeze", server.create_database(), how="freeze",
                                seed=args.seed + 6, say=_say).rows()
        rows += cutoff_scenario(workdir / "ledger", server.create_database(), how="ledger",
                                seed=args.seed + 7, say=_say).rows()
    return rows


def input_rows(args: argparse.Namespace, workdir: Path) -> list[Row]:
    """Stale/wild prices, malformed messages, operator mistakes, disk and secrets (bench/faults_input.py)."""
    from bench.faults_input import input_fault_rows

    return input_fault_rows(workdir)


#: (name for --only, function). Append scenarios here; each returns its rows.
SCENARIOS: list[tuple[str, ScenarioFn]] = [
    ("crash", crash_rows),
    ("ws", ws_rows),
    ("unknown", unknown_rows),
    ("kill", kill_rows),
    ("input", input_rows),
    ("ha", ha_rows),
]


def _quiet_in_process_logs(path: Path) -> None:
    """Send the structlog output of in-process daemons to ``path`` (the table owns stdout)."""
    sink = path.open("a")
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=sink),
        cache_logger_on_first_use=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS),
                        help="simulator protocols for crash, ws and unknown (default: all)")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--restarts", type=int, default=20, help="crash: kill -9 + restart cycles")
    parser.add_argument("--ws-seconds", type=float, default=60.0, help="ws: seconds of stream drops")
    parser.add_argument("--rounds", type=int, default=3, help="unknown: rounds over every fault case")
    parser.add_argument("--ha-kills", type=int, default=10, help="ha: kill -9 + takeover cycles")
    parser.add_argument("--kill-observe", type=float, default=5.0, help="kill: seconds watched after each halt")
    args = parser.parse_args(argv)
    known = [name for name, _ in SCENARIOS]
    wanted = [n for n in args.only.split(",") if n] or known
    unknown = sorted(set(wanted) - set(known))
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {known}")
    args.protocols = [p for p in args.protocols.split(",") if p]
    if not args.protocols or set(args.protocols) - set(PROTOCOLS):
        parser.error(f"--protocols: choose from {list(PROTOCOLS)}")
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="hedgerd-faults-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _quiet_in_process_logs(workdir / "bench.log")
    print(f"fault soak in {workdir}", file=sys.stderr)
    rows: list[Row] = []
    for name, fn in SCENARIOS:
        if name not in wanted:
            continue
        _say(f"== {name}")
        started = time.monotonic()
        try:
            rows += fn(args, workdir / name)
        except Exception as exc:  # one broken scenario must not hide the others' figures
            traceback.print_exc(file=sys.stderr)
            rows.append(row(name, "scenario error", f"{type(exc).__name__}: {str(exc).splitlines()[0][:80]}",
                            "none", False))
        _say(f"{name}: {time.monotonic() - started:.1f} s")
    print(format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
