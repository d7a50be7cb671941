"""Fault figures of the bad input / operator / disk / security half of issue 5.

``bench/faults.py`` adds these rows to its table::

    from bench.faults_input import input_fault_rows
    rows += input_fault_rows(workdir / "input")

Standalone: ``python -m bench.faults_input [--workdir DIR]`` prints just this half. Each
scenario is the one the tests in ``tests/fault/test_{prices,malformed,operator,disk,secrets}.py``
assert on (see ``tests/fault/input_scenarios.py``); a scenario that raises becomes a failing row
instead of stopping the table. Runs in about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fault import input_scenarios as sc  # noqa: E402
from tests.fault.harness import Row, format_table, row  # noqa: E402


def _guarded(name: str, measure: Callable[[], list[Row]]) -> list[Row]:
    try:
        return measure()
    except Exception as exc:  # one broken scenario must not hide the others' figures
        traceback.print_exc(file=sys.stderr)
        return [row(name, "scenario failed", f"{type(exc).__name__}: {str(exc)[:70]}", "runs", False)]


def _disk_daemon_rows(workdir: Path, fault: str) -> list[Row]:
    result, restart = sc.ledger_fault_daemon(workdir, fault)
    rows = result.rows()
    if restart is not None:
        ok = restart.returncode == 1 and "read-only" in restart.stderr and not restart.traceback
        rows.append(row("ledger read only (daemon)", "restart on the read-only file", f"exit {restart.returncode}",
                        "exit 1, clear line", ok))
    return rows


def _corrupt_rows(workdir: Path) -> list[Row]:
    good = workdir / "good" / "ledger.sqlite"
    good.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(sc.write_ledger(good, 2000))
    data = good.read_bytes()
    return sc.corrupt_rows([sc.corrupt_ledger(workdir / name, name, data) for name in sorted(sc.CORRUPTIONS)])


def quiet_logs() -> None:
    """Only errors from the in-process engines (the daemons log to their own files)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR),
                        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    logging.getLogger("hedgerd").setLevel(logging.CRITICAL)


def input_fault_rows(workdir: Path) -> list[Row]:
    """Run every scenario of this half under ``workdir`` and return its figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    steps: list[tuple[str, Callable[[], list[Row]]]] = [
        ("stale price (sim venue)", lambda: asyncio.run(sc.stale_sim_venue(workdir / "stale")).rows()),
        ("wild prices (sim venue)", lambda: asyncio.run(sc.wild_prices(workdir / "wild")).rows()),
        ("stale / wild price (ccxt)", lambda: sc.ccxt_prices(workdir / "ccxt-prices").rows()),
        ("malformed messages", lambda: sc.malformed_messages(workdir / "malformed").rows()),
        ("operator mistakes", lambda: sc.config_matrix(workdir / "config").rows()),
        ("hedge instrument not listed", lambda: sc.missing_ccxt_instrument(workdir / "instrument").rows()),
        ("SIGHUP reload", lambda: sc.sighup_reloads(workdir / "sighup").rows()),
        *((f"ledger {fault} (in process)",
           lambda fault=fault: asyncio.run(sc.ledger_fault_in_process(workdir / f"ledger-{fault}", fault)).rows())
          for fault in sorted(sc.LEDGER_FAULTS)),
        *((f"ledger {fault} (daemon)", lambda fault=fault: _disk_daemon_rows(workdir / f"disk-{fault}", fault))
          for fault in sorted(sc.LEDGER_FAULTS)),
        ("corrupt ledger", lambda: _corrupt_rows(workdir / "corrupt")),
        ("canary credentials", lambda: sc.canary_credentials(workdir / "canary").rows()),
    ]
    for name, measure in steps:
        print(f"faults_input: {name} ...", file=sys.stderr, flush=True)
        rows += _guarded(name, measure)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="keep the scenarios' files here")
    args = parser.parse_args(argv)
    quiet_logs()
    with tempfile.TemporaryDirectory(prefix="hedgerd-faults-input-") as tmp:
        rows = input_fault_rows(args.workdir or Path(tmp))
    print(format_table(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
