"""Pure ccxt -> hedgerd model parsing: every number through ``Decimal(str(x))``, every malformed
payload rejected with :class:`MalformedMessage`; no exchange object and no I/O."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import ccxt

from hedgerd.connectors.ccxt.traits import AmountUnit
from hedgerd.instruments import Instrument, InstrumentKind, from_ccxt_market
from hedgerd.models import (
    ZERO,
    Fill,
    MarketInfo,
    OptionGreeks,
    OptionQuote,
    OrderReport,
    OrderStatus,
    PositionRisk,
    PriceUpdate,
    Side,
)

#: Where exchanges put the client order id in a raw trade or order payload (Deribit: ``label``,
#: which ccxt sends our clientOrderId as but does not parse back).
_CLIENT_ID_INFO_KEYS = ("clientOrderId", "clOrdId", "orderLinkId", "newClientOrderId", "c", "label")

_CCXT_STATUS = {
    "canceled": OrderStatus.CANCELED,
    "cancelled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}
_FALLBACK_STEP = Decimal("1e-8")  # SIGNIFICANT_DIGITS markets: ccxt's *_to_precision does the rounding


class MalformedMessage(ValueError):
    """A ccxt payload that cannot be trusted (missing field, wrong type, NaN, unknown symbol...)."""



def to_decimal(value: Any, field: str, *, positive: bool = False, non_negative: bool = False) -> Decimal:
    """A finite Decimal from a ccxt number or numeric string (``Decimal(str(x))``, never float math)."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise MalformedMessage(f"{field}: expected a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise MalformedMessage(f"{field}: not a number: {str(value)[:40]!r}") from None
    if not number.is_finite():
        raise MalformedMessage(f"{field}: not finite: {value!r}")
    if positive and number <= 0:
        raise MalformedMessage(f"{field}: must be positive, got {number}")
    if non_negative and number < 0:
        raise MalformedMessage(f"{field}: must not be negative, got {number}")
    return number


def optional_decimal(value: Any, field: str, **kwargs: bool) -> Decimal | None:
    """:func:`to_decimal`, or None for an absent value."""
    return None if value is None else to_decimal(value, field, **kwargs)


def _timestamp_seconds(value: Any, field: str) -> float:
    ms = to_decimal(value, field, non_negative=True)
    return float(ms) / 1000.0


def _precision_step(value: Any, field: str, precision_mode: int) -> Decimal:
    if precision_mode == ccxt.TICK_SIZE:
        return to_decimal(value, field, positive=True)
    if precision_mode == ccxt.DECIMAL_PLACES:
        places = to_decimal(value, field, non_negative=True)
        if places != places.to_integral_value():
            raise MalformedMessage(f"{field}: decimal places must be an integer, got {places}")
        return Decimal(1).scaleb(-int(places))
    return _FALLBACK_STEP


def _sub_mapping(parent: Any, key: str) -> Mapping[str, Any]:
    child = parent.get(key) if isinstance(parent, Mapping) else None
    return child if isinstance(child, Mapping) else {}


def market_info_from_ccxt(market: Mapping[str, Any], precision_mode: int, *,
                          amount_unit: AmountUnit = "contracts") -> MarketInfo:
    """:class:`MarketInfo` from a ccxt market (precision per ``exchange.precisionMode``).

    The amount step and limits are in contracts: ccxt's own, divided by the contract size where
    the venue's ccxt amounts are ``contracts x contractSize`` (``amount_unit``, see
    :mod:`~hedgerd.connectors.ccxt.traits`). With ``SIGNIFICANT_DIGITS`` precision no tick size
    exists, so a tiny step is used and the rounding is left to ccxt's ``amount_to_precision``.
    ``instrument`` is :func:`hedgerd.instruments.from_ccxt_market`'s, None for a market whose unit
    it cannot tell (that market's fills and positions then count in base units, as before).
    """
    symbol = market.get("symbol")
    base, quote = market.get("base"), market.get("quote")
    if not (isinstance(symbol, str) and isinstance(base, str) and isinstance(quote, str)):
        raise MalformedMessage("market: symbol, base and quote must be strings")
    precision = market.get("precision")
    if not isinstance(precision, Mapping):
        raise MalformedMessage(f"{symbol}: no precision")
    limits = market.get("limits")
    amount_limits = _sub_mapping(limits, "amount")
    cost_limits = _sub_mapping(limits, "cost")
    raw_size = market.get("contractSize")
    contract_size = Decimal(1) if raw_size is None else to_decimal(raw_size, f"{symbol}.contractSize", positive=True)
    unit = contract_size if amount_unit == "contract_size" else Decimal(1)
    max_amount = optional_decimal(amount_limits.get("max"), f"{symbol}.limits.amount.max", positive=True)
    return MarketInfo(
        symbol=symbol, base=base, quote=quote,
        amount_step=_precision_step(precision.get("amount"), f"{symbol}.precision.amount", precision_mode) / unit,
        price_step=_precision_step(precision.get("price"), f"{symbol}.precision.price", precision_mode),
        min_amount=(optional_decimal(amount_limits.get("min"), f"{symbol}.limits.amount.min",
                                     non_negative=True) or ZERO) / unit,
        max_amount=None if max_amount is None else max_amount / unit,
        min_notional=optional_decimal(cost_limits.get("min"), f"{symbol}.limits.cost.min",
                                       non_negative=True) or ZERO,
        contract_size=contract_size,
        instrument=_instrument(market),
    )


