"""Real exchanges through ccxt: REST via ``ccxt.async_support``, streams via ``ccxt.pro``.

:class:`CcxtVenue` implements :class:`~hedgerd.connectors.base.Venue` on top of one ccxt
exchange object: orders, order lookups, positions and fill listings here; requests, markets and
error reports in :mod:`~hedgerd.connectors.ccxt.client`; fills to the sink and backfills in
:mod:`~hedgerd.connectors.ccxt.fills`; stream loops in :mod:`~hedgerd.connectors.ccxt.streams`.
Everything ccxt returns crosses into hedgerd through the pure converters of
:mod:`hedgerd.connectors.ccxt.convert`, which turn floats into ``Decimal`` via ``str`` and
reject malformed payloads; every ccxt exception leaves through
:func:`~hedgerd.connectors.ccxt.errors.map_ccxt_error` as a :class:`~hedgerd.errors.VenueError`
with secrets stripped.

The start-up backfill only covers ``start()`` minus the overlap; fills from before (daemon
down) are for the engine's reconciliation via ``fetch_fills_since``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

import ccxt
import structlog

from hedgerd import errors as herr
from hedgerd.clock import Clock
from hedgerd.connectors.base import VenueEventSink
from hedgerd.connectors.ccxt import deadman
from hedgerd.connectors.ccxt.client import BoundedMap, CcxtClient
from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    account_margin_ratio,
    client_order_id_of,
    cursor_seconds,
    market_info_from_ccxt,
    optional_decimal,
    per_unit,
    position_amount,
    position_risk,
    to_decimal,
    trade_to_fill,
    with_symbol,
)
from hedgerd.connectors.ccxt.errors import sanitize_message
from hedgerd.connectors.ccxt.fills import FillFeed
from hedgerd.connectors.ccxt.funding import fetch_funding
from hedgerd.connectors.ccxt.funding import supported as funding_supported
from hedgerd.connectors.ccxt.streams import StreamSupervisor
from hedgerd.instruments import InstrumentKind
from hedgerd.models import (
    ZERO,
    Fill,
    FundingPayment,
    HedgeIntent,
    MarketInfo,
    OrderReport,
    OrderStatus,
    OrderType,
    PositionRisk,
    is_derivative,
    split_symbol,
)
from hedgerd.reconciliation import PositionSnapshot

log = structlog.get_logger("hedgerd.ccxt")

#: Fills of orders looked up lately (a lookup repeats while an order settles; one per order in flight).
ORDER_FILLS_KEPT = 1_000


def every_derivative(markets: Mapping[str, MarketInfo], underlyings: Sequence[str],
                     exclude: frozenset[str] = frozenset()) -> list[str]:
    """The symbols of every listed option, future and perpetual whose underlying is one of
    ``underlyings`` (inventory ``"*"``), but those in ``exclude``: what another venue entry on the same
    account hedges with is its position, not this inventory's."""
    wanted = set(underlyings)
    return sorted(symbol for symbol, market in markets.items()
                  if market.instrument is not None and market.instrument.underlying in wanted
                  and market.instrument.kind is not InstrumentKind.SPOT and symbol not in exclude)


