"""Passive execution (hedgerd.executor.passive): the pure decisions, and the lifecycle of a passive
intent's child orders against a venue with a book the test moves, on the real ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd.config import ExecutorConfig
from hedgerd.errors import InvalidOrder, OrderOutcomeUnknown, PostOnlyRejected, ReduceOnlyRejected
from hedgerd.executor import HedgeExecutor, TokenBucket
from hedgerd.executor.passive import Escalation, escalation, moved_away, touch_price
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.client_ids import child_client_id, parent_client_id, split_child_id
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, MarketInfo, OrderReport, OrderStatus, OrderType, Side

SYMBOL = "BTC/USDT:USDT"
MARKET = MarketInfo(symbol=SYMBOL, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                    price_step=Decimal("0.1"), min_amount=Decimal("0.001"), min_notional=Decimal(5))
D = Decimal


# ---------------------------------------------------------------------------- pure decisions
def test_child_ids_derive_from_the_intent_and_read_back() -> None:
    parent = "hgd0badc0dex42"
    assert child_client_id(parent, 1) == "hgd0badc0dex42c1"
    assert split_child_id("hgd0badc0dex42c17") == (parent, 17)
    assert parent_client_id("hgd0badc0dex42c3") == parent
    assert parent_client_id(parent) == parent  # the intent's own id is no child
    assert split_child_id("hgd0badc0dex42c0") is None  # sequences start at 1
    assert parent_client_id(None) is None
    with pytest.raises(ValueError):
        child_client_id(parent, 0)
    assert len(child_client_id("hgdxxxxx" + "0badc0de" + "x" + "9" * 12, 9999)) <= 36  # Binance's limit


def test_touch_and_moved_away() -> None:
    assert touch_price(Side.BUY, D(100), D(101)) == D(100)
    assert touch_price(Side.SELL, D(100), D(101)) == D(101)
    assert moved_away(Side.BUY, D(100), D("100.1"), D(101))  # a better bid: we are behind it
    assert not moved_away(Side.BUY, D(100), D(100), D(101))
    assert not moved_away(Side.BUY, D(100), D("99.9"), D(101))  # the bid fell: we lead the book
    assert moved_away(Side.SELL, D(101), D(100), D("100.9"))
    assert not moved_away(Side.SELL, D(101), D(100), D(101))


def test_escalation_urgency_timeout_and_reprices() -> None:
    config = ExecutorConfig(passive_timeout=30, passive_urgency=D(3), passive_max_reprices=5)
    assert escalation(config, elapsed=1, reprices=0, urgency=(D("0.2"), D("0.1"))) is None
    assert escalation(config, elapsed=1, reprices=0, urgency=(D("0.31"), D("0.1"))) is Escalation.URGENCY
    assert escalation(config, elapsed=1, reprices=0, urgency=(D(5), D(0))) is None  # no band, no urgency
    assert escalation(config, elapsed=30, reprices=0, urgency=None) is Escalation.TIMEOUT
    assert escalation(config, elapsed=1, reprices=5, urgency=None) is Escalation.REPRICES


def test_config_refuses_post_only_as_the_intent_type() -> None:
    with pytest.raises(ValueError, match="post_only"):
        ExecutorConfig(order_type=OrderType.POST_ONLY)
    assert ExecutorConfig(order_type=OrderType.PASSIVE).order_type is OrderType.PASSIVE


# ---------------------------------------------------------------------------- the lifecycle
class StepClock:
    """Time moves only when the test says (:meth:`advance`); sleepers wake at their deadline."""

    def __init__(self) -> None:
        self._now = 1_000.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def time(self) -> float:
        return self._now + 1_700_000_000.0

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + seconds, future))
        await future

    async def advance(self, seconds: float, step: float = 0.25) -> None:
        end = self._now + seconds
        while True:
            await settle()
            if self._now >= end:
                return
            self._now = min(end, self._now + step)
            due = [f for t, f in self._sleepers if t <= self._now + 1e-9]
            self._sleepers = [(t, f) for t, f in self._sleepers if t > self._now + 1e-9]
            for future in due:
                if not future.done():
                    future.set_result(None)


async def settle() -> None:
    for _ in range(60):
        await asyncio.sleep(0)


class BookVenue:
    """A venue with a book the test sets: post-only orders rest until the test fills them, and
    are refused (as Binance's -5022) when they would cross; IOC orders fill at the touch."""

    name = "perp"

    def __init__(self) -> None:
        self.bid, self.ask = D("100.0"), D("100.2")
        self.orders: dict[str, OrderReport] = {}
        self.sent: list[tuple[str, OrderType, Decimal, Decimal | None]] = []
        self.cancels: list[str] = []
        self.reject_next_post_only = False
        self.position_flipped = False  # a reduce-only order would now grow the position
        self.hang: str | None = None  # "before" / "after": the next send never answers (a crash point)
        self._trade = 0

    @property
    def connected(self) -> bool:
        return True

    def book(self, symbol: str) -> tuple[Decimal, Decimal]:
        return self.bid, self.ask

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        cid = intent.client_order_id
        self.sent.append((cid, intent.order_type, amount, price))
        if self.hang == "before":
            await asyncio.Event().wait()
        if cid in self.orders:
            raise InvalidOrder("duplicate clientOrderId")
        if intent.reduce_only and self.position_flipped:
            raise ReduceOnlyRejected("-2022 ReduceOnly Order is rejected.")
        if intent.order_type is OrderType.POST_ONLY:
            assert price is not None
            crosses = price >= self.ask if intent.side is Side.BUY else price <= self.bid
            if crosses or self.reject_next_post_only:
                self.reject_next_post_only = False
                raise PostOnlyRejected("-5022 Post Only order will be rejected")
            report = self.orders[cid] = OrderReport(cid, intent.symbol, OrderStatus.SUBMITTED)
            if self.hang == "after":
                await asyncio.Event().wait()
            return report
        fill_price = self.ask if intent.side is Side.BUY else self.bid
        fill = self._fill(cid, intent.side, amount, fill_price)
        report = self.orders[cid] = OrderReport(cid, intent.symbol, OrderStatus.FILLED, amount, fill_price,
                                                fills=(fill,))
        return report

    def _fill(self, cid: str, side: Side, amount: Decimal, price: Decimal) -> Fill:
        self._trade += 1
        return Fill(venue=self.name, trade_id=f"t{self._trade}", symbol=SYMBOL, side=side, amount=amount,
                    price=price, client_order_id=cid)

    def fill_resting(self, cid: str, amount: Decimal, side: Side = Side.BUY) -> OrderReport:
        report = self.orders[cid]
        total = report.filled + amount
        sent = next(a for c, _, a, _ in self.sent if c == cid)
        price = next(p for c, _, _, p in self.sent if c == cid)
        assert price is not None
        fill = self._fill(cid, side, amount, price)
        status = OrderStatus.FILLED if total >= sent else OrderStatus.PARTIALLY_FILLED
        updated = self.orders[cid] = OrderReport(cid, SYMBOL, status, total, price, fills=(*report.fills, fill))
        return updated

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return self.orders.get(client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        self.cancels.append(client_order_id)
        report = self.orders.get(client_order_id)
        if report is None or report.status.is_final:
            return None
        canceled = self.orders[client_order_id] = OrderReport(
            client_order_id, symbol, OrderStatus.CANCELED, report.filled, report.average_price, fills=report.fills)
        return canceled

    def children_sent(self, order_type: OrderType | None = None) -> list[str]:
        return [c for c, t, _, _ in self.sent if order_type is None or t is order_type]


class Rig:
    def __init__(self, ledger: InventoryLedger, venue: BookVenue, clock: StepClock, **config: Any) -> None:
        self.ledger, self.venue, self.clock = ledger, venue, clock
        self.config = ExecutorConfig(order_type=OrderType.PASSIVE, passive_timeout=60, passive_check_interval=1,
                                     passive_poll_interval=5, **config)
        self.metrics = Metrics()
        self.results: list[tuple[bool, str]] = []
        self.gate: str | None = None
        self.urgency: tuple[Decimal, Decimal] | None = None
        self.market = MARKET
        self.executor = self.new_executor()

    def new_executor(self) -> HedgeExecutor:
        executor = HedgeExecutor(
            venue=self.venue, ledger=self.ledger, markets={SYMBOL: self.market}, config=self.config,  # type: ignore[arg-type]
            bucket=TokenBucket(1000, 1000, self.clock), clock=self.clock, metrics=self.metrics,
            gate=lambda intent: self.gate, on_result=lambda ok, kind: self.results.append((ok, kind)))
        executor.passive.attach(book=self.venue.book, urgency=lambda intent: self.urgency)
        return executor

    async def start(self, amount: str = "1.0", side: Side = Side.BUY,
                    reduce_only: bool = False) -> tuple[HedgeIntent, asyncio.Task[OrderReport]]:
        intent = await self.ledger.new_intent(underlying="BTC", venue="perp", symbol=SYMBOL, side=side,
                                              amount=D(amount), created_at=self.clock.time(),
                                              order_type=OrderType.PASSIVE, reduce_only=reduce_only)
        task = self.executor.start(intent)
        await settle()
        return intent, task

    async def deliver(self, report: OrderReport) -> None:
        await self.executor.on_order_update(report)
        await settle()


@pytest.fixture
async def rig(tmp_path: Path) -> Any:
    ledger = InventoryLedger(tmp_path / "ledger.sqlite")
    await ledger.open()
    try:
        yield Rig(ledger, BookVenue(), StepClock())
    finally:
        await ledger.close()


def venue_errors(rig: Rig) -> float:
    total = 0.0
    for metric in rig.metrics.venue_errors.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                total += sample.value
    return total


async def test_rests_at_the_touch_and_reprices_when_the_book_moves_away(rig: Rig) -> None:
    intent, task = await rig.start()
    first = child_client_id(intent.client_order_id, 1)
    assert rig.venue.sent == [(first, OrderType.POST_ONLY, D("1.0"), D("100.0"))]
    assert rig.executor.in_flight(SYMBOL) == D("1.0")
    await rig.clock.advance(3)
    assert len(rig.venue.sent) == 1  # the book did not move: it rests
    rig.venue.bid, rig.venue.ask = D("100.5"), D("100.7")
    await rig.clock.advance(1.5)
    second = child_client_id(intent.client_order_id, 2)
    assert rig.venue.cancels == [first]
    assert rig.venue.sent[1] == (second, OrderType.POST_ONLY, D("1.0"), D("100.5"))
    # every child was journaled under its own id before it was sent
    assert [c[0] for c in rig.ledger.child_orders(intent.client_order_id)] == [first, second]
    assert rig.executor.open_count(SYMBOL) == 1
    assert sum(1 for cid in rig.venue.orders if not rig.venue.orders[cid].status.is_final) == 1  # one live child
    task.cancel()


async def test_a_post_only_rejection_reprices_and_is_no_error(rig: Rig) -> None:
    rig.venue.reject_next_post_only = True
    intent, task = await rig.start()
    assert [s[0] for s in rig.venue.sent] == [child_client_id(intent.client_order_id, 1)]
    await rig.clock.advance(1.5)
    assert [s[0] for s in rig.venue.sent] == [child_client_id(intent.client_order_id, i) for i in (1, 2)]
    assert rig.venue.orders[child_client_id(intent.client_order_id, 2)].status is OrderStatus.SUBMITTED
    assert rig.results == [] and venue_errors(rig) == 0
    states = dict((c, s) for c, s, _, _ in rig.ledger.child_orders(intent.client_order_id))
    assert states[child_client_id(intent.client_order_id, 1)] is OrderStatus.REJECTED
    task.cancel()


async def test_partial_fills_count_and_the_next_child_takes_what_is_left(rig: Rig) -> None:
    intent, task = await rig.start()
    first = child_client_id(intent.client_order_id, 1)
    await rig.deliver(rig.venue.fill_resting(first, D("0.4")))
    assert rig.ledger.filled_for(intent.client_order_id) == D("0.4")  # the child's fill is the intent's
    assert rig.ledger.position("perp", SYMBOL) == D("0.4")
    assert rig.executor.in_flight(SYMBOL) == D("0.6")
    rig.venue.bid, rig.venue.ask = D("100.3"), D("100.5")
    await rig.clock.advance(1.5)
    assert rig.venue.sent[-1] == (child_client_id(intent.client_order_id, 2), OrderType.POST_ONLY, D("0.600"),
                                  D("100.3"))
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.PARTIALLY_FILLED, D("0.4"))
    await rig.deliver(rig.venue.fill_resting(child_client_id(intent.client_order_id, 2), D("0.6")))
    await rig.clock.advance(1.5)
    report = await asyncio.wait_for(task, 1)
    assert report.status is OrderStatus.FILLED and report.filled == D("1.0")
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.FILLED, D("1.0"))
    assert rig.executor.in_flight(SYMBOL) == 0 and not rig.executor.has_open(SYMBOL)
    assert rig.results == [(True, "")]