def _instrument(market: Mapping[str, Any]) -> Instrument | None:
    try:
        return from_ccxt_market(market)
    except (ValueError, ArithmeticError):
        return None


def per_contract(market: MarketInfo, amount_unit: AmountUnit) -> Decimal:
    """ccxt amount units in one contract of ``market``: 1, or its contract size where the venue's
    ccxt amounts are ``contracts x contractSize`` (Deribit: 10 USD on BTC-PERPETUAL)."""
    return market.contract_size if amount_unit == "contract_size" else Decimal(1)


def per_unit(market: MarketInfo, amount_unit: AmountUnit) -> Decimal:
    """ccxt amount units in one of hedgerd's units of ``market``'s fills, orders and positions:
    a contract when the market has an ``instrument`` (the options contract), else a base unit
    (``contract_size`` contracts of a legacy market)."""
    if market.instrument is not None or amount_unit == "contract_size":
        return per_contract(market, amount_unit)
    return Decimal(1) / market.contract_size


def client_order_id_of(payload: Mapping[str, Any]) -> str | None:
    """The client order id of a ccxt trade or order: unified field first, then the raw ``info``."""
    value = payload.get("clientOrderId")
    if isinstance(value, str) and value:
        return value
    info = payload.get("info")
    if isinstance(info, Mapping):
        for key in _CLIENT_ID_INFO_KEYS:
            value = info.get(key)
            if isinstance(value, str) and value:
                return value
    return None


def _side(value: Any, field: str) -> Side:
    if value not in ("buy", "sell"):
        raise MalformedMessage(f"{field}: expected 'buy' or 'sell', got {str(value)[:20]!r}")
    return Side(value)


def _fee(payload: Mapping[str, Any], field: str) -> tuple[Decimal, str | None]:
    fee = payload.get("fee")
    if fee is None:
        return ZERO, None
    if not isinstance(fee, Mapping):
        raise MalformedMessage(f"{field}: expected a mapping")
    cost = optional_decimal(fee.get("cost"), f"{field}.cost") or ZERO
    currency = fee.get("currency")
    if currency is not None and not isinstance(currency, str):
        raise MalformedMessage(f"{field}.currency: expected a string")
    return cost, currency


def qualified_trade_id(symbol: str, trade_id: str) -> str:
    """Venue-unique trade id: exchanges number trades per symbol."""
    return f"{symbol}#{trade_id}"


#: Fields a Binance user-data trade execution (``executionReport`` / ``ORDER_TRADE_UPDATE`` with
#: ``x == "TRADE"``) must carry itself: without them ccxt fills in the order's quantity (``q``), the
#: order price (``p``) or a side guessed from the maker flag, which would journal a wrong fill.
_BINANCE_EXECUTION_FIELDS = ("S", "l", "L", "t", "T")


def _check_raw_execution(info: Any, trade_id: str) -> None:
    """Reject a Binance websocket trade execution whose own side/quantity/price/id/time is missing."""
    if not isinstance(info, Mapping) or info.get("x") != "TRADE":
        return
    for key in _BINANCE_EXECUTION_FIELDS:
        value = info.get(key)
        if value is None or value == "" or isinstance(value, bool) or not isinstance(value, str | int | float):
            raise MalformedMessage(f"trade {trade_id}: execution field {key!r} missing or not a scalar")
    if info["S"] not in ("BUY", "SELL"):
        raise MalformedMessage(f"trade {trade_id}: execution side {str(info['S'])[:20]!r}")
    to_decimal(info["l"], f"trade {trade_id}.l", positive=True)
    to_decimal(info["L"], f"trade {trade_id}.L", positive=True)


