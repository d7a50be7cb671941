"""The pure ccxt -> hedgerd converters, fed recorded ccxt-shaped payloads (ccxt 4.x ``binanceusdm``:
a market from ``load_markets``, a REST trade, a websocket ``ORDER_TRADE_UPDATE`` trade, an order
answer, a position); no exchange object, no event loop."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import ccxt
import pytest

from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    account_margin_ratio,
    client_order_id_of,
    cursor_seconds,
    market_info_from_ccxt,
    optional_decimal,
    order_id_of,
    order_status,
    order_to_report,
    position_amount,
    position_risk,
    qualified_trade_id,
    ticker_to_option_quote,
    ticker_to_price,
    trade_to_fill,
    with_symbol,
)
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import Fill, MarketInfo, OptionGreeks, OrderStatus, Side

PERP = "BTC/USDT:USDT"

#: ``binanceusdm.load_markets()[PERP]`` (the fields the converter reads, plus some it ignores)
MARKET: dict[str, Any] = {
    "id": "BTCUSDT", "symbol": PERP, "base": "BTC", "quote": "USDT", "settle": "USDT", "type": "swap",
    "swap": True, "linear": True, "contract": True, "contractSize": 1.0, "active": True,
    "precision": {"amount": 0.001, "price": 0.1, "base": 1e-08, "quote": 1e-08},
    "limits": {"leverage": {"min": None, "max": None}, "amount": {"min": 0.001, "max": 1000.0},
               "price": {"min": 261.1, "max": 809484.0}, "cost": {"min": 100.0, "max": None},
               "market": {"min": 0.001, "max": 120.0}},
    "info": {"symbol": "BTCUSDT", "pair": "BTCUSDT", "contractType": "PERPETUAL"},
}

#: ``binanceusdm.fetch_my_trades(PERP)[0]``: the REST trade carries no client order id
REST_TRADE: dict[str, Any] = {
    "info": {"symbol": "BTCUSDT", "id": "698759", "orderId": "25851813", "side": "SELL", "price": "43001.20",
             "qty": "0.002", "realizedPnl": "0", "marginAsset": "USDT", "quoteQty": "86.00240",
             "commission": "0.03440096", "commissionAsset": "USDT", "time": "1700000000123",
             "positionSide": "BOTH", "buyer": False, "maker": False},
    "timestamp": 1700000000123, "datetime": "2023-11-14T22:13:20.123Z", "symbol": PERP, "id": "698759",
    "order": "25851813", "type": None, "side": "sell", "takerOrMaker": "taker", "price": 43001.2,
    "amount": 0.002, "cost": 86.0024, "fee": {"cost": 0.03440096, "currency": "USDT"},
    "fees": [{"cost": 0.03440096, "currency": "USDT"}],
}

#: ``binanceusdm.watch_my_trades(PERP)``: a trade parsed from the ``ORDER_TRADE_UPDATE`` event's ``o``
WS_TRADE: dict[str, Any] = {
    "info": {"s": "BTCUSDT", "c": "hgdabc01", "S": "BUY", "o": "MARKET", "f": "GTC", "q": "0.010", "p": "0",
             "ap": "43010.10000", "sp": "0", "x": "TRADE", "X": "PARTIALLY_FILLED", "i": 25851999,
             "l": "0.004", "z": "0.004", "L": "43010.10", "n": "0.06881616", "N": "USDT",
             "T": 1700000001500, "t": 698800, "b": "0", "a": "0", "m": False, "R": False, "ps": "BOTH"},
    "timestamp": 1700000001500, "datetime": "2023-11-14T22:13:21.500Z", "symbol": PERP, "id": "698800",
    "order": "25851999", "type": "market", "side": "buy", "takerOrMaker": "taker", "price": 43010.1,
    "amount": 0.004, "cost": 172.0404, "fee": {"cost": 0.06881616, "currency": "USDT"},
}

#: ``binanceusdm.create_order(...)`` answered with ``newOrderRespType=RESULT``
ORDER: dict[str, Any] = {
    "info": {"orderId": "25851813", "symbol": "BTCUSDT", "status": "FILLED", "clientOrderId": "hgdabc00",
             "price": "0.00", "avgPrice": "43001.20000", "origQty": "0.002", "executedQty": "0.002",
             "type": "MARKET", "side": "SELL", "updateTime": "1700000000123"},
    "id": "25851813", "clientOrderId": "hgdabc00", "timestamp": 1700000000120,
    "lastTradeTimestamp": 1700000000123, "symbol": PERP, "type": "market", "timeInForce": "GTC",
    "side": "sell", "price": 43001.2, "amount": 0.002, "cost": 86.0024, "average": 43001.2,
    "filled": 0.002, "remaining": 0.0, "status": "closed", "fee": None, "trades": [], "fees": [],
    "reduceOnly": False,
}

#: ``binanceusdm.fetch_positions([PERP])[0]`` in one-way mode
POSITION: dict[str, Any] = {
    "info": {"symbol": "BTCUSDT", "positionAmt": "-0.250", "entryPrice": "43000.0", "positionSide": "BOTH"},
    "symbol": PERP, "contracts": 0.25, "contractSize": 1.0, "side": "short", "notional": -10750.0,
    "timestamp": 1700000000999, "entryPrice": 43000.0, "marginMode": "cross", "hedged": False,
}


def market() -> Any:
    return market_info_from_ccxt(MARKET, ccxt.TICK_SIZE)


def test_a_recorded_market_gives_tick_sizes_limits_and_contract_size() -> None:
    info = market()
    assert (info.symbol, info.base, info.quote) == (PERP, "BTC", "USDT")
    assert (info.amount_step, info.price_step) == (Decimal("0.001"), Decimal("0.1"))
    assert (info.min_amount, info.max_amount, info.min_notional) == (Decimal("0.001"), Decimal("1000.0"),
                                                                     Decimal("100.0"))
    assert info.contract_size == Decimal("1.0")


def test_a_recorded_rest_trade_becomes_a_fill_in_decimals_without_a_client_id() -> None:
    fill = trade_to_fill("bn", REST_TRADE, {PERP: market()}, received_at=7.5)
    assert fill == Fill(venue="bn", trade_id=f"{PERP}#698759", symbol=PERP, side=Side.SELL,
                        amount=Decimal("0.002"), price=Decimal("43001.2"), fee=Decimal("0.03440096"),
                        fee_currency="USDT", ts=1700000000.123, received_at=7.5, client_order_id=None)


def test_a_recorded_websocket_trade_carries_our_client_id_from_its_raw_event() -> None:
    fill = trade_to_fill("bn", WS_TRADE, {PERP: market()}, received_at=0.0)
    assert (fill.client_order_id, fill.side, fill.amount, fill.price) == (
        "hgdabc01", Side.BUY, Decimal("0.004"), Decimal("43010.1"))
    # an execution report without its own quantity would make ccxt fall back to the order's
    incomplete = dict(WS_TRADE, info={k: v for k, v in WS_TRADE["info"].items() if k != "l"})
    with pytest.raises(MalformedMessage, match="execution field 'l'"):
        trade_to_fill("bn", incomplete, {PERP: market()}, received_at=0.0)


def test_a_recorded_order_answer_becomes_a_report() -> None:
    report = order_to_report("bn", ORDER, market(), received_at=0.0)
    assert (report.client_order_id, report.status, report.filled, report.average_price) == (
        "hgdabc00", OrderStatus.FILLED, Decimal("0.002"), Decimal("43001.2"))
    assert (report.venue_order_id, report.ts, report.fills) == ("25851813", 1700000000.123, ())
    with_trade = order_to_report("bn", dict(ORDER, trades=[REST_TRADE]), market(), received_at=0.0)
    assert [(f.trade_id, f.client_order_id) for f in with_trade.fills] == [(f"{PERP}#698759", "hgdabc00")]
    assert with_trade.fee == Decimal("0.03440096")  # the order names no fee: its trades' sum


def test_a_recorded_short_position_is_negative_base_units() -> None:
    assert position_amount(POSITION, market()) == Decimal("-0.25")


def test_a_ticker_without_a_timestamp_is_stamped_now() -> None:
    price = ticker_to_price("bn", PERP, {"symbol": PERP, "bid": 43000.1, "ask": "43000.2", "timestamp": None},
                            received_at=1.0, now=2.0)
    assert (price.bid, price.ask, price.ts) == (Decimal("43000.1"), Decimal("43000.2"), 2.0)


@pytest.mark.parametrize(("status", "filled", "expected"), [
    ("closed", "0.002", OrderStatus.FILLED),
    ("canceled", "0", OrderStatus.CANCELED),
    ("cancelled", "0.001", OrderStatus.CANCELED),
    ("expired", "0.001", OrderStatus.EXPIRED),
    ("rejected", "0", OrderStatus.REJECTED),
    ("open", "0.001", OrderStatus.PARTIALLY_FILLED),
    ("open", "0", OrderStatus.SUBMITTED),
    (None, "0", OrderStatus.SUBMITTED),
])
def test_order_status_maps_ccxt_states(status: str | None, filled: str, expected: OrderStatus) -> None:
    assert order_status({"status": status}, Decimal(filled)) is expected


def test_order_status_rejects_an_unknown_state() -> None:
    with pytest.raises(MalformedMessage, match="unknown 'pending'"):
        order_status({"status": "pending"}, Decimal(0))


def test_client_order_id_prefers_the_unified_field_then_the_raw_keys() -> None:
    assert client_order_id_of(ORDER) == "hgdabc00"
    assert client_order_id_of(WS_TRADE) == "hgdabc01"  # ccxt leaves the unified field out of trades
    assert client_order_id_of({"clientOrderId": "", "info": {"clOrdId": "okx1"}}) == "okx1"
    assert client_order_id_of(REST_TRADE) is None
    assert client_order_id_of({"info": "not a mapping"}) is None


def test_small_field_helpers() -> None:
    assert qualified_trade_id(PERP, "698759") == "BTC/USDT:USDT#698759"
    assert order_id_of(REST_TRADE) == "25851813"
    assert order_id_of({"order": 25851999}) == "25851999"
    assert [order_id_of(t) for t in ({"order": ""}, {"order": True}, {"order": None}, "x")] == [None] * 4
    assert cursor_seconds(1700000000123) == 1700000000.123
    assert [cursor_seconds(v) for v in (None, 0, -5, "1700000000123", True, float("nan"))] == [None] * 6
    assert optional_decimal(None, "f") is None
    assert optional_decimal("0.10", "f") == Decimal("0.10")
    with pytest.raises(MalformedMessage):
        optional_decimal("-1", "f", non_negative=True)
    assert with_symbol({"id": "1"}, PERP) == {"id": "1", "symbol": PERP}
    kept = {"id": "1", "symbol": "ETH/USDT:USDT"}
    assert with_symbol(kept, PERP) is kept


DERIBIT_OPTION_TICKER = {
    "symbol": "BTC/USD:BTC-261211-58000-C", "timestamp": 1796634127984, "bid": 0.042, "ask": 0.045,
    "info": {"mark_price": 0.0433426532, "mark_iv": 55.0475, "underlying_price": 60032.5309,
             "greeks": {"delta": 0.73553, "gamma": 9.51e-05, "vega": 20.45244, "theta": -142.2665}},
}


def test_a_deribit_option_ticker_is_a_quote_with_iv_as_a_fraction() -> None:
    quote = ticker_to_option_quote("d", "BTC/USD:BTC-261211-58000-C", DERIBIT_OPTION_TICKER, 3.0, now=9.0)
    assert (quote.mark_price, quote.underlying_price) == (Decimal("0.0433426532"), Decimal("60032.5309"))
    assert abs(quote.mark_iv - 0.550475) < 1e-12 and quote.ts == 1796634127.984 and quote.received_at == 3.0
    assert quote.greeks == OptionGreeks(delta=0.73553, gamma=9.51e-05, vega=20.45244)  # as published
    coin = ticker_to_option_quote("d", "x", DERIBIT_OPTION_TICKER, 3.0, now=9.0, coin_settled=True)
    assert coin.greeks is not None  # Deribit's "net transaction delta": Black-Scholes less the mark in coin
    assert abs(coin.greeks.delta - (0.73553 - 0.0433426532)) < 1e-12 and coin.greeks.gamma == 9.51e-05
    bare = {**DERIBIT_OPTION_TICKER, "timestamp": None, "info": {**DERIBIT_OPTION_TICKER["info"], "greeks": None}}
    assert ticker_to_option_quote("d", "x", bare, 0.0, now=9.0).greeks is None
    assert ticker_to_option_quote("d", "x", bare, 0.0, now=9.0).ts == 9.0


@pytest.mark.parametrize("info", [
    {"mark_iv": None}, {"mark_iv": -1}, {"underlying_price": 0}, {"mark_price": "x"}, {"greeks": [1]},
    {"greeks": {"delta": "nan", "gamma": 0, "vega": 0}},
])
def test_a_malformed_option_ticker_is_rejected(info: dict[str, Any]) -> None:
    ticker = {**DERIBIT_OPTION_TICKER, "info": {**DERIBIT_OPTION_TICKER["info"], **info}}
    with pytest.raises(MalformedMessage):
        ticker_to_option_quote("d", "x", ticker, 0.0, now=0.0)


def test_position_risk_reads_the_liquidation_price_mark_and_margin_ratio() -> None:
    market = market_info_from_ccxt(MARKET, ccxt.TICK_SIZE)
    row = {"symbol": PERP, "contracts": 1.0, "contractSize": 1.0, "side": "short", "markPrice": 60000.0,
           "liquidationPrice": 69692.53731343, "marginRatio": 0.0299, "timestamp": 1796634504519}
    got = position_risk(row, market, "usdm")
    assert (got.position, got.mark, got.liquidation_price, got.margin_ratio) == (
        Decimal(-1), Decimal("60000.0"), Decimal("69692.53731343"), Decimal("0.0299"))
    assert got.ts == pytest.approx(1796634504.519)
    # no marginRatio: maintenance margin over collateral; neither: none
    fallback = {**row, "marginRatio": None, "maintenanceMargin": 300.0, "collateral": 10000.0}
    assert position_risk(fallback, market, "usdm").margin_ratio == Decimal("0.03")
    bare = {"symbol": PERP, "contracts": 1.0, "side": "long"}
    assert (position_risk(bare, market, "usdm").liquidation_price, position_risk(bare, market, "usdm").mark,
            position_risk(bare, market, "usdm").margin_ratio) == (None, None, None)
    for bad in ({**row, "liquidationPrice": "nan"}, {**row, "marginRatio": -1}, {**row, "markPrice": "x"}):
        with pytest.raises(MalformedMessage):
            position_risk(bad, market, "usdm")



def test_position_risk_counts_the_position_in_the_markets_unit() -> None:
    # Deribit's ccxt positions are in USD on BTC-PERPETUAL: 3 000 USD short is 300 contracts of 10 USD
    inverse = Instrument(symbol="BTC/USD:BTC", kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD",
                         settle="BTC", contract_size=Decimal(10))
    market = MarketInfo(symbol="BTC/USD:BTC", base="BTC", quote="USD", amount_step=Decimal(1),
                        price_step=Decimal("0.5"), contract_size=Decimal(10), instrument=inverse)
    row = {"symbol": "BTC/USD:BTC", "contracts": 3000.0, "contractSize": 10.0, "side": "short",
           "liquidationPrice": 90000.0}
    assert position_risk(row, market, "deribit", "contract_size").position == Decimal(-300)
    assert position_risk(row, market, "deribit", "contract_size").liquidation_price == Decimal(90000)

def test_account_margin_ratio_from_a_balance_that_reports_it() -> None:
    deribit = {"info": {"summaries": [
        {"currency": "ETH", "maintenance_margin": 1.0, "margin_balance": 2.0},
        {"currency": "BTC", "maintenance_margin": 0.0005, "margin_balance": 0.01}]}}
    assert account_margin_ratio(deribit, "BTC") == Decimal("0.05")
    assert account_margin_ratio({"info": {"currency": "BTC", "maintenance_margin": 1, "margin_balance": 0}},
                                "BTC") == Decimal("Infinity")
    assert account_margin_ratio({"info": {"totalWalletBalance": "1"}}, "USDT") is None  # not reported
    assert account_margin_ratio(None, "BTC") is None
    with pytest.raises(MalformedMessage):
        account_margin_ratio({"info": {"currency": "BTC", "maintenance_margin": -1, "margin_balance": 1}}, "BTC")
