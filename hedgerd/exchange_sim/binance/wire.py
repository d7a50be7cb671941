"""Binance JSON shapes (REST responses and stream events) built from engine state.

Pure functions. Spot numbers are fixed 8-decimal strings, USD-M numbers plain decimals,
as the two Binance APIs print them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hedgerd.exchange_sim.margin import BRACKETS
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import (
    SPOT,
    USDM,
    ZERO,
    AccountEvent,
    Book,
    MarketKind,
    Order,
    OrderEvent,
    Position,
    Trade,
)

JsonDict = dict[str, Any]
EIGHT = Decimal("1e-8")


def f8(value: Decimal) -> str:
    """Spot style: always 8 decimals."""
    return f"{value.quantize(EIGHT):f}"


def fp(value: Decimal) -> str:
    """USD-M style: plain decimal without exponent or trailing zeros."""
    if value == 0:
        return "0"
    return f"{value.normalize():f}"


def num(kind: MarketKind, value: Decimal) -> str:
    return f8(value) if kind == SPOT else fp(value)


def _step_decimals(step: Decimal) -> int:
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


# --------------------------------------------------------------------------- market data


def exchange_info(engine: MatchingEngine, kind: MarketKind, now: int) -> JsonDict:
    """``GET /api/v3/exchangeInfo`` or ``GET /fapi/v1/exchangeInfo``."""
    if kind == SPOT:
        rate_limits = [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
            {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
        ]
        symbols = [_spot_symbol(engine, s) for s in engine.symbols()]
        return {"timezone": "UTC", "serverTime": now, "rateLimits": rate_limits, "exchangeFilters": [],
                "symbols": symbols}
    rate_limits = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": 1200},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 300},
    ]
    assets = sorted({engine.instrument(s).quote for s in engine.symbols()})
    return {
        "timezone": "UTC", "serverTime": now, "futuresType": "U_MARGINED", "rateLimits": rate_limits,
        "exchangeFilters": [],
        "assets": [{"asset": a, "marginAvailable": True, "autoAssetExchange": "-10000"} for a in assets],
        "symbols": [_usdm_symbol(engine, s) for s in engine.symbols()],
    }


def _spot_symbol(engine: MatchingEngine, symbol: str) -> JsonDict:
    inst = engine.instrument(symbol)
    flt = engine.filters(SPOT, symbol)
    return {
        "symbol": symbol, "status": "TRADING", "baseAsset": inst.base, "baseAssetPrecision": 8,
        "quoteAsset": inst.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
        "icebergAllowed": False, "ocoAllowed": False, "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": False, "cancelReplaceAllowed": False,
        "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": f8(flt.min_price), "maxPrice": f8(flt.max_price),
             "tickSize": f8(flt.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": f8(flt.min_qty), "maxQty": f8(flt.max_qty),
             "stepSize": f8(flt.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": f8(ZERO), "maxQty": f8(flt.max_qty),
             "stepSize": f8(ZERO)},
            {"filterType": "NOTIONAL", "minNotional": f8(flt.min_notional), "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
        ],
        "permissions": [], "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def _usdm_symbol(engine: MatchingEngine, symbol: str) -> JsonDict:
    inst = engine.instrument(symbol)
    flt = engine.filters(USDM, symbol)
    return {
        "symbol": symbol, "pair": symbol, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
        "onboardDate": 1569398400000, "status": "TRADING", "maintMarginPercent": "2.5000",
        "requiredMarginPercent": "5.0000", "baseAsset": inst.base, "quoteAsset": inst.quote,
        "marginAsset": inst.quote, "pricePrecision": _step_decimals(flt.tick_size),
        "quantityPrecision": _step_decimals(flt.step_size), "baseAssetPrecision": 8, "quotePrecision": 8,
        "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0, "triggerProtect": "0.0500",
        "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fp(flt.min_price), "maxPrice": fp(flt.max_price),
             "tickSize": fp(flt.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": fp(flt.min_qty), "maxQty": fp(flt.max_qty),
             "stepSize": fp(flt.step_size)},
            {"filterType": "MARKET_LOT_SIZE", "minQty": fp(flt.min_qty), "maxQty": fp(flt.max_qty),
             "stepSize": fp(flt.step_size)},
            {"filterType": "MAX_NUM_ORDERS", "limit": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "limit": 10},
            {"filterType": "MIN_NOTIONAL", "notional": fp(flt.min_notional)},
            {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
             "multiplierDecimal": "4"},
        ],
        "orderTypes": ["LIMIT", "MARKET"],
        "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
    }


def empty_exchange_info(now: int) -> JsonDict:
    """An exchangeInfo without symbols (COIN-M: not simulated)."""
    return {"timezone": "UTC", "serverTime": now, "rateLimits": [], "exchangeFilters": [], "symbols": []}


def ticker_24hr(engine: MatchingEngine, kind: MarketKind, symbol: str, now: int) -> JsonDict:
    model = engine.price_model(symbol)
    stats = engine.ticker_stats(kind, symbol)
    tick = engine.filters(kind, symbol).tick_size
    last = engine.mid(kind, symbol)
    open_price = Decimal(repr(model.open)).quantize(tick)
    high = Decimal(repr(model.high)).quantize(tick)
    low = Decimal(repr(model.low)).quantize(tick)
    change = last - open_price
    pct = (change / open_price * 100).quantize(Decimal("0.001")) if open_price else ZERO
    vwap = stats.quote_volume / stats.volume if stats.volume else last
    out: JsonDict = {
        "symbol": symbol, "priceChange": num(kind, change), "priceChangePercent": f"{pct:f}",
        "weightedAvgPrice": num(kind, vwap.quantize(tick)),
    }
    if kind == SPOT:
        book = engine.book(kind, symbol, depth=1)
        out.update({"prevClosePrice": f8(open_price), "lastPrice": f8(last),
                    "lastQty": f8(stats.last_qty), "bidPrice": f8(book.best_bid.price),
                    "bidQty": f8(book.best_bid.qty), "askPrice": f8(book.best_ask.price),
                    "askQty": f8(book.best_ask.qty)})
    else:
        out.update({"lastPrice": fp(last), "lastQty": fp(stats.last_qty)})
    out.update({
        "openPrice": num(kind, open_price), "highPrice": num(kind, high), "lowPrice": num(kind, low),
        "volume": num(kind, stats.volume), "quoteVolume": num(kind, stats.quote_volume),
        "openTime": now - 86_400_000, "closeTime": now, "firstId": stats.first_id,
        "lastId": stats.last_id, "count": stats.count,
    })
    return out


def book_ticker(engine: MatchingEngine, kind: MarketKind, symbol: str, now: int) -> JsonDict:
    book = engine.book(kind, symbol, depth=1)
    out: JsonDict = {"symbol": symbol, "bidPrice": num(kind, book.best_bid.price),
                     "bidQty": num(kind, book.best_bid.qty), "askPrice": num(kind, book.best_ask.price),
                     "askQty": num(kind, book.best_ask.qty)}
    if kind == USDM:
        out["time"] = now
        out["lastUpdateId"] = book.update_id
    return out


def price_ticker(engine: MatchingEngine, kind: MarketKind, symbol: str, now: int) -> JsonDict:
    out: JsonDict = {"symbol": symbol, "price": num(kind, engine.mid(kind, symbol))}
    if kind == USDM:
        out["time"] = now
    return out


def depth(book: Book, kind: MarketKind, now: int) -> JsonDict:
    out: JsonDict = {"lastUpdateId": book.update_id}
    if kind == USDM:
        out["E"] = now
        out["T"] = now
    out["bids"] = [[num(kind, lv.price), num(kind, lv.qty)] for lv in book.bids]
    out["asks"] = [[num(kind, lv.price), num(kind, lv.qty)] for lv in book.asks]
    return out


def premium_index(engine: MatchingEngine, symbol: str, now: int, funding_rate: float) -> JsonDict:
    mark = engine.mark_price(symbol)
    return {"symbol": symbol, "markPrice": fp(mark), "indexPrice": fp(mark),
            "estimatedSettlePrice": fp(mark), "lastFundingRate": f"{funding_rate:.8f}", "interestRate": "0.00010000",
            "nextFundingTime": (now // 28_800_000 + 1) * 28_800_000, "time": now}


# --------------------------------------------------------------------------- accounts


def spot_account(engine: MatchingEngine, now: int, omit_zero: bool = False) -> JsonDict:
    balances = [
        {"asset": asset, "free": f8(free), "locked": f8(locked)}
        for asset, (free, locked) in sorted(engine.spot_balances().items())
        if not (omit_zero and free == 0 and locked == 0)
    ]
    maker = engine.config.spot_maker_fee
    taker = engine.config.spot_taker_fee
    return {
        "makerCommission": int(maker * 10_000), "takerCommission": int(taker * 10_000),
        "buyerCommission": 0, "sellerCommission": 0,
        "commissionRates": {"maker": f8(maker), "taker": f8(taker), "buyer": f8(ZERO), "seller": f8(ZERO)},
        "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
        "requireSelfTradePrevention": False, "preventSor": False, "updateTime": now,
        "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868,
    }


def _usdm_asset_rows(engine: MatchingEngine, now: int) -> list[JsonDict]:
    totals = engine.usdm_totals()
    return [{
        "asset": "USDT", "walletBalance": fp(totals["wallet"]), "unrealizedProfit": fp(totals["unrealized"]),
        "marginBalance": fp(totals["margin_balance"]), "maintMargin": fp(totals["maint_margin"]),
        "initialMargin": fp(totals["initial_margin"]), "positionInitialMargin": fp(totals["position_im"]),
        "openOrderInitialMargin": fp(totals["open_order_im"]), "crossWalletBalance": fp(totals["wallet"]),
        "crossUnPnl": fp(totals["unrealized"]), "availableBalance": fp(totals["available"]),
        "maxWithdrawAmount": fp(max(ZERO, totals["available"])), "marginAvailable": True,
        "updateTime": now,
    }]


def usdm_account(engine: MatchingEngine, now: int, version: int = 3) -> JsonDict:
    """``GET /fapi/v3/account`` (or v2 with ``version=2``)."""
    totals = engine.usdm_totals()
    positions = []
    for symbol, pos in engine.positions().items():
        if version == 3 and pos.amount == 0:
            continue
        row = {
            "symbol": symbol, "positionSide": "BOTH", "positionAmt": fp(pos.amount),
            "unrealizedProfit": fp(engine.unrealized_pnl(symbol)), "isolatedMargin": "0",
            "notional": fp(pos.amount * engine.mark_price(symbol)), "isolatedWallet": "0",
            "initialMargin": fp(engine.position_initial_margin(symbol)),
            "maintMargin": fp(engine.maintenance_margin(symbol)),
            "updateTime": pos.update_time,
        }
        if version == 2:
            row.update({"leverage": str(engine.leverage(symbol)), "entryPrice": fp(pos.entry_price),
                        "isolated": False, "maxNotional": "10000000", "bidNotional": "0",
                        "askNotional": "0", "positionInitialMargin": row["initialMargin"],
                        "openOrderInitialMargin": fp(engine.open_order_initial_margin(symbol))})
        positions.append(row)
    out: JsonDict = {
        "totalInitialMargin": fp(totals["initial_margin"]), "totalMaintMargin": fp(totals["maint_margin"]),
        "totalWalletBalance": fp(totals["wallet"]), "totalUnrealizedProfit": fp(totals["unrealized"]),
        "totalMarginBalance": fp(totals["margin_balance"]),
        "totalPositionInitialMargin": fp(totals["position_im"]),
        "totalOpenOrderInitialMargin": fp(totals["open_order_im"]),
        "totalCrossWalletBalance": fp(totals["wallet"]), "totalCrossUnPnl": fp(totals["unrealized"]),
        "availableBalance": fp(totals["available"]), "maxWithdrawAmount": fp(max(ZERO, totals["available"])),
        "assets": _usdm_asset_rows(engine, now), "positions": positions,
    }
    if version == 2:
        out.update({"feeTier": 0, "canTrade": True, "canDeposit": True, "canWithdraw": True,
                    "updateTime": 0, "multiAssetsMargin": False, "tradeGroupId": -1})
    return out


def usdm_balance(engine: MatchingEngine, now: int) -> list[JsonDict]:
    totals = engine.usdm_totals()
    return [{"accountAlias": "SgsR", "asset": "USDT", "balance": fp(totals["wallet"]),
             "crossWalletBalance": fp(totals["wallet"]), "crossUnPnl": fp(totals["unrealized"]),
             "availableBalance": fp(totals["available"]),
             "maxWithdrawAmount": fp(max(ZERO, totals["available"])), "marginAvailable": True,
             "updateTime": now}]


def position_risk(engine: MatchingEngine, symbol: str | None, version: int = 3) -> list[JsonDict]:
    """``GET /fapi/v3/positionRisk`` (v3 lists open positions only; v2 every symbol)."""
    rows = []
    for sym, pos in engine.positions().items():
        if symbol is not None and sym != symbol:
            continue
        if version == 3 and pos.amount == 0:
            continue
        rows.append(_position_row(engine, pos, version))
    return rows


def _position_row(engine: MatchingEngine, pos: Position, version: int) -> JsonDict:
    mark = engine.mark_price(pos.symbol)
    notional = pos.amount * mark
    isolated = engine.isolated_margin(pos.symbol)
    row: JsonDict = {
        "symbol": pos.symbol, "positionSide": "BOTH", "positionAmt": fp(pos.amount),
        "entryPrice": fp(pos.entry_price), "breakEvenPrice": fp(pos.entry_price), "markPrice": fp(mark),
        "unRealizedProfit": fp(engine.unrealized_pnl(pos.symbol)),
        "liquidationPrice": fp(engine.liquidation_price(pos.symbol)),
        "isolatedMargin": fp(isolated + (engine.unrealized_pnl(pos.symbol) if isolated else ZERO)),
        "notional": fp(notional), "isolatedWallet": fp(isolated),
        "updateTime": pos.update_time,
    }
    if version == 3:
        row.update({"marginAsset": "USDT",
                    "initialMargin": fp(engine.position_initial_margin(pos.symbol)),
                    "maintMargin": fp(engine.maintenance_margin(pos.symbol)),
                    "positionInitialMargin": fp(engine.position_initial_margin(pos.symbol)),
                    "openOrderInitialMargin": fp(engine.open_order_initial_margin(pos.symbol)),
                    "adl": 0, "bidNotional": "0", "askNotional": "0"})
    else:
        row.update({"leverage": str(engine.leverage(pos.symbol)), "maxNotionalValue": "10000000",
                    "marginType": engine.margin_type(pos.symbol), "isAutoAddMargin": "false"})
    return row


def leverage_brackets(engine: MatchingEngine, symbol: str | None) -> list[JsonDict]:
    out = []
    for sym in engine.symbols():
        if symbol is not None and sym != symbol:
            continue
        out.append({"symbol": sym, "notionalCoef": 1.0, "brackets": [
            {"bracket": i, "initialLeverage": leverage, "notionalCap": int(cap), "notionalFloor": int(floor),
             "maintMarginRatio": float(rate), "cum": float(cum)}
            for i, (floor, cap, rate, cum, leverage) in enumerate(BRACKETS, start=1)]})
    return out


def capital_config(engine: MatchingEngine) -> list[JsonDict]:
    """``GET /sapi/v1/capital/config/getall`` (coins only, no real networks)."""
    assets = sorted({a for s in engine.symbols() for a in (engine.instrument(s).base,
                                                          engine.instrument(s).quote)})
    out = []
    for asset in assets:
        free, locked = engine.spot_balance(asset)
        out.append({
            "coin": asset, "name": asset, "depositAllEnable": False, "withdrawAllEnable": False,
            "free": f8(free), "locked": f8(locked), "freeze": "0", "withdrawing": "0", "ipoing": "0",
            "ipoable": "0", "storage": "0", "isLegalMoney": False, "trading": True,
            "networkList": [{"network": asset, "coin": asset, "withdrawIntegerMultiple": "0.00000001",
                             "isDefault": True, "depositEnable": False, "withdrawEnable": False,
                             "withdrawFee": "0", "withdrawMin": "0", "withdrawMax": "0",
                             "name": asset, "busy": False}],
        })
    return out


# --------------------------------------------------------------------------- orders and trades


def spot_order_ack(order: Order) -> JsonDict:
    return {"symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
            "clientOrderId": order.client_order_id, "transactTime": order.time}


def spot_order_result(order: Order, trades: list[Trade] | None = None) -> JsonDict:
    """POST order response (RESULT; FULL when ``trades`` is given)."""
    out = spot_order_ack(order)
    out.update({
        "price": f8(order.price), "origQty": f8(order.orig_qty), "executedQty": f8(order.executed_qty),
        "origQuoteOrderQty": f8(order.orig_quote_qty), "cummulativeQuoteQty": f8(order.cum_quote),
        "status": order.status, "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "workingTime": order.time, "selfTradePreventionMode": "EXPIRE_MAKER",
    })
    if trades is not None:
        out["fills"] = [{"price": f8(t.price), "qty": f8(t.qty), "commission": f8(t.commission),
                         "commissionAsset": t.commission_asset, "tradeId": t.trade_id} for t in trades]
    return out


def spot_order(order: Order) -> JsonDict:
    """GET order / openOrders row."""
    return {
        "symbol": order.symbol, "orderId": order.order_id, "orderListId": -1,
        "clientOrderId": order.client_order_id, "price": f8(order.price), "origQty": f8(order.orig_qty),
        "executedQty": f8(order.executed_qty), "cummulativeQuoteQty": f8(order.cum_quote),
        "status": order.status, "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "stopPrice": f8(ZERO), "icebergQty": f8(ZERO), "time": order.time, "updateTime": order.update_time,
        "isWorking": order.is_open, "workingTime": order.time, "origQuoteOrderQty": f8(order.orig_quote_qty),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def spot_cancel(order: Order, cancel_client_id: str) -> JsonDict:
    return {
        "symbol": order.symbol, "origClientOrderId": order.client_order_id, "orderId": order.order_id,
        "orderListId": -1, "clientOrderId": cancel_client_id, "transactTime": order.update_time,
        "price": f8(order.price), "origQty": f8(order.orig_qty), "executedQty": f8(order.executed_qty),
        "cummulativeQuoteQty": f8(order.cum_quote), "status": order.status,
        "timeInForce": order.time_in_force, "type": order.type, "side": order.side,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def usdm_order(order: Order) -> JsonDict:
    """POST (RESULT) / GET / DELETE order on USD-M."""
    return {
        "orderId": order.order_id, "symbol": order.symbol, "status": order.status,
        "clientOrderId": order.client_order_id, "price": fp(order.price), "avgPrice": fp(order.avg_price),
        "origQty": fp(order.orig_qty), "executedQty": fp(order.executed_qty), "cumQty": fp(order.executed_qty),
        "cumQuote": fp(order.cum_quote), "timeInForce": order.time_in_force, "type": order.type,
        "reduceOnly": order.reduce_only, "closePosition": False, "side": order.side,
        "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
        "origType": order.type, "priceMatch": "NONE", "selfTradePreventionMode": "EXPIRE_MAKER",
        "goodTillDate": 0, "time": order.time, "updateTime": order.update_time,
    }


def spot_trade(trade: Trade) -> JsonDict:
    """``GET /api/v3/myTrades`` row."""
    return {
        "symbol": trade.symbol, "id": trade.trade_id, "orderId": trade.order_id, "orderListId": -1,
        "price": f8(trade.price), "qty": f8(trade.qty), "quoteQty": f8(trade.quote_qty),
        "commission": f8(trade.commission), "commissionAsset": trade.commission_asset, "time": trade.time,
        "isBuyer": trade.side == "BUY", "isMaker": trade.is_maker, "isBestMatch": True,
    }


def usdm_trade(trade: Trade) -> JsonDict:
    """``GET /fapi/v1/userTrades`` row."""
    return {
        "buyer": trade.side == "BUY", "commission": fp(trade.commission),
        "commissionAsset": trade.commission_asset, "id": trade.trade_id, "maker": trade.is_maker,
        "orderId": trade.order_id, "price": fp(trade.price), "qty": fp(trade.qty),
        "quoteQty": fp(trade.quote_qty), "realizedPnl": fp(trade.realized_pnl), "side": trade.side,
        "positionSide": "BOTH", "symbol": trade.symbol, "time": trade.time,
    }


# --------------------------------------------------------------------------- stream events


def execution_report(event: OrderEvent) -> JsonDict:
    """Spot user-data ``executionReport``."""
    order = event.order
    trade = event.trade
    return {
        "e": "executionReport", "E": event.time, "s": order.symbol, "c": order.client_order_id,
        "S": order.side, "o": order.type, "f": order.time_in_force, "q": f8(order.orig_qty),
        "p": f8(order.price), "P": f8(ZERO), "F": f8(ZERO), "g": -1, "C": "",
        "x": event.execution_type, "X": order.status, "r": "NONE", "i": order.order_id,
        "l": f8(trade.qty if trade else ZERO), "z": f8(order.executed_qty),
        "L": f8(trade.price if trade else ZERO), "n": f8(trade.commission if trade else ZERO),
        "N": trade.commission_asset if trade else None, "T": trade.time if trade else event.time,
        "t": trade.trade_id if trade else -1, "v": 0, "I": order.order_id * 2 + 1,
        "w": order.is_open, "m": trade.is_maker if trade else False, "M": False, "O": order.time,
        "Z": f8(order.cum_quote), "Y": f8(trade.quote_qty if trade else ZERO),
        "Q": f8(order.orig_quote_qty), "W": order.time, "V": "EXPIRE_MAKER",
    }


def outbound_account_position(engine: MatchingEngine, event: AccountEvent) -> JsonDict:
    rows = []
    for asset in event.assets:
        free, locked = engine.spot_balance(asset)
        rows.append({"a": asset, "f": f8(free), "l": f8(locked)})
    return {"e": "outboundAccountPosition", "E": event.time, "u": event.time, "B": rows}


def order_trade_update(event: OrderEvent) -> JsonDict:
    """USD-M user-data ``ORDER_TRADE_UPDATE``."""
    order = event.order
    trade = event.trade
    body: JsonDict = {
        "s": order.symbol, "c": order.client_order_id, "S": order.side, "o": order.type,
        "f": order.time_in_force, "q": fp(order.orig_qty), "p": fp(order.price), "ap": fp(order.avg_price),
        "sp": "0", "x": event.execution_type, "X": order.status, "i": order.order_id,
        "l": fp(trade.qty if trade else ZERO), "z": fp(order.executed_qty),
        "L": fp(trade.price if trade else ZERO), "T": trade.time if trade else event.time,
        "t": trade.trade_id if trade else 0, "b": "0", "a": "0", "m": trade.is_maker if trade else False,
        "R": order.reduce_only, "wt": "CONTRACT_PRICE", "ot": order.type, "ps": "BOTH", "cp": False,
        "rp": fp(trade.realized_pnl if trade else ZERO), "pP": False, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
        "pm": "NONE", "gtd": 0,
    }
    if trade is not None:
        body["N"] = trade.commission_asset
        body["n"] = fp(trade.commission)
    return {"e": "ORDER_TRADE_UPDATE", "E": event.time, "T": event.time, "o": body}


def account_update(engine: MatchingEngine, event: AccountEvent) -> JsonDict:
    """USD-M user-data ``ACCOUNT_UPDATE`` for the wallet and the touched symbols."""
    totals = engine.usdm_totals()
    balances = [{"a": "USDT", "wb": fp(totals["wallet"]), "cw": fp(totals["wallet"]), "bc": "0"}]
    positions = []
    for symbol in event.symbols:
        pos = engine.position(symbol)
        positions.append({
            "s": symbol, "pa": fp(pos.amount), "ep": fp(pos.entry_price), "bep": fp(pos.entry_price),
            "cr": fp(pos.realized_pnl), "up": fp(engine.unrealized_pnl(symbol)),
            "mt": engine.margin_type(symbol), "iw": "0", "ps": "BOTH", "ma": "USDT",
        })
    return {"e": "ACCOUNT_UPDATE", "E": event.time, "T": event.time,
            "a": {"m": event.reason, "B": balances, "P": positions}}


def ws_book_ticker(engine: MatchingEngine, kind: MarketKind, symbol: str, now: int) -> JsonDict:
    book = engine.book(kind, symbol, depth=1)
    core: JsonDict = {"u": book.update_id, "s": symbol, "b": num(kind, book.best_bid.price),
                      "B": num(kind, book.best_bid.qty), "a": num(kind, book.best_ask.price),
                      "A": num(kind, book.best_ask.qty)}
    if kind == USDM:
        return {"e": "bookTicker", **core, "E": now, "T": now}
    return core


def ws_ticker(engine: MatchingEngine, kind: MarketKind, symbol: str, now: int, mini: bool = False) -> JsonDict:
    rest = ticker_24hr(engine, kind, symbol, now)
    if mini:
        return {"e": "24hrMiniTicker", "E": now, "s": symbol, "c": rest["lastPrice"], "o": rest["openPrice"],
                "h": rest["highPrice"], "l": rest["lowPrice"], "v": rest["volume"], "q": rest["quoteVolume"]}
    out: JsonDict = {
        "e": "24hrTicker", "E": now, "s": symbol, "p": rest["priceChange"], "P": rest["priceChangePercent"],
        "w": rest["weightedAvgPrice"], "c": rest["lastPrice"], "Q": rest["lastQty"],
        "o": rest["openPrice"], "h": rest["highPrice"], "l": rest["lowPrice"], "v": rest["volume"],
        "q": rest["quoteVolume"], "O": rest["openTime"], "C": rest["closeTime"], "F": rest["firstId"],
        "L": rest["lastId"], "n": rest["count"],
    }
    if kind == SPOT:
        out.update({"x": rest["prevClosePrice"], "b": rest["bidPrice"], "B": rest["bidQty"],
                    "a": rest["askPrice"], "A": rest["askQty"]})
    return out


def ws_mark_price(engine: MatchingEngine, symbol: str, now: int) -> JsonDict:
    mark = engine.mark_price(symbol)
    return {"e": "markPriceUpdate", "E": now, "s": symbol, "p": fp(mark), "ap": fp(mark), "P": fp(mark),
            "i": fp(mark), "r": "0.00010000", "T": (now // 28_800_000 + 1) * 28_800_000}


def ws_partial_depth(engine: MatchingEngine, kind: MarketKind, symbol: str, levels: int, now: int) -> JsonDict:
    book = engine.book(kind, symbol, depth=levels)
    bids = [[num(kind, lv.price), num(kind, lv.qty)] for lv in book.bids]
    asks = [[num(kind, lv.price), num(kind, lv.qty)] for lv in book.asks]
    if kind == SPOT:
        return {"lastUpdateId": book.update_id, "bids": bids, "asks": asks}
    return {"e": "depthUpdate", "E": now, "T": now, "s": symbol, "U": book.update_id, "u": book.update_id,
            "pu": book.update_id - 1, "b": bids, "a": asks}
