"""Our trades on one ccxt venue, to the sink once each: conversion (with the client id of the order
behind a trade), paged trade listings, and the backfills that close stream gaps.

Trade ids are qualified by symbol (``"BTC/USDT#123"``) because exchanges such as Binance number
trades per symbol while the ledger dedupes by (venue, trade id). Fills carry our client order
id when the trade names one with our prefix, or when its venue order id is known (from our
own orders, or looked up once per unknown order on venues we trade on: Binance's REST trades
do not carry client ids).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hedgerd import errors as herr
from hedgerd.connectors.ccxt.client import BoundedMap, CcxtClient
from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    client_order_id_of,
    order_id_of,
    qualified_trade_id,
    trade_to_fill,
)
from hedgerd.models import Fill

#: Trade ids delivered lately, so the stream's and the backfills' overlapping copies of a fill
#: go to the ledger once: the backfills reach back their overlap plus their interval (seconds),
#: which this covers at hundreds of fills/s; an older repeat is still deduped by the ledger.
DELIVERED_IDS_KEPT = 20_000
#: Seconds between the unconditional fills backfills of daemon venues (see ``safety_backfill_interval``).
SAFETY_BACKFILL_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class Listing:
    """One trade listing: ``symbol``'s trades, or (``symbol`` None) settle ``currency``'s on ``symbols``."""

    key: str
    symbol: str | None
    symbols: tuple[str, ...]
    currency: str | None = None


class FillFeed:
    """Fills of one venue's ``symbols``: delivered to the sink once each, backfilled on demand.

    ``resolve_client_ids``: fetch the order behind a trade that lacks a client id (one request
    per unknown order; on for venues we place orders on).
    ``safety_backfill_interval``: every so many seconds fetch the fills since the previous such
    fetch (minus the overlap) whatever the streams say (0 = off): a stream that died without
    an error, or a message a client library lost, cannot keep a fill out of the ledger.
    """

    def __init__(self, client: CcxtClient, symbols: Sequence[str], *, resolve_client_ids: bool = True,
                 backfill_overlap: float = 10.0, backfill_page_limit: int = 500, backfill_max_pages: int = 20,
                 listing_max_pages: int = 1000, safety_backfill_interval: float = 0.0) -> None:
        self.client = client
        self.clock = client.clock
        self.symbols = tuple(symbols)
        self.resolve_client_ids = resolve_client_ids
        self.backfill_overlap = backfill_overlap
        self.backfill_page_limit = backfill_page_limit
        self.backfill_max_pages = backfill_max_pages
        # Reconciliation's listings (fetch_fills_since) must be whole, however many trades a busy
        # desk made: a much larger budget than a stream backfill's, and an error when it runs out.
        self.listing_max_pages = listing_max_pages
        self.safety_backfill_interval = safety_backfill_interval
        self.started_wall = 0.0  # wall time of CcxtVenue.start: where the first backfills begin
        self._last_fill_ts: dict[str, float] = {}
        self._redeliver_from: dict[str, float] = {}  # ts of fills the sink failed on, by symbol
        self._resync_since: dict[str, float] = {}  # where the last backfill of each symbol started
        self._safety_since: dict[str, float] = {}  # wall time of the last safety backfill, by symbol
        self._delivered = BoundedMap(DELIVERED_IDS_KEPT)  # qualified trade ids already accepted by the sink

    async def deliver_trades(self, trades: Any, *, symbol: str) -> bool:
        """Convert and deliver streamed trades; False if the sink failed on one."""
        if isinstance(trades, Mapping) or not isinstance(trades, Iterable):
            self.client.report("malformed", f"fills {symbol}: expected a list of trades")
            return True
        return await self._deliver_fills(await self._trades_to_fills(trades, symbol))

    async def _deliver_fills(self, fills: Iterable[Fill]) -> bool:
        """Hand the fills not delivered yet to the sink in one batch (one group commit)."""
        assert self.client.sink is not None
        batch = [f for f in sorted(fills, key=lambda f: (f.ts, f.trade_id)) if f.trade_id not in self._delivered]
        if not batch:
            return True
        try:
            await self.client.sink.on_fills(batch)
        except Exception as exc:  # none may be assumed journaled: the next backfill redelivers them
            ids = ", ".join(f.trade_id for f in batch[:3]) + (f" (+{len(batch) - 3} more)" if len(batch) > 3 else "")
            self.client.report("sink", f"fills {ids}: {type(exc).__name__}: {exc}")
            for fill in batch:
                floor = self._redeliver_from.get(fill.symbol)
                self._redeliver_from[fill.symbol] = fill.ts if floor is None else min(floor, fill.ts)
            return False
        for fill in batch:
            self._delivered.put(fill.trade_id)
            if fill.ts > self._last_fill_ts.get(fill.symbol, 0.0):
                self._last_fill_ts[fill.symbol] = fill.ts
        return True

    async def backfill(self, symbol: str) -> bool:
        """Fetch and deliver fills since the last seen one minus the overlap; False on failure."""
        since = self._last_fill_ts.get(symbol, self.started_wall) - self.backfill_overlap
        floor = self._redeliver_from.pop(symbol, None)
        if floor is not None:
            since = min(since, floor)
        self._resync_since[symbol] = since
        try:
            fills = await self.fetch_trades(symbol, since, skip_delivered=True)
        except herr.VenueError as exc:
            self.client.report("backfill", f"{symbol}: {exc}")
            self._redeliver_from[symbol] = since
            return False
        return await self._deliver_fills(fills)

    def listings(self) -> list[Listing]:
        """The trade listings that cover :attr:`symbols`: one per symbol, or, where the venue lists a
        settle currency's trades at once (``trades_currency_param``), one per currency of two or more
        served symbols (an options book of dozens of instruments: a few requests instead of dozens)."""
        if self.client.traits.trades_currency_param is None:
            return [Listing(s, s, (s,)) for s in self.symbols]
        groups: dict[str, list[str]] = {}
        for symbol in self.symbols:
            market = self.client.markets.get(symbol)
            settle = market.instrument.settle if market is not None and market.instrument is not None else None
            groups.setdefault(settle or symbol, []).append(symbol)
        out: list[Listing] = []
        for currency, symbols in groups.items():
            if len(symbols) == 1 or currency in symbols:
                out.extend(Listing(s, s, (s,)) for s in symbols)
            else:
                out.append(Listing(f"currency:{currency}", None, tuple(symbols), currency))
        return out

    async def fetch_listing(self, listing: Listing, since: float | None, *, whole: bool = False,
                            skip_delivered: bool = False) -> list[Fill]:
        """:meth:`fetch_trades` of one listing (its symbol's, or its currency's less the symbols not served)."""
        return await self.fetch_trades(listing.symbol, since, whole=whole, skip_delivered=skip_delivered,
                                       currency=listing.currency, covered=listing.symbols)

    async def safety_backfills(self) -> None:
        """Every ``safety_backfill_interval``: deliver each listing's fills since the previous run."""
        while not self.client.closed:
            await self.clock.sleep(self.safety_backfill_interval)
            for listing in self.listings():
                started = self.clock.time()
                since = self._safety_since.get(listing.key, self.started_wall) - self.backfill_overlap
                try:
                    fills = await self.fetch_listing(listing, since, skip_delivered=True)
                except herr.VenueError as exc:
                    self.client.report("backfill", f"{listing.key} (safety): {exc}")
                    continue
                if await self._deliver_fills(fills):
                    self._safety_since[listing.key] = started

    async def confirm_backfill(self, symbol: str) -> bool:
        """Backfill again, from where the resync's backfill started, once the stream is proven live."""
        floor = self._resync_since.get(symbol)
        if floor is not None:
            current = self._redeliver_from.get(symbol)
            self._redeliver_from[symbol] = floor if current is None else min(current, floor)
        return await self.backfill(symbol)

    async def fetch_trades(self, symbol: str | None, since: float | None, *, whole: bool = False,
                           skip_delivered: bool = False, currency: str | None = None,
                           covered: Sequence[str] = ()) -> list[Fill]:
        """Our trades on ``symbol`` since ``since`` (epoch seconds), malformed ones skipped; with
        ``symbol`` None, those of settle ``currency`` on the ``covered`` symbols.

        Pages forward from the newest trade of a full page; after a short page the cursor
        jumps one window of the venue's ``trades_window_ms`` (Binance USD-M answers at most 7 days
        per query; none on Deribit) until it passes now, within ``backfill_max_pages`` requests (with
        ``whole``: ``listing_max_pages``, and a :class:`~hedgerd.errors.TransientVenueError`
        rather than a list cut short when they run out).
        """
        traits = self.client.traits
        params = dict(traits.my_trades_params)
        if currency is not None and traits.trades_currency_param is not None:
            params[traits.trades_currency_param] = currency
        extra = (params,) if params else ()
        if since is None:  # with a page limit: Deribit answers 10 trades without one
            return await self._trades_to_fills(self._covered(await self.client.call(
                "read", "fetch_my_trades", symbol, None, self.backfill_page_limit, *extra), covered), symbol)
        window = traits.trades_window_ms
        cursor = max(0, int(since * 1000))
        now_ms = int(self.clock.time() * 1000)
        fills: dict[str, Fill] = {}
        skipped: dict[str, int] = {}  # delivered trades left out of the pages: id -> timestamp (ms)
        pages = self.listing_max_pages if whole else self.backfill_max_pages
        for page_number in range(1, pages + 1):
            batch = list(await self.client.call("read", "fetch_my_trades", symbol, cursor,
                                                self.backfill_page_limit, *extra) or ())
            page = await self._trades_to_fills(self._covered(batch, covered), symbol, skip_delivered=skip_delivered)
            fresh = [f for f in page if f.trade_id not in fills]
            fills.update((f.trade_id, f) for f in fresh)
            left_out = self._delivered_timestamps(batch) if skip_delivered else {}
            fresh_left_out = left_out.keys() - skipped.keys()
            skipped.update(left_out)
            if len(batch) >= self.backfill_page_limit:
                others = [t["timestamp"] for t in batch if isinstance(t, Mapping) and type(t.get("timestamp")) is int
                          and t.get("symbol") not in covered] if symbol is None else []
                newest = max([int(f.ts * 1000) for f in page] + list(left_out.values()) + others, default=cursor)
                progressed = bool(fresh or fresh_left_out)
                cursor = newest if progressed and newest > cursor else max(newest, cursor) + 1
            elif window is not None and cursor + window < now_ms:
                cursor += window
            else:
                break
            if whole and page_number == pages:
                raise herr.TransientVenueError(
                    f"{self.client.name}: trades on {symbol} since {since:.3f} fill more than {pages} pages of "
                    f"{self.backfill_page_limit}: the listing would be cut short")
        return list(fills.values())

    @staticmethod
    def _covered(trades: Any, covered: Sequence[str]) -> list[Any]:
        """The trades of a currency listing on the ``covered`` symbols (all when none given)."""
        listed: list[Any] = list(trades or ())
        if not covered:
            return listed
        wanted = set(covered)
        return [t for t in listed if isinstance(t, Mapping) and t.get("symbol") in wanted]

    def _is_delivered(self, trade: Any) -> bool:
        return (isinstance(trade, Mapping) and isinstance(trade.get("symbol"), str) and trade.get("id") is not None
                and qualified_trade_id(trade["symbol"], str(trade["id"])) in self._delivered)

    def _delivered_timestamps(self, batch: Sequence[Any]) -> dict[str, int]:
        """Id -> timestamp (ms) of the trades in ``batch`` the sink already has: left out of a
        backfill's page, they must still move its cursor (they were validated when delivered)."""
        return {qualified_trade_id(t["symbol"], str(t["id"])): t["timestamp"] for t in batch
                if self._is_delivered(t) and type(t.get("timestamp")) is int}

    async def _trades_to_fills(self, trades: Any, symbol: str | None, *, skip_delivered: bool = False) -> list[Fill]:
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
                self.client.report("malformed", str(exc))
        return fills

    async def _learn_client_ids(self, trades: Sequence[Any], symbol: str | None) -> None:
        """Look up the client id of orders behind trades that do not carry one (REST trades on Binance).

        A hedge fill journaled without its client order id would leave the executor counting
        it as still in flight, so on venues we trade on every unknown order is fetched once.
        """
        if not self.resolve_client_ids:
            return
        unknown = {oid for t in trades if isinstance(t, Mapping) and client_order_id_of(t) is None
                   and (oid := order_id_of(t)) is not None and oid not in self.client.cid_by_order_id}
        for order_id in sorted(unknown):
            try:
                order = await self.client.call("read", "fetch_order", order_id, symbol)
            except herr.OrderNotFound:
                order = None
            cid = client_order_id_of(order) if isinstance(order, Mapping) else None
            self.client.cid_by_order_id.put(order_id, cid or "")

    def _trade_to_fill(self, trade: Any, received_at: float, expected_symbol: str | None) -> Fill:
        """One ccxt trade as a fill, attributed to our order by its client id or its venue order id."""
        fill = trade_to_fill(self.client.name, trade, self.client.markets, received_at,
                             expected_symbol=expected_symbol, amount_unit=self.client.traits.amount_unit)
        cid = self.client.own_cid(fill.client_order_id)
        order_id = order_id_of(trade)
        if cid is None and order_id is not None:
            cid = self.client.own_cid(self.client.cid_by_order_id.get(order_id) or None)
        return fill if cid == fill.client_order_id else replace(fill, client_order_id=cid)
