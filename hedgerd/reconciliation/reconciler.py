"""Startup reconciliation against the venues, under any client flow.

:class:`StartupReconciliation` is the whole pass the engine runs before its first hedge, retried
on transient venue errors. Its position step, :class:`PositionReconciler`, takes each venue's
bracketed snapshot (trades, positions with the venue's cursor, trades again), journals what it
lists and adopts or reports the differences; what to do about each position is decided by the
pure :mod:`hedgerd.reconciliation.decisions`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import structlog

from hedgerd.clock import Clock
from hedgerd.config import Mode, ReconcileConfig, Settings
from hedgerd.connectors.base import PositionSeeding, Venue
from hedgerd.errors import TransientVenueError
from hedgerd.executor import HedgeExecutor
from hedgerd.foreign import ForeignOrderWatch
from hedgerd.ledger import InventoryLedger
from hedgerd.models import ZERO, Fill, MarketInfo
from hedgerd.reconciliation.decisions import (
    EVERY_DERIVATIVE,
    Decision,
    Verdict,
    check_position,
    decide,
    expand_keys,
    expiry_day_reached,
    locate_cut,
    pending_fills,
    settled_at_expiry,
    usable_cursor,
)

log = structlog.get_logger("hedgerd.reconcile")

# Snapshots of one venue before giving up on an exact cut for a position to adopt. A cut is
# only inexact for the trades stamped in the very millisecond of the venue's cursor (or every
# trade in the bracket when the venue gives none), so a few tries suffice under any flow.
SNAPSHOT_ATTEMPTS = 10
RECONCILE_ATTEMPTS = 5  # startup reconciliation passes before a transient venue error is fatal


class PositionReconciler:
    """Brings the ledger's positions in line with the venues' (startup, before any hedge)."""

    def __init__(self, ledger: InventoryLedger, clock: Clock, config: ReconcileConfig) -> None:
        self.ledger = ledger
        self.clock = clock
        self.config = config

    async def backfill(self, venues: Mapping[str, Venue]) -> None:
        """Journal the fills each venue made since the ledger last saw one (minus the overlap)."""
        for name, venue in venues.items():
            # The fill cursor; without a journaled fill, the time the venue's positions were adopted.
            last = self.ledger.last_fill_ts(name)
            if last is None:
                last = self.ledger.last_adjustment_ts(name)
            if last is None:
                continue  # a fresh ledger adopts balances instead of replaying history
            await self._journal(await venue.fetch_fills_since(max(0.0, last - self.config.backfill_overlap)))

    async def reconcile(self, venues: Mapping[str, Venue], wanted: Mapping[str, Iterable[str]],
                        since: float) -> list[str]:
        """Compare every wanted position (venue name -> symbols or assets) with its venue.

        ``since`` (epoch seconds) is where the trade listings around each snapshot start: no
        later than the ledger's own backfill ended. Returns the mismatches beyond tolerance
        (``"venue:key ledger X venue Y"``); adopted positions are journaled as adjustments.
        """
        known = set(self.ledger.positions())
        problems: list[str] = []
        for venue_name, keys in sorted(wanted.items()):
            decisions = await self._snapshot(venue_name, venues[venue_name], sorted(keys), known, since)
            for decision in decisions:
                check = decision.check
                if decision.verdict is Verdict.MISMATCH:
                    problems.append(f"{venue_name}:{check.key} ledger {check.ledger} venue {check.venue}")
        return problems

    async def _snapshot(self, venue_name: str, venue: Venue, keys: list[str], known: set[tuple[str, str]],
                        since: float) -> list[Decision]:
        # A dated derivative the ledger holds past its expiry day is checked whether or not it is
        # still wanted (the venue has settled it and may no longer list it): see settled_at_expiry.
        expiring = [k for (v, k), q in self.ledger.positions().items()
                    if v == venue_name and q != 0 and expiry_day_reached(k, self.clock.time())]
        keys = sorted({*keys, *expiring})
        # The instrument's own expiry (the hour, not only the day) only matters on that day or later.
        dated = EVERY_DERIVATIVE in keys or any(expiry_day_reached(k, self.clock.time()) for k in keys)
        markets = await venue.load_markets() if dated else {}
        for attempt in range(1, SNAPSHOT_ATTEMPTS + 1):
            before = await venue.fetch_fills_since(since)
            snapshot = await venue.fetch_position_snapshot()
            # From the newest trade listed before (its millisecond included): under heavy flow a
            # short listing, so the snapshot is not left waiting behind a long one.
            after = await venue.fetch_fills_since(max((f.ts for f in before), default=since))
            await self._journal(before)  # all inside the positions
            pending = pending_fills(before, after)
            decisions = []
            held = [k for (v, k), q in self.ledger.positions().items() if v == venue_name and q != 0]
            for key in expand_keys(keys, snapshot.positions, held):
                cursor = usable_cursor(key, before, snapshot.as_of.get(key))
                check = check_position(key, snapshot.positions.get(key, ZERO), self.ledger.position(venue_name, key),
                                       locate_cut(key, pending, cursor))
                settled = settled_at_expiry(check, expired=self._expired(markets.get(key), key))
                decisions.append(settled or decide(check, tolerance=self.config.tolerance,
                                                   first_sight=(venue_name, key) not in known,
                                                   adopt_on_first_start=self.config.adopt_on_first_start,
                                                   adopt_venue_positions=self.config.adopt_venue_positions))
            unresolved = [d.check.key for d in decisions if d.verdict is Verdict.UNRESOLVED]
            if unresolved:
                log.info("reconcile_snapshot_retry", venue=venue_name, attempt=attempt, positions=unresolved,
                         pending=len(pending))
                continue
            for decision in decisions:
                if decision.verdict is Verdict.ADOPT:
                    await self._adopt(venue_name, decision)
                elif decision.verdict is Verdict.SETTLED:
                    await self._settle(venue_name, decision)
            await self._journal(pending)  # after the adjustments: inside or not, each counted once
            return decisions
        # Which trades of that millisecond the positions include is unknowable: try again later.
        raise TransientVenueError(f"{venue_name}: no exact position snapshot cut to adopt from in "
                                  f"{SNAPSHOT_ATTEMPTS} snapshots")

    def _expired(self, market: MarketInfo | None, key: str) -> bool:
        """Whether ``key`` has expired: by its instrument while listed, else by its symbol's date."""
        now = self.clock.time()
        if market is not None and market.instrument is not None:
            return market.instrument.expired(now)
        return expiry_day_reached(key, now)

    async def _settle(self, venue_name: str, decision: Decision) -> None:
        check = decision.check
        await self.ledger.record_adjustment(venue_name, check.key, decision.adjustment,
                                            "expired: settled by the venue", self.clock.time())
        log.warning("position_settled_at_expiry", venue=venue_name, symbol=check.key, ledger=str(check.ledger))

    async def _adopt(self, venue_name: str, decision: Decision) -> None:
        # A first-sight adoption is journaled even when zero: the position becomes known (later
        # restarts compare instead of adopting) and its time is the fill cursor.
        check = decision.check
        await self.ledger.record_adjustment(venue_name, check.key, decision.adjustment,
                                            "adopted venue position at startup", self.clock.time())
        if decision.adjustment:
            log.warning("position_adopted", venue=venue_name, asset=check.key, ledger=str(check.ledger),
                        venue_position=str(check.venue))
        else:  # nothing to adopt: the ledger agrees, only the first sight is recorded
            log.info("position_first_seen", venue=venue_name, asset=check.key, position=str(check.venue))

    async def _journal(self, fills: list[Fill]) -> None:
        """Journal ``fills`` (the ledger dedupes), queued together so they share commits."""
        if fills:
            await asyncio.gather(*(self.ledger.record_fill(f) for f in fills))


