"""The Binance REST API of the simulator: the route table, parameter parsing and the handlers.

A handler takes the running simulator (:class:`RestVenue`: its engine and listen keys) and the
request's :class:`RequestContext`, and returns the JSON body; :data:`ROUTES` maps a method and
path to the handler with its weight, limiter and security.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.matching import Engine
from hedgerd.exchange_sim.model import SPOT, USDM, ApiError, MarketKind, Order, Trade

Security = Literal["none", "user_stream", "signed"]
LimitKind = Literal["spot", "usdm", "coinm"]
Json = Any


class RestVenue(Protocol):
    """What the REST handlers use of the running simulator."""

    engine: Engine

    def listen_key_create(self, kind: MarketKind) -> str: ...

    def active_listen_key(self, kind: MarketKind) -> str | None: ...

    def listen_key_keepalive(self, kind: MarketKind, key: str | None) -> None: ...

    def listen_key_close(self, kind: MarketKind, key: str | None) -> None: ...


@dataclass
class RequestContext:
    """What a REST handler sees: merged query+body params and the request's market."""

    params: dict[str, str]
    kind: MarketKind
    now: int
    ip: str
    api_key: str | None


Handler = Callable[[RestVenue, RequestContext], Json]
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


def _symbol(sim: RestVenue, params: Mapping[str, str]) -> str:
    symbol = _required(params, "symbol").upper()
    sim.engine.instrument(symbol)
    return symbol


def _optional_symbol(sim: RestVenue, params: Mapping[str, str]) -> str | None:
    if not params.get("symbol"):
        return None
    return _symbol(sim, params)


# --------------------------------------------------------------------------- REST handlers


