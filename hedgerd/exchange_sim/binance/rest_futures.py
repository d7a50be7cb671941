"""REST handlers of the USD-M futures market only (``/fapi``): orders, account, positions, leverage."""

from __future__ import annotations

from hedgerd.exchange_sim.binance import wire
from hedgerd.exchange_sim.binance.rest import (
    Json,
    RequestContext,
    RestVenue,
    bool_param,
    int_param,
    lookup_order,
    optional_symbol_param,
    per_symbol,
    place_from_params,
    required_param,
    symbol_param,
)
from hedgerd.exchange_sim.model import ApiError


def h_premium_index(sim: RestVenue, ctx: RequestContext) -> Json:
    return per_symbol(sim, ctx, lambda s: wire.premium_index(sim.engine, s, ctx.now, sim.funding.rate(s)))


def h_income(sim: RestVenue, ctx: RequestContext) -> Json:
    p = ctx.params
    return sim.funding.income(symbol=optional_symbol_param(sim, p), income_type=p.get("incomeType"),
                              start=int_param(p, "startTime"), end=int_param(p, "endTime"),
                              limit=int_param(p, "limit"), now=ctx.now)


def h_usdm_new_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order, _ = place_from_params(sim, ctx)
    return wire.usdm_order(order)


def h_countdown_cancel_all(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    countdown = int_param(ctx.params, "countdownTime")
    if countdown is None:
        raise ApiError(-1102, "Mandatory parameter 'countdownTime' was not sent, was empty/null, or malformed.")
    if countdown < 0:
        raise ApiError(-1100, "Illegal characters found in parameter 'countdownTime'; legal range is "
                              "'^[0-9]{1,20}$'.")
    sim.countdowns.set(symbol, countdown, ctx.now)
    return {"symbol": symbol, "countdownTime": str(countdown)}


def h_open_order(sim: RestVenue, ctx: RequestContext) -> Json:
    order = lookup_order(sim, ctx)
    if not order.is_open:
        raise ApiError(-2013, "Order does not exist.")
    return wire.usdm_order(order)


def h_usdm_account_v3(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=3)


def h_usdm_account_v2(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_account(sim.engine, ctx.now, version=2)


def h_usdm_balance(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.usdm_balance(sim.engine, ctx.now)


def h_position_risk_v3(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, optional_symbol_param(sim, ctx.params), version=3)


def h_position_risk_v2(sim: RestVenue, ctx: RequestContext) -> Json:
    return wire.position_risk(sim.engine, optional_symbol_param(sim, ctx.params), version=2)


def h_leverage(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    leverage = int_param(ctx.params, "leverage")
    if leverage is None:
        raise ApiError(-1102, "Mandatory parameter 'leverage' was not sent, was empty/null, or malformed.")
    sim.engine.set_leverage(symbol, leverage)
    return {"leverage": leverage, "maxNotionalValue": "10000000", "symbol": symbol}


def h_margin_type(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    sim.engine.set_margin_type(symbol, required_param(ctx.params, "marginType"))
    return {"code": 200, "msg": "success"}


def h_position_mode(_sim: RestVenue, _ctx: RequestContext) -> Json:
    return {"dualSidePosition": False}


def h_set_position_mode(_sim: RestVenue, ctx: RequestContext) -> Json:
    if bool_param(ctx.params, "dualSidePosition"):
        raise ApiError(-4068, "Hedge (dual-side) position mode is not supported by this simulator.")
    raise ApiError(-4059, "No need to change position side.")


def h_leverage_bracket(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = optional_symbol_param(sim, ctx.params)
    rows = wire.leverage_brackets(sim.engine, symbol)
    return rows[0] if symbol is not None else rows


def h_commission_rate(sim: RestVenue, ctx: RequestContext) -> Json:
    symbol = symbol_param(sim, ctx.params)
    cfg = sim.engine.config
    return {"symbol": symbol, "makerCommissionRate": wire.fp(cfg.usdm_maker_fee),
            "takerCommissionRate": wire.fp(cfg.usdm_taker_fee)}
