"""REST handlers of the spot market only (``/api/v3`` and the ``/sapi/v1`` calls ccxt's load_markets makes)."""

from __future__ import annotations

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.binance.rest import (
    Json,
    RequestContext,
    RestVenue,
    bool_param,
    place_from_params,
    symbol_param,
)
from hedgerd.exchange_sim.model import SPOT


def h_avg_price(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    return {"mins": 5, "price": wire.f8(sim.engine.mid(SPOT, symbol)), "closeTime": ctx.now}


def h_spot_account(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.spot_account(sim.engine, ctx.now, omit_zero=bool_param(ctx.params, "omitZeroBalances"))


def h_spot_new_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order, trades = place_from_params(sim, ctx)
    default = "FULL" if order.type in ("MARKET", "LIMIT") else "ACK"
    resp_type = ctx.params.get("newOrderRespType", default).upper()
    if resp_type == "ACK":
        return wire.spot_order_ack(order)
    if resp_type == "RESULT":
        return wire.spot_order_result(order)
    return wire.spot_order_result(order, trades)


def h_spot_test_order(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol_param(sim, ctx.params)
    return {}


def h_capital_config(sim: RestVenue, _ctx: RequestContext) -> Json:
    return wire.capital_config(sim.engine)


def h_empty_list(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return []


def h_system_status(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return {"status": 0, "msg": "normal"}
