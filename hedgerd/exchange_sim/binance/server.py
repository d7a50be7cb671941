"""aiohttp server speaking Binance's spot and USD-M wire protocol, plus its admin endpoints.

REST: the Binance paths under ``/api/v3``, ``/sapi/v1``, ``/fapi/v1|v2|v3`` and ``/dapi/v1``
(see :data:`~hedgerd.exchange_sim.binance.rest.ROUTES`). Websockets
(:mod:`~hedgerd.exchange_sim.binance.streams`): ``/stream/ws[/...]`` (spot market data and
listen-key user data), ``/fws/[public|market|private/]ws[/...]`` (USD-M), ``/ws-api/v3`` (spot
WebSocket API user-data subscription, which ccxt.pro uses for spot). Admin: ``/_sim/...`` (no
weight, no faults, no auth; the server binds loopback by default). This module wires them into
one app: lifecycle, listen keys, request dispatch (auth, weights, faults) and the entry points.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import random
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from hedgerd.exchange_sim.binance.auth import (
    check_api_key,
    check_signature,
    check_timestamp,
    rest_signature_payload,
)
from hedgerd.exchange_sim.binance.config import SimConfig, SimStats
from hedgerd.exchange_sim.binance.countdown import Countdowns
from hedgerd.exchange_sim.binance.funding import UsdmFunding
from hedgerd.exchange_sim.binance.ratelimit import Admission, WeightLimiter
from hedgerd.exchange_sim.binance.rest import LimitKind, RequestContext, Route
from hedgerd.exchange_sim.binance.routes import ROUTES
from hedgerd.exchange_sim.binance.streams import WebsocketStreams, WsConnection
from hedgerd.exchange_sim.binance.urls import DEFAULT_API_KEY, DEFAULT_SECRET, ccxt_config, ccxt_urls
from hedgerd.exchange_sim.deribit.server import DeribitSim, DeribitSimConfig
from hedgerd.exchange_sim.faults import FaultConfig, PeriodicDrop, TradeMessageShaper, add_fault_routes
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import SPOT, USDM, ApiError, EngineConfig, MarketKind, Order, Trade
from hedgerd.exchange_sim.serving import bind

log = logging.getLogger("hedgerd.exchange_sim")

#: what ``hedgerd venue-sim --protocol`` accepts
PROTOCOLS = ("binance", "deribit", "both")


class VenueSim(WebsocketStreams):
    """The running simulator: engine, fault switches, rate limiters, HTTP and websocket server."""

    def __init__(self, config: SimConfig | None = None, faults: FaultConfig | None = None,
                 engine: MatchingEngine | None = None) -> None:
        self.config = config or SimConfig()
        self.faults = faults or FaultConfig()
        self.engine = engine or MatchingEngine(self.config.engine)
        self.funding = UsdmFunding(self.engine, interval=self.config.funding_interval)
        self.countdowns = Countdowns()  # countdownCancelAll, the USD-M dead-man switch
        self._rng = random.Random(self.config.engine.seed + 7919)
        cfg = self.config
        self.limiters: dict[LimitKind, WeightLimiter] = {
            "spot": WeightLimiter(cfg.spot_weight_limit, cfg.weight_window_seconds, cfg.ban_after,
                                  cfg.ban_seconds),
            "usdm": WeightLimiter(cfg.usdm_weight_limit, cfg.weight_window_seconds, cfg.ban_after,
                                  cfg.ban_seconds),
            "coinm": WeightLimiter(cfg.usdm_weight_limit, cfg.weight_window_seconds, cfg.ban_after,
                                   cfg.ban_seconds),
        }
        self.order_limiters: dict[MarketKind, WeightLimiter] = {
            SPOT: WeightLimiter(cfg.spot_order_limit, cfg.spot_order_window_seconds, ban_after=0),
            USDM: WeightLimiter(cfg.usdm_order_limit, cfg.usdm_order_window_seconds, ban_after=0),
        }
        self.shapers: dict[MarketKind, TradeMessageShaper] = {
            SPOT: TradeMessageShaper(self.faults, self._rng),
            USDM: TradeMessageShaper(self.faults, self._rng),
        }
        self.stats = SimStats()
        self._listen_keys: dict[MarketKind, dict[str, float]] = {SPOT: {}, USDM: {}}
        self._conns: set[WsConnection] = set()
        self._next_subscription_id = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._drops = PeriodicDrop(self.faults)
        self.host = self.config.host
        self.port = self.config.port
        self.app = self._build_app()
        self.engine.add_listener(self._on_engine_event)

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """REST root, e.g. ``http://127.0.0.1:8901``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Websocket root, e.g. ``ws://127.0.0.1:8901``."""
        return f"ws://{self.host}:{self.port}"

    def ccxt_urls(self) -> dict[str, Any]:
        """``exchange.urls['api']`` for this simulator (see :func:`hedgerd.exchange_sim.binance.urls.ccxt_urls`)."""
        return ccxt_urls(self.base_url, self.ws_url)

    def ccxt_config(self, **options: Any) -> dict[str, Any]:
        """A ccxt constructor config with this simulator's urls and credentials."""
        return ccxt_config(self.base_url, self.ws_url, api_key=self.config.api_key,
                           secret=self.config.secret, options=options or None)

    async def start(self) -> None:
        """Bind the server (port 0 picks a free port, readable from :attr:`port`) and start ticking."""
        self._closing.clear()
        self._runner, self.port = await bind(self.app, self.config.host, self.config.port)
        self._spawn(self._tick_loop())
        log.info("venue simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        """Close every stream, stop ticking and shut the server down."""
        self._closing.set()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.close_streams("all")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def wrapper() -> None:
            await coro

        task = asyncio.get_running_loop().create_task(wrapper())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick_loop(self) -> None:
        while not self._closing.is_set():
            await asyncio.sleep(self.config.tick_interval)
            try:
                self.tick()
            except Exception:
                log.exception("venue simulator tick failed")
            await self._periodic_drop()

    async def _periodic_drop(self) -> None:
        """The ``ws_drop_interval`` fault: the first drop comes one interval after it is switched on."""
        if self._drops.due(time.monotonic()):
            await self.close_streams(self.faults.ws_drop_scope)

    def tick(self) -> None:
        """One simulation step: prices, resting orders, client flow, held messages, market data."""
        now = self.engine.now()
        self.engine.advance(now)
        self.funding.advance(now)
        for symbol in self.countdowns.due(now):
            cancelled = self.engine.cancel_all(USDM, symbol)
            self.countdowns.stats.cancelled_orders += len(cancelled)
            log.info("countdownCancelAll ran out on %s: %d orders cancelled", symbol, len(cancelled))
        for kind, shaper in self.shapers.items():
            for payload in shaper.flush_due(now / 1000.0):
                self._deliver_user(kind, payload)
        self._expire_listen_keys(now / 1000.0)
        if not self.faults.market_data_paused:
            self._broadcast_market(now)

    # ------------------------------------------------------------------ listen keys

    def listen_key_create(self, kind: MarketKind) -> str:
        now = time.time()
        active = self.active_listen_key(kind)
        if active is not None:
            self._listen_keys[kind][active] = now + self.config.listen_key_ttl_seconds
            return active
        key = secrets.token_urlsafe(48)[:64]
        self._listen_keys[kind][key] = now + self.config.listen_key_ttl_seconds
        return key

    def active_listen_key(self, kind: MarketKind) -> str | None:
        now = time.time()
        for key, expires in self._listen_keys[kind].items():
            if expires > now:
                return key
        return None

    def listen_key_keepalive(self, kind: MarketKind, key: str | None) -> None:
        key = key or self.active_listen_key(kind)
        if key is None or key not in self._listen_keys[kind] or self._listen_keys[kind][key] <= time.time():
            raise ApiError(-1125, "This listenKey does not exist.")
        self._listen_keys[kind][key] = time.time() + self.config.listen_key_ttl_seconds

    def listen_key_close(self, kind: MarketKind, key: str | None) -> None:
        key = key or self.active_listen_key(kind)
        if key is None or key not in self._listen_keys[kind]:
            raise ApiError(-1125, "This listenKey does not exist.")
        del self._listen_keys[kind][key]
        for conn in [c for c in self._conns if c.listen_key == key]:
            self._spawn(self._close_conn(conn))

    def _expire_listen_keys(self, now_s: float) -> None:
        for kind, keys in self._listen_keys.items():
            for key, expires in list(keys.items()):
                if expires > now_s:
                    continue
                del keys[key]
                for conn in [c for c in self._conns if c.listen_key == key]:
                    conn.send({"e": "listenKeyExpired", "E": int(now_s * 1000), "listenKey": key})
                    self._spawn(self._close_conn(conn))
                log.info("listen key expired (%s)", kind)

    # ------------------------------------------------------------------ HTTP plumbing

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024)
        app.router.add_get("/stream/ws", self._ws_spot)
        app.router.add_get("/stream/ws/{tail:.*}", self._ws_spot)
        app.router.add_get("/fws/ws", self._ws_usdm)
        app.router.add_get("/fws/ws/{tail:.*}", self._ws_usdm)
        app.router.add_get("/fws/{category}/ws", self._ws_usdm)
        app.router.add_get("/fws/{category}/ws/{tail:.*}", self._ws_usdm)
        app.router.add_get("/ws-api/v3", self._ws_api_spot)
        app.router.add_get("/_sim/health", self._admin_health)
        add_fault_routes(app.router, self.faults)
        app.router.add_post("/_sim/ws/drop", self._admin_drop_ws)
        app.router.add_post("/_sim/ws/raw", self._admin_raw_ws)
        app.router.add_get("/_sim/trades", self._admin_trades)
        app.router.add_get("/_sim/orders", self._admin_orders)
        app.router.add_get("/_sim/state", self._admin_state)
        app.router.add_get("/_sim/stats", self._admin_stats)
        app.router.add_post("/_sim/flow", self._admin_flow)
        app.router.add_post("/_sim/fill", self._admin_fill)
        app.router.add_post("/_sim/price", self._admin_price)
        app.router.add_post("/_sim/ratelimit", self._admin_ratelimit)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        route = ROUTES.get((request.method, request.path))
        if route is None:
            return web.Response(status=404, text="<html><body><h1>404 Not Found</h1></body></html>",
                                content_type="text/html")
        self.stats.requests += 1
        raw_query = request.rel_url.raw_query_string
        raw_body = (await request.text()) if request.can_read_body else ""
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(dict(parse_qsl(raw_body, keep_blank_values=True)))
        ip = request.remote or "unknown"
        now = self.engine.now()
        limiter = self.limiters[route.limiter]
        try:
            weight = route.weight(params)
        except Exception:
            weight = 1
        admission = limiter.admit(ip, weight, now / 1000.0)
        headers = {"X-MBX-USED-WEIGHT-1M": str(admission.used)}
        if not admission.allowed:
            return self._rate_limited(admission, headers, ip, route.limiter, now)
        await self._inject_latency()
        kind: MarketKind = SPOT if route.limiter == "spot" else USDM
        # processing time (after the injected latency): Binance's matching engine checks the
        # recvWindow when it gets to the request, so a request delayed too long is refused
        ctx = RequestContext(params=params, kind=kind, now=self.engine.now(), ip=ip,
                             api_key=request.headers.get("X-MBX-APIKEY"))
        try:
            self._authenticate(route, ctx, raw_query, raw_body)
            if route.is_new_order:
                self._count_order(kind, ip, now, headers)
        except ApiError as exc:
            return self._error(exc, headers)
        in_scope = route.is_order_entry or self.faults.error_5xx_scope == "all"
        if in_scope and self.faults.take("error_5xx_rate", "error_5xx_next", self._rng):
            self.stats.faults_5xx += 1
            if self.faults.error_5xx_executes:
                with contextlib.suppress(ApiError):
                    route.handler(self, ctx)
            return web.Response(status=self.faults.error_5xx_status, headers=headers,
                                text="<html><body><h1>503 Service Unavailable</h1></body></html>",
                                content_type="text/html")
        try:
            result = route.handler(self, ctx)
        except ApiError as exc:
            return self._error(exc, headers)
        if route.is_new_order and self.faults.take("order_timeout_rate", "order_timeout_next", self._rng):
            self.stats.faults_timeout += 1
            return await self._swallow_response(request)
        return web.json_response(result, headers=headers)

    async def _inject_latency(self) -> None:
        delay = self.faults.latency_ms
        if self.faults.latency_jitter_ms > 0:
            delay += self._rng.uniform(0.0, self.faults.latency_jitter_ms)
        if delay > 0:
            await asyncio.sleep(delay / 1000.0)

    def _authenticate(self, route: Route, ctx: RequestContext, raw_query: str, raw_body: str) -> None:
        if route.security == "none":
            return
        check_api_key(ctx.api_key, self.config.api_key)
        if route.security == "signed":
            payload, signature = rest_signature_payload(raw_query, raw_body)
            check_signature(payload, signature, self.config.secret)
            check_timestamp(ctx.params, ctx.now)

    def _count_order(self, kind: MarketKind, ip: str, now: int, headers: dict[str, str]) -> None:
        limiter = self.order_limiters[kind]
        admission = limiter.admit(ip, 1, now / 1000.0)
        header = "X-MBX-ORDER-COUNT-10S" if kind == SPOT else "X-MBX-ORDER-COUNT-1M"
        headers[header] = str(admission.used)
        if not admission.allowed:
            window = "10 SECONDS" if kind == SPOT else "MINUTE"
            headers["Retry-After"] = str(admission.retry_after)
            raise ApiError(-1015, f"Too many new orders; current limit is {limiter.limit} orders per "
                                  f"{window}.", 429)

    def _rate_limited(self, admission: Admission, headers: dict[str, str], ip: str, kind: str,
                      now: int) -> web.Response:
        headers["Retry-After"] = str(admission.retry_after)
        if admission.status == 418:
            until = now + admission.retry_after * 1000
            msg = (f"Way too many requests; IP({ip}) banned until {until}. Please use the websocket for "
                   "live updates to avoid bans.")
        else:
            limit = self.limiters["spot" if kind == "spot" else "usdm"].limit
            msg = (f"Too many requests; current limit of IP({ip}) is {limit} requests per minute. Please "
                   "use the websocket for live updates to avoid polling the API.")
        return web.json_response({"code": -1003, "msg": msg}, status=admission.status, headers=headers)

    @staticmethod
    def _error(exc: ApiError, headers: dict[str, str]) -> web.Response:
        return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status, headers=headers)

    async def _swallow_response(self, request: web.Request) -> web.StreamResponse:
        """Accept-then-timeout: the order has executed; the client never gets an answer."""
        if self.faults.order_timeout_mode == "hang":
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.faults.hang_seconds)
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError

    # ------------------------------------------------------------------ admin endpoints

    async def _admin_json(self, request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        try:
            data = await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="body is not JSON") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text="body must be a JSON object")
        return data

    async def _admin_health(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "base_url": self.base_url, "ws_url": self.ws_url})

    async def _admin_drop_ws(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        scope = str(data.get("scope", "all"))
        kind = data.get("kind")
        if scope not in ("all", "user", "market") or kind not in (None, SPOT, USDM):
            return web.json_response({"error": "scope must be all|user|market, kind spot|usdm"}, status=400)
        closed = await self.close_streams(scope, kind)
        return web.json_response({"closed": closed})

    async def _admin_raw_ws(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        stream = data.get("stream")
        kind = data.get("kind", SPOT)
        if stream not in ("user", "market") or kind not in (SPOT, USDM) or "payload" not in data:
            return web.json_response({"error": "need stream user|market, kind spot|usdm, payload"}, status=400)
        return web.json_response({"sent": self.send_raw(stream, kind, data["payload"])})

    async def _admin_trades(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind", SPOT)
        if kind not in (SPOT, USDM):
            return web.json_response({"error": "kind must be spot|usdm"}, status=400)
        symbol = request.query.get("symbol")
        rows = [trade_as_json(t) for t in self.engine.trades(kind, symbol)]
        return web.json_response(rows)

    async def _admin_orders(self, request: web.Request) -> web.Response:
        kind = request.query.get("kind", SPOT)
        if kind not in (SPOT, USDM):
            return web.json_response({"error": "kind must be spot|usdm"}, status=400)
        return web.json_response([order_as_json(o) for o in self.engine.orders(kind)])

    async def _admin_state(self, _request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def _admin_stats(self, _request: web.Request) -> web.Response:
        return web.json_response(self.stats_json())

    async def _admin_flow(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        rate = data.get("rate")
        if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
            return web.json_response({"error": "rate must be a non-negative number"}, status=400)
        self.engine.flow_rate = float(rate)
        return web.json_response({"rate": self.engine.flow_rate})

    async def _admin_fill(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        try:
            symbol = str(data.get("symbol", "BTCUSDT")).upper()
            side = str(data.get("side", "BUY")).upper()
            qty = Decimal(str(data["qty"]))
            if side not in ("BUY", "SELL") or not qty.is_finite() or qty <= 0:
                raise ValueError("bad side or qty")
            trade = self.engine.client_fill(symbol, side, qty)
        except (KeyError, ValueError, InvalidOperation, ApiError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(trade_as_json(trade) if trade else None)

    async def _admin_price(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        try:
            symbol = str(data.get("symbol", "BTCUSDT")).upper()
            price = Decimal(str(data["price"]))
            if not price.is_finite() or price <= 0:
                raise ValueError("price must be positive")
            self.engine.set_mid(symbol, price)
        except (KeyError, ValueError, InvalidOperation, ApiError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"symbol": symbol, "mid": str(self.engine.mid(SPOT, symbol))})

    async def _admin_ratelimit(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        for name, key in (("spot", "spot_limit"), ("usdm", "usdm_limit")):
            value = data.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                    return web.json_response({"error": f"{key} must be a positive integer"}, status=400)
                self.limiters[name].limit = value  # type: ignore[index]
        if data.get("reset"):
            for limiter in (*self.limiters.values(), *self.order_limiters.values()):
                limiter.reset()
        return web.json_response(self.stats_json()["rate_limits"])

    def state(self) -> dict[str, Any]:
        """Balances, USD-M wallet and positions, mids (JSON-friendly strings)."""
        totals = self.engine.usdm_totals()
        return {
            "spot_balances": {a: {"free": str(f), "locked": str(lk)}
                              for a, (f, lk) in self.engine.spot_balances().items()},
            "usdm": {k: str(v) for k, v in totals.items()},
            "positions": {s: {"amount": str(p.amount), "entry_price": str(p.entry_price),
                              "realized_pnl": str(p.realized_pnl)}
                          for s, p in self.engine.positions().items()},
            "mids": {s: str(self.engine.mid(SPOT, s)) for s in self.engine.symbols()},
            "flow_rate": self.engine.flow_rate,
        }

    def stats_json(self) -> dict[str, Any]:
        return {
            "requests": self.stats.requests, "faults_5xx": self.stats.faults_5xx,
            "faults_timeout": self.stats.faults_timeout, "ws_dropped": self.stats.ws_dropped,
            "ws_connections": self.stats.ws_connections, "ws_open": len(self._conns),
            "countdown_cancel_all": self.countdowns.as_json(self.engine.now()),
            "duplicated_trade_messages": sum(s.duplicated for s in self.shapers.values()),
            "reordered_trade_messages": sum(s.reordered for s in self.shapers.values()),
            "rate_limits": {
                name: {"limit": lim.limit, "rejected_429": lim.stats.rejected_429,
                       "rejected_418": lim.stats.rejected_418, "bans": lim.stats.bans,
                       "requests_during_backoff": lim.stats.requests_during_backoff}
                for name, lim in self.limiters.items()
            },
        }


def trade_as_json(trade: Trade) -> dict[str, Any]:
    """A trade of the simulator's own history (admin view, with client order id)."""
    return {
        "kind": trade.kind, "symbol": trade.symbol, "id": trade.trade_id, "orderId": trade.order_id,
        "clientOrderId": trade.client_order_id, "side": trade.side, "price": str(trade.price),
        "qty": str(trade.qty), "quoteQty": str(trade.quote_qty), "commission": str(trade.commission),
        "commissionAsset": trade.commission_asset, "time": trade.time, "isMaker": trade.is_maker,
        "realizedPnl": str(trade.realized_pnl), "clientFlow": trade.is_client_flow,
    }


def order_as_json(order: Order) -> dict[str, Any]:
    """An order of the simulator's own book-keeping (admin view)."""
    return {
        "kind": order.kind, "symbol": order.symbol, "orderId": order.order_id,
        "clientOrderId": order.client_order_id, "side": order.side, "type": order.type,
        "timeInForce": order.time_in_force, "price": str(order.price), "origQty": str(order.orig_qty),
        "executedQty": str(order.executed_qty), "cumQuote": str(order.cum_quote), "status": order.status,
        "reduceOnly": order.reduce_only, "time": order.time, "updateTime": order.update_time,
        "clientFlow": order.is_client_flow,
    }


# --------------------------------------------------------------------------- entry points


@contextlib.asynccontextmanager
async def start_venue_sim(port: int = 0, *, host: str = "127.0.0.1", seed: int = 1, flow_rate: float = 0.0,
                          config: SimConfig | None = None,
                          faults: FaultConfig | None = None) -> AsyncIterator[VenueSim]:
    """Run a simulator for the duration of the block (``port=0`` picks a free port).

    ``config`` overrides everything else when given; otherwise ``seed`` and ``flow_rate`` go to
    the engine.
    """
    if config is None:
        config = SimConfig(host=host, port=port, engine=EngineConfig(seed=seed, flow_rate=flow_rate))
    sim = VenueSim(config, faults)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def run_server(config: SimConfig, faults: FaultConfig | None = None,
                     stop: asyncio.Event | None = None, *, protocol: str = "binance",
                     deribit_port: int = 8902, option_flow_rate: float = 0.0) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); prints one ``listening`` line per protocol.

    ``protocol`` is ``binance``, ``deribit`` (on ``config.port``) or ``both`` (Deribit on
    ``deribit_port``); the protocols served together share one matching engine, hence one
    market and one set of fault switches, and Deribit accepts the same credentials as its
    ``client_id`` / ``client_secret``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    engine = MatchingEngine(config.engine)
    sim = VenueSim(config, faults, engine) if protocol in ("binance", "both") else None
    deribit = None
    if protocol in ("deribit", "both"):
        deribit = DeribitSim(DeribitSimConfig(
            host=config.host, port=config.port if protocol == "deribit" else deribit_port,
            client_id=config.api_key, client_secret=config.secret, tick_interval=config.tick_interval,
            engine=config.engine, option_flow_rate=option_flow_rate), engine, sim.faults if sim is not None else faults)
    if sim is not None:
        await sim.start()
    try:
        if deribit is not None:
            await deribit.start()
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        if sim is not None:
            print(f"venue-sim listening on {sim.base_url} (websockets {sim.ws_url}, api key {config.api_key})",
                  flush=True)
        if deribit is not None:
            print(f"venue-sim deribit listening on {deribit.base_url} (API v2, websocket /ws/api/v2, client id "
                  f"{config.api_key})", flush=True)
        await stop.wait()
    finally:
        if deribit is not None:
            await deribit.stop()
        if sim is not None:
            await sim.stop()


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hedgerd venue-sim",
        description="Local exchange for ccxt. --protocol binance (the default) speaks Binance spot + "
                    "USD-M REST/websocket; point a ccxt venue at it with sim_base_url = "
                    "\"http://HOST:PORT\" (see config/venue-sim.toml). --protocol deribit speaks "
                    "Deribit API v2 over HTTP and websocket (inverse perpetuals and futures, "
                    "options) on --port; --protocol both serves Binance on --port and "
                    "Deribit on --deribit-port over one shared market.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--protocol", default="binance", choices=PROTOCOLS,
                        help="wire protocol(s) to serve: binance, deribit, or both on two ports")
    parser.add_argument("--deribit-port", type=int, default=8902,
                        help="Deribit port with --protocol both (0 picks a free one)")
    parser.add_argument("--option-flow-rate", type=float, default=0.5,
                        help="Deribit: synthetic client fills per second on BTC options (Poisson)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8901, help="REST and websocket port (0 picks a free one)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of prices and client flow")
    parser.add_argument("--flow-rate", type=float, default=4.0,
                        help="synthetic client fills per second on the spot account (Poisson)")
    parser.add_argument("--flow-symbols", default="BTCUSDT", help="comma-separated symbols with client flow")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the only api key accepted")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help="the secret requests must be signed with")
    parser.add_argument("--tick-interval", type=float, default=0.25, help="seconds between price ticks")
    parser.add_argument("--spot-weight-limit", type=int, default=6000,
                        help="spot request weight allowed per minute (as Binance's X-MBX-USED-WEIGHT)")
    parser.add_argument("--usdm-weight-limit", type=int, default=2400,
                        help="USD-M request weight allowed per minute")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    symbols = tuple(s.strip().upper() for s in str(args.flow_symbols).split(",") if s.strip())
    engine = EngineConfig(seed=args.seed, flow_rate=args.flow_rate, flow_symbols=symbols)
    return SimConfig(host=args.host, port=args.port, api_key=args.api_key, secret=args.secret, engine=engine,
                     tick_interval=args.tick_interval, spot_weight_limit=args.spot_weight_limit,
                     usdm_weight_limit=args.usdm_weight_limit)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hedgerd.exchange_sim`` / ``hedgerd venue-sim``: run until interrupted."""
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    problems = [f"{flag} must be {rule}, not {value}" for flag, value, ok, rule in (
        ("--port", args.port, 0 <= args.port <= 65535, "0 to 65535"),
        ("--deribit-port", args.deribit_port, 0 <= args.deribit_port <= 65535, "0 to 65535"),
        ("--flow-rate", args.flow_rate, args.flow_rate >= 0, ">= 0"),
        ("--option-flow-rate", args.option_flow_rate, args.option_flow_rate >= 0, ">= 0"),
        ("--tick-interval", args.tick_interval, args.tick_interval > 0, "> 0"),
        ("--spot-weight-limit", args.spot_weight_limit, args.spot_weight_limit > 0, "> 0"),
        ("--usdm-weight-limit", args.usdm_weight_limit, args.usdm_weight_limit > 0, "> 0"),
    ) if not ok]
    if problems:
        parser.error("; ".join(problems))  # usage and the message on stderr, exit 2
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = config_from_args(args)
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_server(config, protocol=args.protocol, deribit_port=args.deribit_port,
                                   option_flow_rate=args.option_flow_rate))
    except OSError as exc:  # the address: a usage problem, one line like hedgerd's own (no traceback)
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        ports = f"{args.port} or {args.deribit_port}" if args.protocol == "both" else str(args.port)
        print(f"venue-sim: cannot listen on {args.host}:{ports}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
