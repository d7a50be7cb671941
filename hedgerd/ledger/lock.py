"""The single-instance lock on a ledger file.

The lock is an exclusive ``flock`` on the database file itself, so it belongs to the file (its
inode) and not to the name it was opened by: a second ledger reaching the same file through a
symlink, a hard link or another relative path is refused. A sidecar ``<real path>.lock`` is locked
too, because that is the only lock an older hedgerd takes; with it, an older daemon still running
on the same file during an upgrade is refused as well (and refuses this one).

SQLite locks the database with POSIX record locks, which the kernel drops for the whole process
as soon as *any* descriptor of the file is closed in it. So a descriptor this module opened on a
file that a ledger of this process holds is never closed before that ledger releases it: a
second instance in the same process is refused from an in-process table, and a descriptor that
turns out to duplicate a held file waits for the holder's release.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from pathlib import Path
from typing import ClassVar


class LedgerLockError(Exception):
    """The ledger file cannot be locked: in use elsewhere, or not openable."""


class LedgerFileLock:
    """An exclusive lock on one ledger file, held from :meth:`acquire` until :meth:`release`."""

    _held: ClassVar[dict[tuple[int, int], LedgerFileLock]] = {}  # (st_dev, st_ino) -> holder
    _table_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int] | None = None
        self._fds: list[int] = []  # the database file's descriptor first, then the sidecar's
        self._deferred: list[int] = []  # other instances' descriptors of this file, closed on release

    @property
    def held(self) -> bool:
        """Whether this instance holds the lock."""
        return self._key is not None

    def acquire(self) -> None:
        """Create the file if needed and lock it; :class:`LedgerLockError` if another process or
        ledger instance holds it (under whatever name) or it cannot be opened."""
        if self.held:
            raise LedgerLockError(f"ledger {self.path}: lock already held")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerLockError(f"ledger open failed: cannot create {self.path.parent}: {exc}") from exc
        with self._table_lock:
            database_fd = self._open(self.path, os.O_RDONLY)
            stat = os.fstat(database_fd)
            key = (stat.st_dev, stat.st_ino)
            holder = self._held.get(key)
            if holder is not None:
                # closing this descriptor now would drop the holder's SQLite locks
                holder._deferred.append(database_fd)
                raise self._in_use(f"by the ledger opened as {holder.path} in this process")
            self._fds = [database_fd]
            try:
                self._flock(database_fd)
                real_path = Path(os.path.realpath(self.path))
                sidecar_fd = self._open(real_path.with_name(real_path.name + ".lock"), os.O_RDWR)
                self._fds.append(sidecar_fd)
                self._flock(sidecar_fd)
            except BaseException:
                self._close_all()
                raise
            self._key = key
            self._held[key] = self

    def release(self) -> None:
        """Unlock and close; call it only once the ledger's SQLite connections are closed."""
        with self._table_lock:
            if self._key is not None:
                del self._held[self._key]
                self._key = None
            self._close_all()

    def _close_all(self) -> None:
        for fd in (*self._fds, *self._deferred):
            with contextlib.suppress(OSError):
                os.close(fd)  # closing a descriptor also drops its flock
        self._fds = []
        self._deferred = []

    def _open(self, path: Path, mode: int) -> int:
        try:
            return os.open(path, mode | os.O_CREAT, 0o644)
        except OSError as exc:
            raise LedgerLockError(f"ledger open failed: cannot open {path}: {exc}") from exc

    def _flock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise self._in_use("by another process") from exc
        except OSError as exc:
            raise LedgerLockError(f"ledger open failed: cannot lock {self.path}: {exc}") from exc

    def _in_use(self, by: str) -> LedgerLockError:
        real = os.path.realpath(self.path)
        name = f"{self.path} (-> {real})" if real != os.path.abspath(self.path) else str(self.path)
        return LedgerLockError(f"ledger {name} is in use {by}: one hedgerd per ledger file, "
                               "under any name (a symlink or hard link to it is the same ledger)")
