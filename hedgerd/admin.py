"""Admin HTTP server (aiohttp): metrics, health, status and the kill switch.

``GET /metrics``, ``/healthz``, ``/readyz``, ``/status`` are open (bind them to loopback or
a private interface). ``POST /kill`` and ``POST /resume`` need ``Authorization: Bearer
<admin.token>``, compared in constant time; with no token configured they are disabled (403).
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from hedgerd.daemon import Daemon

log = structlog.get_logger("hedgerd.admin")

DAEMON_KEY: web.AppKey[Daemon] = web.AppKey("daemon")
MAX_REASON_CHARS = 200


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _authorized(request: web.Request) -> web.Response | None:
    """None when the bearer token matches; otherwise the error response to send."""
    daemon = request.app[DAEMON_KEY]
    token = daemon.settings.admin.token
    if token is None or not token.get_secret_value():
        return _json({"error": "control endpoints are disabled: set admin.token"}, 403)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        return _json({"error": "unauthorized"}, 401)
    return None


async def _reason_from(request: web.Request, default: str) -> tuple[str, bool]:
    """(reason, reducing) from an optional JSON body ``{"reason": "...", "reducing": false}``."""
    if not request.can_read_body:
        return default, False
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {exc}"}),
                                 content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    reason = body.get("reason", default)
    if not isinstance(reason, str):
        raise web.HTTPBadRequest(text='{"error": "reason must be a string"}', content_type="application/json")
    return reason[:MAX_REASON_CHARS] or default, bool(body.get("reducing", False))


async def metrics(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    daemon.refresh_gauges()
    return web.Response(body=daemon.metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return _json({"status": "ok", "trading_state": daemon.engine.kill_switch.state.name.lower()})


async def readyz(request: web.Request) -> web.Response:
    ready, problems = request.app[DAEMON_KEY].engine.readiness()
    return _json({"ready": ready, "problems": problems}, 200 if ready else 503)


async def status(request: web.Request) -> web.Response:
    return _json(request.app[DAEMON_KEY].engine.status())


async def kill(request: web.Request) -> web.Response:
    if (denied := _authorized(request)) is not None:
        return denied
    reason, reducing = await _reason_from(request, "operator kill via HTTP")
    engine = request.app[DAEMON_KEY].engine
    source = f"http:{request.remote}"
    changed = engine.reduce(reason, source) if reducing else engine.engage(reason, source)
    log.warning("kill_requested", source=source, reason=reason, reducing=reducing, changed=changed)
    ks = engine.kill_switch
    return _json({"trading_state": ks.state.name.lower(), "reason": ks.reason, "changed": changed})


async def resume(request: web.Request) -> web.Response:
    if (denied := _authorized(request)) is not None:
        return denied
    engine = request.app[DAEMON_KEY].engine
    ok, detail = engine.resume(f"http:{request.remote}")
    log.warning("resume_requested", source=f"http:{request.remote}", ok=ok, detail=detail)
    ks = engine.kill_switch
    return _json({"trading_state": ks.state.name.lower(), "reason": ks.reason, "resumed": ok,
                  "detail": detail}, 200 if ok else 409)


def build_app(daemon: Daemon) -> web.Application:
    """The aiohttp application serving ``daemon``."""
    app = web.Application(client_max_size=daemon.settings.admin.max_body_bytes)
    app[DAEMON_KEY] = daemon
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_post("/kill", kill)
    app.router.add_post("/resume", resume)
    return app


class AdminServer:
    """Runs :func:`build_app` on the configured host and port."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        cfg = self._daemon.settings.admin
        self._runner = web.AppRunner(build_app(self._daemon), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else cfg.port
        log.info("admin_listening", host=cfg.host, port=self.port,
                 control_enabled=bool(cfg.token and cfg.token.get_secret_value()))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
