"""Real exchanges through ccxt: REST via ``ccxt.async_support``, streams via ``ccxt.pro``.

:class:`CcxtVenue` implements :class:`~hedgerd.connectors.base.Venue` on top of one ccxt
exchange object. Everything ccxt returns crosses into hedgerd through the pure converters of
:mod:`hedgerd.connectors.ccxt.convert`, which turn floats into ``Decimal`` via ``str`` and
reject malformed payloads; every ccxt exception leaves through
:func:`~hedgerd.connectors.ccxt.errors.map_ccxt_error` as a :class:`~hedgerd.errors.VenueError`
with secrets stripped.

Streams (one task each, reconnecting with jittered exponential back-off on the injected clock):

* fills: ``watch_my_trades(symbol)`` per symbol; after every (re)subscription the fills since
  the last seen trade minus an overlap are backfilled with ``fetch_my_trades`` (the ledger
  dedupes by trade id);
* prices: ``watch_bids_asks(symbols)`` or ``watch_ticker(symbol)``, whichever ``has`` offers;
* order updates: ``watch_orders(symbol)`` per symbol (our orders only);
* positions (derivatives): ``watch_positions(symbols)``, kept in :attr:`CcxtVenue.streamed_positions`.

A stream that is unsupported, or that failed ``max_stream_failures`` times in a row, is
replaced by REST polling (``fetch_my_trades`` / ``fetch_bids_asks`` or ``fetch_ticker`` /
``fetch_positions``) for ``poll_period`` seconds before streaming is tried again.

Trade ids are qualified by symbol (``"BTC/USDT#123"``) because exchanges such as Binance number
trades per symbol while the ledger dedupes by (venue, trade id). Fills carry our client order
id when the trade names one with our prefix, or when its venue order id is known (from our
own orders, or looked up once per unknown order on venues we trade on: Binance's REST trades
do not carry client ids). The start-up backfill only covers ``start()`` minus the overlap;
fills from before (daemon down) are for the engine's reconciliation via ``fetch_fills_since``.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from functools import partial
from typing import Any

import ccxt
import structlog

from hedgerd import errors as herr
from hedgerd.clock import Clock
from hedgerd.connectors.base import VenueEventSink
from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    client_order_id_of,
    cursor_seconds,
    market_info_from_ccxt,
    optional_decimal,
    order_id_of,
    order_to_report,
    position_amount,
    qualified_trade_id,
    ticker_to_price,
    to_decimal,
    trade_to_fill,
    with_symbol,
)
from hedgerd.connectors.ccxt.errors import Operation, map_ccxt_error, retry_after_from_headers, sanitize_message
from hedgerd.models import (
    ZERO,
    Fill,
    HedgeIntent,
    MarketInfo,
    OrderReport,
    OrderStatus,
    OrderType,
    is_derivative,
)
from hedgerd.reconciliation import PositionSnapshot

log = structlog.get_logger("hedgerd.ccxt")

#: Exchanges whose ``fetch_order`` / ``cancel_order`` accept a client order id parameter, and its name.
CLIENT_ID_LOOKUP_PARAM: dict[str, str] = {
    "binance": "origClientOrderId",
    "binanceusdm": "origClientOrderId",
    "binancecoinm": "origClientOrderId",
    "okx": "clOrdId",
    "bybit": "orderLinkId",
}
#: Extra parameters some exchanges need on ``fetch_order`` by client id.
_FETCH_ORDER_EXTRA: dict[str, dict[str, Any]] = {"bybit": {"acknowledged": True}}
#: Longest time range one ``fetch_my_trades`` query may cover (Binance USD-M: 7 days).
BACKFILL_WINDOW_MS = 7 * 24 * 3600 * 1000
#: Seconds a fills stream may stay quiet after a message before a catch-up backfill (daemon venues).
CATCH_UP_DELAY = 1.0
#: Trade ids delivered lately, so the stream's and the backfills' overlapping copies of a fill
#: go to the ledger once: the backfills reach back their overlap plus their interval (seconds),
#: which this covers at hundreds of fills/s; an older repeat is still deduped by the ledger.
DELIVERED_IDS_KEPT = 20_000
#: Client ids of venue order ids (ours, or "" for others'): fills of an order arrive within
#: seconds of it; a forgotten one costs one more order lookup.
CLIENT_IDS_KEPT = 10_000
#: Distinct malformed-record reports already logged (a backfill sees the same bad record again).
MALFORMED_KEPT = 1_000
#: Fills of orders looked up lately (a lookup repeats while an order settles; one per order in flight).
ORDER_FILLS_KEPT = 1_000
#: Seconds between the unconditional fills backfills of daemon venues (see ``safety_backfill_interval``).
SAFETY_BACKFILL_INTERVAL = 5.0
#: Seconds no request is sent after a rate-limit answer that carries no Retry-After.
RATE_LIMIT_PAUSE = 1.0


# --------------------------------------------------------------------------- the venue
@dataclass
class _Stream:
    """One streaming loop: ``watch`` (None = unsupported) and its REST ``poll`` fallback."""

    key: str
    watch: Callable[[], Awaitable[Any]] | None
    handle: Callable[[Any], Awaitable[bool]]
    poll: Callable[[], Awaitable[bool]] | None
    poll_interval: float
    resync: Callable[[], Awaitable[bool]] | None = None
    confirm: Callable[[], Awaitable[bool]] | None = None  # once the first message proves a subscription live
    essential: bool = True
    healthy: bool = False
    mode: str = "stream"


class _Bounded(OrderedDict[str, Any]):
    """Insertion-ordered map that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any = None) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class CcxtVenue:
    """A :class:`~hedgerd.connectors.base.Venue` backed by a ccxt (pro) exchange object.

    ``exchange`` is a ``ccxt.pro`` / ``ccxt.async_support`` instance (or a test double);
    ``symbols`` are the unified symbols this venue streams fills and prices for.
    ``own_client_id_prefix``: client order ids not starting with it are not attributed to us
    (desk orders on an inventory venue keep ``client_order_id=None``).
    ``resolve_client_ids``: fetch the order behind a trade that lacks a client id (one request
    per unknown order; on for venues we place orders on).
    ``catch_up_delay``: seconds of quiet after a fills message before one backfill (0 = off).
    ``backfill_when_live``: after a (re)subscription's backfill, backfill once more from the same
    point when the first message proves the subscription live (covers a slow handshake).
    ``safety_backfill_interval``: every so many seconds fetch the fills since the previous such
    fetch (minus the overlap) whatever the streams say (0 = off): a stream that died without
    an error, or a message a client library lost, cannot keep a fill out of the ledger.
    """

    def __init__(self, name: str, exchange: Any, clock: Clock, *, symbols: Sequence[str],
                 own_client_id_prefix: str | None = None, secrets: Sequence[str] = (),
                 stream_orders: bool = True, stream_positions: bool = True, resolve_client_ids: bool = True,
                 poll_interval: float = 1.0, positions_poll_interval: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0, max_stream_failures: int = 5,
                 poll_period: float = 60.0, backfill_overlap: float = 10.0, resubscribe_delay: float = 0.5,
                 backfill_page_limit: int = 500, backfill_max_pages: int = 20, listing_max_pages: int = 1000,
                 catch_up_delay: float = 0.0, backfill_when_live: bool = False, safety_backfill_interval: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if not symbols:
            raise ValueError(f"venue {name}: no symbols to serve")
        self.name = name
        self.exchange = exchange
        self.clock = clock
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.own_client_id_prefix = own_client_id_prefix
        self.stream_orders = stream_orders
        self.stream_positions = stream_positions
        self.resolve_client_ids = resolve_client_ids
        self.poll_interval = poll_interval
        self.positions_poll_interval = positions_poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_stream_failures = max_stream_failures
        self.poll_period = poll_period
        self.backfill_overlap = backfill_overlap
        self.resubscribe_delay = resubscribe_delay
        self.backfill_page_limit = backfill_page_limit
        self.backfill_max_pages = backfill_max_pages
        # Reconciliation's listings (fetch_fills_since) must be whole, however many trades a busy
        # desk made: a much larger budget than a stream backfill's, and an error when it runs out.
        self.listing_max_pages = listing_max_pages
        self.catch_up_delay = catch_up_delay
        self.backfill_when_live = backfill_when_live
        self.safety_backfill_interval = safety_backfill_interval
        self._secrets = tuple(s for s in secrets if s)
        self._rng = rng or random.Random()
        self._markets: dict[str, MarketInfo] = {}
        self._sink: VenueEventSink | None = None
        self._streams: list[_Stream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._closed = False
        self._parser_guarded = False
        self._started_wall = 0.0
        self._last_fill_ts: dict[str, float] = {}
        self._redeliver_from: dict[str, float] = {}  # ts of fills the sink failed on, by symbol
        self._resync_since: dict[str, float] = {}  # where the last backfill of each symbol started
        self._safety_since: dict[str, float] = {}  # wall time of the last safety backfill, by symbol
        self._rate_limited_until = -math.inf  # clock monotonic; see _call
        self._delivered = _Bounded(DELIVERED_IDS_KEPT)  # qualified trade ids already accepted by the sink
        self._cid_by_order_id = _Bounded(CLIENT_IDS_KEPT)
        self._malformed_reported = _Bounded(MALFORMED_KEPT)
        self._order_fills = _Bounded(ORDER_FILLS_KEPT)  # venue order id -> (filled, fills)
        self._no_order_trades: set[str] = set()  # symbols where fetch_order_trades is unsupported
        #: Latest positions seen on the positions stream (or its polling fallback), base units.
        self.streamed_positions: dict[str, Decimal] = {}

    # ----------------------------------------------------------------- properties
    @property
    def connected(self) -> bool:
        """True once started and while the fills and price streams (or their polling) are healthy."""
        return (self._started and not self._closed
                and all(s.healthy for s in self._streams if s.essential))

    def stream_modes(self) -> dict[str, str]:
        """``{stream key: "stream" | "poll"}`` for status and tests."""
        return {s.key: s.mode for s in self._streams}

    def _has(self, feature: str) -> bool:
        has = getattr(self.exchange, "has", None)
        return bool(has.get(feature)) if isinstance(has, Mapping) else False

    @property
    def _derivative_symbols(self) -> list[str]:
        return [s for s in self.symbols if is_derivative(s)]

    # ----------------------------------------------------------------- plumbing
    def _map_error(self, exc: BaseException, operation: Operation) -> herr.VenueError:
        retry_after = None
        if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            retry_after = retry_after_from_headers(getattr(self.exchange, "last_response_headers", None))
        return map_ccxt_error(exc, operation, retry_after=retry_after, secrets=self._secrets)

    async def _call(self, operation: Operation, method: str, *args: Any) -> Any:
        """Await ``exchange.<method>(*args)``, translating every failure into a VenueError.

        After a rate-limit answer nothing is sent to the venue until its Retry-After (or
        :data:`RATE_LIMIT_PAUSE`) has elapsed: every request of this connector raises
        :class:`~hedgerd.errors.RateLimited` with the time left instead (requests ignoring a 429
        earn a ban on Binance), whichever task makes it.
        """
        remaining = self._rate_limited_until - self.clock.monotonic()
        if remaining > 0:
            raise herr.RateLimited(f"{self.name}: not sent, backing off {remaining:.2f}s after a rate limit",
                                   remaining)
        try:
            return await getattr(self.exchange, method)(*args)
        except (ccxt.BaseError, OSError, TimeoutError) as exc:
            error = self._map_error(exc, operation)
            if isinstance(error, herr.RateLimited):
                pause = error.retry_after if error.retry_after is not None else RATE_LIMIT_PAUSE
                self._rate_limited_until = max(self._rate_limited_until, self.clock.monotonic() + pause)
            raise error from None

    def _report(self, kind: str, detail: str) -> None:
        detail = sanitize_message(detail, self._secrets)
        if kind == "malformed":  # backfill and polling see the same bad record again and again
            if detail in self._malformed_reported:
                return
            self._malformed_reported.put(detail)
        if self._sink is not None:
            self._sink.on_venue_error(self.name, kind, detail)
        else:
            log.warning("venue_error", venue=self.name, kind=kind, detail=detail)

    def _market(self, symbol: str) -> MarketInfo:
        market = self._markets.get(symbol)
        if market is None:
            raise herr.InvalidOrder(f"{symbol!r} is not listed on venue {self.name}")
        return market

    async def _ensure_markets(self) -> None:
        if not self._markets:
            await self.load_markets()

    def _own_cid(self, cid: str | None) -> str | None:
        if cid is None or self.own_client_id_prefix is None or cid.startswith(self.own_client_id_prefix):
            return cid
        return None

    def _trade_to_fill(self, trade: Any, received_at: float, expected_symbol: str | None) -> Fill:
        fill = trade_to_fill(self.name, trade, self._markets, received_at, expected_symbol=expected_symbol)
        cid = self._own_cid(fill.client_order_id)
        order_id = order_id_of(trade)
        if cid is None and order_id is not None:
            cid = self._own_cid(self._cid_by_order_id.get(order_id) or None)
        return fill if cid == fill.client_order_id else replace(fill, client_order_id=cid)

    async def _learn_client_ids(self, trades: Sequence[Any], symbol: str) -> None:
        """Look up the client id of orders behind trades that do not carry one (REST trades on Binance).

        A hedge fill journaled without its client order id would leave the executor counting
        it as still in flight, so on venues we trade on every unknown order is fetched once.
        """
        if not self.resolve_client_ids:
            return
        unknown = {oid for t in trades if isinstance(t, Mapping) and client_order_id_of(t) is None
                   and (oid := order_id_of(t)) is not None and oid not in self._cid_by_order_id}
        for order_id in sorted(unknown):
            try:
                order = await self._call("read", "fetch_order", order_id, symbol)
            except herr.OrderNotFound:
                order = None
            cid = client_order_id_of(order) if isinstance(order, Mapping) else None
            self._cid_by_order_id.put(order_id, cid or "")

    def _order_report(self, order: Any, *, client_order_id: str | None = None,
                      fills: Sequence[Fill] = ()) -> OrderReport:
        if not isinstance(order, Mapping):
            raise MalformedMessage(f"order: expected a mapping, got {type(order).__name__}")
        symbol = order.get("symbol")
        market = self._markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise MalformedMessage(f"order: unknown symbol {str(symbol)[:40]!r}")
        report = order_to_report(self.name, order, market, self.clock.monotonic(),
                                 client_order_id=client_order_id, fills=fills)
        if report.venue_order_id is not None:
            self._cid_by_order_id.put(report.venue_order_id, report.client_order_id)
        return report

    def _backoff(self, failures: int) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, failures - 1))
        return delay * (0.5 + 0.5 * self._rng.random())

    # ----------------------------------------------------------------- markets
    async def load_markets(self) -> dict[str, MarketInfo]:
        """Instrument metadata for every listed market ccxt can describe (malformed ones skipped)."""
        raw = await self._call("read", "load_markets")
        if not isinstance(raw, Mapping):
            raise herr.TransientVenueError(f"{self.name}: load_markets returned {type(raw).__name__}")
        mode = getattr(self.exchange, "precisionMode", ccxt.TICK_SIZE)
        markets: dict[str, MarketInfo] = {}
        for symbol, market in raw.items():
            try:
                info = market_info_from_ccxt(market, mode)
            except MalformedMessage:
                continue
            markets[symbol] = info
        self._markets = markets
        return dict(markets)

    # ----------------------------------------------------------------- orders
    def _to_precision(self, method: str, symbol: str, value: Decimal) -> float:
        try:
            text = getattr(self.exchange, method)(symbol, float(value))
        except ccxt.BaseError as exc:
            raise self._map_error(exc, "create") from None
        try:
            number = to_decimal(text, f"{symbol} precision", positive=True)
        except MalformedMessage:
            raise herr.InvalidOrder(f"{symbol}: {value} rounds to {text!r}") from None
        return float(number)

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        """Send ``intent`` (amount in contracts) as a market or IOC limit order with its client id."""
        await self._ensure_markets()
        symbol = intent.symbol
        self._market(symbol)
        if amount <= 0:
            raise herr.InvalidOrder(f"{intent.client_order_id}: amount must be positive, got {amount}")
        contracts = self._to_precision("amount_to_precision", symbol, amount)
        params: dict[str, Any] = {"clientOrderId": intent.client_order_id}
        limit: float | None = None
        order_type = "market"
        if intent.order_type is OrderType.LIMIT_IOC:
            if price is None or price <= 0:
                raise herr.InvalidOrder(f"{intent.client_order_id}: an IOC limit order needs a price")
            order_type = "limit"
            limit = self._to_precision("price_to_precision", symbol, price)
            params["timeInForce"] = "IOC"
        if intent.reduce_only and is_derivative(symbol):
            params["reduceOnly"] = True
        order = await self._call("create", "create_order", symbol, order_type, intent.side.value, contracts,
                                 limit, params)
        try:
            return self._order_report(with_symbol(order, symbol), client_order_id=intent.client_order_id)
        except MalformedMessage as exc:
            # Accepted, but we cannot read the answer: the caller must look the order up.
            raise herr.OrderOutcomeUnknown(f"{intent.client_order_id}: unreadable response: {exc}") from None

    def _client_id_params(self, client_order_id: str) -> dict[str, Any] | None:
        param = CLIENT_ID_LOOKUP_PARAM.get(str(getattr(self.exchange, "id", "")))
        return None if param is None else {param: client_order_id}

    async def _find_order(self, symbol: str, client_order_id: str) -> Any:
        """The raw ccxt order with that client id, by direct lookup or by scanning; None if unknown."""
        params = self._client_id_params(client_order_id)
        if params is not None:
            params.update(_FETCH_ORDER_EXTRA.get(str(self.exchange.id), {}))
            try:
                return await self._call("read", "fetch_order", None, symbol, params)
            except herr.OrderNotFound:
                return None
        methods = ["fetch_open_orders"]
        methods.append("fetch_closed_orders" if self._has("fetchClosedOrders") else "fetch_orders")
        for method in methods:
            try:
                orders = await self._call("read", method, symbol)
            except herr.OrderNotFound:
                continue
            for order in orders or ():
                if isinstance(order, Mapping) and client_order_id_of(order) == client_order_id:
                    return order
        return None

    async def _fills_of(self, order: Mapping[str, Any], symbol: str, cid: str) -> tuple[Fill, ...]:
        """Trades of a (partly) filled order, cached per filled amount; best effort."""
        order_id = order.get("id")
        try:
            filled = optional_decimal(order.get("filled"), "order.filled") or ZERO
        except MalformedMessage:
            return ()
        if order.get("trades") or order_id is None or filled <= 0:
            return ()
        key = str(order_id)
        cached: tuple[Decimal, tuple[Fill, ...]] | None = self._order_fills.get(key)
        if cached is not None and cached[0] == filled:
            return cached[1]
        try:
            trades: Any = None
            if self._has("fetchOrderTrades") and symbol not in self._no_order_trades:
                try:
                    trades = await self._call("read", "fetch_order_trades", key, symbol)
                except herr.InvalidOrder:  # NotSupported for this market type (binanceusdm)
                    self._no_order_trades.add(symbol)
            if trades is None:
                since = order.get("timestamp")
                trades = [t for t in await self._call("read", "fetch_my_trades", symbol, since)
                          if isinstance(t, Mapping) and str(t.get("order")) == key]
        except herr.VenueError as exc:
            self._report("backfill", f"trades of order {cid}: {exc}")
            return ()
        received = self.clock.monotonic()
        fills: list[Fill] = []
        defaults = {"side": order.get("side"), "timestamp": order.get("timestamp")}
        for trade in trades or ():
            try:
                fills.append(trade_to_fill(self.name, trade, self._markets, received, expected_symbol=symbol,
                                           defaults=defaults, client_order_id=cid))
            except MalformedMessage as exc:
                self._report("malformed", str(exc))
        result = tuple(sorted(fills, key=lambda f: (f.ts, f.trade_id)))
        self._order_fills.put(key, (filled, result))
        return result

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Look an order up by client id (with its fills when filled); None if the venue never saw it."""
        await self._ensure_markets()
        self._market(symbol)
        order = await self._find_order(symbol, client_order_id)
        if order is None:
            return None
        order = with_symbol(order, symbol)
        fills = await self._fills_of(order, symbol, client_order_id)
        try:
            return self._order_report(order, client_order_id=client_order_id, fills=fills)
        except MalformedMessage as exc:
            self._report("malformed", str(exc))
            raise herr.TransientVenueError(f"{client_order_id}: unreadable order: {exc}") from None

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Cancel by client id; None if the order is unknown or already gone (filled/canceled)."""
        await self._ensure_markets()
        self._market(symbol)
        params = self._client_id_params(client_order_id)
        order_id: str | None = None
        if params is None:
            found = await self._find_order(symbol, client_order_id)
            if not isinstance(found, Mapping) or found.get("id") is None:
                return None
            order_id = str(found["id"])
            params = {}
        try:
            order = await self._call("cancel", "cancel_order", order_id, symbol, params)
        except herr.OrderNotFound:
            return None
        try:
            return self._order_report(with_symbol(order, symbol), client_order_id=client_order_id)
        except MalformedMessage as exc:
            self._report("malformed", str(exc))
            return OrderReport(client_order_id=client_order_id, symbol=symbol, status=OrderStatus.UNKNOWN)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Open orders on ``symbol`` (default: every served symbol); ``client_order_id`` "" if none."""
        await self._ensure_markets()
        reports: list[OrderReport] = []
        for sym in ([symbol] if symbol else self.symbols):
            for order in await self._call("read", "fetch_open_orders", sym) or ():
                try:
                    reports.append(self._order_report(with_symbol(order, sym)))
                except MalformedMessage as exc:
                    self._report("malformed", str(exc))
        return reports

    # ----------------------------------------------------------------- positions & fills
    async def fetch_positions(self) -> dict[str, Decimal]:
        """Signed base units: derivatives by symbol (``fetch_positions``), spot assets by name (balances).

        A malformed position raises :class:`~hedgerd.errors.TransientVenueError` rather than
        being skipped, so reconciliation never mistakes it for a flat position.
        """
        return dict((await self.fetch_position_snapshot()).positions)

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        """:meth:`fetch_positions` with the exchange's timestamp of each state: the balance's for
        spot assets (Binance: the account's ``updateTime``), the position's own for a derivative
        symbol held in one position row. Absent or malformed: no cursor for it."""
        await self._ensure_markets()
        result: dict[str, Decimal] = {}
        as_of: dict[str, float] = {}
        derivatives = self._derivative_symbols
        if derivatives:
            rows: dict[str, int] = {}
            for symbol in derivatives:
                result[symbol] = ZERO
            for position in await self._call("read", "fetch_positions", derivatives) or ():
                held = position.get("symbol") if isinstance(position, Mapping) else None
                if not isinstance(held, str) or held not in result:
                    continue
                try:
                    result[held] += position_amount(position, self._markets[held])
                except MalformedMessage as exc:
                    self._report("malformed", str(exc))
                    raise herr.TransientVenueError(f"{self.name}: malformed position: {exc}") from None
                rows[held] = rows.get(held, 0) + 1
                stamp = cursor_seconds(position.get("timestamp"))
                if stamp is not None and rows[held] == 1:
                    as_of[held] = stamp
                else:  # hedge mode: each side has its own time, none is the symbol's
                    as_of.pop(held, None)
        spot = [s for s in self.symbols if not is_derivative(s)]
        if spot:
            balance = await self._call("read", "fetch_balance")
            totals = balance.get("total") if isinstance(balance, Mapping) else None
            if not isinstance(totals, Mapping):
                raise herr.TransientVenueError(f"{self.name}: balance without totals")
            for symbol in spot:
                market = self._markets.get(symbol)
                if market is not None:
                    result.setdefault(market.base, ZERO)
                    result.setdefault(market.quote, ZERO)
            for asset, total in totals.items():
                if total is None:
                    continue
                try:
                    result[str(asset)] = to_decimal(total, f"balance {asset}")
                except MalformedMessage as exc:
                    self._report("malformed", str(exc))
                    raise herr.TransientVenueError(f"{self.name}: malformed balance: {exc}") from None
            stamp = cursor_seconds(balance.get("timestamp"))
            if stamp is not None:
                as_of.update((key, stamp) for key in result if not is_derivative(key))
        return PositionSnapshot(result, as_of)

    async def _fetch_trades(self, symbol: str, since: float | None, *, whole: bool = False,
                            skip_delivered: bool = False) -> list[Fill]:
        """Our trades on ``symbol`` since ``since`` (epoch seconds), malformed ones skipped.

        Pages forward from the newest trade of a full page; after a short page the cursor
        jumps one :data:`BACKFILL_WINDOW_MS` (exchanges such as Binance USD-M answer at most
        7 days per query) until it passes now, within ``backfill_max_pages`` requests (with
        ``whole``: ``listing_max_pages``, and a :class:`~hedgerd.errors.TransientVenueError`
        rather than a list cut short when they run out).
        """
        if since is None:
            return await self._trades_to_fills(await self._call("read", "fetch_my_trades", symbol), symbol)
        cursor = max(0, int(since * 1000))
        now_ms = int(self.clock.time() * 1000)
        fills: dict[str, Fill] = {}
        skipped: dict[str, int] = {}  # delivered trades left out of the pages: id -> timestamp (ms)
        pages = self.listing_max_pages if whole else self.backfill_max_pages
        for page_number in range(1, pages + 1):
            batch = list(await self._call("read", "fetch_my_trades", symbol, cursor,
                                          self.backfill_page_limit) or ())
            page = await self._trades_to_fills(batch, symbol, skip_delivered=skip_delivered)
            fresh = [f for f in page if f.trade_id not in fills]
            fills.update((f.trade_id, f) for f in fresh)
            left_out = self._delivered_timestamps(batch) if skip_delivered else {}
            fresh_left_out = left_out.keys() - skipped.keys()
            skipped.update(left_out)
            if len(batch) >= self.backfill_page_limit:
                newest = max([int(f.ts * 1000) for f in page] + list(left_out.values()), default=cursor)
                progressed = bool(fresh or fresh_left_out)
                cursor = newest if progressed and newest > cursor else max(newest, cursor) + 1
            elif cursor + BACKFILL_WINDOW_MS < now_ms:
                cursor += BACKFILL_WINDOW_MS
            else:
                break
            if whole and page_number == pages:
                raise herr.TransientVenueError(
                    f"{self.name}: trades on {symbol} since {since:.3f} fill more than {pages} pages of "
                    f"{self.backfill_page_limit}: the listing would be cut short")
        return list(fills.values())

    def _is_delivered(self, trade: Any) -> bool:
        return (isinstance(trade, Mapping) and isinstance(trade.get("symbol"), str) and trade.get("id") is not None
                and qualified_trade_id(trade["symbol"], str(trade["id"])) in self._delivered)

    def _delivered_timestamps(self, batch: Sequence[Any]) -> dict[str, int]:
        """Id -> timestamp (ms) of the trades in ``batch`` the sink already has: left out of a
        backfill's page, they must still move its cursor (they were validated when delivered)."""
        return {qualified_trade_id(t["symbol"], str(t["id"])): t["timestamp"] for t in batch
                if self._is_delivered(t) and type(t.get("timestamp")) is int}

    async def _trades_to_fills(self, trades: Any, symbol: str, *, skip_delivered: bool = False) -> list[Fill]:
        """Our fills among ccxt ``trades``; with ``skip_delivered``, without the ones the sink has
        (a backfill refetches mostly those: converting them again, and looking up their orders,
        would be work thrown away by :meth:`_deliver_fills`)."""
        trades = list(trades or ())
        if skip_delivered:
            trades = [t for t in trades if not self._is_delivered(t)]
        await self._learn_client_ids(trades, symbol)
        received = self.clock.monotonic()
        fills: list[Fill] = []
        for trade in trades:
            try:
                fills.append(self._trade_to_fill(trade, received, symbol))
            except MalformedMessage as exc:
                self._report("malformed", str(exc))
        return fills

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        """Our account's fills on the served symbols since ``since`` (epoch seconds), oldest first."""
        await self._ensure_markets()
        fills: list[Fill] = []
        for symbol in self.symbols:
            fills.extend(await self._fetch_trades(symbol, since, whole=True))
        return sorted(fills, key=lambda f: (f.ts, f.trade_id))

    # ----------------------------------------------------------------- streaming
    async def start(self, sink: VenueEventSink) -> None:
        """Load markets (if needed) and start the stream loops; returns without waiting for data."""
        if self._started:
            return
        self._sink = sink
        await self._ensure_markets()
        missing = [s for s in self.symbols if s not in self._markets]
        if missing:
            raise herr.ConfigError(f"venues.{self.name}", f"not listed on {self.exchange.id}: {missing}")
        self._started_wall = self.clock.time()
        self._guard_message_parser()
        self._streams = self._build_streams()
        self._started = True
        self._tasks = [asyncio.create_task(self._run(stream), name=f"{self.name}-{stream.key}")
                       for stream in self._streams]
        if self.safety_backfill_interval > 0:
            self._tasks.append(asyncio.create_task(self._safety_backfills(), name=f"{self.name}-safety-backfill"))

    def _guard_message_parser(self) -> None:
        """Count a websocket message that ccxt's own parser raises on (a frame that is a JSON list,
        a field of the wrong type) as malformed, instead of an unhandled error in an asyncio callback.

        ccxt binds ``exchange.handle_message`` when it opens a websocket client, so this runs
        before any stream is subscribed.
        """
        parse = getattr(self.exchange, "handle_message", None)
        if not callable(parse) or self._parser_guarded:
            return

        def guarded(client: Any, message: Any) -> Any:
            try:
                return parse(client, message)
            except Exception as exc:
                self._report("malformed", f"stream message {str(message)[:60]!r} not parseable: "
                                          f"{type(exc).__name__}: {exc}")
                return None

        self.exchange.handle_message = guarded
        self._parser_guarded = True

    def _build_streams(self) -> list[_Stream]:
        streams: list[_Stream] = []
        watch_trades = self._has("watchMyTrades")
        ex = self.exchange
        for symbol in self.symbols:
            streams.append(_Stream(
                key=f"fills:{symbol}",
                watch=partial(ex.watch_my_trades, symbol) if watch_trades else None,
                handle=partial(self._deliver_trades, symbol=symbol),
                poll=partial(self._backfill, symbol), poll_interval=self.poll_interval,
                resync=partial(self._backfill, symbol),
                confirm=partial(self._confirm_backfill, symbol) if self.backfill_when_live else None))
        if self._has("watchBidsAsks"):
            streams.append(_Stream(key="prices", watch=partial(ex.watch_bids_asks, list(self.symbols)),
                                   handle=self._deliver_tickers, poll=self._poll_prices,
                                   poll_interval=self.poll_interval))
        else:
            watch_ticker = self._has("watchTicker")
            for symbol in self.symbols:
                streams.append(_Stream(
                    key=f"prices:{symbol}",
                    watch=partial(ex.watch_ticker, symbol) if watch_ticker else None,
                    handle=partial(self._deliver_ticker, symbol),
                    poll=partial(self._poll_prices, [symbol]), poll_interval=self.poll_interval))
        if self.stream_orders and self._has("watchOrders"):
            for symbol in self.symbols:
                streams.append(_Stream(key=f"orders:{symbol}", watch=partial(ex.watch_orders, symbol),
                                       handle=self._deliver_orders, poll=None,
                                       poll_interval=self.poll_interval, essential=False))
        derivatives = self._derivative_symbols
        if self.stream_positions and derivatives:
            streams.append(_Stream(
                key="positions",
                watch=partial(ex.watch_positions, derivatives) if self._has("watchPositions") else None,
                handle=self._store_positions, poll=self._poll_positions,
                poll_interval=self.positions_poll_interval, essential=False))
        return streams

    async def _run(self, stream: _Stream) -> None:
        """Stream with reconnect/back-off; fall back to polling when unsupported or failing."""
        failures = 0
        resync = True  # also right after the first subscription: covers the start-up gap
        catch_up = False
        confirm = False  # resynced, waiting for the first message of the new subscription
        while not self._closed:
            if stream.watch is None or failures >= self.max_stream_failures:
                if stream.poll is None:
                    if stream.watch is None:
                        return
                else:
                    await self._poll_phase(stream)
                    failures, resync = 0, True
                    continue
            watch_task = asyncio.ensure_future(stream.watch())
            try:
                if resync:
                    resync = not await self._after_subscribe(stream, watch_task)
                    confirm = not resync
                elif catch_up:
                    await self._catch_up_when_quiet(stream, watch_task)
                message = await watch_task
            except asyncio.CancelledError:
                watch_task.cancel()
                raise
            except ccxt.NotSupported as exc:
                self._report("stream", f"{stream.key}: not supported, polling: {exc}")
                stream.watch = None
                continue
            except Exception as exc:
                if self._closed:
                    return
                failures += 1
                stream.healthy = False
                self._report("stream", f"{stream.key} failed ({failures} in a row): "
                             f"{type(exc).__name__}: {exc}")
                resync = True
                await self.clock.sleep(self._backoff(failures))
                continue
            failures = 0
            stream.healthy = True
            try:
                ok = await stream.handle(message)
            except Exception as exc:  # the sink failed: resync so nothing is lost
                self._report("sink", f"{stream.key}: {type(exc).__name__}: {exc}")
                ok = False
            if not ok:
                resync = True
            elif confirm:
                # The subscription may have gone live only after the resync's backfill (a slow
                # handshake): what landed in between was neither streamed nor backfilled.
                confirm = False
                if stream.confirm is not None and not await stream.confirm():
                    resync = True
            catch_up = stream.resync is not None and self.catch_up_delay > 0

    async def _catch_up_when_quiet(self, stream: _Stream, watch_task: asyncio.Future[Any]) -> None:
        """Resync once if the stream stays quiet ``catch_up_delay`` seconds after a message.

        ccxt signals only messages that arrive while a watch is pending; those landing while
        the previous one was being handled wait in its cache for the next message, which on
        a quiet market may never come. A backfill (the ledger dedupes) delivers them.
        """
        assert stream.resync is not None
        timer = asyncio.ensure_future(self.clock.sleep(self.catch_up_delay))
        try:
            await asyncio.wait({watch_task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        if not watch_task.done():
            await stream.resync()

    async def _after_subscribe(self, stream: _Stream, watch_task: asyncio.Future[Any]) -> bool:
        """Give a (re)subscription time to connect, mark it healthy, backfill what was missed.

        Backfill is retried with back-off until it succeeds or the watch yields (then the caller
        keeps the resync pending). Returns True once resynced.
        """
        await self.clock.sleep(self.resubscribe_delay)
        if watch_task.done() and watch_task.exception() is not None:
            return False  # the loop reports it
        stream.healthy = True
        if stream.resync is None:
            return True
        attempt = 0
        while not self._closed:
            if await stream.resync():
                return True
            if watch_task.done():
                return False
            attempt += 1
            await self.clock.sleep(self._backoff(attempt))
        return False

    async def _poll_phase(self, stream: _Stream) -> None:
        """REST polling for ``poll_period`` (forever when the stream is unsupported)."""
        assert stream.poll is not None
        stream.mode = "poll"
        forever = stream.watch is None
        deadline = self.clock.monotonic() + self.poll_period
        try:
            while not self._closed and (forever or self.clock.monotonic() < deadline):
                try:
                    stream.healthy = await stream.poll()
                except Exception as exc:
                    stream.healthy = False
                    self._report("poll", f"{stream.key}: {type(exc).__name__}: {exc}")
                await self.clock.sleep(stream.poll_interval)
        finally:
            stream.mode = "stream"

    async def _deliver_trades(self, trades: Any, *, symbol: str) -> bool:
        """Convert and deliver streamed trades; False if the sink failed on one."""
        if isinstance(trades, Mapping) or not isinstance(trades, Iterable):
            self._report("malformed", f"fills {symbol}: expected a list of trades")
            return True
        return await self._deliver_fills(await self._trades_to_fills(trades, symbol))

    async def _deliver_fills(self, fills: Iterable[Fill]) -> bool:
        """Hand the fills not delivered yet to the sink in one batch (one group commit)."""
        assert self._sink is not None
        batch = [f for f in sorted(fills, key=lambda f: (f.ts, f.trade_id)) if f.trade_id not in self._delivered]
        if not batch:
            return True
        try:
            await self._sink.on_fills(batch)
        except Exception as exc:  # none may be assumed journaled: the next backfill redelivers them
            ids = ", ".join(f.trade_id for f in batch[:3]) + (f" (+{len(batch) - 3} more)" if len(batch) > 3 else "")
            self._report("sink", f"fills {ids}: {type(exc).__name__}: {exc}")
            for fill in batch:
                floor = self._redeliver_from.get(fill.symbol)
                self._redeliver_from[fill.symbol] = fill.ts if floor is None else min(floor, fill.ts)
            return False
        for fill in batch:
            self._delivered.put(fill.trade_id)
            if fill.ts > self._last_fill_ts.get(fill.symbol, 0.0):
                self._last_fill_ts[fill.symbol] = fill.ts
        return True

    async def _backfill(self, symbol: str) -> bool:
        """Fetch and deliver fills since the last seen one minus the overlap; False on failure."""
        since = self._last_fill_ts.get(symbol, self._started_wall) - self.backfill_overlap
        floor = self._redeliver_from.pop(symbol, None)
        if floor is not None:
            since = min(since, floor)
        self._resync_since[symbol] = since
        try:
            fills = await self._fetch_trades(symbol, since, skip_delivered=True)
        except herr.VenueError as exc:
            self._report("backfill", f"{symbol}: {exc}")
            self._redeliver_from[symbol] = since
            return False
        return await self._deliver_fills(fills)

    async def _safety_backfills(self) -> None:
        """Every ``safety_backfill_interval``: deliver each symbol's fills since the previous run."""
        while not self._closed:
            await self.clock.sleep(self.safety_backfill_interval)
            for symbol in self.symbols:
                started = self.clock.time()
                since = self._safety_since.get(symbol, self._started_wall) - self.backfill_overlap
                try:
                    fills = await self._fetch_trades(symbol, since, skip_delivered=True)
                except herr.VenueError as exc:
                    self._report("backfill", f"{symbol} (safety): {exc}")
                    continue
                if await self._deliver_fills(fills):
                    self._safety_since[symbol] = started

    async def _confirm_backfill(self, symbol: str) -> bool:
        """Backfill again, from where the resync's backfill started, once the stream is proven live."""
        floor = self._resync_since.get(symbol)
        if floor is not None:
            current = self._redeliver_from.get(symbol)
            self._redeliver_from[symbol] = floor if current is None else min(current, floor)
        return await self._backfill(symbol)

    async def _deliver_tickers(self, tickers: Any) -> bool:
        assert self._sink is not None
        if not isinstance(tickers, Mapping):
            self._report("malformed", "prices: expected a mapping of tickers")
            return True
        received, now = self.clock.monotonic(), self.clock.time()
        for symbol, ticker in tickers.items():
            if symbol not in self.symbols:
                continue
            try:
                price = ticker_to_price(self.name, symbol, ticker, received, now)
            except MalformedMessage as exc:
                self._report("malformed", str(exc))
                continue
            await self._sink.on_price(price)
        return True

    async def _deliver_ticker(self, symbol: str, ticker: Any) -> bool:
        return await self._deliver_tickers({symbol: ticker})

    async def _poll_prices(self, symbols: Sequence[str] | None = None) -> bool:
        wanted = list(symbols or self.symbols)
        if self._has("fetchBidsAsks"):
            tickers = await self._call("read", "fetch_bids_asks", wanted)
        else:
            tickers = {s: await self._call("read", "fetch_ticker", s) for s in wanted}
        return await self._deliver_tickers(tickers)

    async def _deliver_orders(self, orders: Any) -> bool:
        assert self._sink is not None
        if isinstance(orders, Mapping) or not isinstance(orders, Iterable):
            self._report("malformed", "orders: expected a list of orders")
            return True
        for order in orders:
            cid = client_order_id_of(order) if isinstance(order, Mapping) else None
            if cid is None or self._own_cid(cid) is None:
                continue
            try:
                report = self._order_report(order, client_order_id=cid)
            except MalformedMessage as exc:
                self._report("malformed", str(exc))
                continue
            await self._sink.on_order_update(self.name, report)
        return True

    async def _store_positions(self, positions: Any) -> bool:
        if isinstance(positions, Mapping) or not isinstance(positions, Iterable):
            self._report("malformed", "positions: expected a list")
            return True
        updates: dict[str, Decimal] = {}
        for position in positions:
            symbol = position.get("symbol") if isinstance(position, Mapping) else None
            if symbol not in self.symbols or not isinstance(symbol, str):
                continue
            try:
                updates[symbol] = updates.get(symbol, ZERO) + position_amount(position, self._markets[symbol])
            except MalformedMessage as exc:
                self._report("malformed", str(exc))
        self.streamed_positions.update(updates)
        return True

    async def _poll_positions(self) -> bool:
        positions = await self.fetch_positions()
        self.streamed_positions.update({s: q for s, q in positions.items() if is_derivative(s)})
        return True

    async def close(self) -> None:
        """Stop the stream loops and close the exchange's HTTP and websocket connections."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        closer = getattr(self.exchange, "close", None)
        if closer is not None:
            try:
                await closer()
            except Exception as exc:  # closing must not fail shutdown
                log.warning("venue_close_failed", venue=self.name,
                            error=sanitize_message(repr(exc), self._secrets))
