"""The test tooling's PostgreSQL server: real, isolated per test, survives a stop/start."""

from __future__ import annotations

import psycopg
import pytest

from tests import pgserver
from tests.pgserver import PgServer, PgUnavailable


def test_fresh_database_is_empty_and_writable(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_each_test_gets_its_own_database(pg_server: PgServer, pg_url: str) -> None:
    other = pg_server.create_database()
    try:
        assert other != pg_url
        with psycopg.connect(other) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (other.rsplit("/", 1)[1],)
    finally:
        pg_server.drop_database(other.rsplit("/", 1)[1])


def test_stop_start_keeps_data_and_terminate_ends_sessions(pg_server: PgServer, pg_url: str) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (7)")
    victim = psycopg.connect(pg_url, autocommit=True)
    assert pg_server.terminate_backends(dbname) == 1
    with pytest.raises(psycopg.OperationalError):
        victim.execute("SELECT 1")
    victim.close()
    pg_server.stop()
    pg_server.start()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT x FROM kept").fetchall() == [(7,)]


def test_missing_binaries_raise_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PG_BIN", raising=False)
    monkeypatch.setattr(pgserver.glob, "glob", lambda pattern: [])
    monkeypatch.setattr(pgserver.shutil, "which", lambda name: None)
    with pytest.raises(PgUnavailable, match=r"install_tools\.sh"):
        pgserver.find_pg_bin()
