"""ccxt venue connector: conversions and error mapping against a fake exchange object, then the
real ccxt classes against the local Binance-protocol simulator (when it is available)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from pydantic import SecretStr

from hedgerd import errors as herr
from hedgerd import exchange_sim
from hedgerd.clock import RealClock
from hedgerd.config import HedgeConfig, InventorySource, Settings, VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import CcxtVenue, build_ccxt_venue, create_exchange, venue_symbols
from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    market_info_from_ccxt,
    order_to_report,
    position_amount,
    ticker_to_price,
    to_decimal,
    trade_to_fill,
)
from hedgerd.connectors.ccxt.errors import map_ccxt_error, retry_after_from_headers, sanitize_message
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import (
    Fill,
    HedgeIntent,
    MarketInfo,
    OptionQuote,
    OrderReport,
    OrderStatus,
    OrderType,
    PriceUpdate,
    Side,
)

PERP = "BTC/USDT:USDT"
SPOT = "BTC/USDT"
T0_MS = 1_700_000_000_000


# --------------------------------------------------------------------------- doubles
class StepClock:
    """Fake clock: ``sleep`` advances time at once and yields to the loop; sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class RecordingSink:
    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.prices: list[PriceUpdate] = []
        self.quotes: list[OptionQuote] = []
        self.orders: list[tuple[str, OrderReport]] = []
        self.errors: list[tuple[str, str, str]] = []
        self.fail_next_fill = False

    async def on_fill(self, fill: Fill) -> None:
        await self.on_fills((fill,))

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        if self.fail_next_fill:
            self.fail_next_fill = False
            raise RuntimeError("ledger down")
        self.fills.extend(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        self.prices.append(price)

    async def on_option_quote(self, quote: OptionQuote) -> None:
        self.quotes.append(quote)

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        self.orders.append((venue, report))

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        self.errors.append((venue, kind, detail))

    def kinds(self) -> list[str]:
        return [kind for _, kind, _ in self.errors]


def ccxt_market(symbol: str, *, contract_size: float | None = None, amount_step: Any = 0.001,
                price_step: Any = 0.1, min_amount: Any = 0.001, min_cost: Any = 5) -> dict[str, Any]:
    base, rest = symbol.split("/")
    quote = rest.split(":")[0]
    derivative = ":" in symbol
    return {
        "symbol": symbol, "base": base, "quote": quote, "id": base + quote,
        "contract": derivative, "swap": derivative, "spot": not derivative,
        "contractSize": contract_size if derivative else None,
        "precision": {"amount": amount_step, "price": price_step},
        "limits": {"amount": {"min": min_amount, "max": 1000}, "cost": {"min": min_cost, "max": None}},
    }


def trade(trade_id: Any = "11", *, symbol: str = PERP, side: Any = "buy", amount: Any = 0.5, price: Any = 60000.5,
          ts: Any = T0_MS, order: str | None = "900", info: dict[str, Any] | None = None,
          fee: Any = None) -> dict[str, Any]:
    return {"id": trade_id, "symbol": symbol, "side": side, "amount": amount, "price": price, "timestamp": ts,
            "order": order, "info": info or {}, "fee": fee}


def ccxt_order(cid: str = "hgdabcx1", *, symbol: str = PERP, status: str | None = "closed", filled: Any = 0.5,
               amount: Any = 0.5, average: Any = 60010.0, order_id: str = "900",
               trades: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"id": order_id, "clientOrderId": cid, "symbol": symbol, "status": status, "side": "sell",
            "amount": amount, "filled": filled, "average": average, "price": None, "timestamp": T0_MS,
            "lastTradeTimestamp": T0_MS + 5, "trades": trades or [], "fee": None, "info": {}}


class FakeExchange:
    """Just enough of a ccxt.pro exchange: scripted REST answers and queue-fed watch_* calls."""

    precisionMode = ccxt.TICK_SIZE

    def __init__(self, exchange_id: str = "binanceusdm", symbols: tuple[str, ...] = (PERP,),
                 has: dict[str, Any] | None = None) -> None:
        self.id = exchange_id
        self.markets = {s: ccxt_market(s, contract_size=1) for s in symbols}
        self.has: dict[str, Any] = {"watchMyTrades": True, "watchBidsAsks": True, "watchTicker": True,
                                    "watchOrders": True, "watchPositions": False, "fetchBidsAsks": True,
                                    "fetchOrderTrades": True, "fetchClosedOrders": True}
        self.has.update(has or {})
        self.last_response_headers: dict[str, str] = {}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.queues: dict[str, asyncio.Queue[Any]] = {}
        self.results: dict[str, Any] = {}  # method -> value, exception, or callable(*args)
        self.my_trades: list[dict[str, Any]] = []
        self.trade_window_ms: int | None = None  # like Binance USD-M: one query covers at most this
        self.closed = False

    # scripting
    def queue(self, key: str) -> asyncio.Queue[Any]:
        return self.queues.setdefault(key, asyncio.Queue())

    def called(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == method]

    async def _answer(self, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        await asyncio.sleep(0)
        result = self.results.get(method)
        if isinstance(result, BaseException):
            raise result
        if callable(result):
            return result(*args)
        return result

    async def _watch(self, key: str, method: str, *args: Any) -> Any:
        self.calls.append((method, args))
        item = await self.queue(key).get()
        if isinstance(item, BaseException):
            raise item
        return item

    # REST
    async def load_markets(self) -> dict[str, Any]:
        self.calls.append(("load_markets", ()))
        return self.markets

    def amount_to_precision(self, symbol: str, amount: float) -> str:
        step = Decimal(str(self.markets[symbol]["precision"]["amount"]))
        value = (Decimal(str(amount)) // step) * step
        if value <= 0:
            raise ccxt.InvalidOrder(f"{self.id} amount of {symbol} must be greater than minimum amount precision")
        return str(value)

    def price_to_precision(self, symbol: str, price: float) -> str:
        step = Decimal(str(self.markets[symbol]["precision"]["price"]))
        return str((Decimal(str(price)) / step).quantize(Decimal(1)) * step)

    async def create_order(self, *args: Any) -> Any:
        return await self._answer("create_order", *args)

    async def fetch_order(self, *args: Any) -> Any:
        return await self._answer("fetch_order", *args)

    async def fetch_order_trades(self, *args: Any) -> Any:
        return await self._answer("fetch_order_trades", *args)

    async def cancel_order(self, *args: Any) -> Any:
        return await self._answer("cancel_order", *args)

    async def fetch_open_orders(self, *args: Any) -> Any:
        return await self._answer("fetch_open_orders", *args)

    async def fetch_closed_orders(self, *args: Any) -> Any:
        return await self._answer("fetch_closed_orders", *args)

    async def fetch_positions(self, *args: Any) -> Any:
        return await self._answer("fetch_positions", *args)

    async def fetch_balance(self, *args: Any) -> Any:
        return await self._answer("fetch_balance", *args)

    async def fetch_bids_asks(self, *args: Any) -> Any:
        return await self._answer("fetch_bids_asks", *args)

    async def fetch_ticker(self, *args: Any) -> Any:
        return await self._answer("fetch_ticker", *args)

    async def fetch_my_trades(self, symbol: str, since: int | None = None, limit: int | None = None) -> Any:
        self.calls.append(("fetch_my_trades", (symbol, since, limit)))
        await asyncio.sleep(0)
        failure = self.results.get("fetch_my_trades")
        if isinstance(failure, BaseException):
            raise failure
        end = None if since is None or self.trade_window_ms is None else since + self.trade_window_ms
        rows = sorted((t for t in self.my_trades
                       if t["symbol"] == symbol and (since is None or t["timestamp"] >= since)
                       and (end is None or t["timestamp"] < end)),
                      key=lambda t: t["timestamp"])
        return rows[:limit] if limit else rows

    # streams
    async def watch_my_trades(self, symbol: str) -> Any:
        return await self._watch(f"trades:{symbol}", "watch_my_trades", symbol)

    async def watch_bids_asks(self, symbols: list[str]) -> Any:
        return await self._watch("bidsasks", "watch_bids_asks", tuple(symbols))

    async def watch_ticker(self, symbol: str) -> Any:
        return await self._watch(f"ticker:{symbol}", "watch_ticker", symbol)

    async def watch_orders(self, symbol: str) -> Any:
        return await self._watch(f"orders:{symbol}", "watch_orders", symbol)

    async def watch_positions(self, symbols: list[str]) -> Any:
        return await self._watch("positions", "watch_positions", tuple(symbols))

    async def close(self) -> None:
        self.closed = True


def make_venue(exchange: FakeExchange, clock: StepClock | None = None, **kwargs: Any) -> CcxtVenue:
    options: dict[str, Any] = {"symbols": list(exchange.markets), "own_client_id_prefix": "hgd",
                               "secrets": ["sup3rs3cretvalue"], "rng": random.Random(7),
                               "resubscribe_delay": 0.25, "backoff_initial": 0.5, "backoff_max": 8.0}
    options.update(kwargs)
    return CcxtVenue("perp", exchange, clock or StepClock(), **options)


def intent(*, symbol: str = PERP, side: Side = Side.SELL, reduce_only: bool = False,
           order_type: OrderType = OrderType.MARKET, cid: str = "hgdabcx1") -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id=cid, underlying="BTC", venue="perp", symbol=symbol,
                       side=side, amount=Decimal("0.5"), created_at=0.0, reduce_only=reduce_only,
                       order_type=order_type)


async def until(condition: Callable[[], bool], steps: int = 2000) -> None:
    for _ in range(steps):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition not reached")


MARKETS = {PERP: MarketInfo(symbol=PERP, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                            price_step=Decimal("0.1"), contract_size=Decimal("0.001")),
           SPOT: MarketInfo(symbol=SPOT, base="BTC", quote="USDT", amount_step=Decimal("0.00001"),
                            price_step=Decimal("0.01"))}


# --------------------------------------------------------------------------- pure conversions
@pytest.mark.parametrize(("raw", "expected"), [(0.1, "0.1"), ("0.30000", "0.30000"), (3, "3"), (1e-8, "1E-8")])
def test_to_decimal_goes_through_str(raw: Any, expected: str) -> None:
    assert to_decimal(raw, "x") == Decimal(expected)


@pytest.mark.parametrize("raw", [None, True, "abc", float("nan"), float("inf"), "NaN", [], {}])
def test_to_decimal_rejects_non_numbers(raw: Any) -> None:
    with pytest.raises(MalformedMessage):
        to_decimal(raw, "x")


def test_to_decimal_sign_checks() -> None:
    with pytest.raises(MalformedMessage):
        to_decimal(0, "x", positive=True)
    with pytest.raises(MalformedMessage):
        to_decimal("-1", "x", non_negative=True)
    assert to_decimal("-1", "x") == Decimal(-1)


def test_market_info_tick_size_mode() -> None:
    info = market_info_from_ccxt(ccxt_market(PERP, contract_size=0.01, min_cost=100), ccxt.TICK_SIZE)
    assert info == MarketInfo(symbol=PERP, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                              price_step=Decimal("0.1"), min_amount=Decimal("0.001"), max_amount=Decimal(1000),
                              min_notional=Decimal(100), contract_size=Decimal("0.01"))


def test_market_info_decimal_places_mode_and_spot_contract_size() -> None:
    info = market_info_from_ccxt(ccxt_market(SPOT, amount_step=5, price_step=2, min_amount=None, min_cost=None),
                                 ccxt.DECIMAL_PLACES)
    assert (info.amount_step, info.price_step) == (Decimal("0.00001"), Decimal("0.01"))
    assert (info.min_amount, info.min_notional, info.contract_size) == (0, 0, 1)


def test_market_info_without_precision_is_malformed() -> None:
    market = ccxt_market(SPOT)
    market["precision"] = {"amount": None, "price": 0.01}
    with pytest.raises(MalformedMessage):
        market_info_from_ccxt(market, ccxt.TICK_SIZE)


def test_trade_to_fill_converts_contracts_fee_and_client_id() -> None:
    raw = trade(amount=3, price="60000.5", info={"c": "hgdabcx7"}, fee={"cost": 0.012, "currency": "USDT"})
    fill = trade_to_fill("perp", raw, MARKETS, received_at=42.0)  # a legacy market: base units
    assert fill == Fill(venue="perp", trade_id=f"{PERP}#11", symbol=PERP, side=Side.BUY, amount=Decimal("0.003"),
                        price=Decimal("60000.5"), fee=Decimal("0.012"), fee_currency="USDT",
                        ts=T0_MS / 1000, received_at=42.0, client_order_id="hgdabcx7")


def test_trade_to_fill_prefers_unified_client_id_and_int_ids() -> None:
    raw = trade(trade_id=77, symbol=SPOT, side="sell", info={"c": "other"})
    raw["clientOrderId"] = "hgdabcx9"
    fill = trade_to_fill("spot", raw, MARKETS, received_at=0.0)
    assert (fill.trade_id, fill.client_order_id, fill.side, fill.amount) == (
        f"{SPOT}#77", "hgdabcx9", Side.SELL, Decimal("0.5"))


@pytest.mark.parametrize("changes", [
    {"id": None}, {"id": ""}, {"symbol": "ETH/USDT"}, {"symbol": None}, {"side": "long"}, {"amount": 0},
    {"amount": -1}, {"amount": "abc"}, {"amount": True}, {"price": float("nan")}, {"price": 0},
    {"price": None}, {"timestamp": None}, {"timestamp": "soon"}, {"fee": "1"}, {"fee": {"cost": "x"}},
])
def test_trade_to_fill_rejects_malformed(changes: dict[str, Any]) -> None:
    raw = trade()
    raw.update(changes)
    with pytest.raises(MalformedMessage):
        trade_to_fill("perp", raw, MARKETS, received_at=0.0)


def test_trade_to_fill_rejects_other_symbol_than_expected() -> None:
    with pytest.raises(MalformedMessage):
        trade_to_fill("perp", trade(symbol=SPOT), MARKETS, received_at=0.0, expected_symbol=PERP)


def test_ticker_to_price() -> None:
    price = ticker_to_price("perp", PERP, {"bid": 59999.9, "ask": "60000.1", "timestamp": T0_MS}, 5.0, now=9.0)
    assert price == PriceUpdate(venue="perp", symbol=PERP, bid=Decimal("59999.9"), ask=Decimal("60000.1"),
                                ts=T0_MS / 1000, received_at=5.0)
    assert ticker_to_price("perp", PERP, {"bid": 1, "ask": 2, "timestamp": None}, 5.0, now=9.0).ts == 9.0
    for bad in ({"bid": None, "ask": 2}, {"bid": 1, "ask": float("nan")}, {"bid": -1, "ask": 2}):
        with pytest.raises(MalformedMessage):
            ticker_to_price("perp", PERP, bad, 5.0, now=9.0)


@pytest.mark.parametrize(("status", "filled", "expected"), [
    ("closed", 0.5, OrderStatus.FILLED), ("open", 0, OrderStatus.SUBMITTED),
    ("open", 0.2, OrderStatus.PARTIALLY_FILLED), (None, 0, OrderStatus.SUBMITTED),
    ("canceled", 0.2, OrderStatus.CANCELED), ("expired", 0.1, OrderStatus.EXPIRED),
    ("rejected", 0, OrderStatus.REJECTED),
])
def test_order_status_mapping(status: str | None, filled: float, expected: OrderStatus) -> None:
    report = order_to_report("perp", ccxt_order(status=status, filled=filled), MARKETS[PERP], 0.0)
    assert report.status is expected
    assert report.filled == Decimal(str(filled)) * Decimal("0.001")


def test_order_report_fills_from_embedded_trades_take_order_defaults() -> None:
    embedded = {"id": "t1", "amount": 200, "price": 60010, "fee": {"cost": "0.3", "currency": "USDT"}}
    report = order_to_report("perp", ccxt_order(trades=[embedded]), MARKETS[PERP], 1.5)
    assert report.client_order_id == "hgdabcx1"
    assert report.venue_order_id == "900"
    assert report.average_price == Decimal("60010.0")
    assert report.fee == Decimal("0.3")
    (fill,) = report.fills
    assert (fill.side, fill.amount, fill.ts, fill.client_order_id, fill.trade_id) == (
        Side.SELL, Decimal("0.200"), (T0_MS + 5) / 1000, "hgdabcx1", f"{PERP}#t1")


def test_order_report_rejects_unknown_status_and_wrong_symbol() -> None:
    with pytest.raises(MalformedMessage):
        order_to_report("perp", ccxt_order(status="weird"), MARKETS[PERP], 0.0)
    with pytest.raises(MalformedMessage):
        order_to_report("perp", ccxt_order(symbol=SPOT), MARKETS[PERP], 0.0)


@pytest.mark.parametrize(("position", "expected"), [
    ({"contracts": 2000, "side": "long"}, Decimal("2.000")),
    ({"contracts": 2000, "side": "short"}, Decimal("-2.000")),
    ({"contracts": -300, "side": None}, Decimal("-0.300")),
    ({"contracts": None, "side": None}, Decimal(0)),
])
def test_position_amount_is_signed_base_units_of_a_legacy_market(position: dict[str, Any], expected: Decimal) -> None:
    assert position_amount(position, MARKETS[PERP]) == expected
    with_instrument = replace(MARKETS[PERP], instrument=Instrument(
        symbol=PERP, kind=InstrumentKind.LINEAR, underlying="BTC", quote="USDT", settle="USDT",
        contract_size=Decimal("0.001")))
    # a market with an instrument counts in contracts (the options contract)
    assert position_amount(position, with_instrument) == expected / Decimal("0.001")


def test_a_legacy_position_takes_its_own_contract_size() -> None:
    assert position_amount({"contracts": 5, "side": "short", "contractSize": 0.1}, MARKETS[PERP]) == Decimal("-0.5")


def test_amounts_counted_in_contract_size_units_are_divided_into_contracts() -> None:
    """Deribit's ccxt amounts are USD on an inverse perpetual (10 USD a contract)."""
    inverse = MarketInfo(symbol="BTC/USD:BTC", base="BTC", quote="USD", amount_step=Decimal(1),
                         price_step=Decimal("0.5"), min_amount=Decimal(1), contract_size=Decimal(10),
                         instrument=Instrument(symbol="BTC/USD:BTC", kind=InstrumentKind.INVERSE, underlying="BTC",
                                               quote="USD", settle="BTC", contract_size=Decimal(10)))
    position = {"symbol": "BTC/USD:BTC", "contracts": -1500, "side": "short"}
    assert position_amount(position, inverse, "contract_size") == Decimal(-150)
    raw = trade(amount=30, symbol="BTC/USD:BTC")
    assert trade_to_fill("d", raw, {"BTC/USD:BTC": inverse}, 0.0, amount_unit="contract_size").amount == 3


# --------------------------------------------------------------------------- errors & secrets
@pytest.mark.parametrize(("exc", "operation", "expected"), [
    (ccxt.OrderNotFound("x"), "read", herr.OrderNotFound),
    (ccxt.OrderNotFound("x"), "create", herr.OrderNotFound),
    (ccxt.RateLimitExceeded("x"), "create", herr.RateLimited),
    (ccxt.DDoSProtection("x"), "read", herr.RateLimited),
    (ccxt.RequestTimeout("x"), "create", herr.OrderOutcomeUnknown),
    (ccxt.RequestTimeout("x"), "read", herr.TransientVenueError),
    (ccxt.NetworkError("x"), "create", herr.OrderOutcomeUnknown),
    (ccxt.ExchangeNotAvailable("x"), "create", herr.OrderOutcomeUnknown),
    (ccxt.ExchangeNotAvailable("x"), "read", herr.TransientVenueError),
    (ccxt.OnMaintenance("x"), "cancel", herr.TransientVenueError),
    (ccxt.BadResponse("x"), "create", herr.OrderOutcomeUnknown),
    (ccxt.InvalidNonce("x"), "create", herr.TransientVenueError),
    (ccxt.InsufficientFunds("x"), "create", herr.InsufficientFunds),
    (ccxt.InvalidOrder("x"), "create", herr.InvalidOrder),
    (ccxt.OrderNotFillable("x"), "create", herr.InvalidOrder),
    (ccxt.OrderNotFillable('binanceusdm {"code":-5022,"msg":"Due to the order could not be executed as maker, '
                           'the Post Only order will be rejected."}'), "create", herr.PostOnlyRejected),
    (ccxt.InvalidOrder('deribit {"error":{"code":11054,"message":"post_only_reject"}}'), "create",
     herr.PostOnlyRejected),
    (ccxt.InvalidOrder('binanceusdm {"code":-2022,"msg":"ReduceOnly Order is rejected."}'), "create",
     herr.ReduceOnlyRejected),
    (ccxt.BadSymbol("x"), "create", herr.InvalidOrder),
    (ccxt.AuthenticationError("x"), "read", herr.AuthError),
    (ccxt.PermissionDenied("x"), "create", herr.AuthError),
    (ccxt.ExchangeError("x"), "create", herr.FatalOrderError),
    (ccxt.ExchangeError("x"), "read", herr.TransientVenueError),
])
def test_map_ccxt_error(exc: Exception, operation: Any, expected: type[herr.VenueError]) -> None:
    mapped = map_ccxt_error(exc, operation)
    assert type(mapped) is expected


def test_rate_limited_carries_retry_after() -> None:
    mapped = map_ccxt_error(ccxt.RateLimitExceeded("429"), "create", retry_after=7.0)
    assert isinstance(mapped, herr.RateLimited) and mapped.retry_after == 7.0


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0), ({"retry-after": "0.5"}, 0.5), ({"Retry-After": "soon"}, None),
    ({}, None), (None, None), ({"Retry-After": "-3"}, None),
])
def test_retry_after_from_headers(headers: Any, expected: float | None) -> None:
    assert retry_after_from_headers(headers) == expected


