"""Paced, retried requests to one venue, shared by the executor's order lifecycles.

:class:`VenueRequests` holds what every request needs: the venue, its token bucket (each
request takes its endpoint's weight), back-off with jitter, Retry-After on rate limits, the
error metrics, and the look-up of an order by client id (a client id found on several venue
orders halts trading). :class:`~hedgerd.executor.HedgeExecutor` builds on it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import structlog

from hedgerd.clock import Clock
from hedgerd.config import ExecutorConfig
from hedgerd.connectors.base import Venue
from hedgerd.errors import DuplicateOrder, OrderNotFound, RateLimited, VenueError
from hedgerd.executor.orders import TrackedOrder
from hedgerd.executor.ratelimit import TokenBucket
from hedgerd.metrics import Metrics
from hedgerd.models import OrderReport

log = structlog.get_logger("hedgerd.executor")

_MAX_BACKOFF_EXPONENT = 30
DETAIL_MAX = 200
# An order sent ``order_timeout`` ago can no longer execute: the connector makes the venue drop
# requests older than that (Binance's recvWindow), plus this much for clock skew (Binance also
# refuses timestamps more than 1 s ahead of its clock).
LANDING_GRACE = 1.0


class LookupFailed(Exception):
    """Every attempt to look an order up failed; its outcome stays unknown."""


def _halt_on_duplicate(exc: DuplicateOrder, venue: str,
                       on_halt: Callable[[str, str], object] | None) -> LookupFailed:
    """Halt trading naming the client id several venue orders carry (retrying cannot make it
    unique; the order stays UNKNOWN or as last reported, in flight, never resent); the look-up's
    failure to raise."""
    reason = f"duplicate order on {venue}: {exc}"[:DETAIL_MAX]
    log.error("order_duplicated", client_order_id=exc.client_order_id, venue=venue, reason=reason)
    if on_halt is not None:
        on_halt(reason, "auto:duplicate_order")
    return LookupFailed(detail(exc))


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, VenueError):
        return exc.kind
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "unexpected"


def detail(exc: BaseException) -> str:
    text = f"{error_kind(exc)}: {exc}" if str(exc) else error_kind(exc)
    return text[:DETAIL_MAX]


class VenueRequests:
    """Requests to one venue paced by ``bucket``; ``on_halt(reason, source)`` halts trading when a
    look-up finds a client id on several venue orders. ``config`` is read on every use."""

    def __init__(self, venue: Venue, config: ExecutorConfig, bucket: TokenBucket, clock: Clock,
                 metrics: Metrics, *, on_halt: Callable[[str, str], object] | None = None,
                 rng: random.Random | None = None) -> None:
        self.venue = venue
        self.config = config
        self.bucket = bucket
        self.clock = clock
        self.metrics = metrics
        self._on_halt = on_halt
        self._rng = rng if rng is not None else random.Random()

    def apply_config(self, config: ExecutorConfig) -> None:
        """Take reloaded executor settings: retries and back-off from their next use on, this
        venue's rate limit (rate, burst, weights) at once."""
        self.config = config
        limit = config.rate_limit_for(self.venue.name)
        self.bucket.configure(limit.requests_per_second, limit.burst)

    def request_weight(self, endpoint: str) -> float:
        """Tokens one request to ``endpoint`` takes from this venue's bucket."""
        return self.config.rate_limit_for(self.venue.name).weight(endpoint)

    async def _acquire(self, endpoint: str) -> None:
        waited = await self.bucket.acquire(self.request_weight(endpoint))
        self.metrics.rate_limit_wait.labels(self.venue.name).observe(waited)

    async def _lookup(self, order: TrackedOrder, attempts: int) -> OrderReport | None:
        """The venue's report on ``order`` by client id, None if it never saw it.

        Retries errors with back-off up to ``attempts`` tries; raises :class:`LookupFailed`.
        """
        intent = order.intent
        cid = intent.client_order_id
        last: BaseException | None = None
        for n in range(attempts):
            await self._acquire("fetch_order")
            try:
                report = await asyncio.wait_for(self.venue.fetch_order(intent.symbol, cid),
                                                timeout=self.config.order_timeout)
            except OrderNotFound:
                report = None
            except DuplicateOrder as exc:
                self._count_error(exc, "fetch_order", cid)
                raise _halt_on_duplicate(exc, self.venue.name, self._on_halt) from None
            except RateLimited as exc:
                last = exc
                self._count_error(exc, "fetch_order", cid)
                self._on_rate_limited(exc, n)
                continue
            except Exception as exc:
                last = exc
                self._count_error(exc, "fetch_order", cid)
                if n + 1 < attempts:
                    await self.clock.sleep(self._backoff(n))
                continue
            self.bucket.restore()
            log.info("order_lookup", client_order_id=cid, found=report is not None,
                     status=report.status.value if report is not None else None)
            return report
        raise LookupFailed(detail(last) if last is not None else "no attempt")

    def _on_rate_limited(self, exc: RateLimited, retry: int) -> None:
        retry_after = exc.retry_after
        delay = retry_after if retry_after is not None and retry_after >= 0 else self._backoff(retry)
        self.bucket.pause_until(self.clock.monotonic() + delay)
        rate = self.bucket.throttle()
        log.warning("rate_limited", venue=self.venue.name, retry_after=delay, rate=rate)

    def _backoff(self, retry: int) -> float:
        """Exponential back-off with jitter, within [backoff_initial, backoff_max]."""
        initial, ceiling = self.config.backoff_initial, self.config.backoff_max
        delay = min(ceiling, initial * 2.0 ** min(retry, _MAX_BACKOFF_EXPONENT))
        return self._rng.uniform(max(min(initial, delay), delay / 2), delay)

    def _count_error(self, exc: BaseException, request: str, cid: str) -> None:
        kind = error_kind(exc)
        self.metrics.venue_errors.labels(self.venue.name, kind).inc()
        log.warning("venue_error", venue=self.venue.name, request=request, client_order_id=cid, kind=kind,
                    detail=detail(exc))
