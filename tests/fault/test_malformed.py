"""Fault suite, malformed venue messages: missing fields, wrong types, unknown symbols, negative
or absurd sizes, NaN, duplicate trade ids, out-of-order timestamps.

Unit level through the ccxt converters, then end to end: ``hedgerd run`` (live mode, ccxt)
against the Binance-protocol simulator, which pushes the raw websocket messages
(``VenueSim.send_raw``) and duplicates / reorders real trade messages (fault switches).

Each bad message (also a JSON frame ccxt's own parser raises on) is rejected (counted once in
``hedgerd_venue_errors_total{kind="malformed"}`` and logged once) or deduped; the ledger ends up
holding exactly the venue's own trades; the daemon keeps running and hedging. Messages ccxt
drops before hedgerd sees them (an unknown symbol on a per-symbol subscription, text that is not
JSON) must leave no trace in the ledger and must not break the stream.
Scenario: tests/fault/input_scenarios.py.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    order_to_report,
    position_amount,
    ticker_to_price,
    trade_to_fill,
)
from hedgerd.models import MarketInfo, Side
from tests.fault.input_scenarios import malformed_messages

SPOT = "BTC/USDT"
PERP = "BTC/USDT:USDT"
MARKETS = {
    SPOT: MarketInfo(symbol=SPOT, base="BTC", quote="USDT", amount_step=Decimal("0.00001"),
                     price_step=Decimal("0.01"), min_amount=Decimal("0.00001"), max_amount=Decimal(9000)),
    PERP: MarketInfo(symbol=PERP, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                     price_step=Decimal("0.1"), min_amount=Decimal("0.001"), max_amount=Decimal(1000)),
}


# --------------------------------------------------------------------------- converters
def _trade(**changes: Any) -> dict[str, Any]:
    trade: dict[str, Any] = {
        "id": "77", "symbol": SPOT, "side": "buy", "amount": 0.5, "price": "60000.5", "timestamp": 1_700_000_000_000,
        "order": "9", "fee": {"cost": "0.1", "currency": "USDT"},
        "info": {"e": "executionReport", "x": "TRADE", "S": "BUY", "l": "0.5", "L": "60000.5", "t": 77,
                 "T": 1_700_000_000_000},
    }
    for key, value in changes.items():
        if key.startswith("info_"):
            field = key[len("info_"):]
            if value is ...:
                trade["info"].pop(field)
            else:
                trade["info"][field] = value
        elif value is ...:
            trade.pop(key)
        else:
            trade[key] = value
    return trade


MALFORMED_TRADES: dict[str, dict[str, Any]] = {
    "missing id": _trade(id=...),
    "empty id": _trade(id=""),
    "bool id": _trade(id=True),
    "missing symbol": _trade(symbol=...),
    "symbol not a string": _trade(symbol=42),
    "unknown symbol": _trade(symbol="DOGE/USDT"),
    "missing amount": _trade(amount=...),
    "amount not a number": _trade(amount="abc"),
    "amount a list": _trade(amount=[1, 2]),
    "amount a bool": _trade(amount=True),
    "negative amount": _trade(amount=-0.5),
    "zero amount": _trade(amount=0),
    "NaN amount": _trade(amount=float("nan")),
    "infinite amount": _trade(amount="Infinity"),
    "absurd amount": _trade(amount=1e30),
    "above the market maximum": _trade(amount=9000.5),
    "missing price": _trade(price=...),
    "negative price": _trade(price=-1),
    "zero price": _trade(price="0"),
    "NaN price": _trade(price="NaN"),
    "missing side": _trade(side=...),
    "unknown side": _trade(side="hold"),
    "missing timestamp": _trade(timestamp=...),
    "timestamp not a number": _trade(timestamp="yesterday"),
    "negative timestamp": _trade(timestamp=-5),
    "fee not a mapping": _trade(fee="0.1 USDT"),
    "fee cost not a number": _trade(fee={"cost": "x", "currency": "USDT"}),
    "fee currency not a string": _trade(fee={"cost": "0.1", "currency": 5}),
    "raw execution without side": _trade(info_S=...),
    "raw execution without quantity": _trade(info_l=...),
    "raw execution quantity a list": _trade(info_l=[1]),
    "raw execution negative quantity": _trade(info_l="-0.5"),
    "raw execution without price": _trade(info_L=...),
    "raw execution without trade id": _trade(info_t=...),
    "raw execution without time": _trade(info_T=...),
    "raw execution unknown side": _trade(info_S="HOLD"),
}


def test_a_well_formed_trade_converts() -> None:
    fill = trade_to_fill("v", _trade(), MARKETS, 1.0)
    assert (fill.trade_id, fill.side, fill.amount, fill.price, fill.fee) == (
        f"{SPOT}#77", Side.BUY, Decimal("0.5"), Decimal("60000.5"), Decimal("0.1"))
    rest = trade_to_fill("v", _trade(info={"id": 77, "qty": "0.5"}), MARKETS, 1.0)  # REST trades: no "x"
    assert rest.amount == Decimal("0.5")


@pytest.mark.parametrize("case", sorted(MALFORMED_TRADES))
def test_malformed_trade_is_rejected(case: str) -> None:
    with pytest.raises(MalformedMessage):
        trade_to_fill("v", MALFORMED_TRADES[case], MARKETS, 1.0)


def test_trade_on_another_symbol_than_subscribed_is_rejected() -> None:
    with pytest.raises(MalformedMessage, match="unknown symbol"):
        trade_to_fill("v", _trade(), MARKETS, 1.0, expected_symbol=PERP)


@pytest.mark.parametrize("ticker", [
    {"bid": "NaN", "ask": 1}, {"bid": -1, "ask": 1}, {"bid": 0, "ask": 1}, {"bid": "x", "ask": 1},
    {"bid": 1, "ask": None}, {"bid": 1, "ask": [1]}, {"bid": 1, "ask": 2, "timestamp": "now"}, "1,2",
])
def test_malformed_ticker_is_rejected(ticker: Any) -> None:
    with pytest.raises(MalformedMessage):
        ticker_to_price("v", SPOT, ticker, 1.0, 2.0)


@pytest.mark.parametrize("order", [
    {"id": "1", "symbol": PERP, "status": "weird", "filled": 0},
    {"id": "1", "symbol": SPOT, "status": "open", "filled": 0},
    {"id": "1", "symbol": PERP, "status": "closed", "filled": -1},
    {"id": None, "symbol": PERP, "status": "closed", "filled": 1, "average": 5},
    {"id": "1", "symbol": PERP, "status": "closed", "filled": 1, "average": "NaN"},
    {"id": "1", "symbol": PERP, "status": "closed", "filled": 1, "average": 5, "trades": "x"},
])
def test_malformed_order_is_rejected(order: dict[str, Any]) -> None:
    with pytest.raises(MalformedMessage):
        order_to_report("v", order, MARKETS[PERP], 1.0, client_order_id="hgdx1")


@pytest.mark.parametrize("position", [
    {"symbol": PERP, "contracts": "x"}, {"symbol": PERP, "contracts": 1, "side": "both"},
    {"symbol": PERP, "contracts": 1, "contractSize": 0}, [1],
])
def test_malformed_position_is_rejected(position: Any) -> None:
    with pytest.raises(MalformedMessage):
        position_amount(position, MARKETS[PERP])


# --------------------------------------------------------------------------- end to end
@pytest.mark.e2e
def test_daemon_rejects_malformed_messages_dedupes_and_keeps_running(tmp_path: Path) -> None:
    result = malformed_messages(tmp_path)
    assert result.counted == result.sent, f"{result.counted} malformed counted for {result.sent} sent"
    assert result.logged_once, f"log lines per message: {result.log_lines}, total {result.malformed_logs}"
    assert result.duplicated_messages >= 3 and result.reordered_messages >= 2
    assert result.bad_in_ledger == 0
    assert result.doubled_in_ledger == 0
    assert result.ledger_mismatches == 0, f"ledger vs venue (ledger only, venue only): {result.differences}"
    assert result.ready_after and result.active_after and result.hedged_after
    assert result.tracebacks == 0
