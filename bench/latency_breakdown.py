"""Where one hedge's time goes: the path of bench/latency.py taken apart, at one rate.

Usage: python bench/latency_breakdown.py [--rate 2000] [--seconds 5] [--fills-per-order 1] [--dir DIR]

Runs :func:`latency.measure` twice (stream delivery, asyncio, startup heap frozen): once with a
``time.perf_counter`` read at each step of the path, once with a wrapper around the ledger's
SQLite connection that times every statement and every transaction (too heavy to share a run
with the path's marks: it makes the loop busier and the steps longer). It prints

1. the critical path, fill delivered -> order handed to the venue client, step by step (p50, p90
   and p99 of each step in us, over the orders whose steps were all seen; each step is its own
   distribution, so the percentiles of the steps do not add up to the total's);
2. each kind of ledger transaction (fills, intents, order states in it): how many, and the
   event-loop thread's CPU time each took (us);
3. each SQL statement: how many, p50 and mean wall time (us), and its share of the loop's CPU;
4. WAL frames written per transaction, while the log was still growing (a frame is one page,
   written with two ``pwrite`` calls).

The instrumentation costs a few us per step; the latency figures it prints next to each part
are for orientation only (bench/latency.py gives the clean ones).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from latency import WARMUP, StubVenue, measure, quantile_us

from hedgerd import engine as engine_module
from hedgerd import executor as executor_module
from hedgerd.ledger import journal as journal_module
from hedgerd.ledger import ledger as ledger_module
from hedgerd.ledger import schema as schema_module
from hedgerd.ledger.committer import LoopCommitter

# The marks, in path order: (class, method, mark taken before the call, mark taken after it).
# The first mark of an order is the delivery; the last one is the hand-off (the venue stub).
_MARKS: tuple[tuple[type, str, str | None, str | None], ...] = (
    (engine_module.HedgeEngine, "on_fills", "delivered", None),
    (LoopCommitter, "_flush", "flush starts", None),
    (journal_module.JournalWriter, "_insert_fills", None, "fill inserted"),
    (LoopCommitter, "_hook_turn", "risk pass starts", "risk pass done"),
    (ledger_module.InventoryLedger, "prepare_intent", "intent asked", "intent queued"),
    (ledger_module.InventoryLedger, "_apply", "committed", "callers woken"),
)
_PATH = ("delivered", "flush starts", "fill inserted", "risk pass starts", "intent asked", "intent queued",
         "risk pass done", "committed", "callers woken", "order task runs", "handed off")


class _TimedConnection:
    """A sqlite3 connection whose execute/executemany are timed (wall and thread CPU)."""

    def __init__(self, conn: Any, wall: dict[str, list[float]], cpu: dict[str, float]) -> None:
        self._conn = conn
        self._wall = wall
        self._cpu = cpu

    def _timed(self, label: str, call: Callable[[], Any]) -> Any:
        started, cpu_started = time.perf_counter(), time.thread_time()
        try:
            return call()
        finally:
            self._wall[label].append(time.perf_counter() - started)
            self._cpu[label] += time.thread_time() - cpu_started

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(_statement_label(sql), lambda: self._conn.execute(sql, *args))

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(_statement_label(sql) + " (many)", lambda: self._conn.executemany(sql, *args))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _statement_label(sql: str) -> str:
    words = sql.split()
    if words[0] in ("BEGIN", "COMMIT", "ROLLBACK"):
        return words[0]
    if words[0] == "INSERT":
        table = words[words.index("INTO") + 1]
        return f"INSERT {table}" + (" (upsert)" if "CONFLICT" in sql else "")
    if words[0] == "UPDATE":
        return f"UPDATE {words[1]}"
    return " ".join(words[:4])


def _transaction_label(fills: list[Any], others: list[Any], outcome: Any) -> str:
    kinds = collections.Counter(type(op[0]).__name__.lstrip("_").removesuffix("Request").lower() for op in others)
    # intents the commit hook joined to the transaction are counted in its results, not in others
    joined = len(outcome.results) - len(fills) - len(others)
    if joined > 0:
        kinds["intent"] += joined
    parts = [f"{len(fills)} fill{'s' if len(fills) != 1 else ''}"] if fills else []
    parts += [f"{n} {kind}{'s' if n != 1 else ''}" for kind, n in sorted(kinds.items())]
    return " + ".join(parts) or "empty"


@contextmanager
def _patches() -> Iterator[Callable[[type, str, Any], None]]:
    """Yield ``patch(cls, name, replacement)`` for the duration of one run; every patch is
    undone afterwards."""
    saved: list[tuple[type, str, Any]] = []

    def patch(cls: type, name: str, replacement: Any) -> None:
        saved.append((cls, name, cls.__dict__[name]))
        setattr(cls, name, replacement)

    try:
        yield patch
    finally:
        for cls, name, original in reversed(saved):
            setattr(cls, name, original)


def _mark_path(patch: Callable[[type, str, Any], None], marks: dict[str, float],
               orders: list[dict[str, float]]) -> None:
    """Take a mark at each step of the path; an order's marks go to ``orders`` at its hand-off."""

    def marking(original: Any, before: str | None, after: str | None) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before == "delivered":
                marks.clear()  # a new delivery: marks of fills that did not lead to an order are dropped
            if before is not None:
                marks[before] = time.perf_counter()
            result = original(*args, **kwargs)
            if after is not None:
                marks[after] = time.perf_counter()
            return result
        return wrapper

    for cls, name, before, after in _MARKS:
        patch(cls, name, marking(cls.__dict__[name], before, after))

    original_execute = executor_module.HedgeExecutor.__dict__["_execute"]

    async def execute(self: Any, *args: Any, **kwargs: Any) -> Any:
        marks["order task runs"] = time.perf_counter()
        return await original_execute(self, *args, **kwargs)

    patch(executor_module.HedgeExecutor, "_execute", execute)

    original_create = StubVenue.__dict__["create_order"]

    async def create_order(self: Any, *args: Any, **kwargs: Any) -> Any:
        marks["handed off"] = time.perf_counter()
        if all(step in marks for step in _PATH):
            orders.append(dict(marks))
        marks.clear()
        return await original_create(self, *args, **kwargs)

    patch(StubVenue, "create_order", create_order)


