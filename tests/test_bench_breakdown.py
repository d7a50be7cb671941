"""bench/latency_breakdown.py takes the latency bench's path apart and leaves no patch behind.

A smoke test of the instrumentation's bookkeeping (every order's steps seen in path order, every
transaction and statement counted, WAL frames found), not a timing.
"""

from __future__ import annotations

import collections
import sqlite3
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # bench/ is scripts, not a package

from latency import StubVenue, measure
from latency_breakdown import _MARKS, _PATH, _mark_path, _patches, _time_transactions, _wal_end

from hedgerd.executor import HedgeExecutor
from hedgerd.ledger.journal import JournalWriter

RATE, SECONDS = 100.0, 0.3
OFFERED = int(RATE * (SECONDS + 0.5))  # measured window + warm-up


def _patched_methods() -> dict[tuple[type, str], object]:
    names = [(cls, name) for cls, name, _, _ in _MARKS]
    names += [(HedgeExecutor, "_execute"), (StubVenue, "create_order"), (JournalWriter, "commit")]
    return {(cls, name): cls.__dict__[name] for cls, name in names}


async def test_every_order_is_taken_apart_in_path_order(tmp_path: Path) -> None:
    before = _patched_methods()
    orders: list[dict[str, float]] = []
    with _patches() as patch:
        _mark_path(patch, {}, orders)
        result = await measure(RATE, SECONDS, "stream", tmp_path, 1)
    assert result["unhedged"] == 0
    # at this rate every fill is delivered alone and needs an order of its own
    assert len(orders) == OFFERED
    for order in orders:
        assert [order[step] for step in _PATH] == sorted(order[step] for step in _PATH)
    assert _patched_methods() == before


async def test_transactions_statements_and_frames_are_counted(tmp_path: Path) -> None:
    before = _patched_methods()
    wall: dict[str, list[float]] = collections.defaultdict(list)
    cpu: dict[str, float] = collections.defaultdict(float)
    transactions: dict[str, list[float]] = collections.defaultdict(list)
    frames: dict[str, list[int]] = collections.defaultdict(list)
    with _patches() as patch:
        _time_transactions(patch, wall, cpu, transactions, frames)
        await measure(RATE, SECONDS, "stream", tmp_path, 1)
    # each client fill commits with its intent, each order's outcome with its fill
    assert len(transactions["1 fill + 1 intent"]) == OFFERED
    assert len(transactions["1 fill + 1 state"]) == OFFERED
    assert len(wall["BEGIN"]) == len(wall["COMMIT"]) == sum(len(v) for v in transactions.values())
    assert len(wall["INSERT intents"]) == OFFERED
    assert all(cpu[label] > 0 for label in wall)
    # a transaction writes at least one page per table or index it touches: fills, their trade-id index, intents
    assert min(frames["1 fill + 1 intent"]) >= 3
    assert _patched_methods() == before


def test_frames_are_read_off_a_log_only_where_it_was_appended_to(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    wal, frame = f"{path}-wal", 1024 + 24
    assert _wal_end(wal, frame) == (0, b"")  # no log yet
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA page_size = 1024")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE t (x BLOB)")
    for _ in range(20):
        conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    end = _wal_end(wal, frame)
    assert end is not None and end[0] > 20 * 3 * frame
    before = end
    conn.execute("INSERT INTO t VALUES (randomblob(3000))")
    after = _wal_end(wal, frame)
    assert after is not None and after[1] == before[1] and (after[0] - before[0]) // frame >= 3
    # checkpointed in full: the next write rewinds the log over its older frames (new salts)
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    conn.execute("INSERT INTO t VALUES (randomblob(10))")
    assert _wal_end(wal, frame) is None  # the file ends in the older generation's frames
    conn.close()