async def test_an_inverse_hedges_children_count_in_contracts_as_its_ledger_does(rig: Rig) -> None:
    # a coin-margined perpetual of 10 USD contracts: the intent, its children and their fills
    # are all in contracts, never divided or multiplied by the contract size on the way
    rig.market = MarketInfo(symbol=SYMBOL, base="BTC", quote="USD", amount_step=D(1), price_step=D("0.1"),
                            min_amount=D(1), min_notional=D(0), contract_size=D(10),
                            instrument=Instrument(symbol=SYMBOL, kind=InstrumentKind.INVERSE, underlying="BTC",
                                                  quote="USD", settle="BTC", contract_size=D(10)))
    rig.executor = rig.new_executor()
    intent, task = await rig.start(amount="30")
    first = child_client_id(intent.client_order_id, 1)
    assert rig.venue.sent == [(first, OrderType.POST_ONLY, D(30), D("100.0"))]
    await rig.deliver(rig.venue.fill_resting(first, D(12)))
    assert rig.ledger.filled_for(intent.client_order_id) == D(12) == rig.ledger.position("perp", SYMBOL)
    assert rig.executor.in_flight(SYMBOL) == D(18)
    rig.venue.bid, rig.venue.ask = D("100.3"), D("100.5")
    await rig.clock.advance(1.5)
    assert rig.venue.sent[-1] == (child_client_id(intent.client_order_id, 2), OrderType.POST_ONLY, D(18), D("100.3"))
    task.cancel()


