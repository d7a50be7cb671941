"""Shared pytest configuration."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Tests never read the operator's environment config.
for _name in list(os.environ):
    if _name.startswith("HEDGERD_"):
        del os.environ[_name]

from tests.pgserver import PgServer, PgUnavailable  # noqa: E402  (after ROOT is on sys.path)

# ----------------------------------------------------------------------------------- PostgreSQL
# A real server (tests/pgserver.py), started once per session when a test asks for it; every test
# gets a fresh database. Missing server binaries fail the test with the install hint, never skip.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (initdb'd in a temporary directory, stopped at the end)."""
    try:
        server = PgServer()
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """URL of a fresh, empty database on the session's server, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url.rsplit("/", 1)[1])


# ---------------------------------------------------------------------------------- ledger backends
# A test (or fixture) asking for ``ledger_location`` runs once per ledger backend: a SQLite file and a
# fresh PostgreSQL database. ``@pytest.mark.sqlite_only`` keeps a test of SQLite internals (its
# files, pragmas, locks) to SQLite.
LEDGER_BACKENDS = ("sqlite", "postgresql")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "ledger_backend" in metafunc.fixturenames:
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("ledger_backend", ["sqlite"] if only_sqlite else list(LEDGER_BACKENDS))


@pytest.fixture
def ledger_location(ledger_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """Where a test's ledger lives: a SQLite file path, or the URL of a fresh PostgreSQL database."""
    if ledger_backend == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return tmp_path / "ledger.sqlite"
