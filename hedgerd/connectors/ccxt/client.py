"""What every part of one ccxt venue shares: its exchange object, guarded requests, markets,
error reports and which venue orders are ours."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import ccxt
import structlog

from hedgerd import errors as herr
from hedgerd.clock import Clock
from hedgerd.connectors.base import VenueEventSink
from hedgerd.connectors.ccxt.convert import MalformedMessage, order_to_report
from hedgerd.connectors.ccxt.errors import Operation, map_ccxt_error, retry_after_from_headers, sanitize_message
from hedgerd.connectors.ccxt.traits import VenueTraits, traits_for
from hedgerd.models import Fill, MarketInfo, OrderReport

log = structlog.get_logger("hedgerd.ccxt")

#: Client ids of venue order ids (ours, or "" for others'): fills of an order arrive within
#: seconds of it; a forgotten one costs one more order lookup.
CLIENT_IDS_KEPT = 10_000
#: Distinct malformed-record reports already logged (a backfill sees the same bad record again).
MALFORMED_KEPT = 1_000
#: Seconds no request is sent after a rate-limit answer that carries no Retry-After.
RATE_LIMIT_PAUSE = 1.0


class BoundedMap(OrderedDict[str, Any]):
    """Insertion-ordered map that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def put(self, key: str, value: Any = None) -> None:
        """Store ``key`` as the newest entry, dropping the oldest beyond the limit."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)


class CcxtClient:
    """One venue's ccxt exchange object and the state its order, fill and stream code share.

    Every request goes through :meth:`call` (errors mapped, rate limits respected); every problem
    through :meth:`report`; every order answer through :meth:`order_report`, which also learns
    the client id behind a venue order id for attributing that order's fills.
    """

    def __init__(self, name: str, exchange: Any, clock: Clock, *, own_client_id_prefix: str | None = None,
                 secrets: Sequence[str] = ()) -> None:
        self.name = name
        self.exchange = exchange
        self.clock = clock
        exchange_id = getattr(exchange, "id", None)
        self.traits: VenueTraits = traits_for(exchange_id if isinstance(exchange_id, str) else None)
        self.own_client_id_prefix = own_client_id_prefix
        self.secrets = tuple(s for s in secrets if s)
        self.markets: dict[str, MarketInfo] = {}
        self.sink: VenueEventSink | None = None
        self.closed = False  # set once by CcxtVenue.close: the loops stop on it
        self._rate_limited_until = -math.inf  # clock monotonic; see call
        self.cid_by_order_id = BoundedMap(CLIENT_IDS_KEPT)
        self._malformed_reported = BoundedMap(MALFORMED_KEPT)

    def has(self, feature: str) -> bool:
        """Whether the exchange's ``has`` table offers ``feature`` (e.g. ``watchMyTrades``)."""
        has = getattr(self.exchange, "has", None)
        return bool(has.get(feature)) if isinstance(has, Mapping) else False

    def map_error(self, exc: BaseException, operation: Operation) -> herr.VenueError:
        """``exc`` as a hedgerd error, with the Retry-After of a rate-limit answer."""
        retry_after = None
        if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
            retry_after = retry_after_from_headers(getattr(self.exchange, "last_response_headers", None))
        return map_ccxt_error(exc, operation, retry_after=retry_after, secrets=self.secrets)

    async def call(self, operation: Operation, method: str, *args: Any) -> Any:
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
            error = self.map_error(exc, operation)
            if isinstance(error, herr.RateLimited):
                pause = error.retry_after if error.retry_after is not None else RATE_LIMIT_PAUSE
                self._rate_limited_until = max(self._rate_limited_until, self.clock.monotonic() + pause)
            raise error from None

    def report(self, kind: str, detail: str) -> None:
        """Tell the sink (or the log, before start) about a problem; each malformed record once."""
        detail = sanitize_message(detail, self.secrets)
        if kind == "malformed":  # backfill and polling see the same bad record again and again
            if detail in self._malformed_reported:
                return
            self._malformed_reported.put(detail)
        if self.sink is not None:
            self.sink.on_venue_error(self.name, kind, detail)
        else:
            log.warning("venue_error", venue=self.name, kind=kind, detail=detail)

    def market(self, symbol: str) -> MarketInfo:
        """The loaded market of ``symbol``; :class:`~hedgerd.errors.InvalidOrder` if not listed."""
        market = self.markets.get(symbol)
        if market is None:
            raise herr.InvalidOrder(f"{symbol!r} is not listed on venue {self.name}")
        return market

    def own_cid(self, cid: str | None) -> str | None:
        """``cid`` if it is ours (our prefix, or no prefix configured), else None."""
        if cid is None or self.own_client_id_prefix is None or cid.startswith(self.own_client_id_prefix):
            return cid
        return None

    def order_report(self, order: Any, *, client_order_id: str | None = None,
                     fills: Sequence[Fill] = ()) -> OrderReport:
        """A ccxt order as an :class:`OrderReport`, remembering whose venue order id it is."""
        if not isinstance(order, Mapping):
            raise MalformedMessage(f"order: expected a mapping, got {type(order).__name__}")
        symbol = order.get("symbol")
        market = self.markets.get(symbol) if isinstance(symbol, str) else None
        if market is None:
            raise MalformedMessage(f"order: unknown symbol {str(symbol)[:40]!r}")
        report = order_to_report(self.name, order, market, self.clock.monotonic(),
                                 client_order_id=client_order_id, fills=fills,
                                 amount_unit=self.traits.amount_unit)
        if report.venue_order_id is not None:
            self.cid_by_order_id.put(report.venue_order_id, report.client_order_id)
        return report