async def test_escalates_to_ioc_after_the_passive_timeout(rig: Rig) -> None:
    intent, task = await rig.start()
    await rig.deliver(rig.venue.fill_resting(child_client_id(intent.client_order_id, 1), D("0.25")))
    await rig.clock.advance(61)
    report = await asyncio.wait_for(task, 1)
    ioc = child_client_id(intent.client_order_id, 2)
    assert rig.venue.sent[-1] == (ioc, OrderType.LIMIT_IOC, D("0.750"), D("100.3"))  # mid 100.1 + 20 bps, floor
    assert report.status is OrderStatus.FILLED and rig.ledger.filled_for(intent.client_order_id) == D("1.0")
    assert rig.venue.orders[child_client_id(intent.client_order_id, 1)].status is OrderStatus.CANCELED
    assert rig.metrics.passive_escalations.labels("perp", SYMBOL, "timeout")._value.get() == 1


async def test_escalates_to_ioc_when_net_delta_outruns_the_band(rig: Rig) -> None:
    _, task = await rig.start()
    assert len(rig.venue.sent) == 1
    rig.urgency = (D("0.5"), D("0.1"))  # 5 bands away, urgency multiple 3
    await rig.clock.advance(1.5)
    report = await asyncio.wait_for(task, 1)
    assert [t for _, t, _, _ in rig.venue.sent] == [OrderType.POST_ONLY, OrderType.LIMIT_IOC]
    assert report.status is OrderStatus.FILLED
    assert rig.metrics.passive_escalations.labels("perp", SYMBOL, "urgency")._value.get() == 1


