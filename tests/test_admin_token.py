"""Admin token rules: live mode refuses a known placeholder or a short token (exit 2 naming
``admin.token``); paper mode accepts it with a startup warning and a ``check-config`` note."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import structlog.testing
from pydantic import SecretStr

from hedgerd.admin.token import KNOWN_PLACEHOLDERS, MIN_ADMIN_TOKEN_LENGTH, admin_token_weakness
from hedgerd.config import AdminConfig, KillSwitchConfig, LedgerConfig, Settings, credential_env_var
from hedgerd.daemon import Daemon
from tests.test_cli import clean_env, hedgerd

ROOT = Path(__file__).resolve().parent.parent
LIVE_EXAMPLE = ROOT / "config" / "live.example.toml"
LIVE_CREDENTIALS = {credential_env_var(venue, part): f"value-{venue}-{part}"
                    for venue in ("binance-spot", "binance-usdm") for part in ("api_key", "secret")}


@pytest.mark.parametrize("token", [*sorted(KNOWN_PLACEHOLDERS), "REPLACE-WITH-A-LONG-RANDOM-TOKEN",
                                   "please-replace-me-with-a-real-token-0123", "x" * (MIN_ADMIN_TOKEN_LENGTH - 1),
                                   secrets.token_hex(15)])
def test_weak_tokens(token: str) -> None:
    weakness = admin_token_weakness(token)
    assert weakness is not None
    assert token not in weakness


def test_a_long_random_token_is_fine() -> None:
    assert admin_token_weakness(secrets.token_hex(16)) is None  # `openssl rand -hex 16` and up
    assert admin_token_weakness(secrets.token_urlsafe(32)) is None


@pytest.mark.parametrize("command", ["check-config", "run"])
@pytest.mark.parametrize("token", ["REPLACE-WITH-A-LONG-RANDOM-TOKEN", "hedgerd-demo-token", secrets.token_hex(8)])
def test_live_mode_with_a_weak_token_exits_2_naming_the_field(tmp_path: Path, command: str, token: str) -> None:
    env = clean_env(**LIVE_CREDENTIALS, HEDGERD_ADMIN__TOKEN=token, HEDGERD_LEDGER__PATH=str(tmp_path / "l.sqlite"))
    result = hedgerd(command, "--config", str(LIVE_EXAMPLE), env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hedgerd: config error at admin.token: "), result.stderr
    assert "openssl rand -hex 32" in lines[0]
    assert token not in result.stdout + result.stderr
    assert not (tmp_path / "l.sqlite").exists()  # refused before anything started


def test_live_mode_with_a_generated_token_passes(tmp_path: Path) -> None:
    env = clean_env(**LIVE_CREDENTIALS, HEDGERD_ADMIN__TOKEN=secrets.token_hex(32))
    result = hedgerd("check-config", "--config", str(LIVE_EXAMPLE), env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "admin.token" not in result.stderr


def test_check_config_notes_a_weak_token_in_paper_mode(tmp_path: Path) -> None:
    result = hedgerd("check-config", env=clean_env(HEDGERD_ADMIN__TOKEN="hedgerd-demo-token"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert ("hedgerd: note: admin.token is a known placeholder (a value from an example or a demo): accepted in "
            "paper mode, refused in live mode; generate one with `openssl rand -hex 32`") in result.stderr.splitlines()


@pytest.mark.parametrize(("token", "warned"), [("hedgerd-demo-token", True), (secrets.token_hex(16), False),
                                               (None, False)])
async def test_paper_daemon_warns_about_a_weak_token_at_startup(tmp_path: Path, token: str | None,
                                                                warned: bool) -> None:
    settings = Settings(admin=AdminConfig(port=0, token=SecretStr(token) if token else None),
                        ledger=LedgerConfig(path=tmp_path / "ledger.sqlite"),
                        kill_switch=KillSwitchConfig(kill_file=None))
    daemon = Daemon(settings)
    daemon.request_stop()  # stop as soon as it has started
    with structlog.testing.capture_logs() as logs:
        await daemon.run()
    weak = [e for e in logs if e["event"] == "admin_token_weak"]
    if warned:
        assert len(weak) == 1 and weak[0]["log_level"] == "warning" and weak[0]["field"] == "admin.token"
        assert "placeholder" in weak[0]["problem"] and "openssl rand -hex 32" in weak[0]["detail"]
        assert token not in repr(logs)
    else:
        assert weak == [] and any(e["event"] == "shutting_down" for e in logs)
