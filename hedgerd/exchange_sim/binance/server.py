"""aiohttp server speaking Binance's spot and USD-M wire protocol, plus its admin endpoints.

REST: the Binance paths under ``/api/v3``, ``/sapi/v1``, ``/fapi/v1|v2|v3`` and ``/dapi/v1``
(see :data:`ROUTES`). Websockets: ``/stream/ws[/...]`` (spot market data and listen-key user
data), ``/fws/[public|market|private/]ws[/...]`` (USD-M), ``/ws-api/v3`` (spot WebSocket API
user-data subscription, which ccxt.pro uses for spot). Admin: ``/_sim/...`` (no weight, no
faults, no auth; the server binds loopback by default).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import random
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import WSCloseCode, WSMsgType, web

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.binance.auth import (
    check_api_key,
    check_signature,
    check_timestamp,
    rest_signature_payload,
    ws_signature_payload,
)
from hedgerd.exchange_sim.binance.ratelimit import Admission, WeightLimiter
from hedgerd.exchange_sim.binance.urls import DEFAULT_API_KEY, DEFAULT_SECRET, ccxt_config, ccxt_urls
from hedgerd.exchange_sim.faults import FaultConfig, TradeMessageShaper
from hedgerd.exchange_sim.matching import (
    SPOT,
    USDM,
    AccountEvent,
    ApiError,
    Engine,
    EngineConfig,
    MarketKind,
    Order,
    OrderEvent,
    Trade,
    UserEvent,
)

log = logging.getLogger("hedgerd.exchange_sim")

Security = Literal["none", "user_stream", "signed"]
LimitKind = Literal["spot", "usdm", "coinm"]
Json = Any


@dataclass
class SimConfig:
    """Server-level settings of the simulator (the market itself is :class:`EngineConfig`)."""

    host: str = "127.0.0.1"
    port: int = 8901
    api_key: str = DEFAULT_API_KEY
    secret: str = DEFAULT_SECRET
    engine: EngineConfig = field(default_factory=EngineConfig)
    tick_interval: float = 0.25
    spot_weight_limit: int = 6000
    usdm_weight_limit: int = 2400
    weight_window_seconds: float = 60.0
    ban_after: int = 3
    ban_seconds: float = 120.0
    spot_order_limit: int = 100
    spot_order_window_seconds: float = 10.0
    usdm_order_limit: int = 1200
    usdm_order_window_seconds: float = 60.0
    listen_key_ttl_seconds: float = 3600.0


@dataclass
class RequestContext:
    """What a REST handler sees: merged query+body params and the request's market."""

    params: dict[str, str]
    kind: MarketKind
    now: int
    ip: str
    api_key: str | None


Handler = Callable[["VenueSim", RequestContext], Json]
WeightFn = Callable[[Mapping[str, str]], int]


@dataclass(frozen=True)
class Route:
    limiter: LimitKind
    security: Security
    weight: WeightFn
    handler: Handler
    is_new_order: bool = False
    is_order_entry: bool = False


def _w(value: int) -> WeightFn:
    return lambda _params: value


def _w_symbol(with_symbol: int, without: int) -> WeightFn:
    return lambda params: with_symbol if params.get("symbol") else without


def _w_spot_depth(params: Mapping[str, str]) -> int:
    limit = _int_or(params.get("limit"), 100)
    return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250


def _w_usdm_depth(params: Mapping[str, str]) -> int:
    limit = _int_or(params.get("limit"), 500)
    return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20