def trade_to_fill(venue: str, trade: Mapping[str, Any], markets: Mapping[str, MarketInfo], received_at: float,
                  *, expected_symbol: str | None = None, defaults: Mapping[str, Any] | None = None,
                  client_order_id: str | None = None, amount_unit: AmountUnit = "contracts") -> Fill:
    """A :class:`Fill` in contracts from a ccxt trade; raises :class:`MalformedMessage`.

    ``defaults`` fills ``symbol``/``side``/``timestamp`` a trade embedded in an order may lack;
    ``client_order_id`` overrides what the trade itself carries; ``amount_unit`` says how the
    venue's ccxt amounts count (:func:`per_contract`).
    """
    if not isinstance(trade, Mapping):
        raise MalformedMessage(f"trade: expected a mapping, got {type(trade).__name__}")
    defaults = defaults or {}

    def pick(key: str) -> Any:
        value = trade.get(key)
        return defaults.get(key) if value is None else value

    raw_id = trade.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id:
        raise MalformedMessage("trade.id: missing")
    symbol = pick("symbol")
    if not isinstance(symbol, str):
        raise MalformedMessage(f"trade {raw_id}: symbol missing")
    market = markets.get(symbol)
    if market is None or (expected_symbol is not None and symbol != expected_symbol):
        raise MalformedMessage(f"trade {raw_id}: unknown symbol {symbol[:40]!r}")
    venue_amount = to_decimal(trade.get("amount"), f"trade {raw_id}.amount", positive=True)
    contracts = venue_amount / per_contract(market, amount_unit)
    if market.max_amount is not None and contracts > market.max_amount:
        raise MalformedMessage(f"trade {raw_id}.amount: {contracts} exceeds the market's maximum order "
                               f"amount {market.max_amount}")
    _check_raw_execution(trade.get("info"), raw_id)
    fee, fee_currency = _fee(trade, f"trade {raw_id}.fee")
    cid = client_order_id if client_order_id is not None else client_order_id_of(trade)
    return Fill(
        venue=venue, trade_id=qualified_trade_id(symbol, raw_id), symbol=symbol,
        side=_side(pick("side"), f"trade {raw_id}.side"),
        amount=venue_amount / per_unit(market, amount_unit),
        price=to_decimal(trade.get("price"), f"trade {raw_id}.price", positive=True),
        fee=fee, fee_currency=fee_currency,
        ts=_timestamp_seconds(pick("timestamp"), f"trade {raw_id}.timestamp"),
        received_at=received_at, client_order_id=cid,
    )


def ticker_to_price(venue: str, symbol: str, ticker: Mapping[str, Any], received_at: float,
                    now: float) -> PriceUpdate:
    """Best bid/ask from a ccxt ticker (``timestamp`` missing → ``now``); raises MalformedMessage."""
    if not isinstance(ticker, Mapping):
        raise MalformedMessage(f"ticker {symbol}: expected a mapping")
    ts_raw = ticker.get("timestamp")
    return PriceUpdate(
        venue=venue, symbol=symbol,
        bid=to_decimal(ticker.get("bid"), f"ticker {symbol}.bid", positive=True),
        ask=to_decimal(ticker.get("ask"), f"ticker {symbol}.ask", positive=True),
        ts=now if ts_raw is None else _timestamp_seconds(ts_raw, f"ticker {symbol}.timestamp"),
        received_at=received_at)


def _number(value: Any, field: str) -> float:
    number = float(to_decimal(value, field))
    if not math.isfinite(number):
        raise MalformedMessage(f"{field}: not finite")
    return number


