"""A ccxt venue's ``sim_base_url``: one setting points every url of the venue at ``hedgerd venue-sim``
(issue 18, point 10)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async
import pytest
from pydantic import SecretStr

from hedgerd.config import Settings, VenueConfig, VenueKind, VenueRole, load_settings, settings_notes
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.errors import ConfigError
from hedgerd.exchange_sim import main as venue_sim_main
from tests.daemon_proc import free_port

ROOT = Path(__file__).resolve().parent.parent


def sim_venue_config(exchange: str, base_url: str, **fields: Any) -> VenueConfig:
    role = VenueRole.HEDGE if exchange == "binanceusdm" else VenueRole.INVENTORY
    return VenueConfig(name=f"sim-{exchange}", kind=VenueKind.CCXT, role=role, exchange=exchange,
                       api_key=SecretStr("sim-api-key"), secret=SecretStr("sim-secret"),
                       sim_base_url=base_url, **fields)


def url_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from url_strings(item)


@pytest.mark.parametrize("exchange_id", ["binance", "binanceusdm"])
async def test_every_url_ccxt_would_call_points_at_the_base_url(exchange_id: str) -> None:
    port = free_port()
    base, ws_root = f"http://127.0.0.1:{port}/", f"ws://127.0.0.1:{port}/"
    exchange = create_exchange(sim_venue_config(exchange_id, f"http://127.0.0.1:{port}"))
    try:
        # every REST endpoint of ccxt's API definition, signed as ccxt sends it
        signed = [exchange.sign(path, [section], method.upper(), {})["url"]
                  for section, methods in exchange.api.items()
                  for method, paths in methods.items() for path in paths]
        assert len(signed) > 500, "ccxt's Binance API definition lists hundreds of endpoints"
        assert [u for u in signed if not u.startswith(base)] == []
        # every url of the table, websocket bases included
        table = list(url_strings(exchange.urls["api"]))
        assert [u for u in table if not u.startswith((base, ws_root))] == []
        assert any(u.startswith(ws_root) for u in table) and "binance.com" not in " ".join(table)
    finally:
        await exchange.close()


async def test_urls_are_merged_over_the_simulator_table() -> None:
    cfg = sim_venue_config("binanceusdm", "http://127.0.0.1:8901",
                           urls={"api": {"fapiPublic": "http://127.0.0.1:9/fapi/v1"}})
    exchange = create_exchange(cfg)
    try:
        assert exchange.urls["api"]["fapiPublic"] == "http://127.0.0.1:9/fapi/v1"
        assert exchange.urls["api"]["fapiPrivate"] == "http://127.0.0.1:8901/fapi/v1"
    finally:
        await exchange.close()


async def test_simulator_errors_map_to_the_exceptions_of_the_real_hosts() -> None:
    exchange = create_exchange(sim_venue_config("binanceusdm", "http://127.0.0.1:8901"))
    try:
        assert exchange.exceptions["exact"]["-2019"] is ccxt_async.InsufficientFunds
    finally:
        await exchange.close()


@pytest.mark.parametrize(("url", "expected"), [
    ("http://127.0.0.1:8901", "http://127.0.0.1:8901"),
    ("http://127.0.0.1:8901/", "http://127.0.0.1:8901"),
    ("https://sim.internal", "https://sim.internal"),
    ("http://[::1]:8901", "http://[::1]:8901"),
    ("http://venue-sim:8901", "http://venue-sim:8901"),
])
def test_good_base_urls(url: str, expected: str) -> None:
    assert sim_venue_config("binance", url).sim_base_url == expected


BAD = [  # (id, lines added to a ccxt Binance venue, what the message says)
    ("no scheme", 'sim_base_url = "127.0.0.1:8901"', "http://host:port"),
    ("ftp", 'sim_base_url = "ftp://127.0.0.1:8901"', "http://host:port"),
    ("no host", 'sim_base_url = "http://:8901"', "http://host:port"),
    ("user and password", 'sim_base_url = "http://user:pw@127.0.0.1:8901"', "must not carry a user or password"),
    ("path", 'sim_base_url = "http://127.0.0.1:8901/api/v3"', "without a path"),
    ("query", 'sim_base_url = "http://127.0.0.1:8901?x=1"', "without a path, query"),
    ("port out of range", 'sim_base_url = "http://127.0.0.1:99999"', "invalid port"),
    ("not a string", "sim_base_url = 8901", "string"),
    ("with sandbox", 'sandbox = true\nsim_base_url = "http://127.0.0.1:8901"', "set one of the two"),
    ("another exchange", 'exchange = "bybit"\nsim_base_url = "http://127.0.0.1:8901"',
     "exchange = 'binance' or 'binanceusdm'"),
    ("sim venue", 'kind = "sim"\nsim_base_url = "http://127.0.0.1:8901"', "kind = 'ccxt'"),
]


@pytest.mark.parametrize(("lines", "reason"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_base_urls_are_refused_naming_the_field(tmp_path: Path, lines: str, reason: str) -> None:
    venue = {"name": '"s"', "kind": '"ccxt"', "exchange": '"binance"', "role": '"inventory"'}
    for line in lines.splitlines():  # a case's own kind or exchange replaces the default one
        key, _, value = line.partition(" = ")
        venue[key] = value
    path = tmp_path / "hedgerd.toml"
    path.write_text('mode = "paper"\n[[venues]]\n' + "".join(f"{k} = {v}\n" for k, v in venue.items()))
    with pytest.raises(ConfigError) as info:
        load_settings(path, env={}, secrets_dir=tmp_path)
    assert info.value.path == "venues.0.sim_base_url", str(info.value)
    assert reason in info.value.reason, str(info.value)


def test_check_config_says_which_venues_trade_on_the_simulator() -> None:
    settings = Settings(venues=[sim_venue_config("binance", "http://127.0.0.1:8901"),
                                sim_venue_config("binanceusdm", "http://10.0.0.5:8901")],
                        hedges=[])
    notes = [n for n in settings_notes(settings) if "simulator" in n]
    assert notes == [
        "venue 'sim-binance' trades on the exchange simulator at http://127.0.0.1:8901, not on the exchange",
        "venue 'sim-binanceusdm' trades on the exchange simulator at http://10.0.0.5:8901, not on the exchange "
        "(plain http to another host: its api key crosses the network unencrypted)",
    ]


def test_the_connector_does_not_import_the_simulator() -> None:
    script = textwrap.dedent("""
        import asyncio, sys
        from pydantic import SecretStr
        from hedgerd.config import VenueConfig
        from hedgerd.connectors.ccxt import create_exchange

        cfg = VenueConfig(name="s", kind="ccxt", role="hedge", exchange="binanceusdm",
                          sim_base_url="http://127.0.0.1:8901", urls={"api": {"v1": "http://127.0.0.1:1/api/v1"}},
                          api_key=SecretStr("k"), secret=SecretStr("s"))
        asyncio.run(create_exchange(cfg).close())
        print(sorted(m for m in sys.modules if m.startswith("hedgerd.exchange_sim")))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.splitlines()[-1] == "[]"


def test_venue_sim_help_shows_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        venue_sim_main(["--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: 127.0.0.1)", "(default: 8901)", "(default: sim-api-key)", "(default: 4.0)",
                    "sim_base_url"):
        assert default in text


def test_the_readme_section_on_venue_sim_links_the_config_and_the_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Trying real-venue code paths without an exchange", 1)[1].split("\n## ", 1)[0]
    assert "(config/venue-sim.toml)" in section and "sim_base_url" in section


@pytest.mark.parametrize(("args", "message"), [
    (["--port", "99999"], "--port must be 0 to 65535, not 99999"),
    (["--tick-interval", "0", "--flow-rate", "-1"], "--flow-rate must be >= 0, not -1.0; --tick-interval must be > 0"),
    (["--usdm-weight-limit", "0"], "--usdm-weight-limit must be > 0, not 0"),
])
def test_venue_sim_refuses_bad_values_naming_them(capsys: pytest.CaptureFixture[str], args: list[str],
                                                  message: str) -> None:
    with pytest.raises(SystemExit) as info:
        venue_sim_main(args)
    assert info.value.code == 2
    out = capsys.readouterr()
    assert message in out.err and out.out == ""