def _int_or(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


# --------------------------------------------------------------------------- parameter parsing


def _required(params: Mapping[str, str], name: str) -> str:
    value = params.get(name)
    if value is None or value == "":
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value < 0:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return value


def _int(params: Mapping[str, str], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'^[0-9]{1,20}$'.") from None


def _bool(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'true, false'.")
    return lowered == "true"


def _symbol(sim: VenueSim, params: Mapping[str, str]) -> str:
    symbol = _required(params, "symbol").upper()
    sim.engine.instrument(symbol)
    return symbol


def _optional_symbol(sim: VenueSim, params: Mapping[str, str]) -> str | None:
    if not params.get("symbol"):
        return None
    return _symbol(sim, params)


# --------------------------------------------------------------------------- REST handlers


def h_ping(_sim: VenueSim, _ctx: RequestContext) -> Json:
    return {}


def h_time(_sim: VenueSim, ctx: RequestContext) -> Json:
    return {"serverTime": ctx.now}


def h_exchange_info(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.exchange_info(sim.engine, ctx.kind, ctx.now)


def h_empty_exchange_info(_sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.empty_exchange_info(ctx.now)


def h_depth(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    limit = _int(ctx.params, "limit") or (100 if ctx.kind == SPOT else 500)
    return wire.depth(sim.engine.book(ctx.kind, symbol, depth=limit), ctx.kind, ctx.now)


def _per_symbol(sim: VenueSim, ctx: RequestContext, build: Callable[[str], Json]) -> Json:
    symbol = _optional_symbol(sim, ctx.params)
    if symbol is not None:
        return build(symbol)
    raw_list = ctx.params.get("symbols")
    if raw_list:
        try:
            wanted = [str(s).upper() for s in json.loads(raw_list)]
        except (ValueError, TypeError):
            raise ApiError(-1100, "Illegal characters found in parameter 'symbols'.") from None
        for s in wanted:
            sim.engine.instrument(s)
        return [build(s) for s in wanted]
    return [build(s) for s in sim.engine.symbols()]


def h_ticker_24hr(sim: VenueSim, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.ticker_24hr(sim.engine, ctx.kind, s, ctx.now))


def h_book_ticker(sim: VenueSim, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.book_ticker(sim.engine, ctx.kind, s, ctx.now))


def h_price_ticker(sim: VenueSim, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.price_ticker(sim.engine, ctx.kind, s, ctx.now))


def h_avg_price(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    return {"mins": 5, "price": wire.f8(sim.engine.mid(SPOT, symbol)), "closeTime": ctx.now}


def h_premium_index(sim: VenueSim, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.premium_index(sim.engine, s, ctx.now))


def h_spot_account(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.spot_account(sim.engine, ctx.now, omit_zero=_bool(ctx.params, "omitZeroBalances"))


def _new_order(sim: VenueSim, ctx: RequestContext) -> tuple[Order, list[Trade]]:
    params = ctx.params
    symbol = _symbol(sim, params)
    side = _required(params, "side").upper()
    order_type = _required(params, "type").upper()
    if ctx.kind == USDM and params.get("positionSide", "BOTH").upper() != "BOTH":
        raise ApiError(-4061, "Order's position side does not match user's setting.")
    if params.get("stopPrice") or params.get("closePosition", "").lower() == "true":
        raise ApiError(-1106, "Parameter 'stopPrice' sent when not required.")
    # The trades of this order are the ones numbered after the venue's last trade so far (the
    # history is bounded, so a position in it would shift as old trades are forgotten).
    after_id = sim.engine.last_trade_id(ctx.kind)
    order = sim.engine.place_order(
        ctx.kind, symbol=symbol, side=side, order_type=order_type,
        quantity=_decimal(params, "quantity"), price=_decimal(params, "price"),
        time_in_force=params.get("timeInForce") or None,
        client_order_id=params.get("newClientOrderId") or None,
        reduce_only=_bool(params, "reduceOnly") if ctx.kind == USDM else False,
        quote_order_qty=_decimal(params, "quoteOrderQty") if ctx.kind == SPOT else None,
    )
    trades = sim.engine.my_trades(ctx.kind, symbol, order_id=order.order_id, from_id=after_id + 1, limit=1000)
    return order, trades


def h_spot_new_order(sim: VenueSim, ctx: RequestContext) -> Json:
    order, trades = _new_order(sim, ctx)
    default = "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
    resp_type = ctx.params.get("newOrderRespType", default).upper()
    if resp_type == "ACK":
        return wire.spot_order_ack(order)
    if resp_type == "RESULT":
        return wire.spot_order_result(order)
    return wire.spot_order_result(order, trades)


def h_spot_test_order(sim: VenueSim, ctx: RequestContext) -> Json:
    _symbol(sim, ctx.params)
    return {}


def h_usdm_new_order(sim: VenueSim, ctx: RequestContext) -> Json:
    order, _ = _new_order(sim, ctx)
    return wire.usdm_order(order)


def _lookup(sim: VenueSim, ctx: RequestContext) -> Order:
    symbol = _symbol(sim, ctx.params)
    return sim.engine.get_order(ctx.kind, symbol, _int(ctx.params, "orderId"),
                                ctx.params.get("origClientOrderId") or None)


def h_query_order(sim: VenueSim, ctx: RequestContext) -> Json:
    order = _lookup(sim, ctx)
    return wire.spot_order(order) if ctx.kind == SPOT else wire.usdm_order(order)


def h_cancel_order(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    order_id = _int(ctx.params, "orderId")
    client_id = ctx.params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    order = sim.engine.cancel_order(ctx.kind, symbol, order_id, client_id)
    if ctx.kind == SPOT:
        return wire.spot_cancel(order, ctx.params.get("newClientOrderId") or secrets.token_hex(11))
    return wire.usdm_order(order)


def h_open_orders(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _optional_symbol(sim, ctx.params)
    orders = sim.engine.open_orders(ctx.kind, symbol)
    return [wire.spot_order(o) if ctx.kind == SPOT else wire.usdm_order(o) for o in orders]


def h_open_order(sim: VenueSim, ctx: RequestContext) -> Json:
    order = _lookup(sim, ctx)
    if not order.is_open:
        raise ApiError(-2013, "Order does not exist.")
    return wire.usdm_order(order)


def h_all_orders(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    limit = max(1, min(_int(ctx.params, "limit") or 500, 1000))
    start = _int(ctx.params, "startTime")
    end = _int(ctx.params, "endTime")
    from_order = _int(ctx.params, "orderId")
    rows = [o for o in sim.engine.orders(ctx.kind) if o.symbol == symbol and not o.is_client_flow]
    if from_order is not None:
        rows = [o for o in rows if o.order_id >= from_order][:limit]
    else:
        rows = [o for o in rows if (start is None or o.time >= start) and (end is None or o.time <= end)]
        rows = rows[:limit] if start is not None else rows[-limit:]
    return [wire.spot_order(o) if ctx.kind == SPOT else wire.usdm_order(o) for o in rows]


def h_cancel_all(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    cancelled = sim.engine.cancel_all(ctx.kind, symbol)
    if ctx.kind == SPOT:
        return [wire.spot_cancel(o, secrets.token_hex(11)) for o in cancelled]
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def h_my_trades(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    trades = sim.engine.my_trades(
        ctx.kind, symbol, order_id=_int(ctx.params, "orderId"), start_time=_int(ctx.params, "startTime"),
        end_time=_int(ctx.params, "endTime"), from_id=_int(ctx.params, "fromId"),
        limit=_int(ctx.params, "limit") or 500)
    return [wire.spot_trade(t) if ctx.kind == SPOT else wire.usdm_trade(t) for t in trades]


def h_usdm_account_v3(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=3)


def h_usdm_account_v2(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=2)


def h_usdm_balance(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.usdm_balance(sim.engine, ctx.now)


def h_position_risk_v3(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, _optional_symbol(sim, ctx.params), version=3)


def h_position_risk_v2(sim: VenueSim, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, _optional_symbol(sim, ctx.params), version=2)


def h_leverage(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    leverage = _int(ctx.params, "leverage")
    if leverage is None:
        raise ApiError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
    sim.engine.set_leverage(symbol, leverage)
    return {"leverage": leverage, "maxNotionalValue": "10000000", "symbol": symbol}


def h_margin_type(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    sim.engine.set_margin_type(symbol, _required(ctx.params, "marginType"))
    return {"code": 200, "msg": "success"}


def h_position_mode(_sim: VenueSim, _ctx: RequestContext) -> Json:
    return {"dualSidePosition": False}


def h_set_position_mode(_sim: VenueSim, ctx: RequestContext) -> Json:
    if _bool(ctx.params, "dualSidePosition"):
        raise ApiError(-4068, "Hedge (dual-side) position mode is not supported by this simulator.")
    raise ApiError(-4059, "No need to change position side.")


def h_leverage_bracket(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _optional_symbol(sim, ctx.params)
    rows = wire.leverage_brackets(sim.engine, symbol)
    return rows[0] if symbol is not None else rows


def h_commission_rate(sim: VenueSim, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    cfg = sim.engine.config
    return {"symbol": symbol, "makerCommissionRate": wire.fp(cfg.usdm_maker_fee),
            "takerCommissionRate": wire.fp(cfg.usdm_taker_fee)}


def h_capital_config(sim: VenueSim, _ctx: RequestContext) -> Json:
    return wire.capital_config(sim.engine)


def h_empty_list(_sim: VenueSim, _ctx: RequestContext) -> Json:
    return []


def h_system_status(_sim: VenueSim, _ctx: RequestContext) -> Json:
    return {"status": 0, "msg": "normal"}


def h_listen_key_new(sim: VenueSim, ctx: RequestContext) -> Json:
    return {"listenKey": sim.listen_key_create(ctx.kind)}


def h_listen_key_keepalive(sim: VenueSim, ctx: RequestContext) -> Json:
    key = ctx.params.get("listenKey") if ctx.kind == SPOT else None
    if ctx.kind == SPOT and not key:
        raise ApiError(-1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.")
    sim.listen_key_keepalive(ctx.kind, key)
    return {} if ctx.kind == SPOT else {"listenKey": sim.active_listen_key(ctx.kind)}


def h_listen_key_close(sim: VenueSim, ctx: RequestContext) -> Json:
    sim.listen_key_close(ctx.kind, ctx.params.get("listenKey") or None)
    return {}


ROUTES: dict[tuple[str, str], Route] = {
    # ---- spot /api/v3
    ("GET", "/api/v3/ping"): Route("spot", "none", _w(1), h_ping),
    ("GET", "/api/v3/time"): Route("spot", "none", _w(1), h_time),
    ("GET", "/api/v3/exchangeInfo"): Route("spot", "none", _w(20), h_exchange_info),
    ("GET", "/api/v3/depth"): Route("spot", "none", _w_spot_depth, h_depth),
    ("GET", "/api/v3/ticker/24hr"): Route("spot", "none", _w_symbol(2, 80), h_ticker_24hr),
    ("GET", "/api/v3/ticker/bookTicker"): Route("spot", "none", _w_symbol(2, 4), h_book_ticker),
    ("GET", "/api/v3/ticker/price"): Route("spot", "none", _w_symbol(2, 4), h_price_ticker),
    ("GET", "/api/v3/avgPrice"): Route("spot", "none", _w(2), h_avg_price),
    ("GET", "/api/v3/account"): Route("spot", "signed", _w(20), h_spot_account),
    ("POST", "/api/v3/order"): Route("spot", "signed", _w(1), h_spot_new_order, True, True),
    ("POST", "/api/v3/order/test"): Route("spot", "signed", _w(1), h_spot_test_order),
    ("GET", "/api/v3/order"): Route("spot", "signed", _w(4), h_query_order),
    ("DELETE", "/api/v3/order"): Route("spot", "signed", _w(1), h_cancel_order, False, True),
    ("GET", "/api/v3/openOrders"): Route("spot", "signed", _w_symbol(6, 80), h_open_orders),
    ("DELETE", "/api/v3/openOrders"): Route("spot", "signed", _w(1), h_cancel_all, False, True),
    ("GET", "/api/v3/allOrders"): Route("spot", "signed", _w(20), h_all_orders),
    ("GET", "/api/v3/myTrades"): Route("spot", "signed", _w(20), h_my_trades),
    ("POST", "/api/v3/userDataStream"): Route("spot", "user_stream", _w(2), h_listen_key_new),
    ("PUT", "/api/v3/userDataStream"): Route("spot", "user_stream", _w(2), h_listen_key_keepalive),
    ("DELETE", "/api/v3/userDataStream"): Route("spot", "user_stream", _w(2), h_listen_key_close),
    # ---- spot /sapi/v1 (only what load_markets touches)
    ("GET", "/sapi/v1/system/status"): Route("spot", "none", _w(1), h_system_status),
    ("GET", "/sapi/v1/capital/config/getall"): Route("spot", "signed", _w(10), h_capital_config),
    ("GET", "/sapi/v1/margin/allPairs"): Route("spot", "signed", _w(1), h_empty_list),
    ("GET", "/sapi/v1/margin/isolated/allPairs"): Route("spot", "signed", _w(10), h_empty_list),
    # ---- USD-M /fapi
    ("GET", "/fapi/v1/ping"): Route("usdm", "none", _w(1), h_ping),
    ("GET", "/fapi/v1/time"): Route("usdm", "none", _w(1), h_time),
    ("GET", "/fapi/v1/exchangeInfo"): Route("usdm", "none", _w(1), h_exchange_info),
    ("GET", "/fapi/v1/depth"): Route("usdm", "none", _w_usdm_depth, h_depth),
    ("GET", "/fapi/v1/ticker/24hr"): Route("usdm", "none", _w_symbol(1, 40), h_ticker_24hr),
    ("GET", "/fapi/v1/ticker/bookTicker"): Route("usdm", "none", _w_symbol(2, 5), h_book_ticker),
    ("GET", "/fapi/v1/ticker/price"): Route("usdm", "none", _w_symbol(1, 2), h_price_ticker),
    ("GET", "/fapi/v2/ticker/price"): Route("usdm", "none", _w_symbol(1, 2), h_price_ticker),
    ("GET", "/fapi/v1/premiumIndex"): Route("usdm", "none", _w_symbol(1, 10), h_premium_index),
    ("POST", "/fapi/v1/order"): Route("usdm", "signed", _w(0), h_usdm_new_order, True, True),
    ("GET", "/fapi/v1/order"): Route("usdm", "signed", _w(1), h_query_order),
    ("DELETE", "/fapi/v1/order"): Route("usdm", "signed", _w(1), h_cancel_order, False, True),
    ("GET", "/fapi/v1/openOrders"): Route("usdm", "signed", _w_symbol(1, 40), h_open_orders),
    ("GET", "/fapi/v1/openOrder"): Route("usdm", "signed", _w(1), h_open_order),
    ("DELETE", "/fapi/v1/allOpenOrders"): Route("usdm", "signed", _w(1), h_cancel_all, False, True),
    ("GET", "/fapi/v1/allOrders"): Route("usdm", "signed", _w(5), h_all_orders),
    ("GET", "/fapi/v1/userTrades"): Route("usdm", "signed", _w(5), h_my_trades),
    ("POST", "/fapi/v1/leverage"): Route("usdm", "signed", _w(1), h_leverage),
    ("POST", "/fapi/v1/marginType"): Route("usdm", "signed", _w(1), h_margin_type),
    ("GET", "/fapi/v1/positionSide/dual"): Route("usdm", "signed", _w(30), h_position_mode),
    ("POST", "/fapi/v1/positionSide/dual"): Route("usdm", "signed", _w(1), h_set_position_mode),
    ("GET", "/fapi/v1/leverageBracket"): Route("usdm", "signed", _w(1), h_leverage_bracket),
    ("GET", "/fapi/v1/commissionRate"): Route("usdm", "signed", _w(20), h_commission_rate),
    ("POST", "/fapi/v1/listenKey"): Route("usdm", "user_stream", _w(1), h_listen_key_new),
    ("PUT", "/fapi/v1/listenKey"): Route("usdm", "user_stream", _w(1), h_listen_key_keepalive),
    ("DELETE", "/fapi/v1/listenKey"): Route("usdm", "user_stream", _w(1), h_listen_key_close),
    ("GET", "/fapi/v2/account"): Route("usdm", "signed", _w(5), h_usdm_account_v2),
    ("GET", "/fapi/v3/account"): Route("usdm", "signed", _w(5), h_usdm_account_v3),
    ("GET", "/fapi/v2/balance"): Route("usdm", "signed", _w(5), h_usdm_balance),
    ("GET", "/fapi/v3/balance"): Route("usdm", "signed", _w(5), h_usdm_balance),
    ("GET", "/fapi/v2/positionRisk"): Route("usdm", "signed", _w(5), h_position_risk_v2),
    ("GET", "/fapi/v3/positionRisk"): Route("usdm", "signed", _w(5), h_position_risk_v3),
    # ---- COIN-M: listed empty so ccxt's default load_markets works
    ("GET", "/dapi/v1/ping"): Route("coinm", "none", _w(1), h_ping),
    ("GET", "/dapi/v1/time"): Route("coinm", "none", _w(1), h_time),
    ("GET", "/dapi/v1/exchangeInfo"): Route("coinm", "none", _w(1), h_empty_exchange_info),
}


# --------------------------------------------------------------------------- websockets


@dataclass(eq=False)
class _WsConn:
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


@dataclass
class SimStats:
    """Counters exposed by ``GET /_sim/stats``."""

    requests: int = 0
    faults_5xx: int = 0
    faults_timeout: int = 0
    ws_dropped: int = 0
    ws_connections: int = 0


class VenueSim:
    """The running simulator: engine, fault switches, rate limiters, HTTP and websocket server."""

    def __init__(self, config: SimConfig | None = None, faults: FaultConfig | None = None,
                 engine: Engine | None = None) -> None:
        self.config = config or SimConfig()
        self.faults = faults or FaultConfig()
        self.engine = engine or Engine(self.config.engine)
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
        self._conns: set[_WsConn] = set()
        self._next_subscription_id = 0
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_drop: float | None = None
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
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        self._runner = runner
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
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
        if self.faults.ws_drop_interval <= 0:
            self._last_drop = None
            return
        now = time.monotonic()
        if self._last_drop is None:
            self._last_drop = now
        elif now - self._last_drop >= self.faults.ws_drop_interval:
            self._last_drop = now
            await self.close_streams(self.faults.ws_drop_scope)

    def tick(self) -> None:
        """One simulation step: prices, resting orders, client flow, held messages, market data."""
        now = self.engine.now()
        self.engine.advance(now)
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

    async def _close_conn(self, conn: _WsConn) -> None:
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
        app.router.add_get("/_sim/faults", self._admin_get_faults)
        app.router.add_post("/_sim/faults", self._admin_set_faults)
        app.router.add_post("/_sim/faults/reset", self._admin_reset_faults)
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

    # ------------------------------------------------------------------ websocket handlers

    async def _ws_session(self, request: web.Request, conn: _WsConn,
                          on_text: Callable[[_WsConn, str], None] | None) -> web.WebSocketResponse:
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
            conn = _WsConn(ws=ws, kind=kind, role="user", listen_key=key)
            return await self._ws_session(request, conn, None)
        conn = _WsConn(ws=ws, kind=kind, role="market")
        for part in tail.split("/"):
            if "@" in part or part.startswith("!"):
                conn.subscriptions.add(part.lower())
        return await self._ws_session(request, conn, self._on_market_message)

    def _on_market_message(self, conn: _WsConn, text: str) -> None:
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
        conn = _WsConn(ws=ws, kind=SPOT, role="wsapi")
        return await self._ws_session(request, conn, self._on_ws_api_message)

    def _on_ws_api_message(self, conn: _WsConn, text: str) -> None:
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

    def _ws_api_call(self, conn: _WsConn, method: str, params: dict[str, Any]) -> Json:
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

    async def _admin_get_faults(self, _request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_dict())

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        data = await self._admin_json(request)
        try:
            self.faults.update(data)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.faults.to_dict())

    async def _admin_reset_faults(self, _request: web.Request) -> web.Response:
        self.faults.reset()
        return web.json_response(self.faults.to_dict())

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
                     stop: asyncio.Event | None = None) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop`` is set); prints one ``listening`` line when ready."""
    sim = VenueSim(config, faults)
    await sim.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    print(f"venue-sim listening on {sim.base_url} (websockets {sim.ws_url}, api key {config.api_key})",
          flush=True)
    try:
        await stop.wait()
    finally:
        await sim.stop()


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hedgerd venue-sim",
        description="Local exchange speaking Binance spot + USD-M REST/websocket protocol (for ccxt). "
                    "Point a ccxt venue at it with sim_base_url = \"http://HOST:PORT\" "
                    "(see config/venue-sim.toml).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
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
        ("--flow-rate", args.flow_rate, args.flow_rate >= 0, ">= 0"),
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
            asyncio.run(run_server(config))
    except OSError as exc:  # the address: a usage problem, one line like hedgerd's own (no traceback)
        if exc.errno not in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            raise
        print(f"venue-sim: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0
