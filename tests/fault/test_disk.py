"""Fault suite, disk and ledger: the ledger stops accepting writes (read-only file, full disk)
while the daemon runs, or is corrupt when it starts.

A ledger that cannot record must halt trading with a reason that says so: hedging on fills that
are not journaled would make the positions after a restart wrong. A corrupt file must stop the
daemon at start with one clear line (exit 1, no traceback) and be left untouched.

The in-process variants inject the fault through SQLite itself (``query_only`` for a read-only
database, ``max_page_count`` for a full one) and run everywhere. The subprocess variants use the
real thing and need root: ``chattr +i`` makes the files immutable even for root, and a tiny tmpfs
fills up; without those privileges they are skipped with the reason shown.
Scenarios: tests/fault/input_scenarios.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.fault.input_scenarios import (
    CORRUPTIONS,
    LEDGER_FAULTS,
    corrupt_ledger,
    ledger_fault_daemon,
    ledger_fault_in_process,
    write_ledger,
)


@pytest.mark.parametrize("fault", sorted(LEDGER_FAULTS))
async def test_ledger_write_failure_halts_and_no_order_follows(tmp_path: Path, fault: str) -> None:
    result = await ledger_fault_in_process(tmp_path, fault)
    assert result.detected_after < 5, "client flow continued but the ledger failure went unnoticed"
    assert result.halted_with_reason, result.reason
    assert result.orders_after_failure == 0, "an order was sent after the ledger failed"
    assert result.resume_refused and result.not_ready


@pytest.mark.e2e
@pytest.mark.parametrize("fault", sorted(LEDGER_FAULTS))
def test_daemon_halts_when_the_ledger_cannot_be_written(tmp_path: Path, fault: str) -> None:
    result, restart = ledger_fault_daemon(tmp_path, fault)
    if result.skipped:
        pytest.skip(f"real {fault} not producible here: {result.skipped} (the in-process variant covers it)")
    assert result.halted_with_reason, result.reason
    assert ("full" in result.reason) if fault == "disk_full" else ("I/O" in result.reason or "only" in result.reason)
    assert result.orders_after_failure == 0, "hedge orders continued after the ledger failed"
    assert result.not_ready and result.resume_refused
    if restart is not None:  # and at start: a read-only ledger is refused with a clear message
        assert restart.returncode == 1, restart.stderr
        assert "read-only" in restart.stderr and "ledger.sqlite" in restart.stderr, restart.stderr
        assert not restart.traceback


@pytest.fixture(scope="module")
def good_ledger(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("ledger") / "ledger.sqlite"
    asyncio.run(write_ledger(path, 2000))
    return path.read_bytes()


@pytest.mark.e2e
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupt_ledger_is_refused_at_start(tmp_path: Path, good_ledger: bytes, corruption: str) -> None:
    result = corrupt_ledger(tmp_path, corruption, good_ledger)
    assert result.returncode == 1, result.message
    assert len(result.message) == 1 and CORRUPTIONS[corruption][1] in result.message[0], result.message
    assert len(result.message[0]) < 400, "the message should be one readable line"
    assert not result.traceback and result.logged and not result.started
    assert result.unchanged, "a corrupt ledger must be left as found for forensics"
    assert result.refused_clearly
