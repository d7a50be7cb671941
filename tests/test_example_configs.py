"""Every file in config/ is a valid configuration that ``hedgerd check-config`` accepts.

Live files carry no credentials: they load once placeholder credentials are given the way the
files document (environment), and the ccxt exchanges they name can be built offline.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hedgerd.cli import main as cli_main
from hedgerd.clock import RealClock
from hedgerd.config import (
    Mode,
    Settings,
    VenueKind,
    VenueRole,
    credential_env_var,
    load_settings,
)
from hedgerd.connectors.ccxt import build_ccxt_venue, create_exchange
from hedgerd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted((ROOT / "config").glob("*.toml"))
PLACEHOLDER_KEY, PLACEHOLDER_SECRET = "placeholder-api-key-0000", "placeholder-secret-0000"


def raw(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def placeholder_credentials(path: Path) -> dict[str, str]:
    """HEDGERD_CREDENTIALS__<VENUE>__API_KEY / __SECRET for every ccxt venue of the file."""
    env: dict[str, str] = {}
    for venue in raw(path).get("venues", []):
        if venue.get("kind") == "ccxt":
            env[credential_env_var(venue["name"], "api_key")] = PLACEHOLDER_KEY
            env[credential_env_var(venue["name"], "secret")] = PLACEHOLDER_SECRET
    return env


def load(path: Path, tmp_path: Path) -> Settings:
    secrets = tmp_path / "no-secrets"
    secrets.mkdir(exist_ok=True)
    return load_settings(path, env=placeholder_credentials(path), secrets_dir=secrets)


def test_the_issue_examples_exist() -> None:
    names = {p.name for p in CONFIGS}
    assert {"venue-sim.toml", "binance-testnet.toml", "bybit-hedge.example.toml", "deribit-sim.toml",
            "deribit-options.example.toml", "deribit-binance.example.toml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_has_no_secrets_and_loads(path: Path, tmp_path: Path) -> None:
    data = raw(path)
    assert "credentials" not in data
    assert "token" not in data.get("admin", {})
    for venue in data.get("venues", []):
        assert not {"api_key", "secret", "password"} & set(venue), venue["name"]
    settings = load(path, tmp_path)
    assert settings.hedges, "an example that hedges nothing"
    if settings.mode is Mode.LIVE:
        assert all(v.kind is VenueKind.CCXT and v.has_credentials for v in settings.venues)
        with pytest.raises(ConfigError) as excinfo:  # and without them it refuses
            load_settings(path, env={}, secrets_dir=tmp_path / "no-secrets")
        assert "HEDGERD_CREDENTIALS__" in excinfo.value.reason


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    import os

    for name in list(os.environ):
        if name.upper().startswith("HEDGERD_"):
            monkeypatch.delenv(name)
    (tmp_path / "secrets").mkdir()
    monkeypatch.setenv("HEDGERD_SECRETS_DIR", str(tmp_path / "secrets"))
    yield monkeypatch


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_check_config_accepts_example(path: Path, clean_env: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in placeholder_credentials(path).items():
        clean_env.setenv(name, value)
    assert cli_main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "effective hedgerd configuration" in out
    assert PLACEHOLDER_KEY not in out and PLACEHOLDER_SECRET not in out


def test_secrets_files_work_as_documented(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """config/venue-sim.toml: the simulator's credentials as files in the secrets dir."""
    path = ROOT / "config/venue-sim.toml"
    secrets = tmp_path / "secrets"
    for venue in ("sim_binance", "sim_binanceusdm"):
        (secrets / f"hedgerd_credentials__{venue}__api_key").write_text("sim-api-key")
        (secrets / f"hedgerd_credentials__{venue}__secret").write_text("sim-secret")
    settings = load_settings(path)
    assert [(v.name, v.api_key.get_secret_value() if v.api_key else None) for v in settings.venues] == [
        ("sim-binance", "sim-api-key"), ("sim-binanceusdm", "sim-api-key")]


def _url_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _url_strings(item)