def test_sanitize_message_strips_signatures_keys_and_secrets() -> None:
    text = ('binanceusdm POST https://fapi.binance.com/fapi/v1/order?symbol=BTCUSDT&timestamp=1&'
            'signature=abcdef0123456789abcdef0123456789abcdef0123456789 400 {"msg":"bad"} '
            'X-MBX-APIKEY: myApiKeyValue12 ws wss://fstream.binance.com/ws/'
            'pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1 secret=sup3rs3cretvalue')
    clean = sanitize_message(text, secrets=["myApiKeyValue12", "sup3rs3cretvalue"])
    for leaked in ("abcdef0123456789", "myApiKeyValue12", "pqia91ma19a5s61", "sup3rs3cretvalue", "timestamp=1"):
        assert leaked not in clean
    assert "https://fapi.binance.com/fapi/v1/order" in clean and '"msg":"bad"' in clean


# --------------------------------------------------------------------------- venue: REST paths
async def test_load_markets_skips_malformed_markets() -> None:
    ex = FakeExchange(symbols=(PERP, "ETH/USDT:USDT"))
    ex.markets["ETH/USDT:USDT"]["precision"] = {"amount": None, "price": None}
    venue = make_venue(ex, symbols=[PERP])
    markets = await venue.load_markets()
    assert list(markets) == [PERP]
    assert markets[PERP].contract_size == 1