class CcxtVenue:
    """A :class:`~hedgerd.connectors.base.Venue` backed by a ccxt (pro) exchange object.

    ``exchange`` is a ``ccxt.pro`` / ``ccxt.async_support`` instance (or a test double);
    ``symbols`` are the unified symbols this venue streams fills and prices for.
    ``own_client_id_prefix``: client order ids not starting with it are not attributed to us
    (desk orders on an inventory venue keep ``client_order_id=None``).
    The fill options are :class:`~hedgerd.connectors.ccxt.fills.FillFeed`'s, the stream options
    :class:`~hedgerd.connectors.ccxt.streams.StreamSupervisor`'s.
    """

    def __init__(self, name: str, exchange: Any, clock: Clock, *, symbols: Sequence[str],
                 underlyings: Sequence[str] = (), exclude_symbols: Sequence[str] = (),
                 price_symbols: Sequence[str] = (),
                 own_client_id_prefix: str | None = None, secrets: Sequence[str] = (),
                 stream_orders: bool = True, stream_positions: bool = True, resolve_client_ids: bool = True,
                 poll_interval: float = 1.0, positions_poll_interval: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0, max_stream_failures: int = 5,
                 poll_period: float = 60.0, backfill_overlap: float = 10.0, resubscribe_delay: float = 0.5,
                 backfill_page_limit: int = 500, backfill_max_pages: int = 20, listing_max_pages: int = 1000,
                 catch_up_delay: float = 0.0, backfill_when_live: bool = False, safety_backfill_interval: float = 0.0,
                 rng: random.Random | None = None) -> None:
        if not symbols and not underlyings:
            raise ValueError(f"venue {name}: no symbols to serve")
        # inventory '*': every derivative of these underlyings, known once the markets are loaded
        self.underlyings = tuple(dict.fromkeys(underlyings))
        self.exclude_symbols = frozenset(exclude_symbols)
        self.name = name
        self.exchange = exchange
        self.clock = clock
        self.symbols: tuple[str, ...] = tuple(dict.fromkeys(symbols))
        self.own_client_id_prefix = own_client_id_prefix
        self.client = CcxtClient(name, exchange, clock, own_client_id_prefix=own_client_id_prefix, secrets=secrets)
        self.fills = FillFeed(self.client, self.symbols, resolve_client_ids=resolve_client_ids,
                              backfill_overlap=backfill_overlap, backfill_page_limit=backfill_page_limit,
                              backfill_max_pages=backfill_max_pages, listing_max_pages=listing_max_pages,
                              safety_backfill_interval=safety_backfill_interval)
        self.streams = StreamSupervisor(
            self.client, self.fills, self.symbols, price_symbols=price_symbols,
            fetch_positions=self.fetch_positions,
            stream_orders=stream_orders, stream_positions=stream_positions, poll_interval=poll_interval,
            positions_poll_interval=positions_poll_interval, backoff_initial=backoff_initial,
            backoff_max=backoff_max, max_stream_failures=max_stream_failures, poll_period=poll_period,
            resubscribe_delay=resubscribe_delay, catch_up_delay=catch_up_delay,
            backfill_when_live=backfill_when_live, rng=rng)
        self._order_fills = BoundedMap(ORDER_FILLS_KEPT)  # venue order id -> (filled, fills)
        self._account_ratio: bool | None = None  # whether the balance reports a margin ratio (None: not asked)
        self._no_order_trades: set[str] = set()  # symbols where fetch_order_trades is unsupported
        self._funding_warned = False

    # ----------------------------------------------------------------- properties
    @property
    def connected(self) -> bool:
        """True once started and while the fills and price streams (or their polling) are healthy."""
        return self.streams.started and not self.client.closed and self.streams.healthy

    def stream_modes(self) -> dict[str, str]:
        """``{stream key: "stream" | "poll"}`` for status and tests."""
        return self.streams.stream_modes()

    @property
    def streamed_positions(self) -> dict[str, Decimal]:
        """Latest positions seen on the positions stream (or its polling fallback), base units."""
        return self.streams.positions

    # ----------------------------------------------------------------- markets
    async def _ensure_markets(self) -> None:
        if not self.client.markets:
            await self.load_markets()

    async def load_markets(self) -> dict[str, MarketInfo]:
        """Instrument metadata for every listed market ccxt can describe (malformed ones skipped)."""
        raw = await self.client.call("read", "load_markets")
        if not isinstance(raw, Mapping):
            raise herr.TransientVenueError(f"{self.name}: load_markets returned {type(raw).__name__}")
        mode = getattr(self.exchange, "precisionMode", ccxt.TICK_SIZE)
        markets: dict[str, MarketInfo] = {}
        for symbol, market in raw.items():
            try:
                info = market_info_from_ccxt(market, mode, amount_unit=self.client.traits.amount_unit)
            except MalformedMessage:
                continue
            markets[symbol] = info
        self.client.markets = markets
        if self.underlyings and not self.streams.started:
            self._serve_symbols([*self.symbols, *every_derivative(markets, self.underlyings, self.exclude_symbols)])
        return dict(markets)

    def _serve_symbols(self, symbols: Sequence[str]) -> None:
        """Serve ``symbols`` (fills, prices, positions); only before the streams start."""
        self.symbols = tuple(dict.fromkeys(symbols))
        self.fills.symbols = self.symbols
        self.streams.serve(self.symbols)

    # ----------------------------------------------------------------- orders
    def _to_precision(self, method: str, symbol: str, value: Decimal) -> float:
        try:
            text = getattr(self.exchange, method)(symbol, float(value))
        except ccxt.BaseError as exc:
            raise self.client.map_error(exc, "create") from None
        try:
            number = to_decimal(text, f"{symbol} precision", positive=True)
        except MalformedMessage:
            raise herr.InvalidOrder(f"{symbol}: {value} rounds to {text!r}") from None
        return float(number)

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        """Send ``intent`` as a market, IOC limit or post-only limit order with its client id (``amount``
        in contracts of a market with an instrument, else base units; ccxt's unit is the venue's, see
        traits.py); a post-only order that would take raises PostOnlyRejected."""
        await self._ensure_markets()
        symbol = intent.symbol
        self.client.market(symbol)
        if amount <= 0:
            raise herr.InvalidOrder(f"{intent.client_order_id}: amount must be positive, got {amount}")
        traits = self.client.traits
        venue_amount = self._to_precision("amount_to_precision", symbol,
                                          amount * per_unit(self.client.market(symbol), traits.amount_unit))
        params: dict[str, Any] = {traits.client_id_send_param: intent.client_order_id}
        limit: float | None = None
        order_type = "market"
        if intent.order_type is OrderType.LIMIT_IOC:
            if price is None or price <= 0:
                raise herr.InvalidOrder(f"{intent.client_order_id}: an IOC limit order needs a price")
            order_type = "limit"
            limit = self._to_precision("price_to_precision", symbol, price)
            params["timeInForce"] = "IOC"
        elif intent.order_type is OrderType.POST_ONLY:  # ccxt's unified flag: GTX on Binance USD-M
            if price is None or price <= 0:
                raise herr.InvalidOrder(f"{intent.client_order_id}: a post-only order needs a price")
            order_type = "limit"
            limit = self._to_precision("price_to_precision", symbol, price)
            params["postOnly"] = True
            params.update(traits.post_only_params)
        if intent.reduce_only and is_derivative(symbol):
            params["reduceOnly"] = True
        order = await self.client.call("create", "create_order", symbol, order_type, intent.side.value,
                                       venue_amount, limit, params)
        label_method = traits.client_id_label_lookup
        if label_method is not None:
            await self._check_not_resent(label_method, symbol, intent.client_order_id)
        try:
            return self.client.order_report(with_symbol(order, symbol), client_order_id=intent.client_order_id)
        except MalformedMessage as exc:
            # Accepted, but we cannot read the answer: the caller must look the order up.
            raise herr.OrderOutcomeUnknown(f"{intent.client_order_id}: unreadable response: {exc}") from None

    def _client_id_params(self, client_order_id: str) -> dict[str, Any] | None:
        param = self.client.traits.client_id_lookup_param
        return None if param is None else {param: client_order_id}

    async def _check_not_resent(self, method: str, symbol: str, client_order_id: str) -> None:
        """After a send on a label venue: raise DuplicateOrder if the transport placed it twice.

        ccxt sends Deribit orders as GET, which aiohttp re-sends once when a reused connection
        closes unanswered; the answer then shows one order while two exist, and no later look-up
        would happen. One read per order; when it fails the outcome is left to the executor's
        look-up (OrderOutcomeUnknown) rather than assumed single.
        """
        try:
            await self._find_by_label(method, symbol, client_order_id)
        except herr.DuplicateOrder:
            raise
        except herr.VenueError as exc:
            raise herr.OrderOutcomeUnknown(f"{client_order_id}: placed, but the check for a re-sent duplicate "
                                           f"failed: {exc}") from None

    async def _find_by_label(self, method: str, symbol: str, client_order_id: str) -> Any:
        """The one order under the label ``client_order_id``; None if none, DuplicateOrder if several."""
        market = self.exchange.market(symbol)
        currency = market.get("settle") or market.get("base")
        answer = await self.client.call("read", method, {"currency": currency, "label": client_order_id})
        raw = answer.get("result") if isinstance(answer, Mapping) else None
        if not isinstance(raw, list):
            raise herr.TransientVenueError(f"{self.name}: order lookup by label {client_order_id}: no result list")
        orders = [o for o in self.exchange.parse_orders(raw)
                  if isinstance(o, Mapping) and client_order_id_of(o) == client_order_id]
        if len(orders) > 1:
            ids = tuple(str(o.get("id")) for o in orders)
            raise herr.DuplicateOrder(f"{self.name}: {len(orders)} orders under client order id "
                                      f"{client_order_id}: {', '.join(ids)}", client_order_id, ids)
        return orders[0] if orders else None

    async def _find_order(self, symbol: str, client_order_id: str) -> Any:
        """The raw ccxt order with that client id, by direct lookup or by scanning; None if unknown.

        Raises :class:`~hedgerd.errors.DuplicateOrder` where the venue's ids are labels and more
        than one order carries ours.
        """
        label_method = self.client.traits.client_id_label_lookup
        if label_method is not None:
            return await self._find_by_label(label_method, symbol, client_order_id)
        params = self._client_id_params(client_order_id)
        if params is not None:
            params.update(self.client.traits.fetch_order_extra)
            try:
                return await self.client.call("read", "fetch_order", None, symbol, params)
            except herr.OrderNotFound:
                return None
        methods = ["fetch_open_orders"]
        methods.append("fetch_closed_orders" if self.client.has("fetchClosedOrders") else "fetch_orders")
        for method in methods:
            try:
                orders = await self.client.call("read", method, symbol)
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
            if self.client.has("fetchOrderTrades") and symbol not in self._no_order_trades:
                try:
                    trades = await self.client.call("read", "fetch_order_trades", key, symbol)
                except herr.InvalidOrder:  # NotSupported for this market type (binanceusdm)
                    self._no_order_trades.add(symbol)
            if trades is None:
                since = order.get("timestamp")
                trades = [t for t in await self.client.call("read", "fetch_my_trades", symbol, since)
                          if isinstance(t, Mapping) and str(t.get("order")) == key]
        except herr.VenueError as exc:
            self.client.report("backfill", f"trades of order {cid}: {exc}")
            return ()
        received = self.clock.monotonic()
        fills: list[Fill] = []
        defaults = {"side": order.get("side"), "timestamp": order.get("timestamp")}
        for trade in trades or ():
            try:
                fills.append(trade_to_fill(self.name, trade, self.client.markets, received, expected_symbol=symbol,
                                           defaults=defaults, client_order_id=cid,
                                           amount_unit=self.client.traits.amount_unit))
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
        result = tuple(sorted(fills, key=lambda f: (f.ts, f.trade_id)))
        self._order_fills.put(key, (filled, result))
        return result

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Look an order up by client id (with its fills when filled); None if the venue never saw it."""
        await self._ensure_markets()
        self.client.market(symbol)
        order = await self._find_order(symbol, client_order_id)
        if order is None:
            return None
        order = with_symbol(order, symbol)
        fills = await self._fills_of(order, symbol, client_order_id)
        try:
            return self.client.order_report(order, client_order_id=client_order_id, fills=fills)
        except MalformedMessage as exc:
            self.client.report("malformed", str(exc))
            raise herr.TransientVenueError(f"{client_order_id}: unreadable order: {exc}") from None

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Cancel by client id; None if the order is unknown or already gone (filled/canceled)."""
        await self._ensure_markets()
        self.client.market(symbol)
        params = self._client_id_params(client_order_id)
        order_id: str | None = None
        if params is None:
            found = await self._find_order(symbol, client_order_id)
            if not isinstance(found, Mapping) or found.get("id") is None:
                return None
            order_id = str(found["id"])
            params = {}
        try:
            order = await self.client.call("cancel", "cancel_order", order_id, symbol, params)
        except herr.OrderNotFound:
            return None
        try:
            return self.client.order_report(with_symbol(order, symbol), client_order_id=client_order_id)
        except MalformedMessage as exc:
            self.client.report("malformed", str(exc))
            return OrderReport(client_order_id=client_order_id, symbol=symbol, status=OrderStatus.UNKNOWN)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Open orders on ``symbol`` (default: every served symbol); ``client_order_id`` "" if none."""
        await self._ensure_markets()
        reports: list[OrderReport] = []
        for sym in ([symbol] if symbol else self.symbols):
            for order in await self.client.call("read", "fetch_open_orders", sym) or ():
                try:
                    reports.append(self.client.order_report(with_symbol(order, sym)))
                except MalformedMessage as exc:
                    self.client.report("malformed", str(exc))
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
        derivatives = [s for s in self.symbols if is_derivative(s)]
        if derivatives:
            rows: dict[str, int] = {}
            for symbol in derivatives:
                result[symbol] = ZERO
            for position in await self.client.call("read", "fetch_positions", derivatives) or ():
                held = position.get("symbol") if isinstance(position, Mapping) else None
                if not isinstance(held, str) or held not in result:
                    continue
                try:
                    result[held] += position_amount(position, self.client.markets[held],
                                                    self.client.traits.amount_unit)
                except MalformedMessage as exc:
                    self.client.report("malformed", str(exc))
                    raise herr.TransientVenueError(f"{self.name}: malformed position: {exc}") from None
                rows[held] = rows.get(held, 0) + 1
                stamp = cursor_seconds(position.get("timestamp"))
                if stamp is not None and rows[held] == 1:
                    as_of[held] = stamp
                else:  # hedge mode: each side has its own time, none is the symbol's
                    as_of.pop(held, None)
        spot = [s for s in self.symbols if not is_derivative(s)]
        if spot:
            balance = await self.client.call("read", "fetch_balance")
            totals = balance.get("total") if isinstance(balance, Mapping) else None
            if not isinstance(totals, Mapping):
                raise herr.TransientVenueError(f"{self.name}: balance without totals")
            for symbol in spot:
                market = self.client.markets.get(symbol)
                if market is not None:
                    result.setdefault(market.base, ZERO)
                    result.setdefault(market.quote, ZERO)
            for asset, total in totals.items():
                if total is None:
                    continue
                try:
                    result[str(asset)] = to_decimal(total, f"balance {asset}")
                except MalformedMessage as exc:
                    self.client.report("malformed", str(exc))
                    raise herr.TransientVenueError(f"{self.name}: malformed balance: {exc}") from None
            stamp = cursor_seconds(balance.get("timestamp"))
            if stamp is not None:
                as_of.update((key, stamp) for key in result if not is_derivative(key))
        return PositionSnapshot(result, as_of)

    async def fetch_collateral(self) -> dict[str, Decimal]:
        """Currency -> account equity (ccxt's balance ``total``: Deribit's ``equity``, with the
        options' value and futures' floating PnL; :class:`~hedgerd.connectors.base.CollateralSource`)."""
        await self._ensure_markets()
        balance = await self.client.call("read", "fetch_balance")
        totals = balance.get("total") if isinstance(balance, Mapping) else None
        if not isinstance(totals, Mapping):
            raise herr.TransientVenueError(f"{self.name}: balance without totals")
        equity: dict[str, Decimal] = {}
        for currency, total in totals.items():
            if total is None:
                continue
            try:
                equity[str(currency)] = to_decimal(total, f"balance {currency}")
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
                raise herr.TransientVenueError(f"{self.name}: malformed balance: {exc}") from None
        return equity

    async def fetch_position_risk(self, symbol: str) -> PositionRisk | None:
        """The liquidation price and margin ratio of our position in ``symbol`` (``fetch_positions``);
        None when flat. Several rows (hedge mode) are not one position's figures: the first non-flat
        row is taken, as hedgerd trades one-way. Malformed: TransientVenueError."""
        await self._ensure_markets()
        market = self.client.markets[symbol]
        for position in await self.client.call("read", "fetch_positions", [symbol]) or ():
            if not isinstance(position, Mapping) or position.get("symbol") != symbol:
                continue
            try:
                risk = position_risk(position, market, self.name, self.client.traits.amount_unit)
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
                raise herr.TransientVenueError(f"{self.name}: malformed position: {exc}") from None
            if risk.position:
                return risk if risk.margin_ratio is not None else await self._with_account_ratio(risk)
        return None

    async def _with_account_ratio(self, risk: PositionRisk) -> PositionRisk:
        """``risk`` with the account's maintenance margin / margin balance when ccxt's position has
        no margin ratio (Deribit): one balance request per poll, given up on a venue whose balance
        does not report it either."""
        if self._account_ratio is False:
            return risk
        currency = split_symbol(risk.symbol)[2] or self.client.markets[risk.symbol].quote
        balance = await self.client.call("read", "fetch_balance", {"currency": currency})
        try:
            ratio = account_margin_ratio(balance, currency)
        except MalformedMessage as exc:
            self.client.report("malformed", str(exc))
            raise herr.TransientVenueError(f"{self.name}: malformed balance: {exc}") from None
        self._account_ratio = ratio is not None
        return risk if ratio is None else replace(risk, margin_ratio=ratio)

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        """Our account's fills on the served symbols since ``since`` (epoch seconds), oldest first."""
        await self._ensure_markets()
        fills: list[Fill] = []
        for listing in self.fills.listings():
            fills.extend(await self.fills.fetch_listing(listing, since, whole=True))
        return sorted(fills, key=lambda f: (f.ts, f.trade_id))

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        """Funding payments on the served perpetuals since ``since`` (see :mod:`.funding`); none,
        with a warning on the first call, where ccxt cannot list them."""
        await self._ensure_markets()
        if not funding_supported(self.client) and not self._funding_warned \
                and any(is_derivative(s) for s in self.symbols):
            self._funding_warned = True
            log.warning("funding_history_unsupported", venue=self.name,
                        detail="no funding history on this exchange: its funding is not booked")
        return await fetch_funding(self.client, self.symbols, since)

    # ----------------------------------------------------------------- dead-man switch
    @property
    def dead_man_switch(self) -> str | None:
        """The venue's dead-man switch hedgerd can use (see :mod:`.deadman`), None if none."""
        return deadman.switch_of(str(getattr(self.exchange, "id", "")))

    async def arm_dead_man_switch(self, symbols: Sequence[str], window: float) -> None:
        """(Re)start the switch: the venue cancels the open orders of ``symbols`` unless this is
        called again within ``window`` seconds."""
        await self._ensure_markets()
        await deadman.set_countdown(self.client, symbols, window)

    async def disarm_dead_man_switch(self, symbols: Sequence[str]) -> None:
        """Stop the switch of ``symbols`` (clean shutdown, after cancelling)."""
        await deadman.set_countdown(self.client, symbols, 0)

    # ----------------------------------------------------------------- streaming
    async def start(self, sink: VenueEventSink) -> None:
        """Load markets (if needed) and start the stream loops; returns without waiting for data."""
        if self.streams.started:
            return
        self.client.sink = sink
        await self._ensure_markets()
        missing = [s for s in (*self.symbols, *self.streams.price_symbols) if s not in self.client.markets]
        if missing:
            raise herr.ConfigError(f"venues.{self.name}", f"not listed on {self.exchange.id}: {missing}")
        self.fills.started_wall = self.clock.time()
        self.streams.start()

    async def close(self) -> None:
        """Stop the stream loops and close the exchange's HTTP and websocket connections."""
        if self.client.closed:
            return
        self.client.closed = True
        await self.streams.stop()
        closer = getattr(self.exchange, "close", None)
        if closer is not None:
            try:
                await closer()
            except Exception as exc:  # closing must not fail shutdown
                log.warning("venue_close_failed", venue=self.name,
                            error=sanitize_message(repr(exc), self.client.secrets))
