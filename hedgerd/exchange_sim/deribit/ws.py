"""Deribit's websocket JSON-RPC (``/ws/api/v2``): auth, subscriptions, heartbeats, notifications.

Every HTTP method is callable over the socket too (Deribit allows it); private ones need a
prior ``public/auth`` on the connection (``client_credentials``, ``client_signature`` as
ccxt.pro sends it, or ``refresh_token``). Channels: ``user.trades.{kind|instrument}.{currency}.{interval}``,
``user.orders.{kind|instrument}.{currency}.{interval}`` and ``ticker.{instrument}.{interval}``
(tickers are pushed on every simulator tick whatever the interval).

Cancel on disconnect, as Deribit documents it: ``private/enable_cancel_on_disconnect`` (websocket
only; ``scope`` "connection", the default, or "account": every connection opened afterwards starts
with it on) makes the server cancel the orders *created through that connection* when it closes
(the client closing it, a missed heartbeat, the server ending it); orders placed over HTTP or
another connection stay. ``private/logout`` closes the connection without cancelling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSCloseCode, WSMsgType, web

from hedgerd.exchange_sim.deribit.venue import DeribitError, DOrder, DTrade, invalid_param
from hedgerd.exchange_sim.deribit.wire import Json, order_json, ticker_json, trade_json

if TYPE_CHECKING:
    from hedgerd.exchange_sim.deribit.server import DeribitSim


#: heartbeat housekeeping, which costs no credits (the client cannot choose not to answer)
_HEARTBEAT_METHODS = frozenset({"public/set_heartbeat", "public/test", "public/disable_heartbeat"})
#: websocket-only session methods (over HTTP the simulator answers "Method not found")
_COD_METHODS = frozenset({"private/enable_cancel_on_disconnect", "private/disable_cancel_on_disconnect",
                          "private/get_cancel_on_disconnect", "private/logout"})


@dataclass(eq=False)
class WsSession:
    """One websocket connection: its auth state, channels and outgoing queue."""

    ws: web.WebSocketResponse
    authenticated: bool = False
    channels: set[str] = field(default_factory=set)
    heartbeat: float = 0.0
    beat_at: float = 0.0  # loop time of the last test_request (or of set_heartbeat)
    unanswered: bool = False  # a test_request waits for its public/test
    cancel_on_disconnect: bool = False
    logged_out: bool = False  # private/logout: a graceful close, cancel on disconnect does not run
    orders: set[str] = field(default_factory=set)  # ids of the orders placed through this connection

    def send(self, message: Json) -> None:
        if not self.ws.closed:
            asyncio.get_running_loop().create_task(self._send(message))

    async def _send(self, message: Json) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(message))


def _matches(channel: str, kind: str, instrument: str, currency: str) -> bool:
    """``user.trades.any.any.raw``, ``user.orders.option.BTC.raw``, ``user.trades.BTC-PERPETUAL.raw``..."""
    parts = channel.split(".")
    if len(parts) == 4:  # user.{trades|orders}.{instrument}.{interval}
        return parts[2] == instrument
    if len(parts) == 5:
        return parts[2] in ("any", kind) and parts[3] in ("any", currency)
    return False


class DeribitWebsocket:
    """The websocket half of :class:`DeribitSim` (mixed in)."""

    sessions: set[WsSession]
    cod_account: bool  # cancel on disconnect set with scope "account": new connections start with it on

    def _ws_dispatch(self, session: WsSession, method: str, params: dict[str, Any]) -> object:
        sim = cast("DeribitSim", self)
        scope, _, name = method.partition("/")
        if method not in _HEARTBEAT_METHODS:  # every other request spends the account's credits
            sim.admit(name)
        if method == "public/auth":
            result = sim.auth_grant(params)
            session.authenticated = True
            return result
        if method in ("public/subscribe", "private/subscribe"):
            channels = [str(c) for c in params.get("channels", [])]
            if method == "private/subscribe" and not session.authenticated:
                raise DeribitError(13009, "unauthorized")
            if any(c.startswith("user.") for c in channels) and not session.authenticated:
                raise DeribitError(13009, "unauthorized")
            session.channels.update(channels)
            return channels
        if method in ("public/unsubscribe", "private/unsubscribe"):
            channels = [str(c) for c in params.get("channels", [])]
            session.channels.difference_update(channels)
            return channels
        if method == "public/set_heartbeat":
            session.heartbeat = max(10.0, float(params.get("interval", 10)))
            session.beat_at = asyncio.get_running_loop().time()
            session.unanswered = False
            return "ok"
        if method == "public/test":
            session.unanswered = False
        if method == "public/disable_heartbeat":
            session.heartbeat = 0.0
            return "ok"
        if scope == "private" and not session.authenticated:
            raise DeribitError(13009, "unauthorized")
        if method in _COD_METHODS:
            return self._cancel_on_disconnect(session, name, params)
        answer = sim.dispatch(scope, name, params)
        if name in ("buy", "sell"):
            placed = cast("dict[str, Json]", answer)
            session.orders.add(str(placed["order"]["order_id"]))
        return answer

    def _cancel_on_disconnect(self, session: WsSession, name: str, params: dict[str, Any]) -> object:
        if name == "logout":
            session.logged_out = True
            return None
        cod_scope = str(params.get("scope", "connection"))
        if cod_scope not in ("connection", "account"):
            raise invalid_param("scope", "must be connection or account")
        if name == "get_cancel_on_disconnect":
            enabled = self.cod_account if cod_scope == "account" else session.cancel_on_disconnect
            return {"scope": cod_scope, "enabled": enabled}
        enable = name == "enable_cancel_on_disconnect"
        session.cancel_on_disconnect = enable
        if cod_scope == "account":
            self.cod_account = enable
        return "ok"

    def _cancel_session_orders(self, session: WsSession) -> None:
        """The connection has closed: cancel what it placed and is still open, if it asked to."""
        sim = cast("DeribitSim", self)
        if not session.cancel_on_disconnect or session.logged_out:
            return
        for order_id in sorted(session.orders):
            order = sim.venue.orders.get(order_id)
            if order is not None and order.state == "open":
                sim.venue.cancel(order_id)
                sim.stats.cancelled_on_disconnect += 1

    async def ws_handler(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = WsSession(ws, cancel_on_disconnect=self.cod_account)
        self.sessions.add(session)
        heart = asyncio.get_running_loop().create_task(self._heartbeat(session))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    body = json.loads(msg.data)
                except ValueError:
                    continue
                if not isinstance(body, dict):
                    continue
                reply: Json = {"jsonrpc": "2.0", "id": body.get("id")}
                params = body.get("params") or {}
                try:
                    reply["result"] = self._ws_dispatch(session, str(body.get("method", "")),
                                                        params if isinstance(params, dict) else {})
                except DeribitError as exc:
                    error: Json = {"code": exc.code, "message": exc.message}
                    if exc.data is not None:
                        error["data"] = exc.data
                    reply["error"] = error
                    await ws.send_str(json.dumps(reply))
                    if exc.code == 10028:  # Deribit ends the session of a client out of credits
                        cast("DeribitSim", self).stats.sessions_ended_10028 += await self.close_sessions("all")
                        break
                    continue
                if session.logged_out:  # no answer: Deribit closes the connection at once
                    await ws.close()
                    break
                await ws.send_str(json.dumps(reply))
        finally:
            heart.cancel()
            self.sessions.discard(session)
            self._cancel_session_orders(session)
        return ws

    async def _heartbeat(self, session: WsSession) -> None:
        """Every ``interval`` a test_request; one left unanswered by the next ends the session
        (Deribit closes connections that miss their heartbeat)."""
        loop = asyncio.get_running_loop()
        while not session.ws.closed:
            await asyncio.sleep(0.5)
            if not session.heartbeat or loop.time() - session.beat_at < session.heartbeat:
                continue
            if session.unanswered:
                await session.ws.close()
                return
            session.beat_at = loop.time()
            session.unanswered = True
            session.send({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})

    async def close_sessions(self, scope: str) -> int:
        """End websocket sessions: ``scope`` "all", "user" (those subscribed to a ``user.*`` channel)
        or "market" (those subscribed to a ticker); returns how many."""
        prefixes = {"all": ("",), "user": ("user.",), "market": ("ticker.",)}[scope]
        victims = [s for s in list(self.sessions)
                   if scope == "all" or any(c.startswith(prefixes) for c in s.channels)]
        for session in victims:
            self.sessions.discard(session)
            with contextlib.suppress(Exception):
                await session.ws.close(code=WSCloseCode.GOING_AWAY, message=b"session ended by the server")
        return len(victims)

    def on_venue_event(self, event: DOrder | DTrade) -> None:
        """Push an order change or a fill to every session subscribed to it (none while the
        ``user_data_paused`` switch is on: a stream that died silently)."""
        if cast("DeribitSim", self).faults.user_data_paused:
            return
        order = event if isinstance(event, DOrder) else event.order
        inst = order.instrument
        prefix = "user.orders." if isinstance(event, DOrder) else "user.trades."
        data: object = order_json(event) if isinstance(event, DOrder) else [trade_json(event)]
        for session in list(self.sessions):
            for channel in session.channels:
                if channel.startswith(prefix) and _matches(channel, inst.kind, inst.name, inst.currency):
                    session.send({"jsonrpc": "2.0", "method": "subscription",
                                  "params": {"channel": channel, "data": data}})

    def push_tickers(self) -> None:
        sim = cast("DeribitSim", self)
        if sim.faults.market_data_paused:
            return
        now = sim.engine.now()
        for session in list(self.sessions):
            for channel in session.channels:
                if not channel.startswith("ticker."):
                    continue
                name = channel.split(".")[1]
                inst = sim.venue.instruments.get(name)
                if inst is not None:
                    session.send({"jsonrpc": "2.0", "method": "subscription",
                                  "params": {"channel": channel, "data": ticker_json(sim.venue, inst, now)}})
