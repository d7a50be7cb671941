"""Paper runs on in-process simulated venues start clean: the previous run's ledger is archived.

Simulated venues live inside the process: every run starts them afresh (price back to its
initial value, no positions, no trade history). A ledger carried over from the previous run would
describe positions those venues never held, priced against a reset market, so each such run
gets a fresh ledger and the previous one is moved to ``<ledger dir>/paper-archive/`` (the newest
:data:`KEEP_ARCHIVED_RUNS` are kept). Paper mode on ccxt venues only (e.g. a ``hedgerd venue-sim``
in another process, which outlives the daemon) keeps its ledger, as live mode does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from hedgerd.config import Mode, Settings, VenueKind
from hedgerd.ledger import InventoryLedger, LedgerError

ARCHIVE_DIR = "paper-archive"
#: Archived paper ledgers kept; older ones are deleted when a run archives its predecessor.
KEEP_ARCHIVED_RUNS = 5
#: The files of one SQLite ledger in WAL mode: the database, its write-ahead log and its index.
_SIDE_FILES = ("", "-wal", "-shm")


@dataclass(frozen=True)
class ArchivedRun:
    """The previous paper run's ledger, as found and where it went."""

    archived_to: Path
    fills: int
    positions: dict[str, str] = field(default_factory=dict)  # "venue:asset" -> nonzero position


def starts_clean(settings: Settings) -> bool:
    """True when each run needs a fresh ledger: paper mode with an in-process simulated venue."""
    return settings.mode is Mode.PAPER and any(v.kind is VenueKind.SIM for v in settings.venues)


async def archive_previous_run(settings: Settings, now: float) -> ArchivedRun | None:
    """Move the previous paper run's ledger aside (see the module docstring); None when there is
    none to move or the configuration keeps its ledger across runs.

    The previous ledger is first opened as a start would open it, so a corrupt, foreign,
    read-only or busy file is refused with the same :class:`LedgerError` and left as found.
    """
    path = settings.ledger.path
    if not starts_clean(settings) or not path.exists():
        return None
    previous = InventoryLedger(path)
    await previous.open()
    try:
        fills = previous.fill_count
        positions = {f"{venue}:{asset}": str(qty) for (venue, asset), qty in sorted(previous.positions().items())
                     if qty != Decimal(0)}
    finally:
        await previous.close()
    with previous.locked():  # a daemon starting meanwhile must not have its ledger moved away
        archived_to = _move_aside(path.resolve(), now)
    _prune(archived_to.parent, path.resolve(), KEEP_ARCHIVED_RUNS)
    return ArchivedRun(archived_to, fills, positions)


def _move_aside(real: Path, now: float) -> Path:
    archive = real.parent / ARCHIVE_DIR
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
    try:
        archive.mkdir(exist_ok=True)
        target = archive / f"{real.stem}-{stamp}{real.suffix}"
        number = 1
        while target.exists():  # two runs within one second
            target = archive / f"{real.stem}-{stamp}-{number}{real.suffix}"
            number += 1
        for side in _SIDE_FILES:
            source = real.with_name(real.name + side)
            if source.exists():
                source.rename(target.with_name(target.name + side))
    except OSError as exc:
        raise LedgerError(f"cannot archive the previous paper ledger {real} into {archive}: {exc}") from exc
    return target


def _prune(archive: Path, real: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` archived ledgers of ``real`` (by last write)."""
    runs = sorted((p for p in archive.glob(f"{real.stem}-*{real.suffix}") if not p.name.endswith(("-wal", "-shm"))),
                  key=lambda p: (p.stat().st_mtime, p.name))
    for old in runs[:-keep] if keep > 0 else runs:
        for side in _SIDE_FILES:
            with contextlib.suppress(FileNotFoundError):
                old.with_name(old.name + side).unlink()
