"""The Binance REST API of the simulator: request context, parameter parsing, shared handlers.

A handler takes the running simulator (:class:`RestVenue`: its engine and listen keys) and the
request's :class:`RequestContext`, and returns the JSON body. Handlers both markets share
(market data, order queries and cancels, listen keys) are here; the spot-only ones are in
``rest_spot.py``, the USD-M-only ones in ``rest_futures.py``, and ``routes.py`` maps each
method and path to its handler with its weight, limiter and security.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.binance.countdown import Countdowns
from hedgerd.exchange_sim.binance.funding import UsdmFunding
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import SPOT, USDM, ApiError, MarketKind, Order, Trade

Security = Literal["none", "user_stream", "signed"]
LimitKind = Literal["spot", "usdm", "coinm"]
Json = Any


class RestVenue(Protocol):
    """What the REST handlers use of the running simulator."""

    engine: MatchingEngine
    funding: UsdmFunding
    countdowns: Countdowns

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


# --------------------------------------------------------------------------- parameter parsing


def required_param(params: Mapping[str, str], name: str) -> str:
    """The parameter ``name``; ApiError -1102 when it is missing."""
    value = params.get(name)
    if value is None or value == "":
        raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
    return value


def decimal_param(params: Mapping[str, str], name: str) -> Decimal | None:
    """The parameter ``name`` as a Decimal, None when absent; ApiError when malformed."""
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


def int_param(params: Mapping[str, str], name: str) -> int | None:
    """The parameter ``name`` as an int, None when absent; ApiError when malformed."""
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'^[0-9]{1,20}$'.") from None


def bool_param(params: Mapping[str, str], name: str) -> bool:
    """The parameter ``name`` as a bool (``true``/``false``), False when absent."""
    raw = params.get(name)
    if raw is None or raw == "":
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                              "'true, false'.")
    return lowered == "true"


def symbol_param(sim: RestVenue, params: Mapping[str, str]) -> str:
    """The listed symbol in ``symbol`` (upper case); ApiError when missing or not listed."""
    symbol = required_param(params, "symbol").upper()
    sim.engine.instrument(symbol)
    return symbol


def optional_symbol_param(sim: RestVenue, params: Mapping[str, str]) -> str | None:
    """As :func:`symbol_param`, or None when the request names no symbol."""
    if not params.get("symbol"):
        return None
    return symbol_param(sim, params)


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
    symbol = symbol_param(sim, ctx.params)
    limit = int_param(ctx.params, "limit") or (100 if ctx.kind == SPOT else 500)
    return wire.depth(sim.engine.book(ctx.kind, symbol, depth=limit), ctx.kind, ctx.now)


def per_symbol(sim: RestVenue, ctx: RequestContext, build: Callable[[str], Json]) -> Json:
    """``build`` for the requested symbol, else a list for the ``symbols`` listed, else for every symbol."""
    symbol = optional_symbol_param(sim, ctx.params)
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
    return per_symbol(sim, ctx, lambda s: wire.ticker_24hr(sim.engine, ctx.kind, s, ctx.now))


def h_book_ticker(sim: RestVenue, ctx: RequestContext) -> Json:
    return per_symbol(sim, ctx, lambda s: wire.book_ticker(sim.engine, ctx.kind, s, ctx.now))


def h_price_ticker(sim: RestVenue, ctx: RequestContext) -> Json:
    return per_symbol(sim, ctx, lambda s: wire.price_ticker(sim.engine, ctx.kind, s, ctx.now))


def place_from_params(sim: RestVenue, ctx: RequestContext) -> tuple[Order, list[Trade]]:
    """Place the order a new-order request describes; the order and its trades."""
    params = ctx.params
    symbol = symbol_param(sim, params)
    side = required_param(params, "side").upper()
    order_type = required_param(params, "type").upper()
    if ctx.kind == USDM and params.get("positionSide", "BOTH").upper() != "BOTH":
        raise ApiError(-4061, "Order's position side does not match user's setting.")
    if params.get("stopPrice") or params.get("closePosition", "").lower() == "true":
        raise ApiError(-1106, "Parameter 'stopPrice' sent when not required.")
    # The trades of this order are the ones numbered after the venue's last trade so far (the
    # history is bounded, so a position in it would shift as old trades are forgotten).
    after_id = sim.engine.last_trade_id(ctx.kind)
    order = sim.engine.place_order(
        ctx.kind, symbol=symbol, side=side, order_type=order_type,
        quantity=decimal_param(params, "quantity"), price=decimal_param(params, "price"),
        time_in_force=params.get("timeInForce") or None,
        client_order_id=params.get("newClientOrderId") or None,
        reduce_only=bool_param(params, "reduceOnly") if ctx.kind == USDM else False,
        quote_order_qty=decimal_param(params, "quoteOrderQty") if ctx.kind == SPOT else None,
    )
    trades = sim.engine.my_trades(ctx.kind, symbol, order_id=order.order_id, from_id=after_id + 1, limit=1000)
    return order, trades


def lookup_order(sim: RestVenue, ctx: RequestContext) -> Order:
    """The order a query or cancel request names by ``orderId`` or ``origClientOrderId``."""
    symbol = symbol_param(sim, ctx.params)
    return sim.engine.get_order(ctx.kind, symbol, int_param(ctx.params, "orderId"),
                                ctx.params.get("origClientOrderId") or None)


def h_query_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order = lookup_order(sim, ctx)
    return wire.spot_order(order) if ctx.kind == SPOT else wire.usdm_order(order)


def h_cancel_order(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    order_id = int_param(ctx.params, "orderId")
    client_id = ctx.params.get("origClientOrderId") or None
    if order_id is None and client_id is None:
        raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!")
    order = sim.engine.cancel_order(ctx.kind, symbol, order_id, client_id)
    if ctx.kind == SPOT:
        return wire.spot_cancel(order, ctx.params.get("newClientOrderId") or secrets.token_hex(11))
    return wire.usdm_order(order)


def h_open_orders(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = optional_symbol_param(sim, ctx.params)
    orders = sim.engine.open_orders(ctx.kind, symbol)
    return [wire.spot_order(o) if ctx.kind == SPOT else wire.usdm_order(o) for o in orders]


def h_all_orders(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    limit = max(1, min(int_param(ctx.params, "limit") or 500, 1000))
    start = int_param(ctx.params, "startTime")
    end = int_param(ctx.params, "endTime")
    from_order = int_param(ctx.params, "orderId")
    rows = [o for o in sim.engine.orders(ctx.kind) if o.symbol == symbol and not o.is_client_flow]
    if from_order is not None:
        rows = [o for o in rows if o.order_id >= from_order][:limit]
    else:
        rows = [o for o in rows if (start is None or o.time >= start) and (end is None or o.time <= end)]
        rows = rows[:limit] if start is not None else rows[-limit:]
    return [wire.spot_order(o) if ctx.kind == SPOT else wire.usdm_order(o) for o in rows]


def h_cancel_all(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    cancelled = sim.engine.cancel_all(ctx.kind, symbol)
    if ctx.kind == SPOT:
        return [wire.spot_cancel(o, secrets.token_hex(11)) for o in cancelled]
    return {"code": 200, "msg": "The operation of cancel all open order is done."}


def h_my_trades(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    trades = sim.engine.my_trades(
        ctx.kind, symbol, order_id=int_param(ctx.params, "orderId"), start_time=int_param(ctx.params, "startTime"),
        end_time=int_param(ctx.params, "endTime"), from_id=int_param(ctx.params, "fromId"),
        limit=int_param(ctx.params, "limit") or 500)
    return [wire.spot_trade(t) if ctx.kind == SPOT else wire.usdm_trade(t) for t in trades]


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
