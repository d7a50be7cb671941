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
