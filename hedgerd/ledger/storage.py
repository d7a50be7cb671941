"""Where the ledger's journal is stored: the SQL dialect, connections and transactions of each backend.

The ledger's state (the in-memory view, the writer's aggregates, group commit) is the same for
every backend (:mod:`hedgerd.ledger.ledger`, :mod:`hedgerd.ledger.journal`); this module is what
differs between them, as a cache differs from the database facade behind it:

* :class:`SqliteStorage`: the embedded default, a file in WAL mode with its flock
  (:mod:`hedgerd.ledger.lock`) and WAL checkpointer (:mod:`hedgerd.ledger.checkpointer`).
* :class:`PostgresStorage`: ``ledger.url = "postgresql://..."`` (psycopg 3, the ``postgres``
  extra). Every commit is durable on the server (``synchronous_commit = on``) whatever
  ``ledger.synchronous`` says. No file lock and no checkpointer: PostgreSQL checkpoints its own
  WAL, and which instance may write is decided by the leadership lock (an advisory lock held by
  the daemon), not here. The writer's aggregates assume it is the only writer, as on SQLite: an
  instance opens the ledger once it leads, never while another one writes.

Both hand the journal a DB-API-like :class:`Connection` with ``?`` placeholders; PostgreSQL's
adapter rewrites them to psycopg's ``%s`` and raises :class:`StorageError` for driver errors, so
the journal catches :data:`DB_ERRORS` whichever backend runs.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from hedgerd.config.masking import MASK
from hedgerd.ledger.checkpointer import Checkpointer
from hedgerd.ledger.lock import LedgerFileLock
from hedgerd.ledger.schema import (
    _FILL_COLUMNS,
    _FILL_ROW,
    _SCHEMA,
    _SET_META,
    PAGE_CACHE_KIB,
    PAGE_SIZE,
    PG_MIGRATIONS,
    PG_SCHEMA,
    SCHEMA_VERSION,
    SYNCHRONOUS_LEVELS,
    _migrate_from_v1,
    _migrate_from_v2,
    _migrate_from_v3,
)

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

POSTGRES_SCHEMES = ("postgresql", "postgres")


class LedgerError(Exception):
    """The ledger cannot be used: an I/O failure (read-only file, disk full), a corrupt or
    foreign file, an unreachable database, or use after close. The message says which."""


class StorageError(Exception):
    """A database error of a non-SQLite backend (the driver's exception is its ``__cause__``, except on
    connecting, where it may quote the URL)."""


DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, StorageError)
"""What a failing statement raises, on any backend."""


class Connection(Protocol):
    """The part of a DB-API connection the ledger uses (``?`` placeholders, explicit BEGIN/COMMIT)."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...

    def executemany(self, sql: str, parameters: Any, /) -> Any: ...

    def close(self) -> None: ...


