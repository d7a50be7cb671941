"""Fault suite, security: credentials never leak, control endpoints are locked down.

A canary API key and secret (and a canary admin token) are given to a live-mode daemon through
the environment (spot venue) and the secrets dir (USD-M venue, admin token); the simulator only
accepts those, so hedging proves the daemon really holds them. With ``logging.level = debug``
the canaries must not appear in the log (every level, exception messages included, also after
the simulator starts rejecting the signature: the AuthenticationError path), ``/metrics``,
``/status``, ``/readyz``, ``check-config`` output (TOML and JSON), ``hedgerd status`` or the
ledger files, nor in the output of a daemon refused at start by the venue.

Control endpoints: 401 without / with a wrong bearer token, 403 when no token is configured,
the comparison is constant time, the admin server binds loopback by default, and request
bodies are size limited (413).

The container side (non-root user, read-only root filesystem) is covered by tests/test_deploy.py.
Scenario: tests/fault/input_scenarios.py.
"""

from __future__ import annotations

import ast
import inspect
import secrets
import textwrap
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from hedgerd.admin import server as admin
from hedgerd.config import AdminConfig, Settings
from hedgerd.daemon import Daemon
from hedgerd.models import TradingState
from tests.fault.input_scenarios import CanaryResult, canary_credentials


@pytest.mark.e2e
def test_canary_credentials_never_leak_and_control_endpoints_hold(tmp_path: Path) -> None:
    result = canary_credentials(tmp_path)
    assert result.hedged_with_canaries
    assert result.debug_logged, "the daemon did not log at debug level"
    assert result.auth_errors_logged, "the AuthenticationError path was not exercised"
    assert result.refused_rc == 1
    assert len(result.places) >= 10, result.places
    assert result.leaks == [], result.leaks
    assert result.bind_address == "127.0.0.1", "the admin server must bind loopback by default"
    assert result.control == CanaryResult.CONTROL_GOALS
    assert result.kill_reason == "security test"


# --------------------------------------------------------------------------- in process
def _daemon(tmp_path: Path, token: str | None) -> Daemon:
    settings = Settings.model_validate({
        "ledger": {"path": tmp_path / "ledger.sqlite"}, "kill_switch": {"kill_file": tmp_path / "KILL"},
        "admin": {"token": token},
    })
    return Daemon(settings)


async def test_control_endpoints_are_disabled_without_a_token(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path, None)
    async with TestClient(TestServer(admin.build_app(daemon))) as client:
        for path in ("/kill", "/resume"):
            response = await client.post(path, json={"reason": "x"})
            assert response.status == 403, path
            response = await client.post(path, json={"reason": "x"}, headers={"Authorization": "Bearer "})
            assert response.status == 403, path
        assert (await client.get("/healthz")).status == 200
    assert daemon.engine.kill_switch.state is TradingState.ACTIVE


async def test_control_endpoints_need_the_exact_token(tmp_path: Path) -> None:
    token = "t0ken-" + secrets.token_hex(8)
    daemon = _daemon(tmp_path, token)
    async with TestClient(TestServer(admin.build_app(daemon))) as client:
        for given in ("", "Bearer", f"Bearer {token[:-1]}", f"Bearer {token}0", f"bearer{token}", f"Token {token}",
                      f"Bearer {token.upper()}"):
            response = await client.post("/kill", json={"reason": "x"}, headers={"Authorization": given})
            assert response.status == 401, given
        assert daemon.engine.kill_switch.state is TradingState.ACTIVE
        response = await client.post("/kill", data=b"{" + b" " * 10_000 + b"}",
                                     headers={"Authorization": f"Bearer {token}",
                                              "Content-Type": "application/json"})
        assert response.status == 413
        assert daemon.engine.kill_switch.state is TradingState.ACTIVE
        response = await client.post("/kill", json={"reason": "ok"}, headers={"Authorization": f"bearer  {token}"})
        assert response.status == 200
        assert daemon.engine.status()["trading_state"] == "halted"


def test_token_comparison_is_constant_time() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(admin._authorized)))
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert "hmac.compare_digest" in calls
    # No ==, !=, in, startswith... on anything derived from the token or the header value.
    tainted = {"token", "given", "expected", "header", "get_secret_value"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) or (isinstance(node, ast.Call) and ast.unparse(node.func).endswith(
                (".startswith", ".endswith", ".find", ".index"))):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
            assert not names & tainted - {"token"} or "compare_digest" in ast.unparse(node), ast.unparse(node)
            if "token" in names and isinstance(node, ast.Compare):
                # only ``token is None`` (configured or not) may look at the token outside compare_digest
                assert all(isinstance(op, ast.Is | ast.IsNot) for op in node.ops), ast.unparse(node)


def test_admin_defaults_are_loopback_and_size_limited() -> None:
    defaults = AdminConfig()
    assert defaults.host == "127.0.0.1"
    assert defaults.token is None
    assert 0 < defaults.max_body_bytes <= 64 * 1024
    settings = Settings(admin=AdminConfig(token=SecretStr("x-secret-1234")))
    assert "x-secret-1234" not in repr(settings) and "x-secret-1234" not in str(settings.admin)