async def test_reprices_are_bounded_then_it_escalates(rig: Rig) -> None:
    rig.config = rig.config.model_copy(update={"passive_max_reprices": 2})
    rig.executor.config = rig.config
    _, task = await rig.start()
    for step in range(1, 4):
        rig.venue.bid, rig.venue.ask = D("100.0") + step, D("100.2") + step
        await rig.clock.advance(1.5)
    report = await asyncio.wait_for(task, 1)
    types = [t for _, t, _, _ in rig.venue.sent]
    assert types == [OrderType.POST_ONLY] * 3 + [OrderType.LIMIT_IOC]
    assert report.status is OrderStatus.FILLED
    assert rig.metrics.passive_reprices.labels("perp", SYMBOL)._value.get() == 2


async def test_halt_cancels_the_live_child_and_places_none_after(rig: Rig) -> None:
    intent, task = await rig.start()
    await rig.deliver(rig.venue.fill_resting(child_client_id(intent.client_order_id, 1), D("0.3")))
    rig.gate = "halted"  # the kill switch refuses every send from here
    await rig.executor.cancel_all()
    await rig.clock.advance(2)
    report = await asyncio.wait_for(task, 1)
    assert rig.venue.cancels == [child_client_id(intent.client_order_id, 1)]
    assert len(rig.venue.sent) == 1
    assert report.status is OrderStatus.CANCELED and report.filled == D("0.3")
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.CANCELED, D("0.3"))
    assert rig.executor.in_flight(SYMBOL) == 0