async def test_create_order_passes_client_id_reduce_only_and_precision() -> None:
    ex = FakeExchange()
    ex.results["create_order"] = ccxt_order(status="closed", filled=0.5)
    venue = make_venue(ex)
    report = await venue.create_order(intent(reduce_only=True), Decimal("0.5004"), None)
    (args,) = ex.called("create_order")
    assert args == (PERP, "market", "sell", 0.5, None, {"clientOrderId": "hgdabcx1", "reduceOnly": True})
    assert report.status is OrderStatus.FILLED and report.filled == Decimal("0.5")
    assert report.venue_order_id == "900"


async def test_create_ioc_limit_order_on_spot_has_no_reduce_only() -> None:
    ex = FakeExchange("binance", symbols=(SPOT,))
    ex.results["create_order"] = ccxt_order(symbol=SPOT, status="expired", filled=0.2)
    venue = make_venue(ex)
    report = await venue.create_order(intent(symbol=SPOT, side=Side.BUY, reduce_only=True,
                                             order_type=OrderType.LIMIT_IOC), Decimal("0.5"), Decimal("60012.34"))
    (args,) = ex.called("create_order")
    assert args == (SPOT, "limit", "buy", 0.5, 60012.3, {"clientOrderId": "hgdabcx1", "timeInForce": "IOC"})
    assert report.status is OrderStatus.EXPIRED and report.filled == Decimal("0.2")


