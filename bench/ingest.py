"""Ledger ingest benchmark: fills per second with durable group commits, and memory per fill count.

Usage: python bench/ingest.py [--fills N] [--throughput-fills N] [--runs R] [--dir DIR]
                              [--backend sqlite,postgresql] [--pg-url URL]

Throughput: fresh ledger per run, every fill awaited until durable (its group commit done), for
each --modes pair of synchronous level and where commits run (the event loop or a writer thread).
  concurrent  -- 1000 producer tasks, each awaiting record_fill() in turn
  pipelined   -- one producer using submit_fill(), keeping up to 4 x batch_max fills in flight
  sequential  -- one producer, one fill in flight: every fill is its own commit (latency bound)
Trade ids increase per venue, as exchanges number their trades; the "random ids" row uses
random 64-bit hex ids instead (some venues use opaque ids), which scatters the unique index.
Memory: one ledger ingesting --fills fills (pipelined); VmRSS sampled every quarter, then the
time to reopen the full ledger (integrity check + snapshot load) and to verify() it.
--backend postgresql runs the same on a PostgreSQL ledger: a fresh database per run on --pg-url's
server, else on a throw-away local server (tests/pgserver.py, fsync on) started for the run; its
modes are --pg-modes (synchronous does not apply: every commit is durable on the server).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, Side
from tests.pgserver import PgServer

INSTRUMENTS = (("sim-spot", "BTC/USDT", "USDT"), ("sim-perp", "BTC/USDT:USDT", "USDT"))
AMOUNTS = tuple(Decimal(f"0.{n:08d}") for n in range(1_000_003, 100_000_000, 9_876_543))
PRICES = tuple(Decimal(f"{60_000 + n}.{n % 100:02d}") for n in range(0, 500, 7))
FEE = Decimal("0.0125")


FIRST_TRADE_ID = 3_000_000_000


def make_fill(i: int, trade_id: str) -> Fill:
    """Synthetic fill number ``i``: alternating venues and sides, amounts/prices from small pools."""
    venue, symbol, fee_currency = INSTRUMENTS[i & 1]
    return Fill(venue, trade_id, symbol, Side.BUY if i % 3 else Side.SELL, AMOUNTS[i % len(AMOUNTS)],
                PRICES[i % len(PRICES)], FEE, fee_currency, 1.7e9 + i * 1e-3, 0.0)


def make_fills(start: int, count: int) -> Iterator[Fill]:
    for i in range(start, start + count):
        yield make_fill(i, str(FIRST_TRADE_ID + i))


def files_mib(directory: Path, pattern: str) -> float:
    return sum(p.stat().st_size for p in directory.glob(pattern)) / 2**20


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def concurrent(ledger: InventoryLedger, n: int, producers: int = 1000, random_ids: bool = False) -> None:
    per_producer = n // producers
    sequence = itertools.count()
    bits = random.Random(1).getrandbits

    async def produce() -> None:
        for _ in range(per_producer):
            i = next(sequence)
            await ledger.record_fill(make_fill(i, f"{bits(64):016x}" if random_ids else str(FIRST_TRADE_ID + i)))

    await asyncio.gather(*(produce() for _ in range(producers)))


async def concurrent_random_ids(ledger: InventoryLedger, n: int) -> None:
    await concurrent(ledger, n, random_ids=True)


async def pipelined(ledger: InventoryLedger, n: int, start: int = 0,
                    progress: Callable[[int], None] | None = None) -> None:
    window = 4 * ledger.batch_max
    in_flight: deque[asyncio.Future[bool]] = deque()
    for i, fill in enumerate(make_fills(start, n), 1):
        in_flight.append(ledger.submit_fill(fill))
        if len(in_flight) > window:
            await in_flight.popleft()
        if progress is not None and i % 50_000 == 0:
            progress(i)
    for future in in_flight:
        await future


async def sequential(ledger: InventoryLedger, n: int) -> None:
    for fill in make_fills(0, n):
        await ledger.record_fill(fill)


def generation_only(n: int) -> float:
    started = time.perf_counter()
    for _ in make_fills(0, n):
        pass
    return n / (time.perf_counter() - started)


class Target:
    """Where the ledgers go: SQLite files in ``workdir``, or databases on a PostgreSQL server."""

    def __init__(self, workdir: Path, pg_url: str | None = None, server: PgServer | None = None) -> None:
        self.workdir = workdir
        self.pg_url = pg_url
        self.server = server
        self.kind = "postgresql" if pg_url else "sqlite"

    def new(self, tag: str) -> Path | str:
        if self.pg_url is None:
            return self.workdir / f"{tag}-{time.monotonic_ns()}.sqlite"
        name = f"bench_{tag.replace('-', '_').lower()}_{time.monotonic_ns()}"
        _admin(self.pg_url, f'CREATE DATABASE "{name}"')
        return self.pg_url.rsplit("/", 1)[0] + "/" + name

    def drop(self, location: Path | str) -> None:
        if isinstance(location, str):
            assert self.pg_url is not None
            _admin(self.pg_url, f'DROP DATABASE IF EXISTS "{location.rsplit("/", 1)[1]}" WITH (FORCE)')
            return
        for suffix in ("", "-wal", "-shm", ".lock"):
            location.with_name(location.name + suffix).unlink(missing_ok=True)

    def size_mib(self, location: Path | str) -> float:
        if isinstance(location, str):
            import psycopg

            with psycopg.connect(location) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            return float(row[0] if row else 0) / 2**20
        return files_mib(location.parent, location.name + "*")

    def count_fills(self, location: Path | str) -> int:
        if isinstance(location, str):
            import psycopg

            with psycopg.connect(location) as conn:
                row = conn.execute("SELECT count(*) FROM fills").fetchone()
            return int(row[0]) if row else 0
        with sqlite3.connect(location) as conn:
            return int(conn.execute("SELECT count(*) FROM fills").fetchone()[0])


def _admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.encode())


async def timed_run(target: Target, synchronous: str, commit_on: str, n: int,
                    scenario: Callable[[InventoryLedger, int], Awaitable[None]]) -> tuple[float, int]:
    path = target.new(f"run-{synchronous}")
    ledger = InventoryLedger(path, synchronous=synchronous, metrics=Metrics(), commit_on=commit_on)
    await ledger.open()
    started = time.perf_counter()
    await scenario(ledger, n)
    elapsed = time.perf_counter() - started
    assert ledger.fill_count == n, (ledger.fill_count, n)
    commits = ledger.commits
    await ledger.close()
    target.drop(path)
    return n / elapsed, commits


async def throughput(target: Target, n: int, runs: int, modes: list[tuple[str, str]]) -> None:
    scenarios: list[tuple[str, Callable[[InventoryLedger, int], Awaitable[None]], int]] = [
        ("concurrent, 1000 producers", concurrent, n),
        ("concurrent, random ids", concurrent_random_ids, n),
        ("pipelined, 2048 in flight", pipelined, n),
        ("sequential, 1 in flight", sequential, max(n // 20, 1000)),
    ]
    print(f"fill generation alone (no ledger): {generation_only(n):>10,.0f} fills/s")
    print()
    print(f"{'scenario':<28} {'backend':<11} {'sync/commit on':<15} {'fills/run':>10} {'median fills/s':>15} "
          f"{'min':>10} {'max':>10} {'fills/commit':>13}")
    for synchronous, commit_on in modes:
        for name, scenario, count in scenarios:
            rates: list[float] = []
            per_commit: list[float] = []
            for _ in range(runs):
                rate, commits = await timed_run(target, synchronous, commit_on, count, scenario)
                rates.append(rate)
                per_commit.append(count / max(commits, 1))
            print(f"{name:<28} {target.kind:<11} {synchronous + '/' + commit_on:<15} {count:>10,} "
                  f"{statistics.median(rates):>15,.0f} {min(rates):>10,.0f} {max(rates):>10,.0f} "
                  f"{statistics.median(per_commit):>13.1f}",
                  flush=True)


async def memory(target: Target, n: int) -> None:
    path = target.new("memory")
    ledger = InventoryLedger(path, metrics=Metrics())
    await ledger.open()
    marks = sorted({round(n * q / 4) for q in range(1, 5)})
    samples: list[tuple[int, float, float]] = [(0, rss_mib(), 0.0)]
    started = time.perf_counter()
    done = 0
    for mark in marks:
        await pipelined(ledger, mark - done, start=done)
        done = mark
        samples.append((done, rss_mib(), done / (time.perf_counter() - started)))
    await ledger.close()
    size = target.size_mib(path)
    print()
    print(f"{target.kind} ledger")
    print(f"{'fills in ledger':>15} {'VmRSS MiB':>10} {'cumulative fills/s':>19}")
    for count, rss, rate in samples:
        print(f"{count:>15,} {rss:>10.1f} {rate:>19,.0f}" if count else f"{count:>15,} {rss:>10.1f} {'-':>19}")
    print(f"ledger {'database' if target.pg_url else 'file'}: {size:.0f} MiB, RSS growth from first to last quarter: "
          f"{samples[-1][1] - samples[1][1]:+.1f} MiB"
          + (" (SQLite's page cache, capped, fills up during the first quarter)" if target.kind == "sqlite" else ""))

    started = time.perf_counter()
    reopened = InventoryLedger(path)
    await reopened.open()
    opened_in = time.perf_counter() - started
    assert reopened.fill_count == n
    started = time.perf_counter()
    await reopened.verify()
    verified_in = time.perf_counter() - started
    await reopened.close()
    journaled = target.count_fills(path)
    print(f"reopen with {journaled:,} fills journaled (integrity check + snapshot load): {opened_in:.2f} s; "
          f"verify() full recompute from the journal: {verified_in:.2f} s")
    target.drop(path)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fills", type=int, default=1_000_000, help="fills for the memory run")
    parser.add_argument("--throughput-fills", type=int, default=200_000, help="fills per throughput run")
    parser.add_argument("--runs", type=int, default=3, help="runs per throughput scenario (median reported)")
    parser.add_argument("--dir", type=Path, default=None, help="directory for ledger files (default: a temp dir)")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--modes", default="NORMAL/loop,NORMAL/thread,FULL/thread",
                        help="synchronous/commit_on pairs (commit_on: loop = on the event loop, thread = writer "
                             "thread; the ledger's default is loop with NORMAL, thread with FULL)")
    parser.add_argument("--backend", default="sqlite", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server to create the benchmark's databases "
                                                       "on (default: a throw-away local server, fsync on)")
    parser.add_argument("--pg-modes", default="NORMAL/thread,NORMAL/loop",
                        help="as --modes, for PostgreSQL (thread is its default; synchronous does not apply)")
    args = parser.parse_args()
    backends = args.backend.split(",")
    modes = [(m.split("/")[0].upper(), m.split("/")[1]) for m in args.modes.split(",")]
    pg_modes = [(m.split("/")[0].upper(), m.split("/")[1]) for m in args.pg_modes.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="hedgerd-ingest-", dir=args.dir))
    print(f"hedgerd ledger ingest - Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, "
          f"batch_max 512, ledger files in {workdir}")
    server: PgServer | None = None
    try:
        for backend in backends:
            if backend == "postgresql":
                pg_url = args.pg_url
                if pg_url is None:
                    server = server or PgServer(fsync=True)
                    pg_url = server.url()
                target, target_modes = Target(workdir, pg_url), pg_modes
                print(f"PostgreSQL: {_server_version(pg_url)}")
            elif backend == "sqlite":
                target, target_modes = Target(workdir), modes
            else:
                parser.error(f"unknown backend {backend!r}")
            if not args.skip_throughput:
                await throughput(target, args.throughput_fills, args.runs, target_modes)
            if not args.skip_memory:
                await memory(target, args.fills)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if server is not None:
            server.close()


def _server_version(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    return f"server {row[0] if row else '?'}, fsync {fsync[0] if fsync else '?'}"


if __name__ == "__main__":
    asyncio.run(main())