async def test_shutdown_cancels_the_live_child_even_while_trading_is_allowed(rig: Rig) -> None:
    intent, task = await rig.start()
    rig.venue.bid, rig.venue.ask = D("100.5"), D("100.7")  # would reprice, were it not stopping
    await rig.executor.cancel_all()
    await rig.clock.advance(2)
    report = await asyncio.wait_for(task, 1)
    assert len(rig.venue.sent) == 1 and rig.venue.cancels == [child_client_id(intent.client_order_id, 1)]
    assert report.status is OrderStatus.CANCELED
    assert not any(not r.status.is_final for r in rig.venue.orders.values())


@pytest.mark.parametrize("crash", ["before", "after"])
async def test_a_crash_mid_reprice_never_places_a_child_twice(tmp_path: Path, crash: str) -> None:
    path = tmp_path / "ledger.sqlite"
    venue, clock = BookVenue(), StepClock()
    ledger = InventoryLedger(path)
    await ledger.open()
    rig = Rig(ledger, venue, clock)
    intent, task = await rig.start()
    first = child_client_id(intent.client_order_id, 1)
    await rig.deliver(venue.fill_resting(first, D("0.2")))
    venue.hang = crash  # the reprice's child is journaled, then the process dies around its send
    venue.bid, venue.ask = D("100.5"), D("100.7")
    await clock.advance(1.5)
    second = child_client_id(intent.client_order_id, 2)
    assert venue.sent[-1][0] == second
    assert [c[0] for c in ledger.child_orders(intent.client_order_id)] == [first, second]
    task.cancel()  # the crash
    await settle()
    await ledger.close()
    if crash == "before":
        assert second not in venue.orders
    else:
        assert venue.orders[second].status is OrderStatus.SUBMITTED  # resting at the venue, unknown to us

    venue.hang = None
    reopened = InventoryLedger(path)
    await reopened.open()
    try:
        rig.ledger = reopened
        restarted = rig.new_executor()
        await clock.advance(0)
        recovery = asyncio.create_task(restarted.recover())
        await clock.advance(10)  # past the landing window of the send that may never have happened
        await asyncio.wait_for(recovery, 1)
        for _ in range(3):
            await restarted.refresh_open()
            await clock.advance(10)
        assert [c for c, _, _, _ in venue.sent].count(second) == 1  # never sent again
        assert all(r.status.is_final for r in venue.orders.values())  # nothing left resting
        assert reopened.order_state(intent.client_order_id) == (OrderStatus.CANCELED, D("0.2"))
        assert reopened.open_intents() == []
        assert restarted.in_flight(SYMBOL) == 0
        states = {c: s for c, s, _, _ in reopened.child_orders(intent.client_order_id)}
        assert states[second] is OrderStatus.CANCELED
    finally:
        await reopened.close()