def ticker_to_option_quote(venue: str, symbol: str, ticker: Mapping[str, Any], received_at: float,
                           now: float, *, coin_settled: bool = False) -> OptionQuote:
    """An :class:`OptionQuote` from a ccxt ticker whose raw ``info`` is Deribit's: ``mark_price``
    (coin), ``mark_iv`` (percent, made a fraction), ``underlying_price`` (the expiry's forward)
    and ``greeks``; ``timestamp`` missing → ``now``.

    Deribit's ticker greeks are plain Black-Scholes; the delta its positions and ``delta_total``
    use for a coin-settled option is that delta less the option's mark in coin ("net transaction
    delta"), which is what :class:`~hedgerd.models.OptionGreeks` carries: with ``coin_settled``
    the mark is subtracted here. Gamma and vega are passed on as published.
    """
    if not isinstance(ticker, Mapping):
        raise MalformedMessage(f"ticker {symbol}: expected a mapping")
    info = ticker.get("info")
    if not isinstance(info, Mapping):
        raise MalformedMessage(f"ticker {symbol}: no raw info")
    field = f"ticker {symbol}"
    iv = to_decimal(info.get("mark_iv"), f"{field}.mark_iv", non_negative=True)
    greeks = None
    raw_greeks = info.get("greeks")
    mark = to_decimal(info.get("mark_price"), f"{field}.mark_price", non_negative=True)
    if isinstance(raw_greeks, Mapping):
        delta = _number(raw_greeks.get("delta"), f"{field}.greeks.delta") - (float(mark) if coin_settled else 0.0)
        greeks = OptionGreeks(delta=delta,
                              gamma=_number(raw_greeks.get("gamma"), f"{field}.greeks.gamma"),
                              vega=_number(raw_greeks.get("vega"), f"{field}.greeks.vega"))
    elif raw_greeks is not None:
        raise MalformedMessage(f"{field}.greeks: expected a mapping")
    ts_raw = ticker.get("timestamp") or info.get("timestamp")
    return OptionQuote(
        venue=venue, symbol=symbol,
        mark_price=mark, mark_iv=float(iv / 100),
        underlying_price=to_decimal(info.get("underlying_price"), f"{field}.underlying_price", positive=True),
        ts=now if ts_raw is None else _timestamp_seconds(ts_raw, f"{field}.timestamp"),
        greeks=greeks, received_at=received_at)


def is_option_market(market: MarketInfo | None) -> bool:
    """True for a market whose instrument is an option."""
    return market is not None and market.instrument is not None and market.instrument.kind is InstrumentKind.OPTION


def order_status(order: Mapping[str, Any], filled: Decimal) -> OrderStatus:
    """ccxt's order status → :class:`OrderStatus` (``open`` splits on the filled amount)."""
    status = order.get("status")
    if status == "closed":
        return OrderStatus.FILLED
    if status in _CCXT_STATUS:
        return _CCXT_STATUS[status]
    if status in ("open", None):  # None: acknowledged without a state (e.g. an ACK response)
        return OrderStatus.PARTIALLY_FILLED if filled > 0 else OrderStatus.SUBMITTED
    raise MalformedMessage(f"order status: unknown {str(status)[:20]!r}")


def order_to_report(venue: str, order: Mapping[str, Any], market: MarketInfo, received_at: float, *,
                    client_order_id: str | None = None, fills: Sequence[Fill] = (),
                    amount_unit: AmountUnit = "contracts") -> OrderReport:
    """An :class:`OrderReport` (filled in contracts) from a ccxt order; raises MalformedMessage.

    ``client_order_id`` defaults to the one the order carries ("" if none).

    Trades embedded in the order (``order['trades']``) become its fills unless ``fills`` is given.
    """
    if not isinstance(order, Mapping):
        raise MalformedMessage(f"order: expected a mapping, got {type(order).__name__}")
    cid = client_order_id if client_order_id is not None else (client_order_id_of(order) or "")
    symbol = order.get("symbol")
    if symbol != market.symbol:
        raise MalformedMessage(f"order {cid}: symbol {str(symbol)[:40]!r} is not {market.symbol}")
    filled = (optional_decimal(order.get("filled"), f"order {cid}.filled", non_negative=True)
              or ZERO) / per_unit(market, amount_unit)
    average = optional_decimal(order.get("average"), f"order {cid}.average", positive=True)
    if average is None and filled > 0:
        average = optional_decimal(order.get("price"), f"order {cid}.price", positive=True)
    fee, _ = _fee(order, f"order {cid}.fee")
    venue_order_id = order.get("id")
    if not isinstance(venue_order_id, str | int) or isinstance(venue_order_id, bool) or venue_order_id == "":
        raise MalformedMessage(f"order {cid}: no venue order id")
    ts_raw = order.get("lastTradeTimestamp") or order.get("timestamp")
    ts = 0.0 if ts_raw is None else _timestamp_seconds(ts_raw, f"order {cid}.timestamp")
    if not fills:
        trades = order.get("trades") or ()
        if not isinstance(trades, Sequence):
            raise MalformedMessage(f"order {cid}: trades must be a list")
        defaults = {"symbol": market.symbol, "side": order.get("side"),
                    "timestamp": order.get("lastTradeTimestamp") or order.get("timestamp")}
        fills = [trade_to_fill(venue, t, {market.symbol: market}, received_at, expected_symbol=market.symbol,
                               defaults=defaults, client_order_id=cid, amount_unit=amount_unit) for t in trades]
    if not fee and fills:
        fee = sum((f.fee for f in fills), ZERO)
    return OrderReport(
        client_order_id=cid, symbol=market.symbol, status=order_status(order, filled), filled=filled,
        average_price=average, fee=fee,
        venue_order_id=str(venue_order_id),
        ts=ts, fills=tuple(fills))