def _time_transactions(patch: Callable[[type, str, Any], None], wall: dict[str, list[float]],
                       cpu: dict[str, float], transactions: dict[str, list[float]],
                       frames: dict[str, list[int]]) -> None:
    """Time every transaction and SQL statement of the ledger, and count the WAL frames each
    transaction appended."""
    original_commit = journal_module.JournalWriter.__dict__["commit"]

    def commit(self: Any, fills: list[Any], others: list[Any], outcome: Any, in_transaction: Any = None) -> None:
        conn = self._conn
        wal = f"{self.storage.display}-wal"  # a SQLite ledger: its path
        frame_size = schema_module.PAGE_SIZE + 24
        before = _wal_end(wal, frame_size)
        self._conn = _TimedConnection(conn, wall, cpu)
        cpu_started = time.thread_time()
        try:
            original_commit(self, fills, others, outcome, in_transaction)
        finally:
            self._conn = conn
        label = _transaction_label(fills, others, outcome)
        transactions[label].append(time.thread_time() - cpu_started)
        after = _wal_end(wal, frame_size)
        # counted only if the frames were appended at the end of one log generation: not when
        # SQLite rewound the log (new salts) or wrote over an older, longer log's frames
        if before is not None and after is not None and after[1] == before[1] and after[0] > before[0]:
            frames[label].append((after[0] - before[0]) // frame_size)

    patch(journal_module.JournalWriter, "commit", commit)


def _wal_end(wal: str, frame_size: int) -> tuple[int, bytes] | None:
    """(file size, salts) of a WAL whose last frame is of its current generation, so that the
    file ends where the log does; (0, b"") for no log yet; None otherwise."""
    try:
        with open(wal, "rb") as file:
            header = file.read(32)
            size = os.fstat(file.fileno()).st_size
            if size == 0:
                return 0, b""
            if size < 32 + frame_size or (size - 32) % frame_size:
                return None
            file.seek(size - frame_size)
            last = file.read(24)
    except FileNotFoundError:
        return 0, b""
    salts = header[16:24]  # a frame header carries its log generation's salts at bytes 8-16
    return (size, salts) if last[8:16] == salts else None


def _pct(values: list[float], q: float) -> float:
    return quantile_us(sorted(values), q)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=2000.0)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds (after warm-up)")
    parser.add_argument("--fills-per-order", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="where the ledger files go (default: a tmp dir)")
    args = parser.parse_args()
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=open(os.devnull, "w")),  # noqa: SIM115
        cache_logger_on_first_use=True)
    workdir = Path(tempfile.mkdtemp(prefix="hedgerd-breakdown-", dir=args.dir))
    marks: dict[str, float] = {}
    orders: list[dict[str, float]] = []
    wall: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, float] = collections.defaultdict(float)
    transactions: dict[str, list[float]] = collections.defaultdict(list)
    frames: dict[str, list[int]] = collections.defaultdict(list)
    results = []
    try:
        for mark_path in (True, False):
            with _patches() as patch:
                if mark_path:
                    _mark_path(patch, marks, orders)
                else:
                    _time_transactions(patch, wall, cpu, transactions, frames)
                results.append(asyncio.run(measure(args.rate, args.seconds, "stream", workdir, args.fills_per_order)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"rate {args.rate:.0f} fills/s, K={args.fills_per_order}, {args.seconds:g} s measured per run "
          "(instrumented: bench/latency.py gives the clean figures)")
    for name, result in zip(("path marks", "SQL timing"), results, strict=True):
        print(f"   run with {name}: p50 {result['p50']:.0f} us, p99 {result['p99']:.0f} us, "
              f"loop CPU {result['loop_cpu_us']:.0f} us/fill")
    offered = int(args.rate * (args.seconds + WARMUP))  # fills per run, warm-up included

    print(f"\n1. the path, delivered -> handed off ({len(orders)} orders)")
    print(f"   {'step':<42} {'p50 us':>8} {'p90 us':>8} {'p99 us':>8}")
    for start, end in itertools.pairwise(_PATH):
        steps = [order[end] - order[start] for order in orders]
        print(f"   {start + ' -> ' + end:<42} {_pct(steps, 0.5):>8.1f} {_pct(steps, 0.9):>8.1f} "
              f"{_pct(steps, 0.99):>8.1f}")
    totals = [order["handed off"] - order["delivered"] for order in orders]
    print(f"   {'total':<42} {_pct(totals, 0.5):>8.1f} {_pct(totals, 0.9):>8.1f} {_pct(totals, 0.99):>8.1f}")

    print("\n2. ledger transactions (event-loop CPU, BEGIN to COMMIT, risk pass inside included)")
    print(f"   {'kind':<42} {'count':>8} {'p50 us':>8} {'mean us':>8}")
    for label, values in sorted(transactions.items(), key=lambda item: -len(item[1]))[:8]:
        print(f"   {label:<42} {len(values):>8} {_pct(values, 0.5):>8.1f} {sum(values) / len(values) * 1e6:>8.1f}")

    print("\n3. SQL statements (wall time each; event-loop CPU per fill offered)")
    print(f"   {'statement':<42} {'count':>8} {'p50 us':>8} {'mean us':>8} {'us/fill':>8}")
    for label, values in sorted(wall.items(), key=lambda item: -cpu[item[0]]):
        print(f"   {label:<42} {len(values):>8} {_pct(values, 0.5):>8.1f} "
              f"{sum(values) / len(values) * 1e6:>8.1f} {cpu[label] / offered * 1e6:>8.1f}")

    print("\n4. WAL frames per transaction, while the log grew (1 frame = 1 page = 2 pwrite calls)")
    for label, counts in sorted(frames.items(), key=lambda item: -len(item[1]))[:8]:
        print(f"   {label:<42} {len(counts):>8} transactions, {sum(counts) / len(counts):5.1f} frames each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