async def test_create_order_rejects_bad_amounts_before_sending() -> None:
    venue = make_venue(FakeExchange())
    with pytest.raises(herr.InvalidOrder):
        await venue.create_order(intent(), Decimal("0.0001"), None)  # below the amount precision
    with pytest.raises(herr.InvalidOrder):
        await venue.create_order(intent(order_type=OrderType.LIMIT_IOC), Decimal("0.5"), None)
    with pytest.raises(herr.InvalidOrder):
        await venue.create_order(intent(symbol="ETH/USDT:USDT"), Decimal("0.5"), None)


@pytest.mark.parametrize(("exc", "expected"), [
    (ccxt.RequestTimeout("binanceusdm POST http://x/fapi/v1/order?signature=deadbeef"), herr.OrderOutcomeUnknown),
    (ccxt.NetworkError("connection reset"), herr.OrderOutcomeUnknown),
    (ccxt.InsufficientFunds("margin is insufficient"), herr.InsufficientFunds),
    (ccxt.AuthenticationError("invalid api key sup3rs3cretvalue"), herr.AuthError),
])
async def test_create_order_error_mapping_never_leaks(exc: Exception, expected: type[Exception]) -> None:
    ex = FakeExchange()
    ex.results["create_order"] = exc
    venue = make_venue(ex)
    with pytest.raises(expected) as info:
        await venue.create_order(intent(), Decimal("0.5"), None)
    assert "deadbeef" not in str(info.value) and "sup3rs3cretvalue" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


async def test_rate_limit_on_create_reads_retry_after_header() -> None:
    ex = FakeExchange()
    ex.results["create_order"] = ccxt.RateLimitExceeded("binanceusdm 429 Too Many Requests")
    ex.last_response_headers = {"Retry-After": "3"}
    venue = make_venue(ex)
    with pytest.raises(herr.RateLimited) as info:
        await venue.create_order(intent(), Decimal("0.5"), None)
    assert info.value.retry_after == 3.0


async def test_unreadable_create_response_is_outcome_unknown() -> None:
    ex = FakeExchange()
    ex.results["create_order"] = {"id": "900", "symbol": PERP, "status": "closed", "filled": "lots"}
    with pytest.raises(herr.OrderOutcomeUnknown):
        await make_venue(ex).create_order(intent(), Decimal("0.5"), None)


async def test_fetch_order_by_client_id_binance_style_with_fills() -> None:
    ex = FakeExchange()
    ex.results["fetch_order"] = ccxt_order(status="closed", filled=0.5)
    ex.results["fetch_order_trades"] = [trade("t1", amount=0.3, side=None), trade("t2", amount=0.2, side=None)]
    venue = make_venue(ex)
    report = await venue.fetch_order(PERP, "hgdabcx1")
    assert ex.called("fetch_order") == [(None, PERP, {"origClientOrderId": "hgdabcx1"})]
    assert ex.called("fetch_order_trades") == [("900", PERP)]
    assert report is not None and report.status is OrderStatus.FILLED
    assert [(f.trade_id, f.amount, f.side, f.client_order_id) for f in report.fills] == [
        (f"{PERP}#t1", Decimal("0.3"), Side.SELL, "hgdabcx1"), (f"{PERP}#t2", Decimal("0.2"), Side.SELL, "hgdabcx1")]
    again = await venue.fetch_order(PERP, "hgdabcx1")  # same filled amount: trades not fetched again
    assert again is not None and again.fills == report.fills
    assert len(ex.called("fetch_order_trades")) == 1


async def test_fetch_order_unknown_is_none() -> None:
    ex = FakeExchange()
    ex.results["fetch_order"] = ccxt.OrderNotFound("binanceusdm {\"code\":-2013,\"msg\":\"Order does not exist.\"}")
    assert await make_venue(ex).fetch_order(PERP, "hgdabcx1") is None


async def test_fetch_order_generic_exchange_scans_open_then_closed() -> None:
    ex = FakeExchange("kraken")
    ex.results["fetch_open_orders"] = [ccxt_order("someoneelse", status="open", filled=0)]
    ex.results["fetch_closed_orders"] = [ccxt_order("hgdabcx1", status="canceled", filled=0)]
    venue = make_venue(ex)
    report = await venue.fetch_order(PERP, "hgdabcx1")
    assert report is not None and report.status is OrderStatus.CANCELED
    assert not ex.called("fetch_order")
    ex.results["fetch_closed_orders"] = []
    assert await venue.fetch_order(PERP, "hgdabcx1") is None


async def test_fetch_order_read_errors_are_transient() -> None:
    ex = FakeExchange()
    ex.results["fetch_order"] = ccxt.RequestTimeout("slow")
    with pytest.raises(herr.TransientVenueError):
        await make_venue(ex).fetch_order(PERP, "hgdabcx1")


async def test_cancel_order_by_client_id() -> None:
    ex = FakeExchange()
    ex.results["cancel_order"] = ccxt_order(status="canceled", filled=0.1)
    venue = make_venue(ex)
    report = await venue.cancel_order(PERP, "hgdabcx1")
    assert ex.called("cancel_order") == [(None, PERP, {"origClientOrderId": "hgdabcx1"})]
    assert report is not None and report.status is OrderStatus.CANCELED and report.filled == Decimal("0.1")
    ex.results["cancel_order"] = ccxt.OrderNotFound("Unknown order sent.")
    assert await venue.cancel_order(PERP, "hgdabcx1") is None


async def test_cancel_order_generic_exchange_cancels_by_venue_id() -> None:
    ex = FakeExchange("kraken")
    ex.results["fetch_open_orders"] = [ccxt_order("hgdabcx1", status="open", filled=0, order_id="555")]
    ex.results["cancel_order"] = ccxt_order(status="canceled", filled=0, order_id="555")
    report = await make_venue(ex).cancel_order(PERP, "hgdabcx1")
    assert ex.called("cancel_order") == [("555", PERP, {})]
    assert report is not None and report.status is OrderStatus.CANCELED


async def test_fetch_open_orders_per_symbol() -> None:
    ex = FakeExchange()
    ex.results["fetch_open_orders"] = [ccxt_order("hgdabcx3", status="open", filled=0),
                                       {**ccxt_order("", status="open", filled=0), "clientOrderId": None},
                                       {"garbage": True}]
    sink = RecordingSink()
    venue = make_venue(ex)
    venue.client.sink = sink
    reports = await venue.fetch_open_orders()
    assert ex.called("fetch_open_orders") == [(PERP,)]
    assert [(r.client_order_id, r.status) for r in reports] == [
        ("hgdabcx3", OrderStatus.SUBMITTED), ("", OrderStatus.SUBMITTED)]
    assert sink.kinds() == ["malformed"]


