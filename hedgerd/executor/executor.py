"""Rate-limited hedge order execution that never places the same order twice.

:class:`TokenBucket` paces every request to a venue. :class:`HedgeExecutor` turns a durable
:class:`~hedgerd.models.HedgeIntent` into one venue order under the intent's client order id:

* sizes it to the market (contracts, amount step, minimums) and caps IOC limits at the
  configured slippage;
* asks the kill-switch gate right before every send;
* on a timeout or any other unknown outcome, looks the order up by client order id before
  any retry, and resends (with the same id) only when the venue has certainly not seen it;
* backs off on transient errors, honours Retry-After and lowers its request rate on rate
  limits, and never retries a fatal rejection;
* journals every order state transition and fill in the ledger, and reports the quantity it
  has in flight so the risk loop does not hedge the same delta twice.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import replace
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from hedgerd.clock import Clock
from hedgerd.config import ExecutorConfig
from hedgerd.connectors.base import Venue
from hedgerd.errors import (
    FatalOrderError,
    OrderNotFound,
    PostOnlyRejected,
    RateLimited,
    ReduceOnlyRejected,
    TransientVenueError,
)
from hedgerd.executor.orders import (
    OrderJournal,
    OrderTracker,
    TrackedOrder,
    can_advance,
    expected_fill,
    limit_price,
    send_refusal,
)
from hedgerd.executor.passive import PassiveRunner
from hedgerd.executor.ratelimit import TokenBucket
from hedgerd.executor.requests import DETAIL_MAX, LANDING_GRACE, LookupFailed, VenueRequests, detail
from hedgerd.ledger.client_ids import is_child_id, parent_client_id
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, HedgeIntent, MarketInfo, OrderReport, OrderStatus, OrderType
from hedgerd.policy.sizing import venue_contracts

log = structlog.get_logger("hedgerd.executor")
T = TypeVar("T")

class HedgeExecutor(VenueRequests):
    """Places hedge orders on one venue, paced by ``bucket``, journaled in ``ledger``.

    ``gate(intent)`` is asked right before every send and returns a denial reason or None;
    ``on_result(ok, error_kind)`` is called once per executed intent that reached the point of
    sending (success, fatal rejection, retries exhausted, or outcome left unknown); ``on_halt(reason,
    source)`` halts trading when a look-up finds the client id on several venue orders.
    :meth:`apply_config` takes reloaded settings; ``config`` is read on every use.
    """

    def __init__(self, venue: Venue, ledger: OrderJournal, markets: dict[str, MarketInfo],
                 config: ExecutorConfig, bucket: TokenBucket, clock: Clock, metrics: Metrics,
                 gate: Callable[[HedgeIntent], str | None], on_result: Callable[[bool, str], None],
                 *, on_halt: Callable[[str, str], object] | None = None, rng: random.Random | None = None) -> None:
        super().__init__(venue, config, bucket, clock, metrics, on_halt=on_halt, rng=rng)
        self.ledger = ledger
        self.markets = markets
        self._gate = gate
        self._on_result = on_result
        self._orders = OrderTracker(ledger)
        self.passive = PassiveRunner(self)

    # ------------------------------------------------------------------ queries
    def in_flight(self, symbol: str) -> Decimal:
        """Signed base units of this executor's orders on ``symbol`` not yet landed in the ledger.

        An order counts from the moment :meth:`execute` has sized it (it may be sent any
        moment) until its fills are all journaled: a live or UNKNOWN order counts its whole
        requested amount less the fills journaled, a final one the fills it reported that have
        not been journaled yet. An order that ended without being sent counts zero.
        """
        total = ZERO
        for order in self._orders.live(symbol):
            total += order.intent.side.sign * self._orders.outstanding(order)
        return total

    def settled_as_sized(self, intent: HedgeIntent) -> bool:
        """True if the ledger holds exactly the amount ``intent``'s order was sized to (in base
        units): all of what :meth:`in_flight` counted for it has become position."""
        _, base_amount = venue_contracts(intent.amount, self.markets.get(intent.symbol))
        return self.ledger.filled_for(intent.client_order_id) == base_amount

    def absorbs(self, fill: Fill) -> bool:
        """True if ``fill`` (journaled) belongs to an order :meth:`in_flight` counts, within the
        size it counts: journaling it moved that much from in flight to position."""
        cid = parent_client_id(fill.client_order_id)  # a passive child's fill is its intent's
        order = self._orders.by_id.get(cid) if cid is not None else None
        if order is None or not (order.maybe_live or order.executing) or order.intent.symbol != fill.symbol:
            return False
        return self.ledger.filled_for(order.intent.client_order_id) <= expected_fill(order)

    def has_open(self, symbol: str) -> bool:
        """True while any order of this executor on ``symbol`` is not settled."""
        return bool(self._orders.live(symbol))

    def open_count(self, symbol: str) -> int:
        """Number of this executor's orders on ``symbol`` not settled yet."""
        return len(self._orders.live(symbol))

    def open_orders(self) -> list[OrderReport]:
        """Snapshot of every unsettled order (for status pages)."""
        return [
            OrderReport(client_order_id=o.intent.client_order_id, symbol=o.intent.symbol, status=o.status,
                        filled=o.reported_filled,
                        venue_order_id=o.last_report.venue_order_id if o.last_report else None)
            for o in self._orders.live(None)
        ]

    # ------------------------------------------------------------------ execute
    async def execute(self, intent: HedgeIntent, *, reference_price: Decimal | None = None,
                      received_at: float | None = None) -> OrderReport:
        """Place the order for ``intent`` and return the venue's last report on it.

        ``reference_price`` (best bid/ask or mid) caps IOC limits and checks the minimum
        notional; ``received_at`` (clock monotonic) is when the triggering fill arrived, for
        the decision-latency histogram. Ledger errors propagate.

        Executing an intent again is safe: an order already final is not resent, and one that
        may exist at the venue is looked up before anything is sent.
        """
        order = self._register(intent)
        return await self._execute(order, reference_price, received_at)

    def start(self, intent: HedgeIntent, *, durable: Awaitable[object] | None = None,
              reference_price: Decimal | None = None,
              received_at: float | None = None) -> asyncio.Task[OrderReport]:
        """:meth:`execute` in a task of its own; the order counts in :meth:`in_flight` (and
        :meth:`open_count`) as soon as this returns, before the task first runs.

        ``durable`` (from :meth:`hedgerd.ledger.InventoryLedger.submit_intent`) is awaited
        before anything else: nothing is sent for an intent that is not journaled, and if its
        commit fails the task fails with that error and the order is dropped unsent."""
        order = self._register(intent)
        work = self._execute(order, reference_price, received_at)
        if durable is not None:
            work = _after(durable, work)
        task = asyncio.create_task(work, name=f"hedge-{intent.client_order_id}")
        task.add_done_callback(lambda _: self._orders.release(order))  # also when cancelled before it ran
        return task

    def _register(self, intent: HedgeIntent) -> TrackedOrder:
        """Size ``intent`` and track it as executing (synchronous: no other task runs between)."""
        cid = intent.client_order_id
        existing = self._orders.by_id.get(cid)
        if existing is not None and existing.executing:
            raise RuntimeError(f"order {cid} is already being executed")
        market = self.markets.get(intent.symbol)
        contracts, base_amount = venue_contracts(intent.amount, market)
        order = TrackedOrder(intent=intent, contracts=contracts, base_amount=base_amount,
                       last_sent_at=intent.created_at, executing=True)
        if existing is not None:  # e.g. recovered: keep what is known of it
            order.status, order.reported_filled = existing.status, existing.reported_filled
            order.maybe_live, order.acknowledged = existing.maybe_live, existing.acknowledged
            order.last_report = existing.last_report
        else:
            journaled = self.ledger.order_state(cid)
            if journaled is not None and journaled[0] is not OrderStatus.NEW:
                order.status, order.reported_filled = journaled
                order.maybe_live = not order.status.is_final or order.reported_filled > 0
                order.acknowledged = order.status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)
        self._orders.by_id[cid] = order
        return order

    async def _execute(self, order: TrackedOrder, reference_price: Decimal | None,
                       received_at: float | None) -> OrderReport:
        intent = order.intent
        cid = intent.client_order_id
        market = self.markets.get(intent.symbol)
        contracts = order.contracts
        try:
            if order.status.is_final:
                return order.last_report or OrderReport(cid, intent.symbol, order.status,
                                                        order.reported_filled)
            refusal = send_refusal(intent, market, contracts, reference_price)
            if refusal is not None:
                label, detail = refusal
                log.warning("order_not_sent", client_order_id=cid, symbol=intent.symbol, reason=detail,
                            amount=str(intent.amount), contracts=str(contracts))
                await self._journal(order, OrderStatus.REJECTED, detail=detail, metric_status=label)
                return OrderReport(cid, intent.symbol, OrderStatus.REJECTED)
            if intent.order_type is OrderType.PASSIVE:
                return await self.passive.run(order, received_at)
            try:
                limit = limit_price(intent, market, reference_price, self.config.max_slippage_bps)
            except ValueError as exc:
                log.warning("order_not_sent", client_order_id=cid, symbol=intent.symbol, reason=str(exc))
                await self._journal(order, OrderStatus.REJECTED, detail=str(exc)[:DETAIL_MAX],
                                    metric_status="bad_price")
                return OrderReport(cid, intent.symbol, OrderStatus.REJECTED)
            return await self._run(order, limit, received_at)
        finally:
            self._orders.release(order)

    async def _run(self, order: TrackedOrder, limit: Decimal | None, received_at: float | None) -> OrderReport:
        """The send / look-up / retry loop of one order."""
        intent = order.intent
        cid = intent.client_order_id
        sends = 0
        needs_lookup = order.maybe_live  # re-executing an order that may already exist
        last_kind = ""
        latency_pending = received_at is not None
        while True:
            if needs_lookup:
                needs_lookup = False
                looked_at = self.clock.time()
                try:
                    found = await self._lookup(order, self.config.max_retries + 1)
                except LookupFailed as exc:
                    return await self._give_up_unknown(order, f"lookup failed: {exc}")
                if found is not None:
                    return await self._finish(order, found)
                landed_by = self._landed_by(order)
                if looked_at < landed_by:
                    # The send may still be on its way: resending now could execute it twice (a
                    # venue refuses a reused client id only while the first order is open).
                    log.info("order_not_at_venue_yet", client_order_id=cid, wait=round(landed_by - looked_at, 3))
                    await self.clock.sleep(max(0.0, landed_by - self.clock.time()))
                    needs_lookup = True
                    continue
                log.info("order_not_at_venue", client_order_id=cid, sends=sends)
            if sends > self.config.max_retries:
                return await self._give_up(order, last_kind, sends)
            await self._acquire("create_order")
            reason = self._gate(intent)
            if reason is not None:
                return await self._denied(order, reason)
            if latency_pending and received_at is not None:
                self.metrics.decision_latency.observe(max(0.0, self.clock.monotonic() - received_at))
                latency_pending = False
            sends += 1
            was_live = order.maybe_live
            order.maybe_live = True
            order.last_sent_at = self.clock.time()
            # logged as soon as the send has started (the request is on its way), not before it
            asyncio.get_running_loop().call_soon(functools.partial(
                log.info, "order_send", client_order_id=cid, venue=self.venue.name, symbol=intent.symbol,
                side=intent.side.value, contracts=str(order.contracts),
                price=str(limit) if limit is not None else None, attempt=sends, reduce_only=intent.reduce_only))
            try:
                async with asyncio.timeout(self.config.order_timeout):  # no extra task, unlike wait_for
                    report = await self.venue.create_order(intent, order.contracts, limit)
            except RateLimited as exc:
                order.maybe_live = was_live
                last_kind = exc.kind
                self._count_error(exc, "create", cid)
                self._on_rate_limited(exc, sends - 1)
            except TransientVenueError as exc:
                order.maybe_live = was_live
                last_kind = exc.kind
                self._count_error(exc, "create", cid)
                if sends <= self.config.max_retries:
                    await self.clock.sleep(self._backoff(sends - 1))
            except FatalOrderError as exc:
                order.maybe_live = was_live
                if not was_live and ((isinstance(exc, PostOnlyRejected) and intent.order_type is OrderType.POST_ONLY)
                                     or (isinstance(exc, ReduceOnlyRejected) and is_child_id(cid))):
                    order.refused = exc.kind  # the passive runner reprices, or ends the intent: no error
                    await self._journal(order, OrderStatus.REJECTED, detail=detail(exc))
                    return OrderReport(cid, intent.symbol, OrderStatus.REJECTED)
                self._count_error(exc, "create", cid)
                return await self._fatal(order, exc)
            except Exception as exc:  # timeout, OrderOutcomeUnknown, anything unexpected
                last_kind = "unknown_outcome"
                self._count_error(exc, "create", cid)
                await self._journal(order, OrderStatus.UNKNOWN, detail=detail(exc))
                needs_lookup = True
            else:
                self.bucket.restore()
                if intent.order_type is OrderType.POST_ONLY:  # rests: the passive runner follows it
                    await self._apply_report(order, report)
                    return report
                return await self._finish(order, report)

    async def _finish(self, order: TrackedOrder, report: OrderReport) -> OrderReport:
        """Journal a venue report, follow a still-open order until final, report the result."""
        await self._apply_report(order, report)
        polls = 0
        while not order.status.is_final and polls < self.config.max_retries:
            await self.clock.sleep(self._backoff(polls))
            polls += 1
            try:
                found = await self._lookup(order, 1)
            except LookupFailed:
                break
            if found is None:
                break
            await self._apply_report(order, found)
        last = order.last_report or report
        ok = order.status is not OrderStatus.REJECTED
        log.info("order_result", client_order_id=order.intent.client_order_id, status=order.status.value,
                 filled=str(order.reported_filled),
                 average_price=str(last.average_price) if last.average_price is not None else None)
        self._on_result(ok, "" if ok else "rejected")
        return last

    async def _fatal(self, order: TrackedOrder, exc: FatalOrderError) -> OrderReport:
        cid = order.intent.client_order_id
        if order.maybe_live:
            # An earlier send may have landed after all (a duplicate client id is rejected as
            # invalid): look before concluding the order does not exist.
            try:
                found = await self._lookup(order, self.config.max_retries + 1)
            except LookupFailed as lookup_exc:
                return await self._give_up_unknown(order, f"lookup failed: {lookup_exc}")
            if found is not None:
                return await self._finish(order, found)
        log.error("order_rejected", client_order_id=cid, kind=exc.kind, detail=detail(exc))
        await self._journal(order, OrderStatus.REJECTED, detail=detail(exc))
        self._on_result(False, exc.kind)
        return OrderReport(cid, order.intent.symbol, OrderStatus.REJECTED)

    async def _denied(self, order: TrackedOrder, reason: str) -> OrderReport:
        cid = order.intent.client_order_id
        if order.maybe_live:
            return await self._give_up_unknown(order, f"gate: {reason}")
        log.warning("order_gated", client_order_id=cid, reason=reason)
        await self._journal(order, OrderStatus.CANCELED, detail=reason[:DETAIL_MAX], metric_status="gated")
        return OrderReport(cid, order.intent.symbol, OrderStatus.CANCELED)

    async def _give_up(self, order: TrackedOrder, kind: str, sends: int) -> OrderReport:
        """Retries exhausted."""
        if order.maybe_live:
            return await self._give_up_unknown(order, f"retries exhausted after {sends} sends")
        cid = order.intent.client_order_id
        detail = f"gave up after {sends} attempts: {kind}"
        log.error("order_abandoned", client_order_id=cid, detail=detail)
        await self._journal(order, OrderStatus.REJECTED, detail=detail)
        self._on_result(False, kind or "transient")
        return OrderReport(cid, order.intent.symbol, OrderStatus.REJECTED)

    async def _give_up_unknown(self, order: TrackedOrder, why: str) -> OrderReport:
        """Stop with the outcome unknown: the order stays UNKNOWN and in flight in full."""
        cid = order.intent.client_order_id
        if order.status is OrderStatus.NEW:
            await self._journal(order, OrderStatus.UNKNOWN, detail=why[:DETAIL_MAX])
        log.error("order_outcome_unknown", client_order_id=cid, status=order.status.value, reason=why)
        self.metrics.hedge_orders.labels(self.venue.name, order.intent.symbol, "unknown").inc()
        self._on_result(False, "unknown_outcome")
        return order.last_report or OrderReport(cid, order.intent.symbol, OrderStatus.UNKNOWN)

    # ------------------------------------------------------------------ journal
    async def _journal(self, order: TrackedOrder, status: OrderStatus, *, filled: Decimal | None = None,
                       average_price: Decimal | None = None, venue_order_id: str | None = None,
                       ts: float = 0.0, detail: str = "", metric_status: str | None = None) -> bool:
        async with order.lock:  # check and write as one step against concurrent updates
            new_filled = order.reported_filled if filled is None else filled
            if not can_advance(order.status, order.reported_filled, status, new_filled):
                return False
            await self.ledger.record_order_state(order.intent.client_order_id, status, new_filled,
                                                 average_price, venue_order_id, ts or self.clock.time(),
                                                 detail)
            order.status = status
            order.reported_filled = max(order.reported_filled, new_filled)
        log.info("order_state", client_order_id=order.intent.client_order_id, status=status.value,
                 filled=str(order.reported_filled), detail=detail or None)
        if status.is_final:
            self.metrics.hedge_orders.labels(self.venue.name, order.intent.symbol,
                                             metric_status or status.value).inc()
        return True

    async def _apply_report(self, order: TrackedOrder, report: OrderReport) -> bool:
        """Journal a venue report's fills (the ledger dedupes) and state transition; True if
        any of it was new to the ledger."""
        cid = order.intent.client_order_id
        order.maybe_live = True
        order.acknowledged = True
        # The fills (the ledger counts hedge fees of those new to it) are queued ahead of the
        # state change, so they commit before it or in the same transaction (no task each).
        journaled = [self.ledger.submit_fill(fill if fill.client_order_id else replace(fill, client_order_id=cid))
                     for fill in report.fills]
        try:
            advanced = await self._journal(
                order, report.status, filled=report.filled, average_price=report.average_price,
                venue_order_id=report.venue_order_id, ts=report.ts)
        finally:
            # committed by now; a failure of theirs is raised (every one retrieved) here
            if len(journaled) == 1:
                new_fills = await journaled[0]
            else:
                new_fills = any(await asyncio.gather(*journaled)) if journaled else False
        if advanced or order.last_report is None:
            order.last_report = report
        return advanced or new_fills

    async def on_order_update(self, report: OrderReport) -> HedgeIntent | None:
        """Journal a streamed update of one of this executor's orders (others are ignored).

        Returns the order's intent if the update journaled anything new (a fill or a state
        change), None if it changed nothing (e.g. it repeats the answer to the send)."""
        order = self._orders.by_id.get(report.client_order_id)
        if order is None:
            return await self.passive.on_child_update(report)
        if await self._apply_report(order, report):
            return order.intent
        return None

    # ------------------------------------------------------------------ maintenance
    def _landed_by(self, order: TrackedOrder) -> float:
        """Wall time after which the order's last send can no longer reach the venue's book."""
        return order.last_sent_at + self.config.order_timeout + LANDING_GRACE

    async def _resolve(self, order: TrackedOrder, attempts: int) -> None:
        """Look an unsettled order up and journal what the venue says; keep it on errors."""
        cid = order.intent.client_order_id
        looked_at = self.clock.time()
        try:
            found = await self._lookup(order, attempts)
        except LookupFailed as exc:
            log.warning("order_unresolved", client_order_id=cid, status=order.status.value, reason=str(exc))
            return
        if found is not None:
            await self._apply_report(order, found)
            return
        age = looked_at - order.last_sent_at
        if not order.acknowledged and looked_at >= self._landed_by(order):
            log.warning("order_never_reached_venue", client_order_id=cid, age=round(age, 3))
            await self._journal(order, OrderStatus.CANCELED, detail="never reached the venue")
            order.maybe_live = False
        else:
            log.warning("order_not_found", client_order_id=cid, status=order.status.value, age=round(age, 3))

    async def recover(self) -> None:
        """After a restart: resolve this venue's intents the ledger still has open.

        Each is looked up by client order id. Found: its state and fills are journaled. Not
        found and older than ``order_timeout``: journaled CANCELED. Otherwise (errors, too
        young) it stays tracked and counts as in flight, so the daemon cannot hedge it twice.
        """
        for intent in self.ledger.open_intents():
            cid = intent.client_order_id
            if intent.venue != self.venue.name or cid in self._orders.by_id:
                continue
            contracts, base_amount = venue_contracts(intent.amount, self.markets.get(intent.symbol))
            state = self.ledger.order_state(cid)
            order = TrackedOrder(intent=intent, contracts=contracts, base_amount=base_amount, maybe_live=True,
                           last_sent_at=intent.created_at)
            if state is not None:
                order.status, order.reported_filled = state
                order.acknowledged = state[0] in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)
            self._orders.by_id[cid] = order
            log.info("order_recovering", client_order_id=cid, status=order.status.value)
            if intent.order_type is OrderType.PASSIVE:
                await self.passive.recover(order)
            else:
                await self._resolve(order, self.config.max_retries + 1)
        self._orders.live(None)

    async def refresh_open(self) -> None:
        """Look up every unsettled order not being executed (e.g. on the safety tick).

        Resolves orders left UNKNOWN or open: an UNKNOWN one the venue has not seen once
        ``order_timeout`` has passed since its last send is journaled CANCELED.
        """
        for order in list(self._orders.live(None)):
            if not order.executing and order.maybe_live and not order.status.is_final:
                if order.intent.order_type is OrderType.PASSIVE:
                    await self.passive.recover(order)
                else:
                    await self._resolve(order, 1)
        self._orders.live(None)

    async def cancel_all(self) -> None:
        """Cancel every open order of this executor by client order id and journal the results;
        every passive intent being worked ends (its live child cancelled)."""
        await self.passive.cancel_all("cancel_all")
        for order in list(self._orders.live(None)):
            if order.status.is_final or not order.maybe_live:
                continue
            if order.intent.order_type is OrderType.PASSIVE:
                if not order.executing:
                    await self.passive.recover(order)
                continue
            intent = order.intent
            cid = intent.client_order_id
            await self._acquire("cancel_order")
            try:
                report = await asyncio.wait_for(self.venue.cancel_order(intent.symbol, cid),
                                                timeout=self.config.order_timeout)
            except OrderNotFound:
                report = None
            except Exception as exc:
                self._count_error(exc, "cancel_order", cid)
                continue
            log.info("order_cancel", client_order_id=cid, gone=report is None,
                     status=report.status.value if report is not None else None)
            if report is not None:
                await self._apply_report(order, report)
            else:
                await self._resolve(order, 1)
        self._orders.live(None)


async def _after(first: Awaitable[object], then: Coroutine[Any, Any, T]) -> T:
    """Await ``first``, then ``then`` (closed unstarted if ``first`` fails or is cancelled)."""
    try:
        await first
    except BaseException:
        then.close()
        raise
    return await then
