"""Admin HTTP server (aiohttp): metrics, health, status and the kill switch.

``GET /metrics``, ``/healthz``, ``/readyz``, ``/status`` are open (bind them to loopback or
a private interface). ``POST /kill`` and ``POST /resume`` need ``Authorization: Bearer
<admin.token>``, compared in constant time; with no token configured they are disabled (403).
Their bodies are validated strictly (:mod:`hedgerd.admin.input`); every answer, errors included,
is JSON. The server sees the process only through :class:`Control` (the daemon implements it), so
the admin package never imports the daemon.
"""

from __future__ import annotations

import errno
import hmac
import json
from typing import Any, Protocol

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from hedgerd.admin.input import BadBody, BodyModel, KillBody, ResumeBody, parse_body
from hedgerd.config import AdminConfig
from hedgerd.errors import ConfigError

log = structlog.get_logger("hedgerd.admin")

MAX_REASON_CHARS = 200


class Control(Protocol):
    """The running process as the admin server sees it (:class:`hedgerd.daemon.Daemon`)."""

    @property
    def admin_config(self) -> AdminConfig:
        """The admin settings in force (read on every request)."""
        ...

    def render_metrics(self) -> bytes:
        """The Prometheus exposition, time-dependent gauges refreshed first."""
        ...

    def trading_state(self) -> tuple[str, str]:
        """The kill switch's state (lower case) and reason."""
        ...

    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the process is ready to hedge, and why not."""
        ...

    def role(self) -> str | None:
        """This instance's role in an active/standby pair (``active``, ``standby``, ...); None without ha."""
        ...

    def status(self) -> dict[str, Any]:
        """The JSON-able ``/status`` view (never contains secrets)."""
        ...

    def engage(self, reason: str, source: str) -> bool:
        """Halt trading; whether the state changed."""
        ...

    def reduce(self, reason: str, source: str) -> bool:
        """Allow only position-reducing orders; whether the state changed."""
        ...

    def resume(self, source: str) -> tuple[bool, str]:
        """Leave HALTED/REDUCING; whether it did, and why not."""
        ...


CONTROL_KEY: web.AppKey[Control] = web.AppKey("control")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=str))


def _authorized(request: web.Request) -> web.Response | None:
    """None when the bearer token matches; otherwise the error response to send."""
    token = request.app[CONTROL_KEY].admin_config.token
    if token is None or not token.get_secret_value():
        return _json({"error": "control endpoints are disabled: set admin.token"}, 403)
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    expected = token.get_secret_value().encode()
    # surrogatepass: a header that is not UTF-8 arrives with surrogates; it must fail to match, not raise.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "surrogatepass"),
                                                             expected):
        return _json({"error": "unauthorized"}, 401)
    return None


async def _body(request: web.Request, model: type[BodyModel]) -> BodyModel | web.Response:
    """The validated body, or the JSON 4xx response refusing it (see :mod:`hedgerd.admin.input`)."""
    try:
        raw = await request.read()
        return parse_body(raw, request.content_type, request.charset, model)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONTROL_KEY].admin_config.max_body_bytes
        refusal = BadBody(413, f"body larger than admin.max_body_bytes ({limit} bytes)")
    except HttpProcessingError as exc:  # e.g. a malformed chunked encoding
        refusal = BadBody(400, f"unreadable body: {exc.message}")
    except BadBody as exc:
        refusal = exc
    # An authenticated control request that did nothing must be visible in the log (the body is not logged).
    log.warning("control_request_refused", path=request.path, source=f"http:{request.remote}",
                status=refusal.status, error=refusal.message)
    return _json(refusal.as_json(), refusal.status)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[CONTROL_KEY].render_metrics()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    state, _ = request.app[CONTROL_KEY].trading_state()
    return _json({"status": "ok", "trading_state": state})


async def readyz(request: web.Request) -> web.Response:
    control = request.app[CONTROL_KEY]
    ready, problems = control.readiness()
    body: dict[str, Any] = {"ready": ready, "problems": problems}
    role = control.role()
    if role is not None:  # a ready standby and a ready leader both answer 200: the role tells them apart
        body["role"] = role
    return _json(body, 200 if ready else 503)


async def status(request: web.Request) -> web.Response:
    return _json(request.app[CONTROL_KEY].status())


async def kill(request: web.Request) -> web.Response:
    if (denied := _authorized(request)) is not None:
        return denied
    body = await _body(request, KillBody)
    if isinstance(body, web.Response):
        return body
    reason, reducing = (body.reason or "")[:MAX_REASON_CHARS] or "operator kill via HTTP", body.reducing
    control = request.app[CONTROL_KEY]
    source = f"http:{request.remote}"
    changed = control.reduce(reason, source) if reducing else control.engage(reason, source)
    log.warning("kill_requested", source=source, reason=reason, reducing=reducing, changed=changed)
    state, why = control.trading_state()
    return _json({"trading_state": state, "reason": why, "changed": changed})


async def resume(request: web.Request) -> web.Response:
    if (denied := _authorized(request)) is not None:
        return denied
    body = await _body(request, ResumeBody)
    if isinstance(body, web.Response):
        return body
    control = request.app[CONTROL_KEY]
    ok, detail = control.resume(f"http:{request.remote}")
    log.warning("resume_requested", source=f"http:{request.remote}", ok=ok, detail=detail)
    state, why = control.trading_state()
    return _json({"trading_state": state, "reason": why, "resumed": ok,
                  "detail": detail}, 200 if ok else 409)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer is JSON: aiohttp's own 404/405/... become JSON, and a handler that raises is a
    logged JSON 500 instead of a traceback page (the handlers answer every bad input with a 4xx)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _json({"error": exc.reason.lower()}, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("admin_request_failed", method=request.method, path=request.path)
        return _json({"error": "internal error (logged)"}, 500)


def build_app(control: Control) -> web.Application:
    """The aiohttp application serving ``control``."""
    app = web.Application(client_max_size=control.admin_config.max_body_bytes, middlewares=[_json_errors])
    app[CONTROL_KEY] = control
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_post("/kill", kill)
    app.router.add_post("/resume", resume)
    return app


def _listen_error(host: str, port: int, exc: OSError) -> ConfigError:
    """A bind failure as the configuration problem it is (exit 2, one line, no traceback)."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError("admin.port", f"cannot listen on {host}:{port}: the port is already in use "
                                         "(another hedgerd, or another program?); choose another admin.port")
    if exc.errno == errno.EACCES:
        return ConfigError("admin.port", f"cannot listen on {host}:{port}: permission denied "
                                         "(ports below 1024 need privileges)")
    reason = exc.strerror or str(exc)
    return ConfigError("admin.host", f"cannot listen on {host}:{port}: {reason}")


class AdminServer:
    """Runs :func:`build_app` on the configured host and port."""

    def __init__(self, control: Control) -> None:
        self._control = control
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        cfg = self._control.admin_config
        self._runner = web.AppRunner(build_app(self._control), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            await self.stop()
            raise _listen_error(cfg.host, cfg.port, exc) from None
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else cfg.port
        log.info("admin_listening", host=cfg.host, port=self.port,
                 control_enabled=bool(cfg.token and cfg.token.get_secret_value()))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
