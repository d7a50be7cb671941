"""aiohttp server speaking Deribit API v2 over HTTP (``/api/v2/public|private/{method}``).

Requests are GET with query parameters (what ccxt sends) or POST with a JSON-RPC body. Private
methods take ccxt's ``deri-hmac-sha256`` signature header or a ``Bearer`` token from
``public/auth`` (``client_credentials`` or ``refresh_token`` grant). Answers are Deribit's
envelopes: ``{"jsonrpc": "2.0", "result": ..., "usIn", "usOut", "usDiff", "testnet"}`` or, on
a rejection, HTTP 400 (429 when rate limited) with ``{"error": {"code", "message", "data"}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from hedgerd.connectors.ccxt.urls import DERIBIT_WS_PATH, deribit_ccxt_urls
from hedgerd.exchange_sim.deribit.flow import OptionFlow
from hedgerd.exchange_sim.deribit.settlement import SessionSettlements
from hedgerd.exchange_sim.deribit.venue import (
    DeribitConfig,
    DeribitError,
    DeribitVenue,
    DPosition,
    invalid_param,
)
from hedgerd.exchange_sim.deribit.wire import (
    Json,
    order_json,
    position_json,
    summary_json,
    ticker_json,
    trade_json,
)
from hedgerd.exchange_sim.deribit.ws import DeribitWebsocket, WsSession
from hedgerd.exchange_sim.faults import FaultConfig, PeriodicDrop, add_fault_routes
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import EngineConfig
from hedgerd.exchange_sim.serving import bind

log = logging.getLogger("hedgerd.exchange_sim.deribit")

DEFAULT_CLIENT_ID = "sim-deribit-client"
DEFAULT_CLIENT_SECRET = "sim-deribit-secret"
SIGNATURE_WINDOW_MS = 60_000
MATCHING_METHODS = frozenset({"buy", "sell", "edit", "cancel", "cancel_all", "cancel_by_label",
                              "cancel_all_by_currency", "cancel_all_by_instrument"})


@dataclass
class DeribitSimConfig:
    """Server parameters: address, credentials, token lifetime, rate-limit credits."""

    host: str = "127.0.0.1"
    port: int = 0
    client_id: str = DEFAULT_CLIENT_ID
    client_secret: str = DEFAULT_CLIENT_SECRET
    token_ttl_seconds: int = 900
    tick_interval: float = 0.25
    engine: EngineConfig = field(default_factory=EngineConfig)
    venue: DeribitConfig = field(default_factory=DeribitConfig)
    #: Deribit's credit system: non-matching requests cost 500 credits of a 50 000 pool refilled
    #: at 10 000 per second; matching-engine requests (orders, cancels) have their own burst of
    #: 20 refilled at 5 per second (the default tier).
    credits_max: int = 50_000
    credits_refill: int = 10_000
    credits_cost: int = 500
    matching_burst: int = 20
    matching_refill: float = 5.0
    #: synthetic client fills per second on options (0: none), their mean size per currency
    option_flow_rate: float = 0.0
    option_flow_mean: dict[str, Decimal] = field(
        default_factory=lambda: {"BTC": Decimal("0.5"), "ETH": Decimal(5)})
    option_flow_currencies: tuple[str, ...] = ("BTC",)


class CreditBucket:
    """A refilling credit pool; :meth:`take` says whether the request may run."""

    def __init__(self, capacity: float, refill_per_second: float, clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self.refill = refill_per_second
        self._clock = clock
        self.level = capacity
        self._at = clock()

    def take(self, cost: float) -> bool:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._at) * self.refill)
        self._at = now
        if self.level < cost:
            return False
        self.level -= cost
        return True

    def starve(self) -> None:
        """Empty the pool and stop its refill (a test's way to run the account out of credits)."""
        self.take(0)
        self.level, self.refill = 0.0, 0.0

    def restore(self, refill_per_second: float) -> None:
        """Refill at ``refill_per_second`` again (from the empty pool :meth:`starve` left)."""
        self.take(0)
        self.refill = refill_per_second


@dataclass
class DeribitStats:
    """Counters of what the simulator did to its clients (the fault suite reads them)."""

    requests: int = 0
    rejected_10028: int = 0
    sessions_ended_10028: int = 0  # websocket sessions ended because the credits ran out
    ws_dropped: int = 0  # websocket sessions closed by the ``ws_drop_interval`` switch
    faults_timeout: int = 0  # executed orders whose answer was held or dropped
    cancelled_on_disconnect: int = 0  # orders cancelled because their websocket connection closed


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name, False)
    return value is True or str(value).lower() == "true"


