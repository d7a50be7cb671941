"""The simulator's websockets: user-data and market-data streams and the spot WebSocket API.

:class:`WebsocketStreams` is the part of :class:`~hedgerd.exchange_sim.binance.server.VenueSim`
that serves them; the server sets the state declared on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.binance.auth import (
    check_api_key,
    check_signature,
    check_timestamp,
    ws_signature_payload,
)
from hedgerd.exchange_sim.binance.config import SimConfig, SimStats
from hedgerd.exchange_sim.binance.rest import Json
from hedgerd.exchange_sim.faults import FaultConfig, TradeMessageShaper
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import SPOT, USDM, AccountEvent, ApiError, MarketKind, OrderEvent, UserEvent


@dataclass(eq=False)
class WsConnection:
    """One websocket client with an ordered outgoing queue."""

    ws: web.WebSocketResponse
    kind: MarketKind
    role: Literal["market", "user", "wsapi"]
    subscriptions: set[str] = field(default_factory=set)
    listen_key: str | None = None
    user_subscription_id: int | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)

    def send(self, payload: Json) -> None:
        self.queue.put_nowait(payload if isinstance(payload, str) else json.dumps(payload))

    async def writer(self) -> None:
        while True:
            message = await self.queue.get()
            if message is None or self.ws.closed:
                return
            try:
                await self.ws.send_str(message)
            except (ConnectionError, RuntimeError):
                return


class WebsocketStreams:
    """Websocket connections of the simulator: user data, market data and the WebSocket API."""

    config: SimConfig
    faults: FaultConfig
    engine: MatchingEngine
    shapers: dict[MarketKind, TradeMessageShaper]
    stats: SimStats
    _listen_keys: dict[MarketKind, dict[str, float]]
    _conns: set[WsConnection]
    _next_subscription_id: int

    # ------------------------------------------------------------------ user-data streams

    def _on_engine_event(self, event: UserEvent) -> None:
        if isinstance(event, OrderEvent):
            payload = wire.execution_report(event) if event.kind == SPOT else wire.order_trade_update(event)
            self.publish_user(event.kind, payload, is_trade=event.execution_type == "TRADE")
        elif isinstance(event, AccountEvent):
            if event.kind == SPOT:
                payload = wire.outbound_account_position(self.engine, event)
            else:
                payload = wire.account_update(self.engine, event)
            self.publish_user(event.kind, payload, is_trade=False)

    def publish_user(self, kind: MarketKind, payload: Json, *, is_trade: bool = False) -> None:
        """Send a user-data event to every user stream of ``kind`` (through the trade faults)."""
        for item in self.shapers[kind].shape(payload, is_trade, time.time()):
            self._deliver_user(kind, item)

    def _deliver_user(self, kind: MarketKind, payload: Json) -> None:
        if self.faults.user_data_paused:
            return  # a silently dead user-data stream: connections stay open, events are lost
        text = json.dumps(payload)
        for conn in list(self._conns):
            if conn.kind != kind:
                continue
            if conn.role == "user":
                conn.send(text)
            elif conn.role == "wsapi" and conn.user_subscription_id is not None:
                conn.send(json.dumps({"subscriptionId": conn.user_subscription_id, "event": payload}))

    def send_raw(self, stream: Literal["user", "market"], kind: MarketKind, payload: Json) -> int:
        """Send an arbitrary (possibly malformed) message on every stream of that role and kind."""
        sent = 0
        for conn in list(self._conns):
            if conn.kind != kind:
                continue
            if stream == conn.role:
                conn.send(payload)
                sent += 1
            elif stream == "user" and conn.role == "wsapi" and conn.user_subscription_id is not None:
                conn.send({"subscriptionId": conn.user_subscription_id, "event": payload})
                sent += 1
        return sent

    async def close_streams(self, scope: str = "all", kind: MarketKind | None = None) -> int:
        """Drop websockets: ``scope`` "all", "user" (incl. ws-api) or "market"; returns how many."""
        victims = [
            c for c in list(self._conns)
            if (kind is None or c.kind == kind) and (
                scope == "all" or (scope == "market" and c.role == "market")
                or (scope == "user" and c.role in ("user", "wsapi")))
        ]
        for conn in victims:
            await self._close_conn(conn)
        self.stats.ws_dropped += len(victims)
        return len(victims)

    async def _close_conn(self, conn: WsConnection) -> None:
        self._conns.discard(conn)
        conn.queue.put_nowait(None)
        with contextlib.suppress(Exception):
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"stream closed by server")

    # ------------------------------------------------------------------ market-data streams

    def _broadcast_market(self, now: int) -> None:
        for conn in list(self._conns):
            if conn.role != "market":
                continue
            for stream in sorted(conn.subscriptions):
                payload = self._market_payload(conn.kind, stream, now)
                if payload is None:
                    continue
                if isinstance(payload, list) and stream == "!bookticker":
                    for item in payload:  # one event per symbol, as Binance sends them
                        conn.send(item)
                else:
                    conn.send(payload)

    def _market_payload(self, kind: MarketKind, stream: str, now: int) -> Json | None:
        engine = self.engine
        if stream == "!bookticker":
            return [wire.ws_book_ticker(engine, kind, s, now) for s in engine.symbols()]
        if stream in ("!ticker@arr", "!miniticker@arr"):
            mini = stream.startswith("!mini")
            return [wire.ws_ticker(engine, kind, s, now, mini=mini) for s in engine.symbols()]
        if stream.startswith("!markprice@arr") and kind == USDM:
            return [wire.ws_mark_price(engine, s, now) for s in engine.symbols()]
        name, _, channel = stream.partition("@")
        symbol = name.upper()
        if symbol not in engine.instruments:
            return None
        channel = channel.split("@")[0]
        if channel == "bookticker":
            return wire.ws_book_ticker(engine, kind, symbol, now)
        if channel == "ticker":
            return wire.ws_ticker(engine, kind, symbol, now)
        if channel == "miniticker":
            return wire.ws_ticker(engine, kind, symbol, now, mini=True)
        if channel == "markprice" and kind == USDM:
            return wire.ws_mark_price(engine, symbol, now)
        if channel.startswith("depth") and channel[5:].isdigit():
            return wire.ws_partial_depth(engine, kind, symbol, int(channel[5:]), now)
        return None

    # ------------------------------------------------------------------ websocket handlers

    async def _ws_session(self, request: web.Request, conn: WsConnection,
                          on_text: Callable[[WsConnection, str], None] | None) -> web.WebSocketResponse:
        ws = conn.ws
        self._conns.add(conn)
        self.stats.ws_connections += 1
        writer = asyncio.get_running_loop().create_task(conn.writer())
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT and on_text is not None:
                    on_text(conn, msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._conns.discard(conn)
            conn.queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(writer, timeout=1.0)
        return ws

    async def _ws_spot(self, request: web.Request) -> web.WebSocketResponse:
        tail = request.match_info.get("tail", "")
        return await self._ws_stream(request, SPOT, tail, None)

    async def _ws_usdm(self, request: web.Request) -> web.WebSocketResponse:
        tail = request.match_info.get("tail", "")
        category = request.match_info.get("category")
        listen_key = request.query.get("listenKey") if category == "private" else None
        return await self._ws_stream(request, USDM, tail, listen_key)

    async def _ws_stream(self, request: web.Request, kind: MarketKind, tail: str,
                         listen_key: str | None) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        key = listen_key or (tail if tail in self._listen_keys[kind] else None)
        if key is not None:
            if self._listen_keys[kind].get(key, 0.0) <= time.time():
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"invalid listen key")
                return ws
            conn = WsConnection(ws=ws, kind=kind, role="user", listen_key=key)
            return await self._ws_session(request, conn, None)
        conn = WsConnection(ws=ws, kind=kind, role="market")
        for part in tail.split("/"):
            if "@" in part or part.startswith("!"):
                conn.subscriptions.add(part.lower())
        return await self._ws_session(request, conn, self._on_market_message)

    def _on_market_message(self, conn: WsConnection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            conn.send({"error": {"code": 3, "msg": "Invalid JSON: expected value at line 1 column 1"}})
            return
        if not isinstance(message, dict):
            conn.send({"error": {"code": 3, "msg": "Invalid request"}})
            return
        request_id = message.get("id")
        method = message.get("method")
        params = message.get("params") or []
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                conn.send({"error": {"code": 2, "msg": "Invalid request: params must be a list of streams"},
                           "id": request_id})
                return
            for stream in params:
                if method == "SUBSCRIBE":
                    conn.subscriptions.add(stream.lower())
                else:
                    conn.subscriptions.discard(stream.lower())
            conn.send({"result": None, "id": request_id})
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send({"result": sorted(conn.subscriptions), "id": request_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            conn.send({"result": None if method == "SET_PROPERTY" else False, "id": request_id})
        else:
            conn.send({"error": {"code": 2, "msg": f"Invalid request: unknown method {method}"},
                       "id": request_id})

    async def _ws_api_spot(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = WsConnection(ws=ws, kind=SPOT, role="wsapi")
        return await self._ws_session(request, conn, self._on_ws_api_message)

    def _on_ws_api_message(self, conn: WsConnection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            conn.send({"id": None, "status": 400, "error": {"code": -1000, "msg": "Malformed request."}})
            return
        if not isinstance(message, dict):
            conn.send({"id": None, "status": 400, "error": {"code": -1000, "msg": "Malformed request."}})
            return
        request_id = message.get("id")
        method = message.get("method")
        params = message.get("params") or {}
        try:
            if not isinstance(params, dict):
                raise ApiError(-1100, "Illegal parameters.")
            result = self._ws_api_call(conn, str(method), params)
        except ApiError as exc:
            conn.send({"id": request_id, "status": exc.http_status,
                       "error": {"code": exc.code, "msg": exc.msg}})
            return
        conn.send({"id": request_id, "status": 200, "result": result,
                   "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
                                   "intervalNum": 1, "limit": self.config.spot_weight_limit, "count": 2}]})

    def _ws_api_call(self, conn: WsConnection, method: str, params: dict[str, Any]) -> Json:
        now = self.engine.now()
        if method == "ping":
            return {}
        if method == "time":
            return {"serverTime": now}
        if method == "userDataStream.subscribe.signature":
            api_key = params.get("apiKey")
            check_api_key(api_key if isinstance(api_key, str) else None, self.config.api_key)
            signature = params.get("signature")
            check_signature(ws_signature_payload(params), signature if isinstance(signature, str) else None,
                            self.config.secret)
            check_timestamp({k: str(v) for k, v in params.items()}, now)
            if conn.user_subscription_id is None:
                conn.user_subscription_id = self._next_subscription_id
                self._next_subscription_id += 1
            return {"subscriptionId": conn.user_subscription_id}
        if method == "userDataStream.unsubscribe":
            conn.user_subscription_id = None
            return {}
        raise ApiError(-1020, "Unsupported operation.")