def is_postgres_url(location: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(location, str) and urlsplit(location).scheme in POSTGRES_SCHEMES


def masked_url(url: str) -> str:
    """``url`` with its password (if any) masked, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}:{MASK}@{netloc[1]}").geturl()


class NullLock:
    """PostgreSQL: no file to lock (see the module docstring)."""

    held = False

    def acquire(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False


class NullCheckpointer:
    """PostgreSQL checkpoints its own WAL: nothing to run, never a reset due."""

    checkpoints = 0
    reset_due = 0.0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def join(self) -> None:
        pass


class Storage(ABC):
    """One backend: how to connect, configure, lock and read the ledger's database."""

    #: the backend's name in messages and bench reports
    kind: str
    #: True when the fills insert returns the new fill ids (else ids are dense: last + rowcount)
    returns_fill_ids: bool
    #: how the opening transaction starts (taking the write lock at once where that is explicit)
    begin_open: str = "BEGIN"
    #: placeholder rows per multi-row fills INSERT, at most
    max_fill_rows: int = 1024

    @property
    @abstractmethod
    def display(self) -> str:
        """Where the ledger is, safe to print (no password)."""

    @abstractmethod
    def connect(self) -> Connection:
        """A new writer connection (autocommit: the journal issues BEGIN and COMMIT itself)."""

    @abstractmethod
    def configure(self, conn: Connection, synchronous: str, wal_size_limit: int) -> tuple[str, str]:
        """Check and set up the writer's connection before the opening transaction; return the
        (synchronous level, journal mode) in effect, as read back."""

    @abstractmethod
    def schema(self) -> list[str]:
        """The DDL statements creating the current schema (idempotent)."""

    @abstractmethod
    def migrate(self, conn: Connection, version: int) -> bool:
        """Bring a schema at ``version`` (older than current) up to date inside the opening
        transaction; False when no migration exists from it."""

    @abstractmethod
    def fills_insert(self, rows: int) -> str:
        """An INSERT of ``rows`` fills that skips (venue, trade id) already journaled."""

    @abstractmethod
    def fill_rows_per_statement(self, conn: Connection, width: int) -> int:
        """How many fill rows of ``width`` parameters one INSERT may carry."""

    @abstractmethod
    def open_error(self, exc: Exception) -> LedgerError:
        """The LedgerError message for a failure to open (``exc`` is one of :data:`DB_ERRORS`)."""

    @abstractmethod
    def reader(self) -> Connection:
        """A connection for the event loop's reads (cache misses)."""

    @abstractmethod
    @contextlib.contextmanager
    def snapshot_reader(self) -> Iterator[Connection]:
        """A connection inside one consistent read-only transaction (for ``verify``)."""

    def lock(self) -> LedgerFileLock | NullLock:
        """The lock keeping a second ledger instance off this storage."""
        return NullLock()

    def checkpointer(self, **kwargs: Any) -> Checkpointer | NullCheckpointer:
        """The background WAL checkpointer (``kwargs``: as :class:`Checkpointer` takes them)."""
        return NullCheckpointer()

    def checkpoint_passive(self, conn: Connection) -> bool:
        """Copy the WAL back between transactions (SQLite); True if it ran."""
        return False

    def before_close(self, conn: Connection) -> None:  # noqa: B027  (most backends have nothing to do)
        """Last words on the writer's connection on a clean close."""


def storage_for(location: Path | str) -> Storage:
    """The backend for a SQLite file path or a ``postgresql://`` URL."""
    if is_postgres_url(location):
        return PostgresStorage(str(location))
    return SqliteStorage(Path(location))


# ---------------------------------------------------------------------------------------- SQLite


class SqliteStorage(Storage):
    """A SQLite file in WAL mode (see :mod:`hedgerd.ledger.schema` for the layout)."""

    kind = "sqlite"
    returns_fill_ids = False
    begin_open = "BEGIN IMMEDIATE"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def display(self) -> str:
        return str(self.path)

    def connect(self) -> Connection:
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=64)

    def configure(self, conn: Connection, synchronous: str, wal_size_limit: int) -> tuple[str, str]:
        path = self.path
        conn.execute("PRAGMA busy_timeout = 5000")
        check = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
        if check != ["ok"]:
            problems = [line for row in check for line in str(row).splitlines() if line.strip()]
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            raise LedgerError(f"ledger corrupt: {path}: {'; '.join(problems[:3])}{more}")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect on a new file only
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode != "wal":
            raise LedgerError(f"ledger open failed: {path}: cannot switch to WAL (journal mode {mode})")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
        in_effect = {v: k for k, v in SYNCHRONOUS_LEVELS.items()}.get(level, str(level))
        # The page cache keeps every page written until it is full, so it grows with the file up
        # to this bound. Writes touch only the tables' and index's right edges and the rows of
        # open intents: 4 MiB holds those many times over and is full after tens of thousands of
        # fills, where a larger cache kept growing for hours of flow without serving more hits.
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        # No checkpoint inside a COMMIT: copying the WAL back (and its fsyncs) would stall every
        # caller of that commit. The checkpointer thread does it on its own connection instead.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        conn.execute(f"PRAGMA journal_size_limit = {int(wal_size_limit)}")
        conn.execute("PRAGMA temp_store = MEMORY")
        return in_effect, mode

    def schema(self) -> list[str]:
        return [s for s in _SCHEMA.split(";") if s.strip()]

    def migrate(self, conn: Connection, version: int) -> bool:
        step = {1: _migrate_from_v1, 2: _migrate_from_v2, 3: _migrate_from_v3}.get(version)
        if step is None:
            return False
        assert isinstance(conn, sqlite3.Connection)
        step(conn)
        return True

    def fills_insert(self, rows: int) -> str:
        return f"INSERT OR IGNORE INTO fills ({_FILL_COLUMNS}) VALUES " + ",".join([_FILL_ROW] * rows)

    def fill_rows_per_statement(self, conn: Connection, width: int) -> int:
        assert isinstance(conn, sqlite3.Connection)
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        rows = 1
        while rows * 2 * width <= variables and rows < self.max_fill_rows:
            rows *= 2
        return rows

    def open_error(self, exc: Exception) -> LedgerError:
        message, path = str(exc), self.path
        if "not a database" in message:
            return LedgerError(f"ledger file is not a SQLite database: {path}: {message}")
        if "malformed" in message or "corrupt" in message:
            return LedgerError(f"ledger corrupt: {path}: {message}")
        if "readonly" in message or "read-only" in message:
            return LedgerError(f"ledger write failed: {path} is read-only: {message}")
        return LedgerError(f"ledger open failed: {path}: {message}")

    def reader(self) -> Connection:
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)

    @contextlib.contextmanager
    def snapshot_reader(self) -> Iterator[Connection]:
        conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            conn.execute("BEGIN")  # one consistent read snapshot for all
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    def lock(self) -> LedgerFileLock:
        return LedgerFileLock(self.path)

    def checkpointer(self, **kwargs: Any) -> Checkpointer:
        return Checkpointer(self.path, **kwargs)

    def checkpoint_passive(self, conn: Connection) -> bool:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return True

    def before_close(self, conn: Connection) -> None:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# ------------------------------------------------------------------------------------ PostgreSQL


