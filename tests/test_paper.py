"""Paper runs on simulated venues start with a fresh ledger; the previous one is archived (issue 18.12)."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest

from hedgerd.config import Mode, Settings, VenueKind, load_settings
from hedgerd.ledger import InventoryLedger, LedgerError
from hedgerd.models import Fill, Side
from hedgerd.paper import ARCHIVE_DIR, KEEP_ARCHIVED_RUNS, archive_previous_run, starts_clean

NOW = 1_796_000_000.0  # 2026-11-30T...Z


def paper_settings(ledger: Path) -> Settings:
    """The embedded default (paper mode on simulated venues) with its ledger at ``ledger``."""
    secrets = ledger.parent / "secrets"
    secrets.mkdir(exist_ok=True)
    return load_settings(None, env={"HEDGERD_LEDGER__PATH": str(ledger)}, secrets_dir=secrets)


async def write_run(path: Path, fills: int) -> None:
    """A ledger as a paper run leaves it: client flow on the spot venue, a hedge on the perp."""
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        for i in range(fills):
            await ledger.record_fill(Fill(venue="sim-spot", trade_id=f"t{i}", symbol="BTC/USDT", side=Side.BUY,
                                          amount=Decimal("0.1"), price=Decimal(60000), ts=1.0 + i))
        await ledger.record_fill(Fill(venue="sim-perp", trade_id="p1", symbol="BTC/USDT:USDT", side=Side.SELL,
                                      amount=Decimal("0.2"), price=Decimal(60000), ts=100.0))
    finally:
        await ledger.close()


def test_only_paper_mode_with_a_simulated_venue_starts_clean(tmp_path: Path) -> None:
    settings = paper_settings(tmp_path / "ledger.sqlite")
    assert starts_clean(settings)
    assert not starts_clean(settings.model_copy(update={"mode": Mode.LIVE}))
    ccxt_only = [v.model_copy(update={"kind": VenueKind.CCXT}) for v in settings.venues]
    assert not starts_clean(settings.model_copy(update={"venues": ccxt_only}))  # e.g. venue-sim: it keeps state


async def test_the_previous_run_is_archived_and_the_next_ledger_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    await write_run(path, 3)
    archived = await archive_previous_run(paper_settings(path), NOW)
    assert archived is not None
    assert archived.archived_to.parent == tmp_path / ARCHIVE_DIR and archived.archived_to.suffix == ".sqlite"
    assert archived.fills == 4
    assert archived.positions == {"sim-perp:BTC/USDT:USDT": "-0.2", "sim-spot:BTC": "0.3",
                                  "sim-spot:USDT": "-18000.0"}
    assert not path.exists() and not path.with_name("ledger.sqlite-wal").exists()
    fresh = InventoryLedger(path)
    await fresh.open()
    try:
        assert fresh.fill_count == 0 and fresh.positions() == {}
    finally:
        await fresh.close()
    old = InventoryLedger(archived.archived_to)  # the archive is a readable ledger with the run's fills
    await old.open()
    try:
        assert old.fill_count == 4 and old.position("sim-perp", "BTC/USDT:USDT") == Decimal("-0.2")
    finally:
        await old.close()


async def test_nothing_to_archive_on_a_first_run_or_when_the_ledger_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    assert await archive_previous_run(paper_settings(path), NOW) is None
    await write_run(path, 1)
    before = path.read_bytes()
    assert await archive_previous_run(paper_settings(path).model_copy(update={"mode": Mode.LIVE}), NOW) is None
    assert path.read_bytes() == before and not (tmp_path / ARCHIVE_DIR).exists()


async def test_a_ledger_in_use_is_refused_and_left_in_place(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    await write_run(path, 1)
    running = InventoryLedger(path)  # another daemon on the same ledger
    await running.open()
    try:
        with pytest.raises(LedgerError, match="in use"):
            await archive_previous_run(paper_settings(path), NOW)
        assert path.exists() and not any((tmp_path / ARCHIVE_DIR).glob("*"))
    finally:
        await running.close()


async def test_a_corrupt_ledger_is_refused_and_left_as_found(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"not a sqlite file" * 512)
    with pytest.raises(LedgerError, match="not a SQLite database"):
        await archive_previous_run(paper_settings(path), NOW)
    assert path.read_bytes() == b"not a sqlite file" * 512


async def test_only_the_newest_archived_runs_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    archived: list[Path] = []
    for run in range(KEEP_ARCHIVED_RUNS + 2):
        await write_run(path, 1)
        os.utime(path, (NOW + run, NOW + run))  # each run's last write is later than the one before
        result = await archive_previous_run(paper_settings(path), NOW + run)
        assert result is not None
        archived.append(result.archived_to)
    kept = sorted(p for p in (tmp_path / ARCHIVE_DIR).iterdir() if p.suffix == ".sqlite")
    assert kept == sorted(archived[-KEEP_ARCHIVED_RUNS:])
    assert len(set(archived)) == len(archived)


async def test_two_runs_archived_within_one_second_keep_both(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    archived = []
    for fills in (1, 2):
        await write_run(path, fills)
        result = await archive_previous_run(paper_settings(path), NOW)
        assert result is not None
        archived.append(result)
    assert archived[0].archived_to != archived[1].archived_to
    assert all(run.archived_to.exists() for run in archived)
    assert [run.fills for run in archived] == [2, 3]