async def test_fetch_positions_derivative_and_spot() -> None:
    ex = FakeExchange(symbols=(PERP, SPOT))
    ex.markets[PERP]["contractSize"] = 0.001
    ex.results["fetch_positions"] = [{"symbol": PERP, "contracts": 1500, "side": "short"},
                                     {"symbol": "ETH/USDT:USDT", "contracts": 3, "side": "long"}]
    ex.results["fetch_balance"] = {"total": {"BTC": 1.25, "USDT": "1000.5", "BNB": None}}
    positions = await make_venue(ex).fetch_positions()
    assert ex.called("fetch_positions") == [([PERP],)]
    assert positions == {PERP: Decimal("-1.500"), "BTC": Decimal("1.25"), "USDT": Decimal("1000.5")}


async def test_position_snapshot_carries_the_exchanges_timestamps_as_cursors() -> None:
    ex = FakeExchange(symbols=(PERP, SPOT))
    ex.markets[PERP]["contractSize"] = 0.001
    ex.results["fetch_positions"] = [{"symbol": PERP, "contracts": 1500, "side": "short",
                                      "timestamp": 1_700_000_000_123}]
    ex.results["fetch_balance"] = {"total": {"BTC": 1.25, "USDT": "1000.5"}, "timestamp": 1_700_000_000_456}
    snapshot = await make_venue(ex).fetch_position_snapshot()
    assert snapshot.positions == {PERP: Decimal("-1.500"), "BTC": Decimal("1.25"), "USDT": Decimal("1000.5")}
    assert snapshot.as_of == {PERP: 1_700_000_000.123, "BTC": 1_700_000_000.456, "USDT": 1_700_000_000.456}

    # hedge mode (a row per side, each with its own time), a zero, a string or no timestamp: no cursor
    ex.results["fetch_positions"] = [{"symbol": PERP, "contracts": 1, "side": "short", "timestamp": 1_700_000_000_000},
                                     {"symbol": PERP, "contracts": 2, "side": "long", "timestamp": 1_700_000_000_001}]
    ex.results["fetch_balance"] = {"total": {"BTC": 1}, "timestamp": 0}
    snapshot = await make_venue(ex).fetch_position_snapshot()
    assert snapshot.positions[PERP] == Decimal("0.001") and snapshot.as_of == {}
    ex.results["fetch_positions"] = [{"symbol": PERP, "contracts": 1, "side": "short", "timestamp": "soon"}]
    ex.results["fetch_balance"] = {"total": {"BTC": 1}}
    assert (await make_venue(ex).fetch_position_snapshot()).as_of == {}


async def test_fetch_positions_fails_closed_on_malformed_position() -> None:
    ex = FakeExchange()
    ex.results["fetch_positions"] = [{"symbol": PERP, "contracts": "NaN", "side": "long"}]
    with pytest.raises(herr.TransientVenueError):
        await make_venue(ex).fetch_positions()


async def test_fetch_fills_since_pages_and_sorts() -> None:
    ex = FakeExchange(symbols=(PERP, SPOT))
    ex.my_trades = [trade(str(i), ts=T0_MS + i * 1000, symbol=PERP if i % 2 else SPOT) for i in range(7)]
    ex.my_trades.append(trade("bad", ts=T0_MS + 500, price="NaN"))
    venue = make_venue(ex, backfill_page_limit=2)
    fills = await venue.fetch_fills_since(T0_MS / 1000 + 1)
    assert [f.trade_id for f in fills] == [f"{PERP}#1", f"{SPOT}#2", f"{PERP}#3", f"{SPOT}#4", f"{PERP}#5",
                                           f"{SPOT}#6"]
    assert ex.called("fetch_my_trades")[0] == (PERP, T0_MS + 1000, 2)
    assert len(ex.called("fetch_my_trades")) > 2  # paged


async def test_fetch_fills_since_is_whole_beyond_the_stream_backfills_page_budget_or_fails() -> None:
    # Reconciliation journals what it lists as everything since `since`: a listing cut at the
    # stream backfill's budget (as before) lost the newest trades of a busy desk, or replayed them
    # on top of a balance adopted with them inside.
    ex = FakeExchange()
    ex.my_trades = [trade(str(i), ts=T0_MS + i) for i in range(1, 10)]
    fills = await make_venue(ex, backfill_page_limit=2, backfill_max_pages=2).fetch_fills_since(T0_MS / 1000)
    assert [f.trade_id for f in fills] == [f"{PERP}#{i}" for i in range(1, 10)]
    with pytest.raises(herr.TransientVenueError, match="more than 3 pages of 2: the listing would be cut short"):
        await make_venue(ex, backfill_page_limit=2, listing_max_pages=3).fetch_fills_since(T0_MS / 1000)


async def test_backfill_skips_converting_and_resolving_what_was_delivered_but_pages_past_it() -> None:
    ex = FakeExchange()
    ex.my_trades = [trade(str(i), ts=T0_MS + i, order=str(900 + i)) for i in range(1, 7)]
    ex.results["fetch_order"] = lambda order_id, symbol: ccxt_order(f"hgdabcx{order_id}", order_id=order_id)
    venue = make_venue(ex, backfill_page_limit=2, backfill_overlap=5.0)
    sink = RecordingSink()
    venue.client.sink = sink
    await venue.load_markets()
    assert await venue.fills.deliver_trades([dict(t, info={"c": "web_x"}) for t in ex.my_trades[:4]], symbol=PERP)
    converted: list[str] = []
    convert = venue.fills._trade_to_fill

    def counting(raw: Any, received_at: float, expected_symbol: str | None) -> Fill:
        converted.append(str(raw["id"]))
        return convert(raw, received_at, expected_symbol)

    venue.fills._trade_to_fill = counting  # type: ignore[method-assign]
    assert await venue.fills.backfill(PERP)
    assert set(converted) == {"5", "6"}  # the four delivered ones were neither converted again ...
    assert sorted(args[0] for args in ex.called("fetch_order")) == ["905", "906"]  # ... nor looked up
    assert [f.trade_id for f in sink.fills] == [f"{PERP}#{i}" for i in range(1, 7)]
    assert len(ex.called("fetch_my_trades")) >= 4  # paged over the delivered ones


async def test_fills_attributed_by_order_id_and_own_prefix() -> None:
    ex = FakeExchange()
    ex.results["create_order"] = ccxt_order("hgdabcx1", status="open", filled=0, order_id="900")
    ex.my_trades = [trade("1", order="900"), trade("2", order="901", info={"c": "web_abc"}),
                    trade("3", order="902", info={"c": "hgdabcx2"})]
    venue = make_venue(ex)
    await venue.create_order(intent(), Decimal("0.5"), None)
    fills = await venue.fetch_fills_since(None)
    assert [f.client_order_id for f in fills] == ["hgdabcx1", None, "hgdabcx2"]


async def test_fetch_fills_since_steps_over_query_windows() -> None:
    ex = FakeExchange()
    day_ms = 24 * 3600 * 1000
    clock = StepClock()
    now_ms = int(clock.time() * 1000)
    start_ms = now_ms - 20 * day_ms
    ex.trade_window_ms = 7 * day_ms
    ex.my_trades = [trade("a", ts=start_ms + day_ms), trade("b", ts=start_ms + 10 * day_ms),
                    trade("c", ts=now_ms - day_ms)]
    fills = await make_venue(ex, clock).fetch_fills_since(start_ms / 1000)
    assert [f.trade_id for f in fills] == [f"{PERP}#a", f"{PERP}#b", f"{PERP}#c"]
    assert len(ex.called("fetch_my_trades")) == 3


