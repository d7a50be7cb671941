"""The control commands' pieces in process: the admin-only config loader and the readable answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hedgerd.admin.control import admin_base_url, load_admin_config
from hedgerd.admin.status_view import describe_kill, describe_resume, describe_status
from hedgerd.config import Settings
from hedgerd.daemon import Daemon
from hedgerd.errors import ConfigError

LIVE_EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "live.example.toml"


# --------------------------------------------------------------------------- load_admin_config
def test_the_admin_section_of_a_live_config_loads_without_credentials(tmp_path: Path) -> None:
    admin = load_admin_config(LIVE_EXAMPLE, env={}, secrets_dir=tmp_path)
    assert (admin.host, admin.port, admin.token) == ("127.0.0.1", 9108, None)


def test_admin_precedence_is_the_daemons_file_env_secrets(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text('[admin]\nhost = "10.0.0.5"\nport = 9001\ntoken = "from-the-file"\n')
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    admin = load_admin_config(config, env={"HEDGERD_ADMIN__PORT": "9002"}, secrets_dir=secrets)
    assert (admin.host, admin.port) == ("10.0.0.5", 9002)  # untouched keys keep the file's value
    assert admin.token is not None and admin.token.get_secret_value() == "from-the-file"
    (secrets / "hedgerd_admin__token").write_text("from-the-secrets-dir\n")
    (secrets / "hedgerd_credentials__binance_spot__api_key").write_text("not needed, not read")
    admin = load_admin_config(config, env={"HEDGERD_ADMIN__TOKEN": "from-env"}, secrets_dir=secrets)
    assert admin.token is not None and admin.token.get_secret_value() == "from-the-secrets-dir"


def test_admin_config_file_and_secrets_dir_come_from_the_environment_too(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text("[admin]\nport = 9555\n")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hedgerd_admin__token").write_text("tok")
    admin = load_admin_config(env={"HEDGERD_CONFIG": str(config), "HEDGERD_SECRETS_DIR": str(secrets)})
    assert admin.port == 9555 and admin.token is not None and admin.token.get_secret_value() == "tok"


def test_settings_outside_admin_are_neither_read_nor_validated(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text('mode = "live"\nno_such_section = 1\n[executor]\nmax_retries = -3\n[admin]\nport = 9333\n')
    env = {"HEDGERD_RISK__MAX_PRICE_JUMP": "not a number", "HEDGERD_NO_SUCH_SETTING": "1"}
    assert load_admin_config(config, env=env, secrets_dir=tmp_path).port == 9333


@pytest.mark.parametrize(("toml", "env", "path"), [
    ("[admin]\nport = -1\n", {}, "admin.port"),
    ("[admin]\ntoken = 5\n", {}, "admin.token"),
    ("[admin]\nmax_body_bytes = 1\n", {}, "admin.max_body_bytes"),
    ("[admin]\nextra = 1\n", {}, "admin.extra"),
    ("", {"HEDGERD_ADMIN__PORT": "port"}, "admin.port"),
    ("", {"HEDGERD_ADMIN": "[1, 2"}, "admin"),
])
def test_a_bad_admin_value_names_its_path(tmp_path: Path, toml: str, env: dict[str, str], path: str) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text(toml)
    with pytest.raises(ConfigError) as excinfo:
        load_admin_config(config, env=env, secrets_dir=tmp_path)
    assert excinfo.value.path == path


def test_a_missing_config_file_or_secrets_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_admin_config(tmp_path / "nope.toml", env={}, secrets_dir=tmp_path)
    with pytest.raises(ConfigError, match="secrets dir not found"):
        load_admin_config(None, env={}, secrets_dir=tmp_path / "nope")


@pytest.mark.parametrize(("host", "url"), [("127.0.0.1", "http://127.0.0.1:9108"),
                                           ("0.0.0.0", "http://127.0.0.1:9108"),
                                           ("::1", "http://[::1]:9108"),
                                           ("hedgerd.internal", "http://hedgerd.internal:9108")])
def test_admin_base_url(tmp_path: Path, host: str, url: str) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text(f'[admin]\nhost = "{host}"\n')
    assert admin_base_url(load_admin_config(config, env={}, secrets_dir=tmp_path)) == url


# --------------------------------------------------------------------------- readable answers
NOW = 1_796_630_400.0  # 2026-12-07 08:00:00 UTC

UNDERLYING = {"net_delta": "-0.0123", "threshold": "0.05", "perp_position": "-1.2500", "in_flight": "0.0100",
              "hedge_venue": "binance-usdm", "hedge_symbol": "BTC/USDT:USDT", "price_age_seconds": 0.42,
              "realized_pnl": "-12.5", "inventory": "1.25", "notional": "735"}


def _status(**changes: object) -> dict[str, object]:
    status: dict[str, object] = {
        "mode": "live", "trading_state": "active", "reason": "", "source": "", "since": None, "latches": [],
        "ready": True, "not_ready": [], "underlyings": {"BTC": dict(UNDERLYING)}, "open_orders": [{}],
        "fills": 120, "duplicate_fills": 3, "fill_echoes": 57, "consecutive_order_errors": 0, "positions": {}}
    status.update(changes)
    return status


def test_status_summary_of_a_daemon_that_never_changed_state() -> None:
    text = describe_status(_status(), NOW)
    lines = text.splitlines()
    assert lines[0] == "hedgerd (live mode): trading ACTIVE since start"
    assert lines[1] == "ready"
    assert "BTC   net delta       -0.0123 BTC  (band ±0.05 BTC)" in lines
    assert "      hedge position  -1.2500 BTC  on binance-usdm BTC/USDT:USDT" in lines
    assert "      in flight       +0.0100 BTC" in lines
    assert "      price age       0.4 s" in lines
    assert "      realized PnL    -12.5 USDT" in lines
    assert not any("hedging cost" in line for line in lines)  # this status has none
    assert lines[-1] == "open orders 1, fills 120 (echoes of own fills 57, duplicates 3), consecutive order errors 0"
    assert "0.0" not in lines[0] and "1970" not in text


def test_status_summary_of_a_halted_daemon_says_why_and_since_when() -> None:
    btc = {**UNDERLYING, "hedging_cost": "3.25"}
    text = describe_status(_status(trading_state="halted", reason="stale price BTC/USDT:USDT", source="auto",
                                   since=NOW - 125, latches=["kill_file"], ready=False,
                                   not_ready=["price feed stale"], underlyings={"BTC": btc}), NOW)
    lines = text.splitlines()
    assert lines[0] == ("hedgerd (live mode): trading HALTED since 2026-12-07 07:57:55 UTC (2 min 5 s ago): "
                        "stale price BTC/USDT:USDT (by auto)")
    assert lines[1].startswith("held by: kill_file")
    assert lines[2] == "NOT READY: price feed stale"
    assert "      hedging cost    3.25 USDT" in lines


def test_status_summary_shows_the_hedging_cost_decomposition_as_the_daemon_sends_it() -> None:
    cost = {"fee": "0.1200", "spread": "0.2", "slippage": "-0.05", "funding": "0", "total": "0.2700",
            "unvalued_fees": 1, "unmeasured_fills": 0}
    lines = describe_status(_status(underlyings={"BTC": {**UNDERLYING, "hedging_cost": cost}}), NOW).splitlines()
    assert ("      hedging cost    0.2700 USDT  (fee 0.1200 + spread 0.2 + slippage -0.05 + funding 0)"
            in lines)
    assert "      not counted     1 fees not valued (no fresh conversion price)" in lines


def test_status_summary_of_an_options_book_shows_its_delta_by_source_greeks_and_what_is_not_valued() -> None:
    btc = {**UNDERLYING, "delta_by_source": {"option": "-1.475", "inverse": "0.02", "spot": "0", "hedge": "1.45",
                                             "in_flight": "0"},
           "gamma": -7.0e-4, "vega": -1234.5, "greeks_source": "venue",
           "unvalued": ["BTC/USD:BTC-270326-100000-C on deribit: no option quote"]}
    lines = describe_status(_status(underlyings={"BTC": btc}), NOW).splitlines()
    assert "      delta by source  option -1.475, inverse +0.02, hedge +1.45 BTC" in lines
    assert "      greeks           gamma -0.0007 BTC/price, vega -1.23e+03/vol point (venue)" in lines
    assert ("      NOT VALUED       BTC/USD:BTC-270326-100000-C on deribit: no option quote (no hedging until "
            "they are)") in lines
    plain = describe_status(_status(underlyings={"BTC": {**UNDERLYING, "delta_by_source": {"spot": "1"}}}), NOW)
    assert "delta by source" not in plain  # a spot/linear book: the summary as before


def test_status_summary_of_an_unexpected_answer_points_at_json() -> None:
    assert "--json" in describe_status({"hello": "world"}, NOW)
    assert "--json" in describe_status(_status(underlyings={"BTC": {"net_delta": "lots"}}), NOW)


def test_kill_and_resume_one_liners() -> None:
    assert describe_kill({"trading_state": "halted", "reason": "desk", "changed": True}) == "trading HALTED: desk"
    assert describe_kill({"trading_state": "reducing", "reason": "wind down", "changed": False}, "reducing") == \
        "trading already REDUCING: wind down"
    assert describe_kill({"trading_state": "halted", "reason": "desk", "changed": False}, "reducing") == \
        "trading stays HALTED: desk"
    assert describe_resume({"trading_state": "active", "reason": "", "resumed": True, "detail": "resumed"}) == \
        "trading ACTIVE (resumed)"
    assert describe_resume({"trading_state": "halted", "reason": "kill file", "resumed": False,
                            "detail": "latch kill_file held"}) == \
        "resume refused: latch kill_file held; trading stays HALTED (kill file)"
    assert "--json" in describe_kill({"state": "?"})


async def test_a_daemons_status_says_since_start_until_the_switch_first_moves(tmp_path: Path) -> None:
    # It used to report since = 0.0 (1970) for a switch that had never changed state.
    settings = Settings.model_validate({"ledger": {"path": tmp_path / "ledger.sqlite"},
                                        "kill_switch": {"kill_file": tmp_path / "KILL"}})
    daemon = Daemon(settings)
    assert daemon.engine.status()["since"] is None
    daemon.engine.engage("test", "test")
    since = daemon.engine.status()["since"]
    assert isinstance(since, float) and since == pytest.approx(daemon.clock.time(), abs=60)
    await daemon.ledger.close()
