"""Passive execution of a hedge intent (``executor.order_type = "passive"``): post-only child
orders at the touch, repriced as the book moves away, escalated to an IOC when it is urgent.

A passive intent is worked by child orders, one live at a time (docs/passive.md):

1. **Journal, then send.** The next child's client id is the intent's id plus the next sequence
   number (:func:`~hedgerd.ledger.client_ids.child_client_id`); the child is journaled (an order event
   under its own id, state NEW, with side, size and price) and durable before it is sent. A crash
   after the record, before or after the send, leaves a number that is never used again: on
   restart the child is looked up by its client id and its fills journaled (:meth:`PassiveRunner.recover`).
2. **Rest at the touch.** A buy rests at the best bid, a sell at the best ask, post-only (the
   venue refuses it rather than let it take liquidity).
3. **Reprice.** Every ``passive_check_interval`` the book is looked at; once the touch has moved
   away from the child (a better bid above a resting buy, a better ask below a resting sell), the
   child is cancelled and, once the venue confirms it final, the next one is placed at the new
   touch. Each child after the first is a reprice; cancels and sends take tokens from the venue's
   bucket like every request, and ``passive_max_reprices`` bounds them per intent.
4. **Post-only rejection** (Binance -5022, Deribit 11054): the book moved through the price on
   the way; the child is journaled REJECTED and the next one placed at the new touch after one
   check interval. It is a reprice, not an order error (no error count, no kill-switch trigger).
5. **Escalate.** When ``|net delta|`` without the orders in flight exceeds ``passive_urgency`` x
   the policy's band, when ``passive_timeout`` has passed since the intent started, or when the
   reprices are used up, the resting child is cancelled and what is left is sent as one IOC
   child (its limit capped at ``max_slippage_bps`` from the mid) through the executor's send and
   look-up loop.
6. **Stop.** Halt and shutdown (:meth:`PassiveRunner.cancel_all`) cancel the live child and end
   every run: the intent ends CANCELED with what filled, and the risk loop decides afresh.

Children's fills are journaled under the intent's client id (the ledger maps a child id to its
parent), so the intent's filled amount, its in-flight remainder and its cost are the sum over
its children. The decisions (:func:`touch_price`, :func:`moved_away`, :func:`escalation`) are
pure; :class:`PassiveRunner` does the requests, through the executor's own send, look-up and
journal steps (it is the executor's friend: it calls them directly, so a child order is sent,
retried, looked up and journaled exactly as any order is).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING

import structlog

from hedgerd.config import ExecutorConfig
from hedgerd.errors import OrderNotFound, PostOnlyRejected, ReduceOnlyRejected
from hedgerd.executor.orders import TrackedOrder, limit_price, send_refusal
from hedgerd.executor.requests import DETAIL_MAX, LookupFailed
from hedgerd.ledger.client_ids import child_client_id, split_child_id
from hedgerd.models import ZERO, HedgeIntent, OrderReport, OrderStatus, OrderType, Side
from hedgerd.policy.sizing import round_price, venue_contracts

if TYPE_CHECKING:
    from hedgerd.executor.executor import HedgeExecutor

log = structlog.get_logger("hedgerd.executor.passive")

Book = Callable[[str], tuple[Decimal, Decimal] | None]
"""(best bid, best ask) of a symbol on the executor's venue, None when not known."""
Urgency = Callable[[HedgeIntent], tuple[Decimal, Decimal] | None]
"""(|net delta| without the orders in flight, the policy's band) of the intent's underlying."""


class Escalation(StrEnum):
    """Why what is left of a passive intent goes out as an IOC."""

    URGENCY = "urgency"
    TIMEOUT = "timeout"
    REPRICES = "reprices"


def touch_price(side: Side, bid: Decimal, ask: Decimal) -> Decimal:
    """Where a passive child rests: the best bid for a buy, the best ask for a sell."""
    return bid if side is Side.BUY else ask


def moved_away(side: Side, price: Decimal, bid: Decimal, ask: Decimal) -> bool:
    """True when the touch has left a child resting at ``price`` behind: a buy no longer the best
    bid (the bid rose above it), a sell no longer the best ask (the ask fell below it)."""
    return bid > price if side is Side.BUY else ask < price


def escalation(config: ExecutorConfig, *, elapsed: float, reprices: int,
               urgency: tuple[Decimal, Decimal] | None) -> Escalation | None:
    """Why the intent must stop waiting, or None: urgency (|net delta| over ``passive_urgency`` x
    the band; a zero band never makes it urgent), timeout, or the reprices used up."""
    if urgency is not None:
        exposure, band = urgency
        if band > 0 and exposure > config.passive_urgency * band:
            return Escalation.URGENCY
    if elapsed >= config.passive_timeout:
        return Escalation.TIMEOUT
    if reprices >= config.passive_max_reprices:
        return Escalation.REPRICES
    return None