async def test_venue_sim_example_reaches_only_the_local_simulator(tmp_path: Path) -> None:
    settings = load(ROOT / "config/venue-sim.toml", tmp_path)
    assert [v.exchange for v in settings.venues] == ["binance", "binanceusdm"]
    assert [v.role for v in settings.venues] == [VenueRole.INVENTORY, VenueRole.HEDGE]
    for cfg in settings.venues:
        assert cfg.sim_base_url == "http://127.0.0.1:8901" and not cfg.urls, "one setting, no url table"
        exchange = create_exchange(cfg)
        try:
            urls = list(_url_strings(exchange.urls["api"]))
            assert urls and all(u.startswith(("http://127.0.0.1:8901/", "ws://127.0.0.1:8901/")) for u in urls), \
                [u for u in urls if "127.0.0.1" not in u]
        finally:
            await exchange.close()


@pytest.mark.parametrize(("name", "hosts"), [
    ("binance-testnet.toml", ("testnet.binance.vision", "binancefuture.com")),
    ("bybit-hedge.example.toml", ("api.binance.com", "api-testnet.")),
])
async def test_live_examples_build_their_ccxt_venues_offline(name: str, hosts: tuple[str, ...],
                                                             tmp_path: Path) -> None:
    settings = load(ROOT / "config" / name, tmp_path)
    seen: list[str] = []
    for cfg, host in zip(settings.venues, hosts, strict=True):
        venue = build_ccxt_venue(cfg, settings, RealClock())
        try:
            assert venue.exchange.id == cfg.exchange
            assert any(host in u for u in _url_strings(venue.exchange.urls["api"])), (cfg.name, host)
            assert venue.symbols == (("BTC/USDT:USDT",) if cfg.role is VenueRole.HEDGE else ("BTC/USDT",))
            seen.append(venue.exchange.id)
        finally:
            await venue.close()
    assert len(set(seen)) == 2


async def test_deribit_sim_example_reaches_only_the_local_simulator(tmp_path: Path) -> None:
    settings = load(ROOT / "config/deribit-sim.toml", tmp_path)
    for cfg in settings.venues:
        assert cfg.exchange == "deribit" and cfg.sim_base_url == "http://127.0.0.1:8902" and not cfg.urls
        venue = build_ccxt_venue(cfg, settings, RealClock())
        try:
            urls = list(_url_strings(venue.exchange.urls["api"]))
            assert urls and all(u.startswith(("http://127.0.0.1:8902", "ws://127.0.0.1:8902/")) for u in urls), urls
            if cfg.role is VenueRole.HEDGE:
                assert venue.symbols == ("BTC/USD:BTC",)
            else:  # every BTC instrument once the markets load, less the perpetual hedged on the same exchange
                assert (venue.symbols, venue.underlyings, venue.exclude_symbols) == ((), ("BTC",),
                                                                                     frozenset({"BTC/USD:BTC"}))
        finally:
            await venue.close()


@pytest.mark.parametrize(("name", "hosts"), [
    ("deribit-options.example.toml", ("test.deribit.com", "test.deribit.com")),
    ("deribit-binance.example.toml", ("test.deribit.com", "binancefuture.com")),
])
async def test_deribit_examples_start_on_the_testnets(name: str, hosts: tuple[str, ...], tmp_path: Path) -> None:
    settings = load(ROOT / "config" / name, tmp_path)
    assert settings.kill_switch.engaged, "a real-money example starts HALTED"
    for cfg, host in zip(settings.venues, hosts, strict=True):
        venue = build_ccxt_venue(cfg, settings, RealClock())
        try:
            urls = list(_url_strings(venue.exchange.urls["api"]))
            assert any(host in u for u in urls), (cfg.name, host)
            if cfg.exchange == "deribit":  # nothing points at www.deribit.com
                assert all(host in u for u in urls), (cfg.name, urls)
        finally:
            await venue.close()
    hedge = settings.hedges[0]
    assert [s.asset for s in hedge.inventory] == ["*"]
