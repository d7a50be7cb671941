"""The ``hedgerd`` command line as a user runs it: a subprocess, its exit code and its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_proc import TOKEN, free_port, running_daemon

SECRET_TOKEN = "cli-test-token-7f3a9c2e1b"
VENUE_KEY = "venue-key-5d8e2a7c4f"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGERD_")}
    env.update(extra)
    return env


def hedgerd(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hedgerd.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_check_config_prints_the_effective_config_with_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text(f"""
[admin]
port = 9333
[[venues]]
name = "sim-spot"
role = "inventory"
api_key = "{VENUE_KEY}"
[[venues]]
name = "sim-perp"
role = "hedge"
[venues.sim]
symbol = "BTC/USDT:USDT"
""")
    result = hedgerd("check-config", "--config", str(config), env=clean_env(HEDGERD_ADMIN__TOKEN=SECRET_TOKEN),
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "port = 9333" in result.stdout  # from the file
    assert "**********" in result.stdout
    for secret in (SECRET_TOKEN, VENUE_KEY):
        assert secret not in result.stdout + result.stderr
    as_json = hedgerd("check-config", "--config", str(config), "--format", "json",
                      env=clean_env(HEDGERD_ADMIN__TOKEN=SECRET_TOKEN), cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["admin"]["token"] == "**********" and data["venues"][0]["api_key"] == "**********"


@pytest.mark.parametrize(("toml", "env", "dotted_path"), [
    ("[[hedges]]\nunderlying = 'BTC'\nvenue = 'sim-perp'\nsymbol = 'BTC/USDT:USDT'\nthreshold = -1\n"
     "inventory = [{venue = 'sim-spot', asset = 'BTC'}]\n", {}, "hedges.0.threshold"),
    ("", {"HEDGERD_ADMIN__PORT": "not-a-port"}, "admin.port"),
    ("", {"HEDGERD_EXECUTOR__MAX_RETRIES": "-3"}, "executor.max_retries"),
])
def test_check_config_rejects_an_invalid_setting_with_its_dotted_path(
        tmp_path: Path, toml: str, env: dict[str, str], dotted_path: str) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text(toml)
    result = hedgerd("check-config", "--config", str(config), env=clean_env(**env), cwd=tmp_path)
    assert result.returncode == 2
    assert f"config error at {dotted_path}:" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""


def test_status_kill_and_resume_talk_to_a_running_daemon(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "daemon") as d:
        env = clean_env(HEDGERD_ADMIN__PORT=str(d.port), HEDGERD_ADMIN__TOKEN=TOKEN)

        status = hedgerd("status", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["trading_state"] == "active"

        kill = hedgerd("kill", "--reason", "desk maintenance", env=env, cwd=tmp_path)
        assert kill.returncode == 0, kill.stderr
        answer = json.loads(kill.stdout)
        assert answer["trading_state"] == "halted" and answer["reason"] == "desk maintenance"
        assert d.total("hedgerd_trading_state") == 2  # the daemon really halted
        status = json.loads(hedgerd("status", env=env, cwd=tmp_path).stdout)
        assert status["trading_state"] == "halted" and status["reason"] == "desk maintenance"

        resume = hedgerd("resume", env=env, cwd=tmp_path)
        assert resume.returncode == 0, resume.stderr
        assert json.loads(resume.stdout)["trading_state"] == "active"
        assert d.total("hedgerd_trading_state") == 0

        wrong = hedgerd("kill", env={**env, "HEDGERD_ADMIN__TOKEN": "wrong-token-0000000"}, cwd=tmp_path)
        assert wrong.returncode == 1
        assert "unauthorized" in wrong.stderr
        assert d.total("hedgerd_trading_state") == 0


@pytest.mark.parametrize("command", [["status"], ["kill", "--reason", "x"], ["resume"]])
def test_control_commands_without_a_daemon_fail_clearly(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = hedgerd(*command, env=clean_env(HEDGERD_ADMIN__PORT=str(port), HEDGERD_ADMIN__TOKEN=TOKEN),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot reach the daemon at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
