"""Matching engine of the exchange simulator, shared by every wire protocol.

Pure state machine: no I/O and no asyncio. Time comes in as epoch milliseconds from an
injected callable, randomness from a seeded :class:`random.Random`. Two account kinds are
kept side by side: ``spot`` (balances per asset, fees in the received asset) and ``usdm``
(USDT-margined perpetuals, one-way position mode, fees and PnL in USDT).

The market is a synthetic book rebuilt around a mid per symbol (shared by spot and perp)
that follows the simulators' one market model (:mod:`hedgerd.sim.market`: zero-drift GBM,
stepped by the time elapsed between requests). Market and IOC/FOK limit orders walk the
book's levels; GTC and GTX (post-only) limit orders rest and fill as makers from the market's
trade flow, behind the queue at their price, only when it trades through them
(:mod:`hedgerd.exchange_sim.resting`, docs/passive.md); a GTX order that would take is refused
with -5022, as Binance USD-M does.
Synthetic client flow (the market model's :class:`~hedgerd.sim.market.ClientFlow`: Poisson
arrivals, side 50/50, exponential size with the instrument's mean) fills the spot account
as a maker at the best bid or ask, so inventory moves as on a market-making desk. Fees:
maker and taker rates per market kind (:class:`EngineConfig`); client fills pay the spot
maker fee like any maker fill.

Every state change is reported to listeners as :class:`OrderEvent` / :class:`AccountEvent`
(the server turns them into user-data stream messages). The data types are in
:mod:`hedgerd.exchange_sim.model`, balances, positions and settlement in
:mod:`hedgerd.exchange_sim.accounts`.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal

from hedgerd.exchange_sim.accounts import Accounts
from hedgerd.exchange_sim.model import (
    ALLOWED_CLIENT_ID,
    CLIENT_ID_CHARS,
    KINDS,
    ONE,
    SPOT,
    USDM,
    ZERO,
    AccountEvent,
    ApiError,
    Book,
    BookLevel,
    EngineConfig,
    InstrumentConfig,
    MarketKind,
    Order,
    OrderEvent,
    Position,
    PriceModel,
    SymbolFilters,
    TickerStats,
    Trade,
    UserEvent,
    quantize_down,
    quantize_up,
    wall_ms,
)
from hedgerd.exchange_sim.order_rules import check_order_params, walk_book
from hedgerd.exchange_sim.resting import QueueModel
from hedgerd.sim.market import ClientFlow, poisson_count

# --------------------------------------------------------------------------- engine


class MatchingEngine(Accounts):
    """The simulated exchange: markets, books, both accounts, orders and trade history."""

    def __init__(self, config: EngineConfig | None = None, now_ms: Callable[[], int] = wall_ms) -> None:
        self.config = config or EngineConfig()
        self._now_ms = now_ms
        self._rng = random.Random(self.config.seed)
        self._queue = QueueModel(self.config)
        self.instruments: dict[str, InstrumentConfig] = {i.symbol: i for i in self.config.instruments}
        self._prices: dict[str, PriceModel] = {
            i.symbol: PriceModel(mid=float(i.initial_price), volatility=i.volatility,
                                 open=float(i.initial_price), high=float(i.initial_price),
                                 low=float(i.initial_price))
            for i in self.config.instruments
        }
        self._filters: dict[tuple[MarketKind, str], SymbolFilters] = {}
        for inst in self.config.instruments:
            self._filters[(SPOT, inst.symbol)] = SymbolFilters(
                tick_size=inst.spot_tick, step_size=inst.spot_step, min_qty=inst.spot_step,
                max_qty=Decimal(9000), min_price=inst.spot_tick, max_price=Decimal(1_000_000),
                min_notional=inst.spot_min_notional)
            self._filters[(USDM, inst.symbol)] = SymbolFilters(
                tick_size=inst.usdm_tick, step_size=inst.usdm_step, min_qty=inst.usdm_step,
                max_qty=Decimal(1000), min_price=inst.usdm_tick, max_price=Decimal(1_000_000),
                min_notional=inst.usdm_min_notional)
        self._free: dict[str, Decimal] = dict(self.config.spot_balances)
        self._locked: dict[str, Decimal] = {asset: ZERO for asset in self._free}
        for inst in self.config.instruments:
            for asset in (inst.base, inst.quote):
                self._free.setdefault(asset, ZERO)
                self._locked.setdefault(asset, ZERO)
        self.usdm_wallet = self.config.usdm_wallet
        self._positions: dict[str, Position] = {s: Position(symbol=s) for s in self.instruments}
        self._leverage: dict[str, int] = {s: self.config.default_leverage for s in self.instruments}
        self._margin_type: dict[str, str] = {s: "cross" for s in self.instruments}
        self._orders: dict[MarketKind, dict[int, Order]] = {SPOT: {}, USDM: {}}
        # Orders that were open when placed, by id; one that is no longer open is dropped when
        # next seen, so the matcher's every-tick scan is over resting orders, not the history.
        self._resting: dict[MarketKind, dict[int, Order]] = {SPOT: {}, USDM: {}}
        self._trades: dict[MarketKind, deque[Trade]] = {
            kind: deque(maxlen=self.config.trade_history) for kind in KINDS}
        self._stats: dict[tuple[MarketKind, str], TickerStats] = {
            (k, s): TickerStats() for k in KINDS for s in self.instruments
        }
        self._next_order_id: dict[MarketKind, int] = {SPOT: 10_000_001, USDM: 80_000_001}
        self._next_trade_id: dict[MarketKind, int] = {SPOT: 1_000_001, USDM: 5_000_001}
        self.flow_symbols = tuple(s for s in self.config.flow_symbols if s in self.instruments)
        # One flow per symbol (its mean size); arrivals are drawn for all of them at once.
        self._flows = {s: ClientFlow(rate=0.0, mean_size=self.instruments[s].flow_mean_size)
                       for s in self.flow_symbols}
        self.flow_rate = self.config.flow_rate
        self._listeners: list[Callable[[UserEvent], None]] = []
        self._last_advance = now_ms()
        self.started_at = self._last_advance

    # ------------------------------------------------------------------ listeners and time

    def add_listener(self, listener: Callable[[UserEvent], None]) -> None:
        """Register a callback receiving every :class:`OrderEvent` and :class:`AccountEvent`."""
        self._listeners.append(listener)

    def _emit(self, event: UserEvent) -> None:
        for listener in list(self._listeners):
            listener(event)

    def now(self) -> int:
        """The engine clock, epoch milliseconds."""
        return self._now_ms()

    # ------------------------------------------------------------------ market data

    def symbols(self) -> list[str]:
        """Listed symbols (Binance ids, e.g. ``BTCUSDT``), the same on both market kinds."""
        return list(self.instruments)

    def instrument(self, symbol: str) -> InstrumentConfig:
        """The instrument of ``symbol``; ApiError -1121 (Invalid symbol) if it is not listed."""
        try:
            return self.instruments[symbol]
        except KeyError:
            raise ApiError(-1121, "Invalid symbol.") from None

    def filters(self, kind: MarketKind, symbol: str) -> SymbolFilters:
        """Tick, step, min quantity and min notional of ``symbol`` on ``kind``."""
        self.instrument(symbol)
        return self._filters[(kind, symbol)]

    def price_model(self, symbol: str) -> PriceModel:
        self.instrument(symbol)
        return self._prices[symbol]

    def mid(self, kind: MarketKind, symbol: str) -> Decimal:
        """The mid price rounded to the symbol's tick on ``kind``."""
        tick = self.filters(kind, symbol).tick_size
        return quantize_down(Decimal(repr(self._prices[symbol].mid)), tick)

    def mark_price(self, symbol: str) -> Decimal:
        """USD-M mark price (the mid on the perp tick)."""
        return self.mid(USDM, symbol)

    def book(self, kind: MarketKind, symbol: str, depth: int | None = None) -> Book:
        """The synthetic book around the current mid (rebuilt on every call, never depleted)."""
        model = self.price_model(symbol)
        filters = self._filters[(kind, symbol)]
        tick = filters.tick_size
        inst = self.instruments[symbol]
        mid = Decimal(repr(model.mid))
        half_spread = mid * self.config.spread_bps / Decimal(20_000)
        best_bid = quantize_down(mid - half_spread, tick)
        best_ask = quantize_up(mid + half_spread, tick)
        if best_ask <= best_bid:
            best_ask = best_bid + tick
        gap = max(tick, quantize_down(mid * self.config.level_gap_bps / Decimal(10_000), tick))
        levels = depth if depth is not None else self.config.book_levels
        levels = max(1, min(levels, self.config.book_levels))
        bids: list[BookLevel] = []
        asks: list[BookLevel] = []
        for i in range(levels):
            qty = quantize_down(inst.level_qty * (ONE + Decimal(i) / 2), filters.step_size)
            bid_price = best_bid - gap * i
            if bid_price > 0:
                bids.append(BookLevel(bid_price, qty))
            asks.append(BookLevel(best_ask + gap * i, qty))
        return Book(bids=tuple(bids), asks=tuple(asks), update_id=model.update_id)

    def ticker_stats(self, kind: MarketKind, symbol: str) -> TickerStats:
        self.instrument(symbol)
        return self._stats[(kind, symbol)]

    def set_mid(self, symbol: str, price: Decimal) -> None:
        """Move a symbol's mid (a price jump); resting orders that now cross are filled."""
        if price <= 0:
            raise ValueError("mid price must be positive")
        self.price_model(symbol).set(float(price))
        self._match_resting(self.now())

    def advance(self, now_ms: int | None = None) -> None:
        """Step every GBM mid to ``now_ms``, fill crossing resting orders, run client flow."""
        now = self.now() if now_ms is None else now_ms
        dt = (now - self._last_advance) / 1000.0
        if dt <= 0:
            return
        self._last_advance = now
        before = {(k, o.symbol): self._touch(k, o.symbol) for k in KINDS for o in self._resting_orders(k)}
        for model in self._prices.values():
            model.step(dt, self._rng)
        self._match_resting(now, before, dt)
        self._run_flow(dt, now)

    # ------------------------------------------------------------------ queries

    def orders(self, kind: MarketKind) -> list[Order]:
        """The orders of ``kind`` kept (every open one, the latest final ones), oldest first."""
        return list(self._orders[kind].values())

    def trades(self, kind: MarketKind, symbol: str | None = None) -> list[Trade]:
        """The trades of ``kind`` kept (the latest ``trade_history``), oldest first."""
        return [t for t in self._trades[kind] if symbol is None or t.symbol == symbol]

    def last_trade_id(self, kind: MarketKind) -> int:
        """The id of the latest trade of ``kind`` (one below the first id when none yet)."""
        return self._next_trade_id[kind] - 1

    def open_orders(self, kind: MarketKind, symbol: str | None = None) -> list[Order]:
        """Orders still resting (NEW or PARTIALLY_FILLED)."""
        if symbol is not None:
            self.instrument(symbol)
        return [o for o in self._resting_orders(kind) if symbol is None or o.symbol == symbol]

    def get_order(self, kind: MarketKind, symbol: str, order_id: int | None = None,
                  client_order_id: str | None = None) -> Order:
        """Look an order up by id or client id (the most recent one for a reused client id)."""
        self.instrument(symbol)
        if order_id is not None:
            order = self._orders[kind].get(order_id)
            if order is not None and order.symbol == symbol and (
                    client_order_id is None or order.client_order_id == client_order_id):
                return order
            raise ApiError(-2013, "Order does not exist.")
        if client_order_id is None:
            raise ApiError(-1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were "
                                  "empty/null!")
        for order in reversed(self._orders[kind].values()):
            if order.symbol == symbol and order.client_order_id == client_order_id:
                return order
        raise ApiError(-2013, "Order does not exist.")

    def my_trades(self, kind: MarketKind, symbol: str, *, order_id: int | None = None,
                  start_time: int | None = None, end_time: int | None = None,
                  from_id: int | None = None, limit: int = 500) -> list[Trade]:
        """Trades as ``myTrades`` / ``userTrades`` return them (ascending ids)."""
        self.instrument(symbol)
        limit = max(1, min(limit, 1000))
        rows = [t for t in self._trades[kind] if t.symbol == symbol]
        if order_id is not None:
            rows = [t for t in rows if t.order_id == order_id]
        if from_id is not None:
            return [t for t in rows if t.trade_id >= from_id][:limit]
        if start_time is not None:
            rows = [t for t in rows if t.time >= start_time]
        if end_time is not None:
            rows = [t for t in rows if t.time <= end_time]
        if start_time is not None:
            return rows[:limit]
        return rows[-limit:]

    # ------------------------------------------------------------------ order entry

    def place_order(self, kind: MarketKind, *, symbol: str, side: str, order_type: str,
                    quantity: Decimal | None = None, price: Decimal | None = None,
                    time_in_force: str | None = None, client_order_id: str | None = None,
                    reduce_only: bool = False, quote_order_qty: Decimal | None = None) -> Order:
        """Validate, accept and execute an order; raises :class:`ApiError` like Binance does."""
        now = self.now()
        inst = self.instrument(symbol)
        filters = self._filters[(kind, symbol)]
        tif = check_order_params(kind, filters, side=side, order_type=order_type, quantity=quantity, price=price,
                                 time_in_force=time_in_force, reduce_only=reduce_only,
                                 quote_order_qty=quote_order_qty)
        if client_order_id is not None:
            if not 1 <= len(client_order_id) <= 36 or not set(client_order_id) <= ALLOWED_CLIENT_ID:
                raise ApiError(-1100, "Illegal characters found in parameter 'newClientOrderId'; legal "
                                      "range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
            if self._client_id_taken(kind, client_order_id):
                if kind == SPOT:
                    raise ApiError(-2010, "Duplicate order sent.")
                raise ApiError(-4116, "ClientOrderId is duplicated.")
        else:
            client_order_id = self._random_client_id()

        book = self.book(kind, symbol)
        reference = price if price is not None else (
            book.best_ask.price if side == "BUY" else book.best_bid.price)
        if quantity is not None:
            notional = quantity * reference
            if notional < filters.min_notional and not reduce_only:
                if kind == SPOT:
                    raise ApiError(-1013, "Filter failure: NOTIONAL")
                raise ApiError(-4164, f"Order's notional must be no smaller than "
                                      f"{filters.min_notional:f} (unless you choose reduce only).")
        elif quote_order_qty is not None and quote_order_qty < filters.min_notional:
            raise ApiError(-1013, "Filter failure: NOTIONAL")

        # what would trade right now against the book
        limit_price = price if order_type in ("LIMIT", "LIMIT_MAKER") else None
        if kind == USDM and reduce_only:
            quantity = self._reduce_only_quantity(symbol, side, quantity)
        fills = walk_book(book, side, quantity, limit_price, quote_order_qty, filters.step_size)
        crosses = bool(fills)
        if order_type == "LIMIT_MAKER" and crosses:
            raise ApiError(-2010, "Order would immediately match and take.")
        if kind == USDM and tif == "GTX" and crosses:
            raise ApiError(-5022, "Due to the order could not be executed as maker, the Post Only order will be "
                                  "rejected.")
        if tif == "FOK" and sum((f.qty for f in fills), ZERO) < (quantity or ZERO):
            fills = []
        filled_qty = sum((f.qty for f in fills), ZERO)
        rests = order_type in ("LIMIT", "LIMIT_MAKER") and tif in ("GTC", "GTX")
        if quantity is None:
            quantity = filled_qty
        resting_qty = quantity - filled_qty if rests else ZERO

        # funds
        if kind == SPOT:
            self._check_spot_funds(inst, side, fills, resting_qty, price)
        else:
            self._check_margin(symbol, side, fills, resting_qty, price)

        order = Order(kind=kind, symbol=symbol, order_id=self._take_order_id(kind),
                      client_order_id=client_order_id, side=side, type=order_type,
                      time_in_force=tif, price=price if price is not None else ZERO,
                      orig_qty=quantity, time=now, update_time=now, reduce_only=reduce_only,
                      orig_quote_qty=quote_order_qty or ZERO)
        self._keep_order(order)
        self._emit(OrderEvent(kind=kind, order=replace(order), execution_type="NEW", time=now))
        for fill in fills:
            self._execute(order, fill.price, fill.qty, is_maker=False, now=now)
        if order.remaining > 0 and not rests:
            order.status = "EXPIRED"
            order.update_time = now
            self._emit(OrderEvent(kind=kind, order=replace(order), execution_type="EXPIRED", time=now))
        elif order.remaining > 0 and kind == SPOT:
            self._lock_for(order)
        if order.is_open:
            self._resting[kind][order.order_id] = order
            self._queue.join(order, book, filters.tick_size)
        if fills:
            self._emit_account(kind, symbol, now)
        return order

    def cancel_order(self, kind: MarketKind, symbol: str, order_id: int | None = None,
                     client_order_id: str | None = None) -> Order:
        """Cancel an open order; final or unknown orders give -2011 as on Binance."""
        try:
            order = self.get_order(kind, symbol, order_id, client_order_id)
        except ApiError as exc:
            if exc.code == -2013:
                raise ApiError(-2011, "Unknown order sent.") from None
            raise
        if not order.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        now = self.now()
        self._unlock(order)
        order.status = "CANCELED"
        order.update_time = now
        self._emit(OrderEvent(kind=kind, order=replace(order), execution_type="CANCELED", time=now))
        return order

    def cancel_all(self, kind: MarketKind, symbol: str) -> list[Order]:
        """Cancel every open order of ``symbol``; returns the cancelled orders."""
        return [self.cancel_order(kind, symbol, o.order_id) for o in self.open_orders(kind, symbol)]

    # ------------------------------------------------------------------ client flow

    def client_fill(self, symbol: str, side: str, qty: Decimal, now_ms: int | None = None) -> Trade | None:
        """A desk client trades with the spot account: ``side`` is the account's side.

        Fills a synthetic maker order at the best bid (account buys) or ask (account sells).
        Returns None when the account lacks the funds for it.
        """
        now = self.now() if now_ms is None else now_ms
        inst = self.instrument(symbol)
        filters = self._filters[(SPOT, symbol)]
        qty = quantize_down(qty, filters.step_size)
        if qty < filters.min_qty:
            return None
        book = self.book(SPOT, symbol)
        price = book.best_bid.price if side == "BUY" else book.best_ask.price
        if side == "BUY" and self._free[inst.quote] < qty * price:
            return None
        if side == "SELL" and self._free[inst.base] < qty:
            return None
        order = Order(kind=SPOT, symbol=symbol, order_id=self._take_order_id(SPOT),
                      client_order_id=f"desk-{self._random_client_id()[:16]}", side=side, type="LIMIT",
                      time_in_force="GTC", price=price, orig_qty=qty, time=now, update_time=now,
                      is_client_flow=True)
        self._keep_order(order)
        trade = self._execute(order, price, qty, is_maker=True, now=now)
        self._emit_account(SPOT, symbol, now)
        return trade

    @property
    def flow_rate(self) -> float:
        """Client fills per second on the spot account, over all flow symbols."""
        return self._flow_rate

    @flow_rate.setter
    def flow_rate(self, rate: float) -> None:
        self._flow_rate = rate
        for flow in self._flows.values():
            flow.rate = rate / len(self._flows)

    def _run_flow(self, dt_seconds: float, now: int) -> None:
        if self.flow_rate <= 0 or not self.flow_symbols:
            return
        count = poisson_count(self.flow_rate * dt_seconds, self._rng)
        for _ in range(count):
            symbol = self._rng.choice(self.flow_symbols)
            flow = self._flows[symbol]
            size = Decimal(repr(flow.size(self._rng)))
            side = "BUY" if flow.desk_buys(self._rng) else "SELL"
            self.client_fill(symbol, side, size, now_ms=now)

    # ------------------------------------------------------------------ internals

    def _keep_order(self, order: Order) -> None:
        """Add ``order`` to the history; past ``order_history``, forget the oldest final orders."""
        orders = self._orders[order.kind]
        orders[order.order_id] = order
        limit = self.config.order_history
        if len(orders) <= limit:
            return
        # Prune a tenth below the limit at once, so the scan from the oldest runs once per
        # limit/10 orders rather than on every order.
        excess = len(orders) - (limit - limit // 10)
        stale: list[int] = []
        for oid, kept in orders.items():
            if len(stale) >= excess:
                break
            if not kept.is_open and kept is not order:
                stale.append(oid)
        for oid in stale:
            del orders[oid]

    def _resting_orders(self, kind: MarketKind) -> list[Order]:
        """Open orders of ``kind``, oldest first (dropping the ones that have left the book)."""
        resting = self._resting[kind]
        done = [oid for oid, o in resting.items() if not o.is_open]
        for oid in done:
            del resting[oid]
        return list(resting.values())

    def _take_order_id(self, kind: MarketKind) -> int:
        value = self._next_order_id[kind]
        self._next_order_id[kind] = value + 1
        return value

    def _take_trade_id(self, kind: MarketKind) -> int:
        value = self._next_trade_id[kind]
        self._next_trade_id[kind] = value + 1
        return value

    def _random_client_id(self) -> str:
        return "".join(self._rng.choice(CLIENT_ID_CHARS) for _ in range(22))

    def _client_id_taken(self, kind: MarketKind, client_order_id: str) -> bool:
        scope = self.config.duplicate_client_id_scope
        orders = self._orders[kind].values() if scope == "all" else self._resting_orders(kind)
        return any(order.client_order_id == client_order_id for order in orders)

    def _reduce_only_quantity(self, symbol: str, side: str, quantity: Decimal | None) -> Decimal:
        pos = self._positions[symbol]
        reduces = (pos.amount > 0 and side == "SELL") or (pos.amount < 0 and side == "BUY")
        if not reduces or quantity is None:
            raise ApiError(-2022, "ReduceOnly Order is rejected.")
        return min(quantity, abs(pos.amount))

    def _execute(self, order: Order, price: Decimal, qty: Decimal, *, is_maker: bool, now: int) -> Trade:
        kind = order.kind
        if kind == SPOT:
            trade = self._settle_spot(order, price, qty, is_maker, now)
        else:
            trade = self._settle_usdm(order, price, qty, is_maker, now)
        order.executed_qty += qty
        order.cum_quote += price * qty
        order.update_time = now
        order.status = "FILLED" if order.remaining <= 0 else "PARTIALLY_FILLED"
        self._trades[kind].append(trade)
        stats = self._stats[(kind, order.symbol)]
        stats.volume += qty
        stats.quote_volume += price * qty
        stats.count += 1
        stats.last_qty = qty
        if stats.first_id < 0:
            stats.first_id = trade.trade_id
        stats.last_id = trade.trade_id
        self._emit(OrderEvent(kind=kind, order=replace(order), execution_type="TRADE", time=now,
                              trade=trade))
        return trade

    def _emit_account(self, kind: MarketKind, symbol: str, now: int) -> None:
        inst = self.instruments[symbol]
        if kind == SPOT:
            self._emit(AccountEvent(kind=SPOT, time=now, assets=(inst.base, inst.quote)))
        else:
            self._emit(AccountEvent(kind=USDM, time=now, assets=(inst.quote,), symbols=(symbol,)))

    def _touch(self, kind: MarketKind, symbol: str) -> tuple[Decimal, Decimal]:
        book = self.book(kind, symbol, depth=1)
        return book.best_bid.price, book.best_ask.price

    def _match_resting(self, now: int, before: dict[tuple[MarketKind, str], tuple[Decimal, Decimal]] | None = None,
                       seconds: float = 0.0) -> None:
        """Fill resting orders from the step's trade flow (:mod:`hedgerd.exchange_sim.resting`);
        ``before`` None: a price jump."""
        step = self._queue.next_step(self._resting)
        for kind in KINDS:
            for order in self._resting_orders(kind):
                after = self._touch(kind, order.symbol)
                prior = before.get((kind, order.symbol), after) if before is not None else None
                wanted = self._queue.fillable(order, step, prior, after, seconds,
                                              self._filters[(kind, order.symbol)].step_size)
                if wanted <= 0:
                    continue
                qty = wanted
                if kind == USDM and order.reduce_only:
                    pos = self._positions[order.symbol]
                    reduces = (pos.amount > 0 and order.side == "SELL") or (
                        pos.amount < 0 and order.side == "BUY")
                    qty = min(qty, abs(pos.amount)) if reduces else ZERO
                if qty > 0:
                    self._execute(order, order.price, qty, is_maker=True, now=now)
                    self._queue.adverse(self.price_model(order.symbol), order.side)
                if qty < wanted and order.remaining > 0:  # a reduce-only order capped: the rest expires
                    order.status = "EXPIRED"
                    order.update_time = now
                    self._emit(OrderEvent(kind=kind, order=replace(order), execution_type="EXPIRED",
                                          time=now))
                if not order.is_open:
                    self._unlock(order)
                    self._queue.forget(order)
                if qty > 0:
                    self._emit_account(kind, order.symbol, now)
