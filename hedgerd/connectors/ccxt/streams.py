"""The stream loops of one ccxt venue: watch, reconnect with jittered exponential back-off on the
injected clock, fall back to REST polling, and backfill fills across every gap.

* fills: ``watch_my_trades(symbol)`` per symbol; after every (re)subscription the fills since
  the last seen trade minus an overlap are backfilled with ``fetch_my_trades`` (the ledger
  dedupes by trade id);
* prices: ``watch_bids_asks(symbols)`` or ``watch_ticker(symbol)``, whichever ``has`` offers;
* order updates: ``watch_orders(symbol)`` per symbol (our orders only);
* positions (derivatives): ``watch_positions(symbols)``, kept in :attr:`StreamSupervisor.positions`.

A stream that is unsupported, or that failed ``max_stream_failures`` times in a row, is
replaced by REST polling (``fetch_my_trades`` / ``fetch_bids_asks`` or ``fetch_ticker`` /
``fetch_positions``) for ``poll_period`` seconds before streaming is tried again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

import ccxt

from hedgerd.connectors.ccxt.client import CcxtClient
from hedgerd.connectors.ccxt.convert import (
    MalformedMessage,
    client_order_id_of,
    is_option_market,
    position_amount,
    ticker_to_option_quote,
    ticker_to_price,
)
from hedgerd.connectors.ccxt.fills import FillFeed
from hedgerd.models import ZERO, is_derivative

#: Seconds a fills stream may stay quiet after a message before a catch-up backfill (daemon venues).
CATCH_UP_DELAY = 1.0


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


class StreamSupervisor:
    """One task per stream of a venue's ``symbols`` (and the safety backfill's), kept alive until close.

    ``catch_up_delay``: seconds of quiet after a fills message before one backfill (0 = off).
    ``backfill_when_live``: after a (re)subscription's backfill, backfill once more from the same
    point when the first message proves the subscription live (covers a slow handshake).
    ``fetch_positions`` is the venue's REST position query, the positions stream's fallback.
    """

    def __init__(self, client: CcxtClient, fills: FillFeed, symbols: Sequence[str], *,
                 price_symbols: Sequence[str] = (),
                 fetch_positions: Callable[[], Awaitable[dict[str, Decimal]]],
                 stream_orders: bool = True, stream_positions: bool = True,
                 poll_interval: float = 1.0, positions_poll_interval: float = 5.0,
                 backoff_initial: float = 0.5, backoff_max: float = 30.0, max_stream_failures: int = 5,
                 poll_period: float = 60.0, resubscribe_delay: float = 0.5,
                 catch_up_delay: float = 0.0, backfill_when_live: bool = False,
                 rng: random.Random | None = None) -> None:
        self.client = client
        self.fills = fills
        self.clock = client.clock
        self._price_symbols_asked = tuple(dict.fromkeys(price_symbols))
        self.serve(symbols)
        self.stream_orders = stream_orders
        self.stream_positions = stream_positions
        self.poll_interval = poll_interval
        self.positions_poll_interval = positions_poll_interval
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_stream_failures = max_stream_failures
        self.poll_period = poll_period
        self.resubscribe_delay = resubscribe_delay
        self.catch_up_delay = catch_up_delay
        self.backfill_when_live = backfill_when_live
        self._fetch_positions = fetch_positions
        self._rng = rng or random.Random()
        self._streams: list[_Stream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._parser_guarded = False
        self.started = False
        #: Latest positions seen on the positions stream (or its polling fallback), base units.
        self.positions: dict[str, Decimal] = {}

    def serve(self, symbols: Sequence[str]) -> None:
        """The symbols streamed (fills, prices, orders, positions); set before :meth:`start`."""
        self.symbols = tuple(symbols)
        # prices only (no fills, orders or positions): e.g. a fee currency's conversion to the quote
        self.price_symbols = tuple(s for s in self._price_symbols_asked if s not in self.symbols)
        self._priced = frozenset((*self.symbols, *self.price_symbols))

    @property
    def healthy(self) -> bool:
        """True while every essential stream (fills, prices) or its polling is healthy."""
        return all(s.healthy for s in self._streams if s.essential)

    def stream_modes(self) -> dict[str, str]:
        """``{stream key: "stream" | "poll"}`` for status and tests."""
        return {s.key: s.mode for s in self._streams}

    @property
    def derivative_symbols(self) -> list[str]:
        """The served symbols that are derivatives (they have positions)."""
        return [s for s in self.symbols if is_derivative(s)]

    def start(self) -> None:
        """Build the streams and start their tasks; markets must be loaded and the sink set."""
        name = self.client.name
        self._guard_message_parser()
        self._streams = self._build_streams()
        self.started = True
        self._tasks = [asyncio.create_task(self._run(stream), name=f"{name}-{stream.key}")
                       for stream in self._streams]
        if self.fills.safety_backfill_interval > 0:
            self._tasks.append(asyncio.create_task(self.fills.safety_backfills(), name=f"{name}-safety-backfill"))

    async def stop(self) -> None:
        """Cancel every task and wait for them to end (``client.closed`` is already set)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def _guard_message_parser(self) -> None:
        """Count a websocket message that ccxt's own parser raises on (a frame that is a JSON list,
        a field of the wrong type) as malformed, instead of an unhandled error in an asyncio callback.

        ccxt binds ``exchange.handle_message`` when it opens a websocket client, so this runs
        before any stream is subscribed.
        """
        parse = getattr(self.client.exchange, "handle_message", None)
        if not callable(parse) or self._parser_guarded:
            return

        def guarded(client: Any, message: Any) -> Any:
            try:
                return parse(client, message)
            except Exception as exc:
                self.client.report("malformed", f"stream message {str(message)[:60]!r} not parseable: "
                                                f"{type(exc).__name__}: {exc}")
                return None

        self.client.exchange.handle_message = guarded
        self._parser_guarded = True

    def _build_streams(self) -> list[_Stream]:
        streams: list[_Stream] = []
        watch_trades = self.client.has("watchMyTrades")
        ex = self.client.exchange
        for symbol in self.symbols:
            streams.append(_Stream(
                key=f"fills:{symbol}",
                watch=partial(ex.watch_my_trades, symbol) if watch_trades else None,
                handle=partial(self.fills.deliver_trades, symbol=symbol),
                poll=partial(self.fills.backfill, symbol), poll_interval=self.poll_interval,
                resync=partial(self.fills.backfill, symbol),
                confirm=partial(self.fills.confirm_backfill, symbol) if self.backfill_when_live else None))
        if self.client.traits.price_stream == "bids_asks" and self.client.has("watchBidsAsks"):
            streams.append(_Stream(key="prices", watch=partial(ex.watch_bids_asks, [*self.symbols,
                                                                                     *self.price_symbols]),
                                   handle=self._deliver_tickers, poll=self._poll_prices,
                                   poll_interval=self.poll_interval))
        else:
            watch_ticker = self.client.has("watchTicker")
            for symbol in (*self.symbols, *self.price_symbols):
                streams.append(_Stream(
                    key=f"prices:{symbol}",
                    watch=partial(ex.watch_ticker, symbol) if watch_ticker else None,
                    handle=partial(self._deliver_ticker, symbol),
                    poll=partial(self._poll_prices, [symbol]), poll_interval=self.poll_interval))
        if self.stream_orders and self.client.has("watchOrders"):
            for symbol in self.symbols:
                streams.append(_Stream(key=f"orders:{symbol}", watch=partial(ex.watch_orders, symbol),
                                       handle=self._deliver_orders, poll=None,
                                       poll_interval=self.poll_interval, essential=False))
        derivatives = self.derivative_symbols
        if self.stream_positions and derivatives:
            streams.append(_Stream(
                key="positions",
                watch=partial(ex.watch_positions, derivatives) if self.client.has("watchPositions") else None,
                handle=self._store_positions, poll=self._poll_positions,
                poll_interval=self.positions_poll_interval, essential=False))
        return streams

    async def _run(self, stream: _Stream) -> None:
        """Stream with reconnect/back-off; fall back to polling when unsupported or failing."""
        failures = 0
        resync = True  # also right after the first subscription: covers the start-up gap
        catch_up = False
        confirm = False  # resynced, waiting for the first message of the new subscription
        while not self.client.closed:
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
                self.client.report("stream", f"{stream.key}: not supported, polling: {exc}")
                stream.watch = None
                continue
            except Exception as exc:
                if self.client.closed:
                    return
                failures += 1
                stream.healthy = False
                self.client.report("stream", f"{stream.key} failed ({failures} in a row): "
                                   f"{type(exc).__name__}: {exc}")
                resync = True
                await self.clock.sleep(self._backoff(failures))
                continue
            failures = 0
            stream.healthy = True
            try:
                ok = await stream.handle(message)
            except Exception as exc:  # the sink failed: resync so nothing is lost
                self.client.report("sink", f"{stream.key}: {type(exc).__name__}: {exc}")
                ok = False
            if not ok:
                resync = True
            elif confirm:
                # The subscription may have gone live only after the resync's backfill (a slow
                # handshake): what landed in between was neither streamed nor backfilled.
                confirm = False
                if stream.confirm is not None and not await stream.confirm():
                    resync = True
            # An empty answer is another symbol's message on a shared channel (Deribit's user.trades
            # carries every instrument's): nothing of this symbol's can be waiting in ccxt's cache.
            catch_up = stream.resync is not None and self.catch_up_delay > 0 and not _empty(message)

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
        while not self.client.closed:
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
            while not self.client.closed and (forever or self.clock.monotonic() < deadline):
                try:
                    stream.healthy = await stream.poll()
                except Exception as exc:
                    stream.healthy = False
                    self.client.report("poll", f"{stream.key}: {type(exc).__name__}: {exc}")
                await self.clock.sleep(stream.poll_interval)
        finally:
            stream.mode = "stream"

    async def _deliver_tickers(self, tickers: Any) -> bool:
        assert self.client.sink is not None
        if not isinstance(tickers, Mapping):
            self.client.report("malformed", "prices: expected a mapping of tickers")
            return True
        received, now = self.clock.monotonic(), self.clock.time()
        quotes = self.client.traits.option_quotes
        for symbol, ticker in tickers.items():
            if symbol not in self._priced:
                continue
            try:
                market = self.client.markets.get(symbol)
                if quotes and market is not None and market.instrument is not None and is_option_market(market):
                    # an option's quote is its mark, IV and forward (a far OTM option may have no bid)
                    quote = ticker_to_option_quote(self.client.name, symbol, ticker, received, now,
                                                   coin_settled=market.instrument.coin_settled)
                    await self.client.sink.on_option_quote(quote)
                    continue
                price = ticker_to_price(self.client.name, symbol, ticker, received, now)
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
                continue
            await self.client.sink.on_price(price)
        return True

    async def _deliver_ticker(self, symbol: str, ticker: Any) -> bool:
        return await self._deliver_tickers({symbol: ticker})

    async def _poll_prices(self, symbols: Sequence[str] | None = None) -> bool:
        wanted = list(symbols or (*self.symbols, *self.price_symbols))
        if self.client.has("fetchBidsAsks"):
            tickers = await self.client.call("read", "fetch_bids_asks", wanted)
        else:
            tickers = {s: await self.client.call("read", "fetch_ticker", s) for s in wanted}
        return await self._deliver_tickers(tickers)

    async def _deliver_orders(self, orders: Any) -> bool:
        assert self.client.sink is not None
        if isinstance(orders, Mapping) or not isinstance(orders, Iterable):
            self.client.report("malformed", "orders: expected a list of orders")
            return True
        for order in orders:
            cid = client_order_id_of(order) if isinstance(order, Mapping) else None
            if cid is None or self.client.own_cid(cid) is None:
                continue
            try:
                report = self.client.order_report(order, client_order_id=cid)
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
                continue
            await self.client.sink.on_order_update(self.client.name, report)
        return True

    async def _store_positions(self, positions: Any) -> bool:
        if isinstance(positions, Mapping) or not isinstance(positions, Iterable):
            self.client.report("malformed", "positions: expected a list")
            return True
        updates: dict[str, Decimal] = {}
        for position in positions:
            symbol = position.get("symbol") if isinstance(position, Mapping) else None
            if symbol not in self.symbols or not isinstance(symbol, str):
                continue
            try:
                updates[symbol] = updates.get(symbol, ZERO) + position_amount(
                    position, self.client.markets[symbol], self.client.traits.amount_unit)
            except MalformedMessage as exc:
                self.client.report("malformed", str(exc))
        self.positions.update(updates)
        return True

    async def _poll_positions(self) -> bool:
        positions = await self._fetch_positions()
        self.positions.update({s: q for s, q in positions.items() if is_derivative(s)})
        return True

    def _backoff(self, failures: int) -> float:
        delay = min(self.backoff_max, self.backoff_initial * 2.0 ** max(0, failures - 1))
        return delay * (0.5 + 0.5 * self._rng.random())


def _empty(message: Any) -> bool:
    """True for an empty list of a watch (no entries for this stream's symbol)."""
    return isinstance(message, Sequence) and not isinstance(message, str | bytes) and len(message) == 0