def position_amount(position: Mapping[str, Any], market: MarketInfo, amount_unit: AmountUnit = "contracts") -> Decimal:
    """Signed position in contracts from a ccxt position (short negative; ``contracts`` divided by
    the contract size where the venue's ccxt amounts are ``contracts x contractSize``)."""
    if not isinstance(position, Mapping):
        raise MalformedMessage("position: expected a mapping")
    contracts = optional_decimal(position.get("contracts"), f"position {market.symbol}.contracts") or ZERO
    side = position.get("side")
    if side not in ("long", "short", None):
        raise MalformedMessage(f"position {market.symbol}: unknown side {str(side)[:20]!r}")
    size_raw = position.get("contractSize")
    size = None if size_raw is None else to_decimal(size_raw, f"position {market.symbol}.contractSize", positive=True)
    if size is not None and market.instrument is None and amount_unit == "contracts":
        amount = abs(contracts) * size  # a legacy market counts base units, by the position's own size
    else:
        amount = abs(contracts) / per_unit(market, amount_unit)
    if side == "short" or (side is None and contracts < 0):
        return -amount
    return amount


def position_risk(position: Mapping[str, Any], market: MarketInfo, venue: str,
                  amount_unit: AmountUnit = "contracts") -> PositionRisk:
    """A ccxt position's margin: ``liquidationPrice``, ``markPrice`` and ``marginRatio`` (ccxt's
    maintenance margin / collateral; computed from ``maintenanceMargin`` and ``collateral`` when
    only those are given); its size in the market's unit, as :func:`position_amount`. Absent
    figures are None; a malformed one raises MalformedMessage."""
    amount = position_amount(position, market, amount_unit)
    where = f"position {market.symbol}"
    liquidation = optional_decimal(position.get("liquidationPrice"), f"{where}.liquidationPrice", non_negative=True)
    mark = optional_decimal(position.get("markPrice"), f"{where}.markPrice", non_negative=True)
    ratio = optional_decimal(position.get("marginRatio"), f"{where}.marginRatio", non_negative=True)
    if ratio is None:
        maintenance = optional_decimal(position.get("maintenanceMargin"), f"{where}.maintenanceMargin",
                                       non_negative=True)
        collateral = optional_decimal(position.get("collateral"), f"{where}.collateral")
        if maintenance is not None and collateral is not None and collateral > 0:
            ratio = maintenance / collateral
    return PositionRisk(venue=venue, symbol=market.symbol, position=amount, mark=mark or None,
                        liquidation_price=liquidation, margin_ratio=ratio,
                        ts=cursor_seconds(position.get("timestamp")) or 0.0)


def account_margin_ratio(balance: Any, currency: str) -> Decimal | None:
    """Maintenance margin over margin balance of ``currency``'s account, from a raw balance answer
    that reports both (Deribit's account summaries: ``maintenance_margin``, ``margin_balance``);
    None when it does not. Infinite once the margin balance is gone."""
    info = balance.get("info") if isinstance(balance, Mapping) else None
    rows = info.get("summaries", [info]) if isinstance(info, Mapping) else ()
    for row in rows if isinstance(rows, Sequence) else ():
        if not isinstance(row, Mapping) or row.get("currency") != currency:
            continue
        maintenance = optional_decimal(row.get("maintenance_margin"), f"balance {currency}.maintenance_margin",
                                       non_negative=True)
        margin_balance = optional_decimal(row.get("margin_balance"), f"balance {currency}.margin_balance")
        if maintenance is None or margin_balance is None:
            return None
        return maintenance / margin_balance if margin_balance > 0 else Decimal("Infinity")
    return None


def cursor_seconds(value: Any) -> float | None:
    """A ccxt ``timestamp`` (epoch ms) as epoch seconds; None when absent, zero or malformed."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        return None
    return float(value) / 1000.0


def order_id_of(trade: Any) -> str | None:
    """The venue order id a ccxt trade belongs to, as a string; None when absent or malformed."""
    order_id = trade.get("order") if isinstance(trade, Mapping) else None
    if isinstance(order_id, bool) or not isinstance(order_id, str | int) or order_id == "":
        return None
    return str(order_id)


def with_symbol(order: Any, symbol: str) -> Any:
    """Orders from some endpoints omit the symbol we asked about; fill it in."""
    if isinstance(order, Mapping) and order.get("symbol") is None:
        return {**order, "symbol": symbol}
    return order