async def test_trades_without_client_id_are_attributed_by_looking_the_order_up() -> None:
    ex = FakeExchange()
    orders = {"700": ccxt_order("hgdabcx7", order_id="700"), "701": ccxt_order("web_manual", order_id="701")}
    ex.results["fetch_order"] = lambda order_id, symbol: orders[order_id]
    ex.my_trades = [trade("1", order="700"), trade("2", order="700"), trade("3", order="701")]
    venue = make_venue(ex)
    fills = await venue.fetch_fills_since(None)
    assert [f.client_order_id for f in fills] == ["hgdabcx7", "hgdabcx7", None]
    assert sorted(ex.called("fetch_order")) == [("700", PERP), ("701", PERP)]
    await venue.fetch_fills_since(None)
    assert len(ex.called("fetch_order")) == 2  # learnt once
    inventory = make_venue(FakeExchange(), resolve_client_ids=False)
    inventory.exchange.my_trades = [trade("1", order="700")]
    assert [f.client_order_id for f in await inventory.fetch_fills_since(None)] == [None]
    assert not inventory.exchange.called("fetch_order")


async def test_unresolvable_client_id_fails_the_backfill_instead_of_dropping_it() -> None:
    ex = FakeExchange()
    ex.results["fetch_order"] = ccxt.RequestTimeout("slow")
    ex.my_trades = [trade("1", order="700")]
    with pytest.raises(herr.TransientVenueError):
        await make_venue(ex).fetch_fills_since(None)


# --------------------------------------------------------------------------- venue: streams
async def test_streams_deliver_fills_prices_and_own_order_updates() -> None:
    ex = FakeExchange()
    sink, clock = RecordingSink(), StepClock()
    venue = make_venue(ex, clock)
    assert not venue.connected
    started = clock.time()
    await venue.start(sink)
    try:
        await until(lambda: venue.connected)
        ex.queue(f"trades:{PERP}").put_nowait([trade("1", ts=T0_MS), trade("2", price="NaN"),
                                               trade("3", symbol=SPOT)])
        ex.queue("bidsasks").put_nowait({PERP: {"bid": 100.5, "ask": 101, "timestamp": T0_MS},
                                         "ETH/USDT:USDT": {"bid": 1, "ask": 2}})
        ex.queue(f"orders:{PERP}").put_nowait([ccxt_order("hgdabcx5", status="open", filled=0.1),
                                               ccxt_order("web_1", status="open", filled=0)])
        await until(lambda: len(sink.fills) >= 1 and len(sink.prices) >= 1 and len(sink.orders) >= 1)
        await until(lambda: sink.kinds().count("malformed") >= 2)
        assert [f.trade_id for f in sink.fills] == [f"{PERP}#1"]
        assert sink.fills[0].received_at == pytest.approx(clock.now, abs=1.0)
        assert [(p.symbol, p.bid, p.ask) for p in sink.prices] == [(PERP, Decimal("100.5"), Decimal(101))]
        assert [(v, r.client_order_id, r.status) for v, r in sink.orders] == [
            ("perp", "hgdabcx5", OrderStatus.PARTIALLY_FILLED)]
        # the start-up backfill covered the subscription gap, from start time minus the overlap
        (symbol, since, _), *_ = ex.called("fetch_my_trades")
        assert (symbol, since) == (PERP, int((started - 10.0) * 1000))
    finally:
        await venue.close()
    assert ex.closed and not venue.connected


async def test_price_symbols_stream_prices_only_and_must_be_listed() -> None:
    bnb = "BNB/USDT:USDT"
    ex = FakeExchange(symbols=(PERP, bnb))
    sink = RecordingSink()
    venue = make_venue(ex, symbols=[PERP], price_symbols=[bnb, PERP])  # a served symbol is not repeated
    assert venue.streams.price_symbols == (bnb,)
    await venue.start(sink)
    try:
        await until(lambda: venue.connected)
        assert ex.called("watch_bids_asks")[0] == ((PERP, bnb),)
        ex.queue("bidsasks").put_nowait({PERP: {"bid": 100.5, "ask": 101, "timestamp": T0_MS},
                                         bnb: {"bid": 599.9, "ask": 600.1, "timestamp": T0_MS}})
        await until(lambda: len(sink.prices) >= 2)
        assert {(p.symbol, p.mid) for p in sink.prices} == {(PERP, Decimal("100.75")), (bnb, Decimal(600))}
        assert not ex.called(f"watch_my_trades:{bnb}") and f"fills:{bnb}" not in venue.stream_modes()
    finally:
        await venue.close()
    unlisted = make_venue(FakeExchange(), symbols=[PERP], price_symbols=["BNB/USDT"])
    with pytest.raises(herr.ConfigError, match="not listed"):
        await unlisted.start(RecordingSink())
    await unlisted.close()


async def test_fill_stream_reconnects_with_backoff_and_backfills() -> None:
    ex = FakeExchange()
    sink, clock = RecordingSink(), StepClock()
    venue = make_venue(ex, clock, backfill_overlap=5.0)
    await venue.start(sink)
    try:
        trades = ex.queue(f"trades:{PERP}")
        trades.put_nowait([trade("1", ts=T0_MS)])
        await until(lambda: len(sink.fills) == 1)
        calls_before = len(ex.called("fetch_my_trades"))
        # the stream drops; meanwhile trade 2 happened and is only visible through REST
        ex.my_trades = [trade("1", ts=T0_MS), trade("2", ts=T0_MS + 2000)]
        trades.put_nowait(ccxt.NetworkError("connection closed"))
        await until(lambda: len(sink.fills) == 2)
        assert [f.trade_id for f in sink.fills] == [f"{PERP}#1", f"{PERP}#2"]
        assert "stream" in sink.kinds()
        backfill = ex.called("fetch_my_trades")[calls_before]
        assert backfill[1] == T0_MS - 5000  # last seen trade minus the overlap
        assert any(0.25 <= s <= 0.5 for s in clock.sleeps)  # jittered first back-off in [initial/2, initial]
        trades.put_nowait([trade("2", ts=T0_MS + 2000), trade("3", ts=T0_MS + 3000)])  # duplicate + new
        await until(lambda: len(sink.fills) == 3)
        assert [f.trade_id for f in sink.fills][-1] == f"{PERP}#3"
        await until(lambda: venue.connected)
    finally:
        await venue.close()


async def test_backoff_grows_and_stream_falls_back_to_polling() -> None:
    ex = FakeExchange()
    ex.results["fetch_bids_asks"] = {PERP: {"bid": 10, "ask": 11, "timestamp": None}}
    sink, clock = RecordingSink(), StepClock()
    venue = make_venue(ex, clock, max_stream_failures=3, poll_period=3.0, poll_interval=1.0,
                       stream_positions=False)
    await venue.start(sink)
    try:
        prices = ex.queue("bidsasks")
        for _ in range(3):
            prices.put_nowait(ccxt.ExchangeNotAvailable("down"))
        await until(lambda: len(ex.called("fetch_bids_asks")) >= 1)
        assert venue.stream_modes()["prices"] == "poll"
        await until(lambda: len(sink.prices) >= 1)
        assert sink.prices[0].bid == Decimal(10)
        backoffs = [s for s in clock.sleeps if s not in (0.25, 1.0)]
        assert len(backoffs) >= 3 and backoffs[0] <= 0.5 and backoffs[1] <= 1.0 and 1.0 <= backoffs[2] <= 2.0
        # after the poll period it streams again
        await until(lambda: venue.stream_modes()["prices"] == "stream" and len(ex.called("watch_bids_asks")) >= 4)
        prices.put_nowait({PERP: {"bid": 20, "ask": 21}})
        await until(lambda: any(p.bid == 20 for p in sink.prices))
    finally:
        await venue.close()


