"""ledger.url: a PostgreSQL ledger chosen by configuration, its URL a secret like the credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hedgerd.config import render_settings, secret_values
from hedgerd.daemon import Daemon
from hedgerd.errors import ConfigError
from hedgerd.ledger import InventoryLedger, LedgerError
from tests.test_config import CCXT_VENUES, Loader

PASSWORD = "CANARY-db-pass-9e1f"
URL = f"postgresql://hedgerd:{PASSWORD}@db.internal:5432/hedgerd"
LIVE = "mode = 'live'\n" + CCXT_VENUES
CREDENTIALS = {f"HEDGERD_CREDENTIALS__{venue}__{field}": "x" for venue in ("BINANCE_SPOT", "BINANCE_USDM")
               for field in ("API_KEY", "SECRET")}


@pytest.fixture
def load(tmp_path: Path) -> Loader:
    return Loader(tmp_path)


def test_sqlite_is_the_default(load: Loader) -> None:
    settings = load()
    assert settings.ledger.url is None
    assert settings.ledger.location() == Path("var/hedgerd.sqlite")


@pytest.mark.parametrize("source", ["env", "secrets"])
def test_url_from_env_or_secrets_dir_is_used_and_masked_everywhere(load: Loader, source: str) -> None:
    if source == "env":
        settings = load(LIVE, env={**CREDENTIALS, "HEDGERD_LEDGER__URL": URL})
    else:
        settings = load(LIVE, env=CREDENTIALS, secrets={"hedgerd_ledger__url": URL + "\n"})
    assert settings.ledger.location() == URL
    for fmt in ("toml", "json"):
        assert PASSWORD not in render_settings(settings, fmt)
    assert json.loads(render_settings(settings, "json"))["ledger"]["url"] == "**********"
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.ledger)
    values = secret_values(settings)
    assert URL in values and PASSWORD in values  # the log redactor hides the password alone too


@pytest.mark.parametrize(("url", "reason"), [
    (f"mysql://hedgerd:{PASSWORD}@db/hedgerd", "must be a postgresql:// URL"),
    (f"postgresql://hedgerd:{PASSWORD}@db:port/hedgerd", "not a valid URL"),
    (f"postgresql://hedgerd:{PASSWORD}@db", "names no database"),
])
def test_a_bad_url_is_refused_without_showing_it(load: Loader, url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=r"ledger\.url") as raised:
        load(LIVE, env={**CREDENTIALS, "HEDGERD_LEDGER__URL": url})
    assert reason in str(raised.value)
    assert PASSWORD not in str(raised.value) and PASSWORD not in repr(raised.value)


def test_paper_run_on_in_process_venues_keeps_sqlite(load: Loader) -> None:
    with pytest.raises(ConfigError, match=r"ledger\.url: a paper run on in-process simulated venues"):
        load(env={"HEDGERD_LEDGER__URL": URL})


async def test_the_daemons_ledger_opens_the_configured_database(load: Loader, pg_url: str) -> None:
    settings = load(LIVE, env={**CREDENTIALS, "HEDGERD_LEDGER__URL": pg_url})
    ledger = Daemon(settings).ledger
    async with ledger:
        assert ledger.journal_mode == "postgresql"
        assert ledger.path is None


async def test_a_wrong_password_fails_open_without_showing_it(pg_url: str) -> None:
    ledger = InventoryLedger(pg_url.replace("postgres@", f"nosuchuser:{PASSWORD}@"))
    with pytest.raises(LedgerError, match="ledger open failed") as raised:
        await ledger.open()
    assert PASSWORD not in str(raised.value)
    assert raised.value.__cause__ is None or PASSWORD not in str(raised.value.__cause__)