class StartupReconciliation:
    """Brings the ledger in line with the venues before any new hedge is decided.

    In order: seed simulated venues from the journal (paper); then, on each attempt, look for
    another hedger's open orders, backfill fills missed while down, resolve intents left open,
    handle unknown open orders with our prefix and compare positions. Every step is idempotent,
    so a transient venue error retries the whole attempt.
    """

    def __init__(self, settings: Settings, venues: Mapping[str, Venue], ledger: InventoryLedger, clock: Clock,
                 executors: list[HedgeExecutor], foreign_orders: ForeignOrderWatch,
                 wanted: Mapping[str, Iterable[str]]) -> None:
        self.settings = settings
        self.venues = venues
        self.ledger = ledger
        self.clock = clock
        self.executors = executors  # each once (several underlyings may hedge on one venue)
        self.foreign_orders = foreign_orders
        self.wanted = wanted  # venue name -> the symbols and assets compared (hedged or inventory)

    async def run(self) -> list[str]:
        """Reconcile; returns the position mismatches beyond tolerance (the engine starts
        HALTED on any), after journaling the venue's figure where the config adopts it."""
        self._seed_sim_venues()
        for attempt in range(1, RECONCILE_ATTEMPTS):
            try:
                return await self._reconcile_once()
            except TransientVenueError as exc:
                log.warning("reconcile_retry", attempt=attempt, error=str(exc))
                await self.clock.sleep(min(2.0 ** attempt, 10.0))
        return await self._reconcile_once()  # the last attempt: a transient error is fatal

    async def _reconcile_once(self) -> list[str]:
        await self.foreign_orders.scan_open_orders(e.venue for e in self.executors)
        cfg = self.settings.reconcile
        # The trade listings around the position snapshots start no later than this pass's
        # backfill ends, however long recovering intents in between takes.
        since = max(0.0, self.clock.time() - cfg.backfill_overlap)
        reconciler = PositionReconciler(self.ledger, self.clock, cfg)
        await reconciler.backfill(self.venues)
        for executor in self.executors:
            await executor.recover()
        await self._handle_unknown_open_orders()
        return await reconciler.reconcile(self.venues, self.wanted, since)

    def _seed_sim_venues(self) -> None:
        """Simulated venues restart empty: align them with the journal (paper mode only)."""
        if self.settings.mode is not Mode.PAPER:
            return
        for (venue_name, asset), qty in self.ledger.positions().items():
            venue = self.venues.get(venue_name)
            if isinstance(venue, PositionSeeding):
                venue.seed_position(asset, qty)

    async def _handle_unknown_open_orders(self) -> None:
        prefix = self.settings.executor.client_id_prefix
        for executor in self.executors:
            for report in await executor.venue.fetch_open_orders():
                cid = report.client_order_id
                if not cid.startswith(prefix) or self.ledger.order_state(cid) is not None:
                    continue  # not ours, or already resolved by recover()
                if self.settings.reconcile.unknown_open_orders == "cancel":
                    await executor.venue.cancel_order(report.symbol, cid)
                    log.warning("unknown_open_order_canceled", venue=executor.venue.name, client_order_id=cid)
                else:
                    log.warning("unknown_open_order_kept", venue=executor.venue.name, client_order_id=cid)
