"""The ``hedgerd`` command line as a user runs it: a subprocess, its exit code and its output."""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.daemon_proc import TOKEN, daemon_env, free_port, running_daemon

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

        status = hedgerd("status", "--json", env=env, cwd=tmp_path)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["trading_state"] == "active"
        assert json.loads(status.stdout)["since"] is None  # never changed: not epoch 0

        readable = hedgerd("status", env=env, cwd=tmp_path)
        assert readable.returncode == 0, readable.stderr
        assert readable.stdout.startswith("hedgerd (paper mode): trading ACTIVE since start\n")
        assert "net delta" in readable.stdout and "(band ±0.05 BTC)" in readable.stdout
        assert "on sim-perp BTC/USDT:USDT" in readable.stdout and "price age" in readable.stdout

        kill = hedgerd("kill", "--reason", "desk maintenance", env=env, cwd=tmp_path)
        assert kill.returncode == 0, kill.stderr
        assert kill.stdout == "trading HALTED: desk maintenance\n"
        assert d.total("hedgerd_trading_state") == 2  # the daemon really halted
        status = json.loads(hedgerd("status", "--json", env=env, cwd=tmp_path).stdout)
        assert status["trading_state"] == "halted" and status["reason"] == "desk maintenance"
        assert isinstance(status["since"], float) and status["since"] > 1e9
        readable = hedgerd("status", env=env, cwd=tmp_path)
        assert "trading HALTED since 20" in readable.stdout and "desk maintenance" in readable.stdout
        again = hedgerd("kill", "--json", env=env, cwd=tmp_path)
        assert again.returncode == 0 and json.loads(again.stdout)["changed"] is False

        resume = hedgerd("resume", env=env, cwd=tmp_path)
        assert resume.returncode == 0, resume.stderr
        assert resume.stdout == "trading ACTIVE (resumed)\n"
        assert d.total("hedgerd_trading_state") == 0

        wrong = hedgerd("kill", env={**env, "HEDGERD_ADMIN__TOKEN": "wrong-token-0000000"}, cwd=tmp_path)
        assert wrong.returncode == 1
        assert "hedgerd: the daemon refused (401): unauthorized" in wrong.stderr
        assert "kill -USR1" in wrong.stderr and "no admin token was found" not in wrong.stderr
        tokenless = {k: v for k, v in env.items() if k != "HEDGERD_ADMIN__TOKEN"}
        missing = hedgerd("kill", env=tokenless, cwd=tmp_path)
        assert missing.returncode == 1 and "no admin token was found here" in missing.stderr
        assert d.total("hedgerd_trading_state") == 0


LIVE_EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "live.example.toml"


def test_emergency_controls_work_with_a_live_config_and_no_exchange_credentials(tmp_path: Path) -> None:
    # The live example names ccxt venues whose credentials this shell does not have: check-config
    # refuses it, the control commands must not care (issue 18, point 1).
    assert hedgerd("check-config", "--config", str(LIVE_EXAMPLE), env=clean_env(), cwd=tmp_path).returncode == 2
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hedgerd_admin__token").write_text(TOKEN + "\n")
    with running_daemon(tmp_path / "daemon") as d:
        # A proxy in the operator's shell (nothing listens there) must not carry the kill.
        dead_proxy = f"http://127.0.0.1:{free_port()}"
        env = clean_env(HEDGERD_ADMIN__PORT=str(d.port), HEDGERD_SECRETS_DIR=str(secrets),
                        http_proxy=dead_proxy, HTTP_PROXY=dead_proxy, no_proxy="", NO_PROXY="")
        kill = hedgerd("kill", "--config", str(LIVE_EXAMPLE), "--reason", "3 a.m.", env=env, cwd=tmp_path)
        assert kill.returncode == 0, kill.stderr
        assert d.total("hedgerd_trading_state") == 2
        status = hedgerd("status", "--config", str(LIVE_EXAMPLE), env=env, cwd=tmp_path)
        assert status.returncode == 0 and "trading HALTED" in status.stdout, status.stderr
        resume = hedgerd("resume", "--config", str(LIVE_EXAMPLE), env=env, cwd=tmp_path)
        assert resume.returncode == 0, resume.stderr
        assert d.total("hedgerd_trading_state") == 0


