"""The ledger's background WAL checkpointer: a thread with a connection of its own.

The writer never checkpoints inside a commit (``wal_autocheckpoint=0``): a checkpointer thread
copies the WAL back into the database every ``checkpoint_interval`` seconds from its own
connection (PASSIVE, so it never waits for or blocks the writer); when the log outgrows
``wal_size_limit`` the writer's connection, between transactions (in a worker thread in loop
mode, writes waiting meanwhile), copies the last few frames so the next commit rewinds the WAL,
and ``close`` checkpoints and truncates it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoint the WAL every ``interval`` seconds from a connection of its own (PASSIVE:
    never waits for, nor blocks, the writer); ask the writer for a reset (``reset_due`` set,
    ``wake_writer`` called) when the log holds more than ``wal_size_limit`` bytes."""

    def __init__(self, path: Path, *, synchronous: str, interval: float, wal_size_limit: int,
                 wake_writer: Callable[[], None]) -> None:
        self.path = path
        self.synchronous = synchronous
        self.interval = interval
        self.wal_size_limit = wal_size_limit
        self._wake_writer = wake_writer
        #: checkpoints run so far
        self.checkpoints = 0
        #: monotonic time a WAL reset was asked for (0: none due); the writer clears it
        self.reset_due = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ledger-checkpoint:{self.path.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to stop (without waiting: :meth:`join`)."""
        self._stop.set()

    def join(self) -> None:
        """Stop the thread and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        stop = self._stop
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            log.warning("ledger checkpointer cannot open %s: %s", self.path, exc)
            return
        try:
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            frame_size = int(conn.execute("PRAGMA page_size").fetchone()[0]) + 24
            while not stop.wait(self.interval):
                try:
                    _, log_frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("ledger WAL checkpoint failed: %s", exc)
                    continue
                self.checkpoints += 1
                if log_frames * frame_size > self.wal_size_limit and not self.reset_due:
                    self.reset_due = time.monotonic()
                    self._wake_writer()
        except sqlite3.Error as exc:
            log.warning("ledger checkpointer stopped: %s", exc)
        finally:
            conn.close()