def _decimal(params: Mapping[str, Any], name: str, required: bool = True) -> Decimal | None:
    value = params.get(name)
    if value is None:
        if required:
            raise invalid_param(name, "must be present")
        return None
    try:
        parsed = Decimal(str(value))
    except InvalidOperation:
        raise invalid_param(name, "must be a number") from None
    if not parsed.is_finite():
        raise invalid_param(name, "must be a number")
    return parsed


def _string(params: Mapping[str, Any], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise invalid_param(name, "must be present")
    return str(value)


class DeribitSim(DeribitWebsocket):
    """The running Deribit simulator: account state, tokens, credits, the HTTP and websocket server."""

    config: DeribitSimConfig
    engine: MatchingEngine
    venue: DeribitVenue

    def __init__(self, config: DeribitSimConfig | None = None, engine: MatchingEngine | None = None,
                 faults: FaultConfig | None = None) -> None:
        self.config = config or DeribitSimConfig()
        self.engine = engine or MatchingEngine(self.config.engine)
        #: the Binance side's switches, applied to REST here (latency, 5xx, accept-then-timeout)
        self.faults = faults or FaultConfig()
        self._rng = random.Random(self.config.engine.seed + 7927)
        self.option_flow = OptionFlow(self.config.option_flow_rate, self.config.option_flow_mean,
                                      self.config.option_flow_currencies, self.config.engine.seed + 7933)
        self.venue = DeribitVenue(self.engine, self.config.venue)
        self.settlements = SessionSettlements(self.engine.now(), interval=self.config.venue.settlement_interval)
        self.sessions: set[WsSession] = set()
        self.cod_account = False
        self.venue.listeners.append(self.on_venue_event)
        self._tokens: dict[str, float] = {}
        self._refresh: dict[str, float] = {}
        cfg = self.config
        #: the account's credit pools: non-matching requests, and orders and cancels
        self.credits = CreditBucket(cfg.credits_max, cfg.credits_refill, time.monotonic)
        self.matching_credits = CreditBucket(cfg.matching_burst, cfg.matching_refill, time.monotonic)
        self.stats = DeribitStats()
        self._drops = PeriodicDrop(self.faults)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self.host = cfg.host
        self.port = cfg.port
        self.app = web.Application(client_max_size=64 * 1024)
        self.app.router.add_route("*", "/api/v2/{scope}/{method}", self._http)
        self.app.router.add_post("/api/v2", self._http)
        self.app.router.add_get(DERIBIT_WS_PATH, self.ws_handler)
        self.app.router.add_get("/_sim/health", self._health)
        add_fault_routes(self.app.router, self.faults)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ccxt_config(self, **options: Any) -> dict[str, Any]:
        """A ``ccxt.deribit`` constructor config pointing at this simulator."""
        return {"apiKey": self.config.client_id, "secret": self.config.client_secret,
                "urls": {"api": deribit_ccxt_urls(self.base_url)}, "options": dict(options)}

    async def start(self) -> None:
        self._runner, self.port = await bind(self.app, self.config.host, self.config.port)
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())
        log.info("deribit simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for session in list(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def tick(self) -> None:
        """Advance the shared market model, deliver, fund, fill resting orders from the trade flow
        since the previous tick, run the options client flow."""
        now = self.engine.now()
        self.engine.advance(now)
        self.venue.tick()
        self.settlements.settle(now, self.venue)
        self.option_flow.step(self.venue, now)
        self.push_tickers()

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.tick_interval)
            try:
                self.tick()
            except Exception:
                log.exception("deribit simulator tick failed")
            if self._drops.due(time.monotonic()):
                self.stats.ws_dropped += await self.close_sessions(self.faults.ws_drop_scope)

    # ------------------------------------------------------------------ HTTP

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "protocol": "deribit"})

    async def _http(self, request: web.Request) -> web.StreamResponse:
        started = time.time()
        request_id: object = None
        try:
            scope = request.match_info.get("scope")
            method = request.match_info.get("method")
            params: dict[str, Any] = dict(request.query)
            if request.method == "POST" and request.can_read_body:
                try:
                    body = json.loads(await request.text())
                except ValueError:
                    raise DeribitError(11050, "bad_request") from None
                if not isinstance(body, dict):
                    raise DeribitError(11050, "bad_request")
                request_id = body.get("id")
                if scope is None:
                    full = str(body.get("method", ""))
                    scope, _, method = full.partition("/")
                body_params = body.get("params") or {}
                if not isinstance(body_params, dict):
                    raise DeribitError(11050, "bad_request")
                params.update(body_params)
            if scope not in ("public", "private") or not method:
                raise DeribitError(-32601, "Method not found")
            self.stats.requests += 1
            self.admit(method)
            if scope == "private":
                self._authenticate(request)
            faults = self.faults
            delay = faults.latency_ms + (self._rng.uniform(0.0, faults.latency_jitter_ms)
                                         if faults.latency_jitter_ms > 0 else 0.0)
            if delay > 0:
                await asyncio.sleep(delay / 1000.0)
            in_scope = method in MATCHING_METHODS or faults.error_5xx_scope == "all"
            if in_scope and faults.take("error_5xx_rate", "error_5xx_next", self._rng):
                if faults.error_5xx_executes:
                    with contextlib.suppress(DeribitError):
                        self.dispatch(scope, method, params)
                return web.Response(status=faults.error_5xx_status, content_type="text/html",
                                    text="<html><body><h1>503 Service Unavailable</h1></body></html>")
            result = self.dispatch(scope, method, params)
            if method in ("buy", "sell") and faults.take("order_timeout_rate", "order_timeout_next", self._rng):
                self.stats.faults_timeout += 1
                return await self._swallow_response(request)
        except DeribitError as exc:
            status = 429 if exc.code == 10028 else 400
            if exc.code == 10028:
                self.stats.sessions_ended_10028 += await self.close_sessions("all")
            error: Json = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return web.json_response(self._envelope({"error": error}, started, request_id), status=status)
        return web.json_response(self._envelope({"result": result}, started, request_id))

    async def _swallow_response(self, request: web.Request) -> web.StreamResponse:
        """Accept-then-timeout: the order has executed; the client never gets an answer."""
        if self.faults.order_timeout_mode == "hang":
            await asyncio.sleep(self.faults.hang_seconds)
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError

    @staticmethod
    def _envelope(body: Json, started: float, request_id: object) -> Json:
        done = time.time()
        out: Json = {"jsonrpc": "2.0", **body, "usIn": int(started * 1e6), "usOut": int(done * 1e6),
                     "usDiff": int((done - started) * 1e6), "testnet": True}
        if request_id is not None:
            out["id"] = request_id
        return out

    def admit(self, method: str) -> None:
        """Deribit's credits: too_many_requests (10028) once the pool is empty."""
        bucket, cost = (self.matching_credits, 1) if method in MATCHING_METHODS else (
            self.credits, self.config.credits_cost)
        if not bucket.take(cost):
            self.stats.rejected_10028 += 1
            raise DeribitError(10028, "too_many_requests")

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            expiry = self._tokens.get(header[len("Bearer "):].strip())
            if expiry is None or expiry < time.time():
                raise DeribitError(13009, "unauthorized")
            return
        if not header.startswith("deri-hmac-sha256 "):
            raise DeribitError(13009, "unauthorized")
        fields = dict(part.split("=", 1) for part in header[len("deri-hmac-sha256 "):].split(",")
                      if "=" in part)
        if fields.get("id") != self.config.client_id:
            raise DeribitError(13004, "invalid_credentials")
        try:
            ts = int(fields.get("ts", ""))
        except ValueError:
            raise DeribitError(13009, "unauthorized") from None
        if abs(ts - time.time() * 1000) > SIGNATURE_WINDOW_MS:
            raise DeribitError(13009, "unauthorized")
        # Deribit signs timestamp, nonce, method, the URI with its query, and the body.
        body = ""
        payload = f"{ts}\n{fields.get('nonce', '')}\n{request.method}\n{request.raw_path}\n{body}\n"
        expected = hmac.new(self.config.client_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, fields.get("sig", "")):
            raise DeribitError(13004, "invalid_credentials")

    # ------------------------------------------------------------------ methods

    def dispatch(self, scope: str, method: str, params: dict[str, Any]) -> object:
        handler = (_PUBLIC if scope == "public" else _PRIVATE).get(method)
        if handler is None:
            raise DeribitError(-32601, "Method not found")
        return handler(self, params)

    def auth_grant(self, params: dict[str, Any]) -> Json:
        """``public/auth``: a new access and refresh token for a valid grant."""
        grant = params.get("grant_type")
        if grant == "client_signature":
            # ccxt.pro signs "timestamp\nnonce\ndata" with the secret
            if params.get("client_id") != self.config.client_id:
                raise DeribitError(13004, "invalid_credentials")
            try:
                ts = int(str(params.get("timestamp")))
            except ValueError:
                raise invalid_param("timestamp", "must be an integer") from None
            payload = f"{ts}\n{params.get('nonce', '')}\n{params.get('data', '')}"
            expected = hmac.new(self.config.client_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
            if abs(ts - time.time() * 1000) > SIGNATURE_WINDOW_MS or \
                    not hmac.compare_digest(expected, str(params.get("signature", ""))):
                raise DeribitError(13004, "invalid_credentials")
        elif grant == "client_credentials":
            if params.get("client_id") != self.config.client_id or \
                    params.get("client_secret") != self.config.client_secret:
                raise DeribitError(13004, "invalid_credentials")
        elif grant == "refresh_token":
            token = str(params.get("refresh_token", ""))
            if self._refresh.pop(token, 0) < time.time():
                raise DeribitError(13009, "unauthorized")
        else:
            raise invalid_param("grant_type", "must be client_credentials, client_signature or refresh_token")
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        ttl = self.config.token_ttl_seconds
        self._tokens[access] = time.time() + ttl
        self._refresh[refresh] = time.time() + 30 * 24 * 3600
        return {"access_token": access, "refresh_token": refresh, "expires_in": ttl,
                "scope": "connection mainaccount trade:read_write wallet:read account:read",
                "token_type": "bearer", "enabled_features": []}

    def _instruments(self, params: dict[str, Any]) -> list[Json]:
        currency = params.get("currency")
        kind = params.get("kind")
        expired = _flag(params, "expired")
        wanted = None if currency in (None, "any") else self.venue.currency(str(currency))
        return [i.as_json() for i in self.venue.instruments.values()
                if (wanted is None or i.currency == wanted) and (kind in (None, "any") or i.kind == kind)
                and (i.name in self.venue.delivered) == expired]

    def _currencies(self, params: dict[str, Any]) -> list[Json]:
        return [{"currency": c, "currency_long": {"BTC": "Bitcoin", "ETH": "Ethereum"}.get(c, c),
                 "coin_type": {"BTC": "BITCOIN", "ETH": "ETHER"}.get(c, c), "fee_precision": 4,
                 "min_confirmations": 1, "min_withdrawal_fee": 0.0001, "withdrawal_fee": 0.0001,
                 "withdrawal_priorities": []} for c in self.venue.specs]

    def _order_book(self, params: dict[str, Any]) -> Json:
        inst = self.venue.instrument(_string(params, "instrument_name"))
        depth = int(params.get("depth", 10) or 10)
        bids, asks = self.venue.book(inst)
        out = ticker_json(self.venue, inst, self.engine.now())
        out["bids"] = [[float(p), float(a)] for p, a in bids[:depth]]
        out["asks"] = [[float(p), float(a)] for p, a in asks[:depth]]
        out["change_id"] = self.engine.now()
        return out

    def _trade(self, direction: str, params: dict[str, Any]) -> Json:
        amount = _decimal(params, "amount")
        if amount is None:
            raise invalid_param("amount", "must be present")
        order, trades = self.venue.place(
            direction, _string(params, "instrument_name"), amount, str(params.get("type", "limit")),
            _decimal(params, "price", required=False), label=str(params.get("label", "")),
            time_in_force=str(params.get("time_in_force", "good_til_cancelled")),
            post_only=_flag(params, "post_only"), reject_post_only=_flag(params, "reject_post_only"),
            reduce_only=_flag(params, "reduce_only"))
        return {"order": order_json(order), "trades": [trade_json(t) for t in trades]}

    def _order_state(self, params: dict[str, Any]) -> Json:
        order = self.venue.orders.get(_string(params, "order_id"))
        if order is None:
            raise DeribitError(10004, "order_not_found")
        return order_json(order)

    def _by_label(self, params: dict[str, Any]) -> list[Json]:
        currency = self.venue.currency(_string(params, "currency"))
        return [order_json(o) for o in self.venue.by_label(currency, _string(params, "label"))]

    def _cancel_by_label(self, params: dict[str, Any]) -> int:
        label = _string(params, "label")
        currency = params.get("currency")
        wanted = None if currency is None else self.venue.currency(str(currency))
        orders = [o for o in self.venue.open_orders(wanted) if o.label == label]
        for order in orders:
            self.venue.cancel(order.order_id)
        return len(orders)

    def _cancel_all(self, params: dict[str, Any]) -> int:
        currency = params.get("currency")
        name = params.get("instrument_name")
        orders = self.venue.open_orders(None if currency is None else self.venue.currency(str(currency)),
                                        None if name is None else str(name))
        for order in orders:
            self.venue.cancel(order.order_id)
        return len(orders)

    def _order_history(self, params: dict[str, Any]) -> list[Json]:
        """Filled and cancelled orders, newest first (Deribit keeps unfilled cancelled orders
        in the history only for a while; the simulator keeps them all)."""
        name = params.get("instrument_name")
        currency = params.get("currency")
        wanted = None if currency is None else self.venue.currency(str(currency))
        inst = None if name is None else self.venue.instrument(str(name)).name
        count = int(params.get("count", 20) or 20)
        offset = int(params.get("offset", 0) or 0)
        done = [o for o in reversed(self.venue.orders.values()) if o.state != "open"
                and (wanted is None or o.instrument.currency == wanted)
                and (inst is None or o.instrument.name == inst)]
        return [order_json(o) for o in done[offset:offset + count]]

    def _user_trades(self, params: dict[str, Any]) -> Json:
        name = params.get("instrument_name")
        currency = params.get("currency")
        start = params.get("start_timestamp")
        count = int(params.get("count", 10) or 10)
        trades = self.venue.user_trades(
            None if currency is None else self.venue.currency(str(currency)),
            None if name is None else self.venue.instrument(str(name)).name,
            None if start is None else int(start))
        # ``sorting=asc`` pages forward: the oldest ``count`` from the start, oldest first; otherwise
        # Deribit answers the newest ``count``, newest first.
        chosen = trades[:count] if params.get("sorting") == "asc" else list(reversed(trades[-count:]))
        return {"trades": [trade_json(t) for t in chosen], "has_more": len(trades) > count}

    def _positions(self, params: dict[str, Any]) -> list[Json]:
        currency = params.get("currency")
        kind = params.get("kind")
        wanted = None if currency in (None, "any") else self.venue.currency(str(currency))
        out = []
        for name, pos in self.venue.positions.items():
            inst = self.venue.instruments[name]
            if pos.size == 0 or (wanted is not None and inst.currency != wanted) or \
                    (kind not in (None, "any") and inst.kind != kind):
                continue
            out.append(position_json(self.venue, inst, pos))
        return out

    def _position(self, params: dict[str, Any]) -> Json:
        inst = self.venue.instrument(_string(params, "instrument_name"))
        pos = self.venue.positions.get(inst.name)
        return position_json(self.venue, inst, pos or DPosition())


Handler = Callable[[DeribitSim, dict[str, Any]], object]

_PUBLIC: dict[str, Handler] = {
    "auth": DeribitSim.auth_grant,
    "test": lambda sim, p: {"version": "1.2.26"},
    "get_time": lambda sim, p: sim.engine.now(),
    "status": lambda sim, p: {"locked": "false", "locked_indices": []},
    "get_currencies": DeribitSim._currencies,
    "get_instruments": DeribitSim._instruments,
    "ticker": lambda sim, p: ticker_json(sim.venue, sim.venue.instrument(_string(p, "instrument_name")),
                                         sim.engine.now()),
    "get_order_book": DeribitSim._order_book,
    "get_index_price": lambda sim, p: {
        "index_price": float(sim.venue.index(_string(p, "index_name").split("_")[0].upper())),
        "estimated_delivery_price": float(sim.venue.index(_string(p, "index_name").split("_")[0].upper()))},
}

_PRIVATE: dict[str, Handler] = {
    "buy": lambda sim, p: sim._trade("buy", p),
    "sell": lambda sim, p: sim._trade("sell", p),
    "cancel": lambda sim, p: order_json(sim.venue.cancel(_string(p, "order_id"))),
    "cancel_by_label": DeribitSim._cancel_by_label,
    "cancel_all": DeribitSim._cancel_all,
    "cancel_all_by_currency": DeribitSim._cancel_all,
    "cancel_all_by_instrument": DeribitSim._cancel_all,
    "get_order_state": DeribitSim._order_state,
    "get_order_state_by_label": DeribitSim._by_label,
    "get_open_orders_by_currency": lambda sim, p: [
        order_json(o) for o in sim.venue.open_orders(sim.venue.currency(_string(p, "currency")))],
    "get_open_orders_by_instrument": lambda sim, p: [
        order_json(o) for o in sim.venue.open_orders(name=sim.venue.instrument(
            _string(p, "instrument_name")).name)],
    "get_order_history_by_currency": DeribitSim._order_history,
    "get_order_history_by_instrument": DeribitSim._order_history,
    "get_user_trades_by_currency": DeribitSim._user_trades,
    "get_user_trades_by_currency_and_time": DeribitSim._user_trades,
    "get_user_trades_by_instrument": DeribitSim._user_trades,
    "get_user_trades_by_instrument_and_time": DeribitSim._user_trades,
    "get_user_trades_by_order": lambda sim, p: [
        trade_json(t) for t in sim.venue.trades if t.order.order_id == _string(p, "order_id")],
    "get_settlement_history_by_currency": lambda sim, p: sim.settlements.history(
        sim.venue.currency(_string(p, "currency")), p, sim.engine.now()),
    "get_positions": DeribitSim._positions,
    "get_position": DeribitSim._position,
    "get_account_summary": lambda sim, p: summary_json(sim.venue, sim.venue.currency(_string(p, "currency"))),
    "get_account_summaries": lambda sim, p: {
        "summaries": [summary_json(sim.venue, c) for c in sim.venue.specs], "id": 1, "type": "main"},
}


@contextlib.asynccontextmanager
async def start_deribit_sim(port: int = 0, *, host: str = "127.0.0.1", seed: int = 1,
                            config: DeribitSimConfig | None = None, engine: MatchingEngine | None = None,
                            faults: FaultConfig | None = None) -> AsyncIterator[DeribitSim]:
    """Run a Deribit simulator for the duration of the block (``port=0`` picks a free port)."""
    if config is None:
        config = DeribitSimConfig(host=host, port=port, engine=EngineConfig(seed=seed))
    sim = DeribitSim(config, engine, faults)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()