@pytest.mark.parametrize("command", [["status"], ["kill", "--reason", "x"], ["resume"]])
def test_control_commands_read_only_the_admin_section(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there: reaching the request proves the config was accepted
    config = tmp_path / "broken-elsewhere.toml"
    live = LIVE_EXAMPLE.read_text()
    assert "\nport = 9108\n" in live
    config.write_text(live.replace("\nport = 9108\n", f"\nport = {port}\n") + """
[[hedges]]
underlying = "ETH"
venue = "no-such-venue"
symbol = "ETH/USDT:USDT"
threshold = -1
inventory = []
""")
    result = hedgerd(*command, "--config", str(config), env=clean_env(), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert f"cannot reach the daemon at http://127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize(("toml", "env", "where"), [
    ("[admin]\nport = 'not-a-port'\n", {}, "config error at admin.port:"),
    ("[admin]\nport = 70000\n", {}, "config error at admin.port:"),
    ("[admin]\nprot = 9108\n", {}, "config error at admin.prot: unknown key"),
    ("admin = 3\n", {}, "config error at admin:"),
    ("", {"HEDGERD_ADMIN__PORT": "x"}, "config error at admin.port:"),
    ("", {"HEDGERD_ADMIN": "{not json"}, "config error at admin:"),
    ("[admin\n", {}, "invalid TOML"),
    (None, {}, "config file not found"),
])
def test_control_commands_refuse_a_bad_admin_section_or_file_clearly(
        tmp_path: Path, toml: str | None, env: dict[str, str], where: str) -> None:
    config = tmp_path / "hedgerd.toml"
    if toml is not None:
        config.write_text(toml)
    for command in ("status", "kill", "resume"):
        result = hedgerd(command, "--config", str(config), env=clean_env(**env), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stderr)
        assert where in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    result = hedgerd("--version", env=clean_env(), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"hedgerd {importlib.metadata.version('hedgerd')}\n"


@pytest.mark.parametrize("command", [["status"], ["kill", "--reason", "x"], ["resume"]])
def test_control_commands_without_a_daemon_fail_clearly(tmp_path: Path, command: list[str]) -> None:
    port = free_port()  # nothing listens there
    result = hedgerd(*command, env=clean_env(HEDGERD_ADMIN__PORT=str(port), HEDGERD_ADMIN__TOKEN=TOKEN),
                     cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot reach the daemon at http://127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize(("host", "path", "reason"), [
    ("127.0.0.1", "admin.port", "the port is already in use"),
    ("192.0.2.1", "admin.host", "cannot listen on 192.0.2.1:"),  # TEST-NET-1: no interface has it
])
def test_an_admin_address_that_cannot_be_bound_is_a_one_line_config_error(
        tmp_path: Path, host: str, path: str, reason: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "secrets").mkdir()
        env = daemon_env(tmp_path, port, {"HEDGERD_ADMIN__HOST": host})
        result = hedgerd("run", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"hedgerd: config error at {path}: ")
    assert reason in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stdout + result.stderr
    logged = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(entry["event"] == "config_error" and entry["path"] == path for entry in logged)
    assert not any("exception" in entry for entry in logged)


@pytest.mark.parametrize("url", ["notaurl", "http://[bad", "ftp://127.0.0.1:9108", "127.0.0.1:9108", ""])
def test_a_bad_url_is_a_usage_error(tmp_path: Path, url: str) -> None:
    result = hedgerd("kill", "--url", url, env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "is not an http(s) URL" in result.stderr and "Traceback" not in result.stderr


def test_a_server_that_does_not_speak_http_is_reported_not_raised(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_like_ssh() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(4096)
                connection.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=answer_like_ssh, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        result = hedgerd("kill", "--url", url, env=clean_env(), cwd=tmp_path)
        thread.join(timeout=10)
    assert result.returncode == 1, result.stderr
    assert f"cannot reach the daemon at {url}: no HTTP answer" in result.stderr
    assert "kill -USR1" in result.stderr and "Traceback" not in result.stderr


def test_venue_sim_on_a_port_in_use_is_a_one_line_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = hedgerd("venue-sim", "--port", str(port), env=clean_env(), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"venue-sim: cannot listen on 127.0.0.1:{port}: ")
    assert "address already in use" in result.stderr and result.stderr.count("\n") == 1


def test_a_reader_that_went_away_is_not_a_traceback(tmp_path: Path) -> None:
    """``hedgerd status | head -1``: output into a closed pipe ends quietly, with no traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before hedgerd writes a byte
    try:
        result = subprocess.run([sys.executable, "-m", "hedgerd.cli", "check-config"], env=clean_env(),
                                cwd=tmp_path, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "BrokenPipeError" not in result.stderr, result.stderr
