"""The route table of the Binance REST API: each method and path with its limiter, security,
request weight and handler."""

from __future__ import annotations

from collections.abc import Mapping

from hedgerd.exchange_sim.binance.rest import (
    Route,
    WeightFn,
    h_all_orders,
    h_book_ticker,
    h_cancel_all,
    h_cancel_order,
    h_depth,
    h_empty_exchange_info,
    h_exchange_info,
    h_listen_key_close,
    h_listen_key_keepalive,
    h_listen_key_new,
    h_my_trades,
    h_open_orders,
    h_ping,
    h_price_ticker,
    h_query_order,
    h_ticker_24hr,
    h_time,
)
from hedgerd.exchange_sim.binance.rest_futures import (
    h_commission_rate,
    h_countdown_cancel_all,
    h_income,
    h_leverage,
    h_leverage_bracket,
    h_margin_type,
    h_open_order,
    h_position_mode,
    h_position_risk_v2,
    h_position_risk_v3,
    h_premium_index,
    h_set_position_mode,
    h_usdm_account_v2,
    h_usdm_account_v3,
    h_usdm_balance,
    h_usdm_new_order,
)
from hedgerd.exchange_sim.binance.rest_spot import (
    h_avg_price,
    h_capital_config,
    h_empty_list,
    h_spot_account,
    h_spot_new_order,
    h_spot_test_order,
    h_system_status,
)


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
    ("POST", "/fapi/v1/countdownCancelAll"): Route("usdm", "signed", _w(10), h_countdown_cancel_all),
    ("GET", "/fapi/v1/allOrders"): Route("usdm", "signed", _w(5), h_all_orders),
    ("GET", "/fapi/v1/userTrades"): Route("usdm", "signed", _w(5), h_my_trades),
    ("POST", "/fapi/v1/leverage"): Route("usdm", "signed", _w(1), h_leverage),
    ("POST", "/fapi/v1/marginType"): Route("usdm", "signed", _w(1), h_margin_type),
    ("GET", "/fapi/v1/positionSide/dual"): Route("usdm", "signed", _w(30), h_position_mode),
    ("POST", "/fapi/v1/positionSide/dual"): Route("usdm", "signed", _w(1), h_set_position_mode),
    ("GET", "/fapi/v1/leverageBracket"): Route("usdm", "signed", _w(1), h_leverage_bracket),
    ("GET", "/fapi/v1/commissionRate"): Route("usdm", "signed", _w(20), h_commission_rate),
    ("GET", "/fapi/v1/income"): Route("usdm", "signed", _w(30), h_income),
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