TCP_DEFAULTS: dict[str, int] = {"connect_timeout": 10, "keepalives": 1, "keepalives_idle": 5,
                                "keepalives_interval": 2, "keepalives_count": 3, "tcp_user_timeout": 10_000}
"""libpq connection options hedgerd sets unless the URL gives them (seconds; tcp_user_timeout in ms)."""
IDLE_IN_TRANSACTION_MS = 10_000
"""How long the server lets a ledger transaction sit idle before it ends the session (ms)."""


class PgConnection:
    """A psycopg 3 connection (autocommit) behind the ledger's :class:`Connection` interface."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._sql: dict[str, bytes] = {}

    def _translate(self, sql: str) -> bytes:
        translated = self._sql.get(sql)
        if translated is None:  # the ledger's SQL has no '?' or '%' inside string literals
            translated = self._sql[sql] = sql.replace("?", "%s").encode()
        return translated

    @property
    def in_transaction(self) -> bool:
        import psycopg.pq

        return self._conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, parameters: Sequence[Any] | None = None, /) -> Any:
        import psycopg

        try:
            return self._conn.execute(self._translate(sql), parameters or None)
        except psycopg.Error as exc:
            raise StorageError(str(exc).strip()) from exc

    def executemany(self, sql: str, parameters: Sequence[Sequence[Any]], /) -> Any:
        import psycopg

        try:
            cursor = self._conn.cursor()
            cursor.executemany(self._translate(sql), parameters)
            return cursor
        except psycopg.Error as exc:
            raise StorageError(str(exc).strip()) from exc

    def close(self) -> None:
        self._conn.close()


class PostgresStorage(Storage):
    """A PostgreSQL database (see :mod:`hedgerd.ledger.schema` for its DDL beside SQLite's)."""

    kind = "postgresql"
    returns_fill_ids = True
    #: a transaction-scoped advisory lock taken by every opening transaction, so two instances
    #: opening at once create or migrate the schema one after the other (not leadership)
    OPEN_LOCK_KEY = 0x68656467  # "hedg"

    def __init__(self, url: str) -> None:
        self.url = url
        self._password = urlsplit(url).password or ""

    def _scrubbed(self, exc: BaseException) -> str:
        """The driver's message, without the URL's password should it quote it."""
        text = str(exc).strip()
        return text.replace(self._password, MASK) if self._password else text

    @property
    def display(self) -> str:
        return masked_url(self.url)

    def _connect(self, **kwargs: Any) -> PgConnection:
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StorageError("ledger.url is a PostgreSQL URL but psycopg is not installed: "
                               "pip install 'hedgerd[postgres]'") from exc
        from psycopg.conninfo import conninfo_to_dict

        given = conninfo_to_dict(self.url)
        # A server that stops answering (a partition, not a reset) fails the connection within
        # about ten seconds instead of the kernel's minutes; the URL's own settings win.
        for option, value in TCP_DEFAULTS.items():
            if option not in given:
                kwargs[option] = value
        try:
            return PgConnection(psycopg.connect(self.url, autocommit=True, **kwargs))
        except psycopg.Error as exc:
            raise StorageError(self._scrubbed(exc)) from None  # the cause may quote the URL

    def connect(self) -> Connection:
        return self._connect(application_name="hedgerd-ledger")

    def configure(self, conn: Connection, synchronous: str, wal_size_limit: int) -> tuple[str, str]:
        # Durable on COMMIT whatever ledger.synchronous says: an intent must be on disk before its send.
        conn.execute("SET synchronous_commit = on")
        conn.execute("SET statement_timeout = 30000")
        # A transaction left open by a frozen process (SIGSTOP, a stalled VM) holds its row and
        # unique-key locks, and a standby taking over blocks on them: the server ends it instead.
        # Ours stay open at most the writer's 5 s wait for the event loop.
        conn.execute(f"SET idle_in_transaction_session_timeout = {IDLE_IN_TRANSACTION_MS}")
        level = str(conn.execute("SHOW synchronous_commit").fetchone()[0])
        return f"synchronous_commit={level}", "postgresql"

    def schema(self) -> list[str]:
        return [f"SELECT pg_advisory_xact_lock({self.OPEN_LOCK_KEY})",
                *(s for s in PG_SCHEMA.split(";") if s.strip())]

    def migrate(self, conn: Connection, version: int) -> bool:
        path = range(version, SCHEMA_VERSION)
        if not path or any(step not in PG_MIGRATIONS for step in path):
            return False
        for step in path:
            for statement in PG_MIGRATIONS[step]:
                conn.execute(statement)
        conn.execute(_SET_META, ("schema_version", str(SCHEMA_VERSION)))
        log.warning("ledger schema migrated from version %d to %d", version, SCHEMA_VERSION)
        return True

    def fills_insert(self, rows: int) -> str:
        # RETURNING: identity values skipped by conflicts and rollbacks leave gaps in fill ids
        return (f"INSERT INTO fills ({_FILL_COLUMNS}) VALUES " + ",".join([_FILL_ROW] * rows)
                + " ON CONFLICT (venue, trade_id) DO NOTHING RETURNING fill_id")

    def fill_rows_per_statement(self, conn: Connection, width: int) -> int:
        rows = 1
        while rows * 2 * width <= 65_535 and rows < self.max_fill_rows:  # the protocol's parameter limit
            rows *= 2
        return rows

    def open_error(self, exc: Exception) -> LedgerError:
        return LedgerError(f"ledger open failed: {self.display}: {exc}")

    def reader(self) -> Connection:
        return self._connect(application_name="hedgerd-ledger-reader")

    @contextlib.contextmanager
    def snapshot_reader(self) -> Iterator[Connection]:
        conn = self._connect(application_name="hedgerd-ledger-verify")
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()


__all__ = ["DB_ERRORS", "Connection", "LedgerError", "PgConnection", "PostgresStorage",
           "SqliteStorage", "Storage", "StorageError", "is_postgres_url", "masked_url", "storage_for"]