async def test_unsupported_streams_poll_rest() -> None:
    ex = FakeExchange(has={"watchMyTrades": False, "watchBidsAsks": False, "watchTicker": False,
                           "watchOrders": False, "fetchBidsAsks": False})
    ex.results["fetch_ticker"] = {"bid": 5, "ask": 6}
    ex.my_trades = [trade("1", ts=int((StepClock().time()) * 1000))]
    sink = RecordingSink()
    venue = make_venue(ex, poll_interval=1.0)
    await venue.start(sink)
    try:
        await until(lambda: len(sink.fills) == 1 and len(sink.prices) >= 2)
        assert venue.connected
        assert set(venue.stream_modes().values()) == {"poll"}
        assert not ex.called("watch_my_trades") and not ex.called("watch_orders")
    finally:
        await venue.close()


async def test_sink_failure_is_reported_and_fill_redelivered_by_backfill() -> None:
    ex = FakeExchange()
    sink = RecordingSink()
    venue = make_venue(ex)
    await venue.start(sink)
    try:
        await until(lambda: venue.connected)
        ex.my_trades = [trade("1", ts=T0_MS + 1)]
        sink.fail_next_fill = True
        ex.queue(f"trades:{PERP}").put_nowait([trade("1", ts=T0_MS + 1)])
        await until(lambda: "sink" in sink.kinds())
        ex.queue(f"trades:{PERP}").put_nowait([])
        await until(lambda: len(sink.fills) == 1)
        assert sink.fills[0].trade_id == f"{PERP}#1"
    finally:
        await venue.close()


async def test_positions_stream_keeps_latest_positions() -> None:
    ex = FakeExchange(has={"watchPositions": True})
    venue = make_venue(ex)
    await venue.start(RecordingSink())
    try:
        ex.queue("positions").put_nowait([{"symbol": PERP, "contracts": 2, "side": "short"}])
        await until(lambda: PERP in venue.streamed_positions)
        assert venue.streamed_positions[PERP] == Decimal(-2)
    finally:
        await venue.close()


async def test_start_refuses_symbols_the_exchange_does_not_list() -> None:
    venue = make_venue(FakeExchange(), symbols=["DOGE/USDT:USDT"])
    with pytest.raises(herr.ConfigError):
        await venue.start(RecordingSink())
    await venue.close()


# --------------------------------------------------------------------------- construction
def live_settings(**venue_overrides: Any) -> Settings:
    spot = VenueConfig(name="bn-spot", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="binance",
                       api_key=SecretStr("key-spot-123"), secret=SecretStr("secret-spot-456"))
    perp = VenueConfig(name="bn-perp", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="binanceusdm",
                       api_key=SecretStr("key-perp-123"), secret=SecretStr("secret-perp-456"),
                       **venue_overrides)
    hedges = [HedgeConfig(underlying="BTC", inventory=[InventorySource(venue="bn-spot", asset="BTC")],
                          venue="bn-perp", symbol=PERP),
              HedgeConfig(underlying="ETH", inventory=[InventorySource(venue="bn-spot", asset="ETH")],
                          venue="bn-perp", symbol="ETH/USDT:USDT")]
    return Settings(venues=[spot, perp], hedges=hedges)


def test_venue_symbols_per_role_and_explicit_option() -> None:
    settings = live_settings()
    assert venue_symbols(settings.venues[1], settings) == [PERP, "ETH/USDT:USDT"]
    assert venue_symbols(settings.venues[0], settings) == ["BTC/USDT", "ETH/USDT"]
    explicit = settings.venues[0].model_copy(update={"options": {"symbols": ["BTC/FDUSD"]}})
    assert venue_symbols(explicit, settings) == ["BTC/FDUSD"]
    bad = settings.venues[0].model_copy(update={"options": {"symbols": "BTC"}})
    with pytest.raises(herr.ConfigError) as info:
        venue_symbols(bad, settings)
    assert info.value.path == "venues.0.options.symbols"
    deribit = settings.venues[0].model_copy(update={"exchange": "deribit"})
    assert venue_symbols(deribit, settings) == ["BTC/USDC", "ETH/USDC"]  # the exchange's spot quote (traits)


async def test_create_exchange_applies_sandbox_urls_options_and_credentials() -> None:
    settings = live_settings(sandbox=True, urls={"api": {"fapiPublic": "http://127.0.0.1:1/fapi/v1"}},
                             options={"symbols": [PERP], "defaultType": "swap", "recvWindow": 5000})
    cfg = settings.venues[1]
    exchange = create_exchange(cfg, timeout=2.5)
    try:
        assert exchange.urls["api"]["fapiPublic"] == "http://127.0.0.1:1/fapi/v1"
        assert "testnet" in exchange.urls["api"]["fapiPrivate"]  # sandbox applied, rest of the dict kept
        assert exchange.options["recvWindow"] == 5000 and "symbols" not in exchange.options
        assert (exchange.apiKey, exchange.secret, exchange.timeout) == ("key-perp-123", "secret-perp-456", 2500)
        assert exchange.enableRateLimit is True
    finally:
        await exchange.close()


async def test_build_ccxt_venue_and_unknown_exchange() -> None:
    settings = live_settings()
    venue = build_ccxt_venue(settings.venues[1], settings, StepClock())
    try:
        assert venue.name == "bn-perp" and venue.symbols == (PERP, "ETH/USDT:USDT")
        assert venue.own_client_id_prefix == settings.executor.client_id_prefix
        assert "secret-perp-456" in venue.client.secrets
    finally:
        await venue.close()
    bogus = settings.venues[1].model_copy(update={"exchange": "nosuchexchange"})
    with pytest.raises(herr.ConfigError) as info:
        build_ccxt_venue(bogus, settings, StepClock())
    assert info.value.path == "venues.1.exchange"


# --------------------------------------------------------------------------- against the simulator
SIM_PERP_SYMBOLS = (PERP,)
SIM_SPOT_SYMBOLS = (SPOT,)


@pytest.fixture
async def sim() -> Any:
    async with exchange_sim.start_venue_sim(port=0, seed=3) as running:
        yield running


def sim_venue(sim: Any, exchange_id: str, symbols: tuple[str, ...], **kwargs: Any) -> CcxtVenue:
    """The real ccxt.pro class pointed at the simulator (on a free port) through the venue's
    ``sim_base_url``."""
    role = VenueRole.HEDGE if exchange_id == "binanceusdm" else VenueRole.INVENTORY
    cfg = VenueConfig(name=exchange_id, kind=VenueKind.CCXT, role=role, exchange=exchange_id,
                      api_key=SecretStr(sim.config.api_key), secret=SecretStr(sim.config.secret),
                      sim_base_url=sim.base_url, options=exchange_sim.ccxt_options())
    options: dict[str, Any] = {"own_client_id_prefix": "hgd", "secrets": [sim.config.secret],
                               "backoff_initial": 0.05, "backoff_max": 0.2, "resubscribe_delay": 0.1,
                               "poll_interval": 0.2, "rng": random.Random(1)}
    options.update(kwargs)
    exchange = create_exchange(cfg, timeout=5.0)
    exchange.rateLimit = 5  # ms between requests (ccxt's throttle stays on); keeps the tests quick
    exchange.timeout_on_exit = 10  # ms ccxt waits on close
    return CcxtVenue(exchange_id, exchange, RealClock(), symbols=symbols, **options)


async def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    """Real-time wait for a condition driven by the simulator and the real ccxt client."""
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


