"""The admin server against a stand-in for the process (hedgerd.admin.server.Control): it needs
nothing of the daemon but that interface, and imports no part of it."""

from __future__ import annotations

import ast
import inspect
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from hedgerd.admin import server
from hedgerd.config import AdminConfig

TOKEN = "admin-server-test-token-0d7f3b2a"


class FakeControl:
    """Records what the server asked for; trading is ACTIVE until engaged or reduced."""

    def __init__(self) -> None:
        self.admin_config = AdminConfig(token=SecretStr(TOKEN))
        self.state, self.reason = "active", ""
        self.calls: list[tuple[str, ...]] = []

    def render_metrics(self) -> bytes:
        self.calls.append(("render_metrics",))
        return b"hedgerd_up 1\n"

    def trading_state(self) -> tuple[str, str]:
        return self.state, self.reason

    def readiness(self) -> tuple[bool, list[str]]:
        return False, ["no price yet for BTC/USDT:USDT"]

    def role(self) -> str | None:
        return None

    def status(self) -> dict[str, Any]:
        return {"trading_state": self.state}

    def engage(self, reason: str, source: str) -> bool:
        self.calls.append(("engage", reason, source.split(":")[0]))
        self.state, self.reason = "halted", reason
        return True

    def reduce(self, reason: str, source: str) -> bool:
        self.calls.append(("reduce", reason, source.split(":")[0]))
        self.state, self.reason = "reducing", reason
        return True

    def resume(self, source: str) -> tuple[bool, str]:
        self.calls.append(("resume", source.split(":")[0]))
        self.state, self.reason = "active", ""
        return True, "resumed"


async def test_every_route_goes_through_the_control_interface() -> None:
    control = FakeControl()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(server.build_app(control))) as client:
        metrics = await client.get("/metrics")
        assert metrics.status == 200 and await metrics.read() == b"hedgerd_up 1\n"
        assert await (await client.get("/healthz")).json() == {"status": "ok", "trading_state": "active"}
        ready = await client.get("/readyz")
        assert ready.status == 503
        assert await ready.json() == {"ready": False, "problems": ["no price yet for BTC/USDT:USDT"]}
        assert await (await client.get("/status")).json() == {"trading_state": "active"}
        killed = await client.post("/kill", json={"reason": "r", "reducing": True}, headers=auth)
        assert await killed.json() == {"trading_state": "reducing", "reason": "r", "changed": True}
        resumed = await client.post("/resume", json={}, headers=auth)
        assert await resumed.json() == {"trading_state": "active", "reason": "", "resumed": True,
                                        "detail": "resumed"}
        assert (await client.post("/kill", json={}, headers={"Authorization": "Bearer wrong"})).status == 401
    assert control.calls == [("render_metrics",), ("reduce", "r", "http"), ("resume", "http")]


def test_the_admin_package_imports_no_daemon() -> None:
    from hedgerd.admin import control, status_view, token
    from hedgerd.admin import input as body_input

    for module in (server, control, body_input, status_view, token):
        imported = {node.module for node in ast.walk(ast.parse(inspect.getsource(module)))
                    if isinstance(node, ast.ImportFrom) and node.module}
        assert not {name for name in imported if name.startswith(("hedgerd.daemon", "hedgerd.engine"))}, module