@dataclass(eq=False)
class _Run:
    """One passive intent being worked."""

    order: TrackedOrder
    started: float  # clock monotonic
    sequence: int = 0  # the last child number journaled
    child: TrackedOrder | None = None
    last_poll: float = 0.0
    stopped: str = ""  # why the run must end (halt, shutdown)
    escalated: bool = False


class PassiveRunner:
    """Works passive intents for one :class:`~hedgerd.executor.HedgeExecutor` (module docstring).

    ``book`` and ``urgency`` come from the engine (:meth:`attach`); without a book nothing rests
    and the intent escalates on its timeout."""

    def __init__(self, executor: HedgeExecutor) -> None:
        self._ex = executor
        self._runs: dict[str, _Run] = {}
        self._book: Book = lambda symbol: None
        self._urgency: Urgency = lambda intent: None

    def attach(self, *, book: Book, urgency: Urgency) -> None:
        """Where the runner reads the book and the urgency of an underlying."""
        self._book, self._urgency = book, urgency

    # ------------------------------------------------------------------ the lifecycle
    async def run(self, order: TrackedOrder, received_at: float | None) -> OrderReport:
        """Work ``order`` (a passive intent) to its end; the intent's last report."""
        ex, intent = self._ex, order.intent
        cid = intent.client_order_id
        run = _Run(order=order, started=ex.clock.monotonic())
        self._runs[cid] = run
        try:
            # executed again: never reuse a number, never place beside a live child. A fresh intent
            # (NEW, not sent) has none (after a restart recover() resolves the children of every
            # intent left open before anything executes), and the look-up is a scan.
            journaled = ex.ledger.child_orders(cid) if order.maybe_live or order.status is not OrderStatus.NEW else []
            for child_id, status, _, sent_at in journaled:
                run.sequence = max(run.sequence, _sequence(child_id))
                tries = 0
                while not status.is_final and not await self._resolve_child(order, child_id, status, sent_at):
                    tries += 1  # one child may be live: none is placed until it is known final
                    if tries > ex.config.max_retries:
                        return await ex._give_up_unknown(order, f"child {child_id} unresolved")
                    await ex.clock.sleep(ex.config.passive_poll_interval)
            return await self._work(run, received_at)
        finally:
            del self._runs[cid]

    async def _work(self, run: _Run, received_at: float | None) -> OrderReport:
        ex, order = self._ex, run.order
        intent = order.intent
        market = ex.markets.get(intent.symbol)
        while True:
            child = run.child
            if child is not None and not child.status.is_final:
                await self._rest(run)
                continue
            run.child = None
            await self._sync_parent(run)
            filled = ex.ledger.filled_for(intent.client_order_id)
            contracts, base = venue_contracts(max(order.base_amount - filled, ZERO), market)
            book = self._book(intent.symbol)
            mid = (book[0] + book[1]) / 2 if book is not None else None
            if send_refusal(intent, market, contracts, mid) is not None:
                return await self._end(run, "nothing left the venue takes")
            if run.stopped:
                return await self._end(run, run.stopped)
            reason = ex._gate(intent)
            if reason is not None:
                return await self._end(run, f"gate: {reason}")
            why = escalation(ex.config, elapsed=ex.clock.monotonic() - run.started,
                             reprices=max(run.sequence - 1, 0), urgency=self._urgency(intent))
            if why is not None:
                return await self._escalate(run, contracts, base, mid, why)
            if book is None:
                await ex.clock.sleep(ex.config.passive_check_interval)
                continue
            assert market is not None  # send_refusal refuses without one
            price = round_price(touch_price(intent.side, *book), market.price_step, intent.side)
            child = await self._send_child(run, OrderType.POST_ONLY, contracts, base, price, received_at)
            received_at = None
            if child.refused == PostOnlyRejected.kind:
                log.info("passive_post_only_rejected", client_order_id=child.intent.client_order_id,
                         price=str(price))
                await ex.clock.sleep(ex.config.passive_check_interval)
            elif child.refused == ReduceOnlyRejected.kind:  # the position moved: it no longer reduces
                return await self._end(run, "no longer reduces the position")
            elif child.status is OrderStatus.REJECTED:
                return await self._end(run, "child rejected", result_sent=True)

    async def _send_child(self, run: _Run, order_type: OrderType, contracts: Decimal, base: Decimal,
                          price: Decimal | None, received_at: float | None) -> TrackedOrder:
        """Journal the next child (durable), then send it through the executor's send loop."""
        ex, parent = self._ex, run.order.intent
        run.sequence += 1
        child_id = child_client_id(parent.client_order_id, run.sequence)
        intent = replace(parent, client_order_id=child_id, order_type=order_type, amount=base,
                         limit_price=price if order_type is OrderType.POST_ONLY else None)
        child = TrackedOrder(intent=intent, contracts=contracts, base_amount=base, executing=True,
                             last_sent_at=ex.clock.time())
        await ex.ledger.record_order_state(
            child_id, OrderStatus.NEW, ZERO, price, None, ex.clock.time(),
            f"child {run.sequence} of {parent.client_order_id}: {parent.side.value} {contracts} "
            f"{order_type.value}" + (f" @ {price}" if price is not None else ""))
        run.child = child
        run.last_poll = ex.clock.monotonic()
        try:
            await ex._run(child, price, received_at)
        finally:
            child.executing = False
        if run.sequence > 1 and order_type is OrderType.POST_ONLY:
            ex.metrics.passive_reprices.labels(ex.venue.name, parent.symbol).inc()
        await self._sync_parent(run)
        return child

    async def _rest(self, run: _Run) -> None:
        """Wait one check interval (or a stream update) with a child resting; reprice, escalate
        or stop by cancelling it."""
        ex, child = self._ex, run.child
        assert child is not None
        await ex.clock.sleep(ex.config.passive_check_interval)
        if not child.status.is_final and ex.clock.monotonic() - run.last_poll >= ex.config.passive_poll_interval:
            run.last_poll = ex.clock.monotonic()
            await self._poll(child)
        await self._sync_parent(run)
        if child.status.is_final:
            return
        intent = run.order.intent
        book = self._book(intent.symbol)
        why: str | None = run.stopped or None
        if why is None and book is not None and child.intent.limit_price is not None \
                and moved_away(intent.side, child.intent.limit_price, *book):
            why = "reprice"
        if why is None:
            esc = escalation(ex.config, elapsed=ex.clock.monotonic() - run.started,
                             reprices=max(run.sequence - 1, 0), urgency=self._urgency(intent))
            why = esc.value if esc is not None else None
        if why is not None:
            await self._cancel(child, why)

    async def _poll(self, child: TrackedOrder) -> None:
        """Look a child up by client id and journal what the venue says; one that never reached
        the venue once its send can no longer land is journaled CANCELED."""
        ex = self._ex
        try:
            found = await ex._lookup(child, 1)
        except LookupFailed:
            return
        if found is not None:
            await ex._apply_report(child, found)
        elif not child.acknowledged and ex.clock.time() >= ex._landed_by(child):
            await ex._journal(child, OrderStatus.CANCELED, detail="never reached the venue")
            child.maybe_live = False

    async def _cancel(self, child: TrackedOrder, why: str) -> None:
        """Cancel a resting child by client id; its final state is journaled when the venue
        gives it (else it stays live, and the next check tries again)."""
        ex = self._ex
        cid = child.intent.client_order_id
        await ex._acquire("cancel_order")
        try:
            async with asyncio.timeout(ex.config.order_timeout):
                report = await ex.venue.cancel_order(child.intent.symbol, cid)
        except OrderNotFound:
            report = None
        except Exception as exc:
            ex._count_error(exc, "cancel_order", cid)
            return
        log.info("passive_cancel", client_order_id=cid, why=why, gone=report is None)
        if report is not None:
            await ex._apply_report(child, report)
        if not child.status.is_final:
            await self._poll(child)

    async def _escalate(self, run: _Run, contracts: Decimal, base: Decimal, mid: Decimal | None,
                        why: Escalation) -> OrderReport:
        """Send what is left as one IOC child (capped at the configured slippage from ``mid``)."""
        ex, intent = self._ex, run.order.intent
        ex.metrics.passive_escalations.labels(ex.venue.name, intent.symbol, why.value).inc()
        log.info("passive_escalate", client_order_id=intent.client_order_id, why=why.value,
                 contracts=str(contracts))
        ioc = replace(intent, order_type=OrderType.LIMIT_IOC, limit_price=None)
        try:
            limit = limit_price(ioc, ex.markets.get(intent.symbol), mid, ex.config.max_slippage_bps)
        except (ValueError, AssertionError):
            limit = None
        if limit is None:
            return await self._end(run, f"escalation ({why.value}) without a price")
        run.escalated = True
        await self._send_child(run, OrderType.LIMIT_IOC, contracts, base, limit, None)
        return await self._end(run, f"escalated: {why.value}", result_sent=True)

    async def _sync_parent(self, run: _Run) -> None:
        """Journal the intent's progress (SUBMITTED once a child is out, PARTIALLY_FILLED with
        what its children filled)."""
        ex, order = self._ex, run.order
        filled = ex.ledger.filled_for(order.intent.client_order_id)
        if filled > order.reported_filled:
            await ex._journal(order, OrderStatus.PARTIALLY_FILLED, filled=filled)
        elif run.sequence and order.status in (OrderStatus.NEW, OrderStatus.UNKNOWN):
            order.maybe_live = order.acknowledged = True
            await ex._journal(order, OrderStatus.SUBMITTED)

    async def _end(self, run: _Run, why: str, *, result_sent: bool = False) -> OrderReport:
        """End the intent: FILLED when its children filled all of it, else CANCELED (REJECTED when
        nothing filled and a child was refused) with what filled; the risk loop decides on the rest."""
        ex, order = self._ex, run.order
        intent = order.intent
        filled = ex.ledger.filled_for(intent.client_order_id)
        if filled >= order.base_amount:
            status = OrderStatus.FILLED
        elif filled == 0 and why == "child rejected":
            status = OrderStatus.REJECTED
        else:
            status = OrderStatus.CANCELED
        await ex._journal(order, status, filled=filled, detail=why[:DETAIL_MAX])
        log.info("passive_result", client_order_id=intent.client_order_id, status=status.value,
                 filled=str(filled), children=run.sequence, why=why)
        if run.sequence and not result_sent and not run.escalated:
            ex._on_result(True, "")
        report = OrderReport(intent.client_order_id, intent.symbol, order.status, order.reported_filled)
        order.last_report = report
        return report

    # ------------------------------------------------------------------ outside the run
    async def on_child_update(self, report: OrderReport) -> HedgeIntent | None:
        """Journal a streamed update of a child order; the parent intent if it changed anything."""
        split = split_child_id(report.client_order_id)
        run = self._runs.get(split[0]) if split is not None else None
        child = run.child if run is not None else None
        if run is None or child is None or child.intent.client_order_id != report.client_order_id:
            if split is not None:  # a child no run follows (e.g. a late fill): its fills still count
                fills = [self._ex.ledger.submit_fill(f) for f in report.fills]
                new = any([await f for f in fills])
                parent = self._ex._orders.by_id.get(split[0])
                return parent.intent if new and parent is not None else None
            return None
        changed = await self._ex._apply_report(child, report)
        return run.order.intent if changed else None

    async def cancel_all(self, why: str) -> None:
        """End every run (halt, shutdown): no child is placed after this; each live one is cancelled."""
        for run in list(self._runs.values()):
            run.stopped = why
            child = run.child
            if child is not None and not child.status.is_final and not child.executing:
                await self._cancel(child, why)

    async def recover(self, order: TrackedOrder) -> None:
        """After a restart: look every journaled child of the passive intent ``order`` up by
        client id (a child journaled but perhaps never sent is never sent again), journal their
        fills, cancel any still resting, and end the intent with what filled."""
        ex = self._ex
        cid = order.intent.client_order_id
        unresolved = False
        for child_id, status, _, sent_at in ex.ledger.child_orders(cid):
            if not status.is_final:
                unresolved |= not await self._resolve_child(order, child_id, status, sent_at)
        if unresolved:
            return  # stays open and in flight; the safety tick tries again
        filled = ex.ledger.filled_for(cid)
        final = OrderStatus.FILLED if filled >= order.base_amount else OrderStatus.CANCELED
        await ex._journal(order, final, filled=filled, detail="recovered after a restart")

    async def _resolve_child(self, parent: TrackedOrder, child_id: str, status: OrderStatus,
                             sent_at: float) -> bool:
        """Resolve a journaled child not known final (journaled at ``sent_at``, just before its
        send): cancel it by client id if it rests, journal what the venue says; True once final.
        Not found once its send can no longer land: CANCELED, its number never used again."""
        ex, intent = self._ex, parent.intent
        child = TrackedOrder(intent=replace(intent, client_order_id=child_id, order_type=OrderType.POST_ONLY),
                             contracts=ZERO, base_amount=ZERO, status=status, maybe_live=True,
                             last_sent_at=sent_at)
        child.acknowledged = status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)
        await self._cancel(child, "recovery")
        if not child.status.is_final and not child.acknowledged and ex.clock.time() >= ex._landed_by(child):
            await ex._journal(child, OrderStatus.CANCELED, detail="never reached the venue")
        log.info("passive_child_recovered", client_order_id=child_id, status=child.status.value)
        return child.status.is_final


def _sequence(child_id: str) -> int:
    split = split_child_id(child_id)
    return split[1] if split is not None else 0