async def test_sim_load_markets(sim: Any) -> None:
    perp = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)
    spot = sim_venue(sim, "binance", SIM_SPOT_SYMBOLS)
    try:
        perp_markets = await perp.load_markets()
        spot_markets = await spot.load_markets()
    finally:
        await perp.close()
        await spot.close()
    filters = sim.engine.filters(exchange_sim.USDM, "BTCUSDT")
    assert perp_markets[PERP].amount_step == filters.step_size
    assert perp_markets[PERP].price_step == filters.tick_size
    assert perp_markets[PERP].min_notional == filters.min_notional
    assert perp_markets[PERP].contract_size == 1
    spot_filters = sim.engine.filters(exchange_sim.SPOT, "BTCUSDT")
    assert spot_markets[SPOT].amount_step == spot_filters.step_size
    assert spot_markets[SPOT].min_amount == spot_filters.min_qty


async def test_sim_order_by_client_id_then_lookup_with_fills(sim: Any) -> None:
    venue = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)
    try:
        await venue.load_markets()
        report = await venue.create_order(intent(cid="hgdsimx1", side=Side.SELL), Decimal("0.012"), None)
        assert report.client_order_id == "hgdsimx1" and report.status is OrderStatus.FILLED
        venue_orders = [o for o in sim.engine.orders(exchange_sim.USDM) if o.client_order_id == "hgdsimx1"]
        assert len(venue_orders) == 1 and venue_orders[0].executed_qty == Decimal("0.012")
        found = await venue.fetch_order(PERP, "hgdsimx1")
        assert found is not None and found.status is OrderStatus.FILLED and found.filled == Decimal("0.012")
        sim_trades = [t for t in sim.engine.trades(exchange_sim.USDM) if t.client_order_id == "hgdsimx1"]
        assert sorted(f.trade_id for f in found.fills) == sorted(f"{PERP}#{t.trade_id}" for t in sim_trades)
        assert sum(f.amount for f in found.fills) == Decimal("0.012")
        assert all(f.side is Side.SELL and f.client_order_id == "hgdsimx1" for f in found.fills)
        assert await venue.fetch_order(PERP, "hgdsimx404") is None
        assert await venue.cancel_order(PERP, "hgdsimx1") is None  # filled: already gone
        positions = await venue.fetch_positions()
        assert positions[PERP] == sim.engine.position("BTCUSDT").amount == Decimal("-0.012")
    finally:
        await venue.close()


async def test_sim_restart_backfill_attributes_fills_to_our_client_ids(sim: Any) -> None:
    before = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)
    try:
        await before.create_order(intent(cid="hgdsimx7", side=Side.BUY), Decimal("0.02"), None)
    finally:
        await before.close()
    sim.engine.client_fill("BTCUSDT", "BUY", Decimal("0.01"))  # spot desk flow: other market
    after = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)  # a restarted daemon knows no order ids
    try:
        fills = await after.fetch_fills_since(None)
    finally:
        await after.close()
    assert fills and all(f.client_order_id == "hgdsimx7" and f.symbol == PERP for f in fills)
    assert sum(f.amount for f in fills) == Decimal("0.02")


async def test_sim_ioc_limit_orders_and_reduce_only(sim: Any) -> None:
    venue = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)
    try:
        await venue.load_markets()
        await venue.create_order(intent(cid="hgdsimx2", side=Side.BUY), Decimal("0.01"), None)
        book = sim.engine.book(exchange_sim.USDM, "BTCUSDT")
        ioc_sell = intent(cid="hgdsimx3", side=Side.SELL, reduce_only=True, order_type=OrderType.LIMIT_IOC)
        missed = await venue.create_order(ioc_sell, Decimal("0.01"), book.best_ask.price + 500)
        assert missed.status is OrderStatus.EXPIRED and missed.filled == 0
        ioc_sell = intent(cid="hgdsimx4", side=Side.SELL, reduce_only=True, order_type=OrderType.LIMIT_IOC)
        hit = await venue.create_order(ioc_sell, Decimal("0.01"), book.best_bid.price - 500)
        assert hit.status is OrderStatus.FILLED and hit.filled == Decimal("0.01")
        (order,) = [o for o in sim.engine.orders(exchange_sim.USDM) if o.client_order_id == "hgdsimx4"]
        assert order.reduce_only and order.time_in_force == "IOC" and order.type == "LIMIT"
        with pytest.raises(herr.FatalOrderError):  # reduce-only on a flat position is refused
            await venue.create_order(intent(cid="hgdsimx5", side=Side.SELL, reduce_only=True), Decimal("0.01"),
                                     None)
        assert (await venue.fetch_positions())[PERP] == 0
    finally:
        await venue.close()


async def test_sim_streams_client_fill_and_prices_into_sink(sim: Any) -> None:
    venue = sim_venue(sim, "binance", SIM_SPOT_SYMBOLS)
    sink = RecordingSink()
    try:
        await venue.start(sink)
        await wait_for(lambda: venue.connected and len(sink.prices) > 0)
        trade_ = sim.engine.client_fill("BTCUSDT", "BUY", Decimal("0.02"))
        assert trade_ is not None
        await wait_for(lambda: any(f.trade_id == f"{SPOT}#{trade_.trade_id}" for f in sink.fills))
        fill = next(f for f in sink.fills if f.trade_id == f"{SPOT}#{trade_.trade_id}")
        assert (fill.side, fill.amount, fill.price, fill.client_order_id) == (
            Side.BUY, Decimal("0.02"), trade_.price, None)  # desk flow: not our order
        price = sink.prices[-1]
        assert price.symbol == SPOT and 0 < price.bid < price.ask
        assert not [e for e in sink.errors if e[1] == "malformed"]
    finally:
        await venue.close()


async def test_sim_backfills_fills_missed_while_the_stream_was_down(sim: Any) -> None:
    venue = sim_venue(sim, "binance", SIM_SPOT_SYMBOLS)
    sink = RecordingSink()
    try:
        await venue.start(sink)
        await wait_for(lambda: venue.connected)
        await asyncio.sleep(0.3)  # user stream subscribed
        assert await sim.close_streams("user") > 0
        missed = sim.engine.client_fill("BTCUSDT", "SELL", Decimal("0.03"))  # nobody is listening
        assert missed is not None
        await wait_for(lambda: any(f.trade_id == f"{SPOT}#{missed.trade_id}" for f in sink.fills))
        assert "stream" in sink.kinds()
        await wait_for(lambda: venue.connected)
        after = sim.engine.client_fill("BTCUSDT", "BUY", Decimal("0.01"))  # streamed again
        assert after is not None
        await wait_for(lambda: any(f.trade_id == f"{SPOT}#{after.trade_id}" for f in sink.fills))
        ids = [f.trade_id for f in sink.fills]
        assert len(ids) == len(set(ids))
    finally:
        await venue.close()


async def test_sim_insufficient_margin_maps_to_insufficient_funds() -> None:
    config = exchange_sim.SimConfig(port=0, engine=exchange_sim.EngineConfig(usdm_wallet=Decimal(10)))
    async with exchange_sim.start_venue_sim(config=config) as poor:
        venue = sim_venue(poor, "binanceusdm", SIM_PERP_SYMBOLS)
        try:
            with pytest.raises(herr.InsufficientFunds):
                await venue.create_order(intent(cid="hgdsimx8"), Decimal("0.5"), None)
        finally:
            await venue.close()


async def test_sim_rate_limit_maps_to_rate_limited_with_retry_after(sim: Any) -> None:
    venue = sim_venue(sim, "binanceusdm", SIM_PERP_SYMBOLS)
    try:
        await venue.load_markets()
        sim.limiters["usdm"].limit = 1
        with pytest.raises(herr.RateLimited) as info:
            await venue.fetch_open_orders()
        assert info.value.retry_after is not None and info.value.retry_after > 0
        with pytest.raises(herr.RateLimited):
            await venue.create_order(intent(cid="hgdsimx9"), Decimal("0.01"), None)
        assert not [o for o in sim.engine.orders(exchange_sim.USDM) if o.client_order_id == "hgdsimx9"]
    finally:
        await venue.close()