def h_ping(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return {}


def h_time(_sim: RestVenue, ctx: RequestContext) -> Json:
    return {"serverTime": ctx.now}


def h_exchange_info(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.exchange_info(sim.engine, ctx.kind, ctx.now)


def h_empty_exchange_info(_sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.empty_exchange_info(ctx.now)


def h_depth(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    limit = _int(ctx.params, "limit") or (100 if ctx.kind == SPOT else 500)
    return wire.depth(sim.engine.book(ctx.kind, symbol, depth=limit), ctx.kind, ctx.now)


def _per_symbol(sim: RestVenue, ctx: RequestContext, build: Callable[[str], Json]) -> Json:
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


def h_ticker_24hr(sim: RestVenue, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.ticker_24hr(sim.engine, ctx.kind, s, ctx.now))


def h_book_ticker(sim: RestVenue, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.book_ticker(sim.engine, ctx.kind, s, ctx.now))


def h_price_ticker(sim: RestVenue, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.price_ticker(sim.engine, ctx.kind, s, ctx.now))


def h_avg_price(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    return {"mins": 5, "price": wire.f8(sim.engine.mid(SPOT, symbol)), "closeTime": ctx.now}


def h_premium_index(sim: RestVenue, ctx: RequestContext) -> Json:
    return _per_symbol(sim, ctx, lambda s: wire.premium_index(sim.engine, s, ctx.now))


def h_spot_account(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.spot_account(sim.engine, ctx.now, omit_zero=_bool(ctx.params, "omitZeroBalances"))


def _new_order(sim: RestVenue, ctx: RequestContext) -> tuple[Order, list[Trade]]:
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


def h_spot_new_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order, trades = _new_order(sim, ctx)
    default = "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
    resp_type = ctx.params.get("newOrderRespType", default).upper()
    if resp_type == "ACK":
        return wire.spot_order_ack(order)
    if resp_type == "RESULT":
        return wire.spot_order_result(order)
    return wire.spot_order_result(order, trades)


def h_spot_test_order(sim: RestVenue, ctx: RequestContext) -> Json:
    _symbol(sim, ctx.params)
    return {}


def h_usdm_new_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order, _ = _new_order(sim, ctx)
    return wire.usdm_order(order)


def _lookup(sim: RestVenue, ctx: RequestContext) -> Order:
    symbol = _symbol(sim, ctx.params)
    return sim.engine.get_order(ctx.kind, symbol, _int(ctx.params, "orderId"),
                                ctx.params.get("origClientOrderId") or None)


def h_query_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order = _lookup(sim, ctx)
    return wire.spot_order(order) if ctx.kind == SPOT else wire.usdm_order(order)


def h_cancel_order(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    order_id = _int(ctx.params, "orderId")
    client_id = ctx.params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    order = sim.engine.cancel_order(ctx.kind, symbol, order_id, client_id)
    if ctx.kind == SPOT:
        return wire.spot_cancel(order, ctx.params.get("newClientOrderId") or secrets.token_hex(11))
    return wire.usdm_order(order)


def h_open_orders(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _optional_symbol(sim, ctx.params)
    orders = sim.engine.open_orders(ctx.kind, symbol)
    return [wire.spot_order(o) if ctx.kind == SPOT else wire.usdm_order(o) for o in orders]


def h_open_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order = _lookup(sim, ctx)
    if not order.is_open:
        raise ApiError(-2013, "Order does not exist.")
    return wire.usdm_order(order)


def h_all_orders(sim: RestVenue, ctx: RequestContext) -> Json:
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


def h_cancel_all(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    cancelled = sim.engine.cancel_all(ctx.kind, symbol)
    if ctx.kind == SPOT:
        return [wire.spot_cancel(o, secrets.token_hex(11)) for o in cancelled]
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def h_my_trades(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    trades = sim.engine.my_trades(
        ctx.kind, symbol, order_id=_int(ctx.params, "orderId"), start_time=_int(ctx.params, "startTime"),
        end_time=_int(ctx.params, "endTime"), from_id=_int(ctx.params, "fromId"),
        limit=_int(ctx.params, "limit") or 500)
    return [wire.spot_trade(t) if ctx.kind == SPOT else wire.usdm_trade(t) for t in trades]


def h_usdm_account_v3(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=3)


def h_usdm_account_v2(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=2)


def h_usdm_balance(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_balance(sim.engine, ctx.now)


def h_position_risk_v3(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, _optional_symbol(sim, ctx.params), version=3)


def h_position_risk_v2(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, _optional_symbol(sim, ctx.params), version=2)


def h_leverage(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    leverage = _int(ctx.params, "leverage")
    if leverage is None:
        raise ApiError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
    sim.engine.set_leverage(symbol, leverage)
    return {"leverage": leverage, "maxNotionalValue": "10000000", "symbol": symbol}


def h_margin_type(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    sim.engine.set_margin_type(symbol, _required(ctx.params, "marginType"))
    return {"code": 200, "msg": "success"}


def h_position_mode(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return {"dualSidePosition": False}


def h_set_position_mode(_sim: RestVenue, ctx: RequestContext) -> Json:
    if _bool(ctx.params, "dualSidePosition"):
        raise ApiError(-4068, "Hedge (dual-side) position mode is not supported by this simulator.")
    raise ApiError(-4059, "No need to change position side.")


def h_leverage_bracket(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _optional_symbol(sim, ctx.params)
    rows = wire.leverage_brackets(sim.engine, symbol)
    return rows[0] if symbol is not None else rows


def h_commission_rate(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = _symbol(sim, ctx.params)
    cfg = sim.engine.config
    return {"symbol": symbol, "makerCommissionRate": wire.fp(cfg.usdm_maker_fee),
            "takerCommissionRate": wire.fp(cfg.usdm_taker_fee)}


def h_capital_config(sim: RestVenue, _ctx: RequestContext) -> Json:
    return wire.capital_config(sim.engine)


def h_empty_list(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return []


def h_system_status(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return {"status": 0, "msg": "normal"}


def h_listen_key_new(sim: RestVenue, ctx: RequestContext) -> Json:
    return {"listenKey": sim.listen_key_create(ctx.kind)}


def h_listen_key_keepalive(sim: RestVenue, ctx: RequestContext) -> Json:
    key = ctx.params.get("listenKey") if ctx.kind == SPOT else None
    if ctx.kind == SPOT and not key:
        raise ApiError(-1102, "Mandatory parameter 'listenKey' was not sent, was empty/null, or malformed.")
    sim.listen_key_keepalive(ctx.kind, key)
    return {} if ctx.kind == SPOT else {"listenKey": sim.active_listen_key(ctx.kind)}


def h_listen_key_close(sim: RestVenue, ctx: RequestContext) -> Json:
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
