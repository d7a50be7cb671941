"""The funding poller: books the hedge venues' funding payments in the ledger and the cost book.

Every ``reconcile.funding_poll_interval`` seconds (the first time at start, which backfills
whatever was paid while the daemon was down) each hedge venue is asked for its funding payments
since the latest one its ledger holds, less ``reconcile.funding_backfill_overlap`` (before the
first: since the ledger's first fill or position adjustment on the venue, so funding of
positions held before this ledger is not counted as its hedge's). The ledger journals them
(each once: ``UNIQUE(venue, payment_id)``) and returns those that were new; only those go to the
cost book, after they are durable. A failed fetch is logged, counted in
``hedgerd_venue_errors_total{kind="funding"}`` and retried at the next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import structlog

from hedgerd.clock import Clock
from hedgerd.connectors.base import Venue
from hedgerd.cost_book import CostBook
from hedgerd.errors import VenueError
from hedgerd.ledger import InventoryLedger, LedgerError
from hedgerd.metrics import Metrics

if TYPE_CHECKING:
    from hedgerd.engine import HedgeEngine

log = structlog.get_logger(__name__)


class FundingPoller:
    """Polls the venues named in ``hedged`` ((venue, symbol) pairs) for funding payments."""

    def __init__(self, venues: Mapping[str, Venue], hedged: Sequence[tuple[str, str]], ledger: InventoryLedger,
                 costs: CostBook, clock: Clock, metrics: Metrics, *, interval: Callable[[], float],
                 overlap: Callable[[], float], on_booked: Callable[[], None] = lambda: None) -> None:
        self.venues = {name: venues[name] for name in dict.fromkeys(v for v, _ in hedged)}
        self.ledger = ledger
        self.costs = costs
        self.clock = clock
        self.metrics = metrics
        self.interval = interval
        self.overlap = overlap
        self.on_booked = on_booked  # new payments change the hedged book's PnL: the engine re-marks it
        self.booked = 0  # payments journaled as new since start
        self._floors: dict[str, float] = {}  # venue -> where its first fetch starts, while none is journaled
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_engine(cls, engine: HedgeEngine) -> FundingPoller:
        """The poller of a started engine's hedges, booking into its ledger and cost book."""
        return cls(engine.venues, [(h.config.venue, h.config.symbol) for h in engine.hedges.values()],
                   engine.ledger, engine.costs, engine.clock, engine.metrics,
                   interval=lambda: engine.settings.reconcile.funding_poll_interval,
                   overlap=lambda: engine.settings.reconcile.funding_backfill_overlap,
                   on_booked=engine.evaluate_soon)

    async def poll_once(self) -> int:
        """One fetch per venue; returns the number of payments that were new."""
        new_total = 0
        for name, venue in self.venues.items():
            since = self._since(name)
            try:
                payments = await venue.fetch_funding_since(since)
            except VenueError as exc:
                self.metrics.venue_errors.labels(name, "funding").inc()
                log.warning("funding_fetch_failed", venue=name, error=str(exc))
                continue
            payments = [p for p in payments if p.venue == name]
            new = await self.ledger.costs.record_funding(payments) if payments else []
            if new:
                self.costs.on_funding(new)
                self.on_booked()
                log.info("funding_booked", venue=name, payments=len(new), fetched=len(payments),
                         since=since, amounts={p.payment_id: str(p.amount) for p in new[:10]})
            new_total += len(new)
        self.booked += new_total
        return new_total

    def _since(self, venue: str) -> float:
        """From the last journaled payment less the overlap; without one, from the ledger's first
        fill or adjustment on the venue (funding on positions held before this ledger existed is
        not its hedge's), else from now."""
        last = self.ledger.costs.last_funding_ts(venue)
        if last is not None:
            return max(0.0, last - self.overlap())
        floor = self._floors.get(venue)
        if floor is None:
            first = self.ledger.costs.first_activity_ts(venue)
            floor = self._floors[venue] = first if first is not None else self.clock.time()
        return floor

    def start(self) -> None:
        """Poll now and then every interval, until :meth:`stop`."""
        if self._task is None and self.venues:
            self._task = asyncio.create_task(self._run(), name="funding-poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except LedgerError as exc:  # the engine halts on its own write failures; here: stop booking
                log.error("funding_not_journaled", error=str(exc))
                return
            except Exception:  # a bug here must not take the daemon down: the next poll retries
                log.exception("funding_poll_failed")
            await self.clock.sleep(self.interval())