async def test_a_late_child_fill_is_journaled_as_the_intents(rig: Rig) -> None:
    intent, task = await rig.start()
    first = child_client_id(intent.client_order_id, 1)
    await rig.executor.cancel_all()
    await rig.clock.advance(2)
    await asyncio.wait_for(task, 1)
    late = OrderReport(first, SYMBOL, OrderStatus.FILLED, D("0.1"), D("100.0"),
                       fills=(Fill(venue="perp", trade_id="late", symbol=SYMBOL, side=Side.BUY, amount=D("0.1"),
                                   price=D("100.0"), client_order_id=first),))
    await rig.deliver(late)
    assert rig.ledger.filled_for(intent.client_order_id) == D("0.1")


async def test_an_unknown_send_is_looked_up_by_the_childs_id(rig: Rig) -> None:
    original = rig.venue.create_order

    async def accept_then_timeout(intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        await original(intent, amount, price)
        raise OrderOutcomeUnknown("timeout after sending")

    rig.venue.create_order = accept_then_timeout  # type: ignore[method-assign]
    intent, task = await rig.start()
    await rig.clock.advance(10)
    first = child_client_id(intent.client_order_id, 1)
    assert [c for c, _, _, _ in rig.venue.sent] == [first]  # looked up, found resting, not resent
    assert rig.venue.orders[first].status is OrderStatus.SUBMITTED
    task.cancel()


async def test_a_reduce_only_intent_the_position_outran_ends_without_an_error(rig: Rig) -> None:
    intent, task = await rig.start(side=Side.SELL, reduce_only=True)
    await rig.deliver(rig.venue.fill_resting(child_client_id(intent.client_order_id, 1), D("0.3"), Side.SELL))
    rig.venue.position_flipped = True  # another order took the position through zero meanwhile
    rig.venue.bid, rig.venue.ask = D("99.5"), D("99.7")
    await rig.clock.advance(1.5)
    report = await asyncio.wait_for(task, 1)
    assert report.status is OrderStatus.CANCELED and report.filled == D("0.3")
    assert rig.results == [(True, "")] and venue_errors(rig) == 0
    assert len(rig.venue.sent) == 2  # the refused reprice, and nothing after it


async def test_child_orders_reads_one_intents_children_in_sequence_on_either_backend(
        ledger_location: Path | str) -> None:
    async with InventoryLedger(ledger_location) as ledger:
        parent, neighbour = "hgdabcdef01x1", "hgdabcdef01x12"  # one id is the other's prefix
        for cid in (child_client_id(parent, 10), child_client_id(neighbour, 1), child_client_id(parent, 2),
                    parent, "hgdabcdef01x1cx"):
            await ledger.record_order_state(cid, OrderStatus.SUBMITTED, D(0), None, None, 1.0, "test")
        await ledger.record_order_state(child_client_id(parent, 2), OrderStatus.FILLED, D("0.5"), None, None, 2.0,
                                        "test")
        children = ledger.child_orders(parent)
        assert [(c, s, f, ts) for c, s, f, ts in children] == [
            (child_client_id(parent, 2), OrderStatus.FILLED, D("0.5"), 1.0),  # last state, first time
            (child_client_id(parent, 10), OrderStatus.SUBMITTED, D(0), 1.0)]
