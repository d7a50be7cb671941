"""A real, throw-away PostgreSQL server for tests and benchmarks.

``PgServer`` initdb's a cluster in a temporary directory, starts it on a free TCP port on
127.0.0.1 (and a unix socket inside that directory), hands out fresh databases and removes
everything on ``close()``. Nothing is mocked: the server binaries come from Debian's
``postgresql`` package (tests/tools/install_tools.sh installs it). If they are missing,
``find_pg_bin`` raises ``PgUnavailable`` with the fix, so tests fail loudly instead of skipping.

PostgreSQL refuses to run as root, so as root the cluster is owned by the ``postgres`` user and
every server command runs through ``runuser -u postgres --``; as a normal user it runs directly.
Clients always connect as the superuser ``postgres`` with trust authentication (local only).

Usage outside pytest (bench/, the HA tests' helpers)::

    with PgServer() as server:
        url = server.create_database()      # postgresql://postgres@127.0.0.1:PORT/t_...
        ...
        server.stop(); server.start()       # same data directory, same port: a brief outage
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

INSTALL_HINT = (
    "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install Debian's `postgresql` "
    "package (bash tests/tools/install_tools.sh does it) or set PG_BIN to the directory holding them"
)
SUPERUSER = "postgres"


class PgUnavailable(RuntimeError):
    """The PostgreSQL server binaries are not installed."""


def find_pg_bin() -> Path:
    """Directory holding initdb/pg_ctl: $PG_BIN, Debian's newest /usr/lib/postgresql/N/bin, or PATH."""
    candidates: list[Path] = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    candidates.extend(Path(p) for p in debian)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    raise PgUnavailable(INSTALL_HINT)


def _version_key(path: str) -> int:
    name = Path(path).parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster in a temporary directory; ``start()`` on construction unless told not to.

    ``fsync=False`` (the default for tests) only skips flushing to the disk, which matters for a
    machine crash, not for a killed client or a stopped server; benchmarks pass ``fsync=True``.
    """

    def __init__(self, *, fsync: bool = False, start: bool = True) -> None:
        self.bin = find_pg_bin()
        self._as_postgres = os.geteuid() == 0
        # as root, under /tmp: the postgres user must reach the directory (TMPDIR may be root's own)
        self.root = Path(tempfile.mkdtemp(prefix="hedgerd-pg-", dir="/tmp" if self._as_postgres else None))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.port = _free_port()
        self.fsync = fsync
        self._running = False
        try:
            self._initdb()
            if start:
                self._first_start()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ server lifecycle

    def _cmd(self, *args: str) -> list[str]:
        if self._as_postgres:
            return ["runuser", "-u", SUPERUSER, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr or result.stdout}")

    def _initdb(self) -> None:
        self.socket_dir.mkdir()
        if self._as_postgres:
            pw = pwd.getpwnam(SUPERUSER)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )  # fmt: skip

    def _first_start(self, attempts: int = 3) -> None:
        """Start on a free port; another process may take the port between the pick and the bind."""
        for attempt in range(attempts):
            try:
                self.start()
                return
            except RuntimeError:
                if attempt == attempts - 1 or "could not bind" not in self.log_tail(50).lower():
                    raise
                self.port = _free_port()

    def start(self) -> None:
        """Start (or restart after ``stop``) the server on the same port and data directory."""
        if self._running:
            return
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        self._running = True
        self._wait_ready()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not listen on port {self.port}: {self.log_tail()}") from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` ends sessions cleanly, ``immediate`` is a crash); data is kept."""
        if not self._running:
            return
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self._running = False

    def close(self) -> None:
        """Stop the server and delete its directory."""
        with contextlib.suppress(Exception):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's log, for error messages."""
        try:
            return "\n".join((self.root / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def __enter__(self) -> PgServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ databases

    def url(self, dbname: str = "postgres") -> str:
        """Connection URL (TCP, superuser, no password: trust authentication)."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        """Run one statement outside a transaction on the maintenance database."""
        import psycopg  # imported here so the module loads (and explains itself) without the driver

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, ending its open sessions first."""
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_backends(self, dbname: str) -> int:
        """End every session on ``dbname`` (as a DBA or a network cut would); returns how many."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            ).fetchall()
        return len(rows)
