"""TokenBucket and HedgeExecutor on a fake clock, a fault-injecting venue and a journal."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field, replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd.config import ExecutorConfig, RateLimitConfig
from hedgerd.errors import (
    DuplicateOrder,
    FatalOrderError,
    InsufficientFunds,
    InvalidOrder,
    RateLimited,
    TransientVenueError,
)
from hedgerd.executor import LANDING_GRACE, HedgeExecutor, TokenBucket
from hedgerd.ledger import InventoryLedger, LedgerError
from hedgerd.metrics import Metrics
from hedgerd.models import HedgeIntent, MarketInfo, OrderStatus, OrderType, Side
from tests.fakes import FakeClock, FakeVenue, Fault, MemoryLedger

SYMBOL = "BTC/USDT:USDT"
MARKET = MarketInfo(symbol=SYMBOL, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                    price_step=Decimal("0.1"), min_amount=Decimal("0.001"), min_notional=Decimal(5))


# ---------------------------------------------------------------------------- token bucket
async def test_bucket_serves_burst_then_paces_at_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=4.0, burst=3, clock=clock)
    assert [await bucket.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    start = clock.monotonic()
    waits = [await bucket.acquire() for _ in range(4)]
    assert waits == pytest.approx([1 / 4] * 4)
    assert clock.monotonic() - start == pytest.approx(4 / 4)


async def test_bucket_refills_only_up_to_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    await bucket.acquire()
    await bucket.acquire()
    clock.advance(60)  # long idle: the bucket holds at most `burst` tokens
    assert [await bucket.acquire() for _ in range(2)] == [0.0, 0.0]
    assert await bucket.acquire() == pytest.approx(1 / 2)


async def test_bucket_sleeps_once_per_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=5.0, burst=1, clock=clock)
    for _ in range(6):
        await bucket.acquire()
    assert clock.sleeps == pytest.approx([1 / 5] * 5)  # no polling: one computed sleep per wait


async def test_bucket_pause_until_blocks_then_resumes_one_at_a_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10.0, burst=5, clock=clock)
    resume_at = clock.monotonic() + 2.0
    bucket.pause_until(resume_at)
    assert await bucket.acquire() == pytest.approx(2.0)
    assert clock.monotonic() >= resume_at
    # The burst was drained on pause and nothing accrued during it: next token is 1/rate away.
    assert await bucket.acquire() == pytest.approx(1 / 10)
    bucket.pause_until(clock.monotonic() - 1)  # a pause in the past changes nothing
    assert await bucket.acquire() == pytest.approx(1 / 10)


async def test_bucket_pause_applies_to_an_already_waiting_acquirer() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1, clock=clock)
    await bucket.acquire()
    waiter = asyncio.create_task(bucket.acquire())
    await asyncio.sleep(0)  # the waiter computed its wait and is sleeping
    resume_at = clock.monotonic() + 5.0
    bucket.pause_until(resume_at)
    await waiter
    assert clock.monotonic() >= resume_at


async def test_bucket_is_fifo_and_a_heavy_waiter_is_not_overtaken() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=3, clock=clock)
    await bucket.acquire(weight=2)  # one token left
    done: list[str] = []

    async def take(name: str, weight: float) -> None:
        await bucket.acquire(weight)
        done.append(name)

    tasks = [asyncio.create_task(take("heavy", 3)), asyncio.create_task(take("light1", 1)),
             asyncio.create_task(take("light2", 1))]
    await asyncio.gather(*tasks)
    assert done == ["heavy", "light1", "light2"]


async def test_bucket_configure_throttle_and_restore() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=8.0, burst=1, clock=clock)
    await bucket.acquire()
    bucket.configure(2.0, 1)
    assert await bucket.acquire() == pytest.approx(1 / 2)
    assert bucket.throttle() == pytest.approx(2.0 / 2)
    assert await bucket.acquire() == pytest.approx(1 / 1.0)
    for _ in range(10):
        bucket.throttle()
    assert bucket.rate == pytest.approx(bucket.nominal_rate * 0.1)  # floored, never zero
    for _ in range(20):
        bucket.restore()
    assert bucket.rate == bucket.nominal_rate == 2.0
    bucket.configure(4.0, 1)
    assert bucket.rate == bucket.nominal_rate == 4.0
    with pytest.raises(ValueError):
        bucket.configure(0, 1)
    with pytest.raises(ValueError):
        bucket.configure(1.0, 0)


async def test_bucket_configure_applies_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=2, clock=clock)
    bucket.configure(1.0, 5)
    assert bucket.burst == 5
    clock.advance(10)  # refills up to the new burst, not the old one
    waits = [await bucket.acquire() for _ in range(5)]
    assert waits == [0.0] * 5
    assert await bucket.acquire() == pytest.approx(1.0)
    bucket.configure(1.0, 1)  # a smaller burst caps what is held
    clock.advance(10)
    assert await bucket.acquire() == 0.0
    assert await bucket.acquire() == pytest.approx(1.0)


async def test_bucket_configure_with_the_same_rate_keeps_a_throttle() -> None:
    bucket = TokenBucket(rate=4.0, burst=1, clock=FakeClock())
    throttled = bucket.throttle()
    bucket.configure(4.0, 3)  # e.g. a reload that changed only the burst
    assert bucket.rate == throttled < bucket.nominal_rate
    bucket.configure(6.0, 3)  # a new rate is a fresh start
    assert bucket.rate == bucket.nominal_rate == 6.0


# ---------------------------------------------------------------------------- executor rig
@dataclass
class Rig:
    clock: FakeClock
    venue: FakeVenue
    ledger: Any
    metrics: Metrics
    bucket: TokenBucket
    config: ExecutorConfig
    results: list[tuple[bool, str]] = field(default_factory=list)
    denials: list[str | None] = field(default_factory=list)  # scripted gate answers, then None
    gate_in_flight: list[Decimal] = field(default_factory=list)
    halts: list[tuple[str, str]] = field(default_factory=list)  # (reason, source) of on_halt calls
    executor: HedgeExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.executor = self.new_executor()

    def new_executor(self, metrics: Metrics | None = None) -> HedgeExecutor:
        return HedgeExecutor(venue=self.venue, ledger=self.ledger, markets={SYMBOL: MARKET},
                             config=self.config, bucket=self.bucket, clock=self.clock,
                             metrics=metrics or self.metrics,
                             gate=self.gate, on_result=lambda ok, kind: self.results.append((ok, kind)),
                             on_halt=lambda reason, source: self.halts.append((reason, source)),
                             rng=random.Random(7))

    def gate(self, intent: HedgeIntent) -> str | None:
        self.gate_in_flight.append(self.executor.in_flight(intent.symbol))
        return self.denials.pop(0) if self.denials else None

    async def intent(self, side: Side = Side.BUY, amount: str = "0.010", **kw: Any) -> HedgeIntent:
        intent: HedgeIntent = await self.ledger.new_intent(
            underlying="BTC", venue=self.venue.name, symbol=SYMBOL, side=side, amount=Decimal(amount),
            created_at=kw.pop("created_at", self.clock.time()), **kw)
        return intent

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value

    def orders_metric(self, status: str) -> float:
        return self.sample("hedgerd_hedge_orders_total", venue=self.venue.name, symbol=SYMBOL, status=status)

    def errors_metric(self, kind: str) -> float:
        return self.sample("hedgerd_venue_errors_total", venue=self.venue.name, kind=kind)


def make_rig(ledger: Any = None, **config: Any) -> Rig:
    clock = FakeClock()
    settings: dict[str, Any] = {"max_retries": 3, "backoff_initial": 0.2, "backoff_max": 2.0,
                                "order_timeout": 5.0}
    settings.update(config)
    return Rig(clock=clock, venue=FakeVenue(clock, MARKET),
               ledger=ledger if ledger is not None else MemoryLedger(), metrics=Metrics(),
               bucket=TokenBucket(10.0, 5, clock), config=ExecutorConfig(**settings))


@pytest.fixture
def rig() -> Rig:
    return make_rig()


# ---------------------------------------------------------------------------- happy path
async def test_happy_path_journals_fill_state_and_metrics(rig: Rig) -> None:
    intent = await rig.intent(amount="0.0105")
    received_at = rig.clock.monotonic() - 0.002
    report = await rig.executor.execute(intent, reference_price=Decimal(60000), received_at=received_at)

    cid = intent.client_order_id
    assert report.status is OrderStatus.FILLED
    [create] = rig.venue.calls_of("create")
    assert create.client_order_id == cid
    assert create.amount == Decimal("0.010")  # rounded down to the amount step
    assert create.price is None  # market order
    assert rig.ledger.history(cid) == [OrderStatus.NEW, OrderStatus.FILLED]
    assert rig.ledger.filled_for(cid) == Decimal("0.010")
    assert rig.results == [(True, "")]
    assert rig.orders_metric("filled") == 1
    assert rig.ledger.fills[("perp", rig.venue.orders[cid].fills[0].trade_id)].client_order_id == cid
    assert rig.sample("hedgerd_decision_latency_seconds_count") == 1
    assert rig.sample("hedgerd_decision_latency_seconds_sum") == pytest.approx(0.002)
    assert rig.sample("hedgerd_rate_limit_wait_seconds_count", venue="perp") == 1
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)
    assert rig.executor.open_orders() == []


async def test_report_fills_are_deduplicated_by_the_ledger(rig: Rig) -> None:
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    await rig.executor.on_order_update(report)  # the same fills again: not double counted
    assert rig.ledger.filled_for(intent.client_order_id) == intent.amount
    assert rig.orders_metric("filled") == 1


async def test_limit_ioc_is_capped_at_max_slippage_on_the_safe_side(rig: Rig) -> None:
    reference = Decimal("60000.05")
    slippage = rig.config.max_slippage_bps / Decimal(10000)
    step = MARKET.price_step
    for side, rounding in ((Side.BUY, ROUND_FLOOR), (Side.SELL, ROUND_CEILING)):
        intent = await rig.intent(side=side, order_type=OrderType.LIMIT_IOC)
        await rig.executor.execute(intent, reference_price=reference)
        price = rig.venue.calls_of("create")[-1].price
        cap = reference * (1 + side.sign * slippage)
        assert price == (cap / step).to_integral_value(rounding) * step
        assert (price <= cap) if side is Side.BUY else (price >= cap)


async def test_limit_ioc_partial_fill_counts_only_reported_fills_in_flight(rig: Rig) -> None:
    rig.venue.fill_fraction = Decimal("0.4")
    rig.venue.report_fills = False
    intent = await rig.intent(side=Side.SELL, order_type=OrderType.LIMIT_IOC)
    report = await rig.executor.execute(intent, reference_price=rig.venue.price)
    assert report.status is OrderStatus.EXPIRED
    assert rig.executor.in_flight(SYMBOL) == -report.filled  # the expired rest will never fill
    for fill in rig.venue.unreported_fills:
        await rig.ledger.record_fill(fill)
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)


# ---------------------------------------------------------------------------- not sent
@pytest.mark.parametrize(("amount", "reference"), [("0.0005", "60000"), ("0.001", "1000")])
async def test_below_venue_minimum_is_not_sent(rig: Rig, amount: str, reference: str) -> None:
    intent = await rig.intent(amount=amount)
    report = await rig.executor.execute(intent, reference_price=Decimal(reference))
    assert report.status is OrderStatus.REJECTED
    assert rig.venue.calls == []
    assert rig.ledger.history(intent.client_order_id)[-1] is OrderStatus.REJECTED
    assert rig.ledger.detail(intent.client_order_id) == "below venue minimum"
    assert rig.orders_metric("below_minimum") == 1
    assert rig.orders_metric("rejected") == 0
    assert rig.results == []
    assert not rig.executor.has_open(SYMBOL)


async def test_gate_denial_sends_nothing(rig: Rig) -> None:
    rig.denials = ["trading halted: kill file"]
    intent = await rig.intent()
    report = await rig.executor.execute(intent, received_at=rig.clock.monotonic())
    assert report.status is OrderStatus.CANCELED
    assert rig.venue.calls == []
    assert rig.ledger.history(intent.client_order_id) == [OrderStatus.NEW, OrderStatus.CANCELED]
    assert rig.ledger.detail(intent.client_order_id) == "trading halted: kill file"
    assert rig.orders_metric("gated") == 1
    assert rig.sample("hedgerd_decision_latency_seconds_count") == 0
    assert rig.results == []
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)


async def test_gate_is_asked_before_every_send(rig: Rig) -> None:
    rig.venue.create_faults.append(TransientVenueError("502 bad gateway"))
    rig.denials = [None, "trading halted: operator"]
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.CANCELED
    assert len(rig.venue.calls_of("create")) == 1
    assert len(rig.gate_in_flight) == 2
    # While the order is being executed it already counts as in flight.
    assert rig.gate_in_flight == [intent.amount, intent.amount]
    assert rig.executor.in_flight(SYMBOL) == 0


# ---------------------------------------------------------------------------- errors
async def test_rate_limited_then_success_honours_retry_after(rig: Rig) -> None:
    rig.venue.create_faults.append(RateLimited("429 too many requests", retry_after=2.5))
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED
    first, second = rig.venue.calls_of("create")
    assert second.at - first.at >= 2.5  # nothing sent before Retry-After elapsed
    assert second.client_order_id == first.client_order_id
    assert len(rig.venue.orders) == 1
    assert rig.bucket.rate < rig.bucket.nominal_rate  # lowered, climbing back on success
    assert rig.errors_metric("rate_limited") == 1
    assert rig.results == [(True, "")]


async def test_rate_limited_without_retry_after_backs_off(rig: Rig) -> None:
    rig.venue.create_faults.append(RateLimited("418"))
    intent = await rig.intent()
    await rig.executor.execute(intent)
    first, second = rig.venue.calls_of("create")
    assert second.at - first.at >= rig.config.backoff_initial


async def test_transient_errors_back_off_then_succeed(rig: Rig) -> None:
    rig.venue.create_faults.extend([TransientVenueError("503"), TransientVenueError("503")])
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED
    assert len(rig.venue.calls_of("create")) == 3
    assert len(rig.venue.orders) == 1
    backoffs = [s for s in rig.clock.sleeps if s >= rig.config.backoff_initial]
    assert len(backoffs) == 2
    assert all(rig.config.backoff_initial <= s <= rig.config.backoff_max for s in backoffs)
    assert rig.errors_metric("transient") == 2
    assert rig.results == [(True, "")]


async def test_transient_errors_exhaust_retries() -> None:
    rig = make_rig(max_retries=2)
    rig.venue.create_faults.extend([TransientVenueError("503")] * 3)
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.REJECTED
    assert len(rig.venue.calls_of("create")) == 3
    assert rig.results == [(False, "transient")]
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)


@pytest.mark.parametrize("error", [InsufficientFunds("margin is insufficient"), InvalidOrder("bad qty")])
async def test_fatal_error_is_not_retried(rig: Rig, error: FatalOrderError) -> None:
    rig.venue.create_faults.append(error)
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    kind = error.kind
    assert report.status is OrderStatus.REJECTED
    assert len(rig.venue.calls_of("create")) == 1
    assert rig.venue.calls_of("fetch") == []
    assert rig.results == [(False, kind)]
    assert rig.ledger.history(intent.client_order_id)[-1] is OrderStatus.REJECTED
    assert kind in rig.ledger.detail(intent.client_order_id)
    assert rig.orders_metric("rejected") == 1
    assert rig.errors_metric(kind) == 1
    assert rig.executor.in_flight(SYMBOL) == 0


# ---------------------------------------------------------------------------- unknown outcome
async def test_accept_then_timeout_is_found_by_lookup_not_resent(rig: Rig) -> None:
    rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED
    assert [c.method for c in rig.venue.calls] == ["create", "fetch"]
    assert len(rig.venue.orders) == 1
    cid = intent.client_order_id
    assert rig.ledger.history(cid) == [OrderStatus.NEW, OrderStatus.UNKNOWN, OrderStatus.FILLED]
    assert rig.ledger.filled_for(cid) == intent.amount
    assert rig.errors_metric("unknown_outcome") == 1
    assert rig.results == [(True, "")]


async def test_timeout_before_accept_resends_with_the_same_client_id(rig: Rig) -> None:
    rig.venue.create_faults.append(Fault.TIMEOUT_BEFORE_ACCEPT)
    intent = await rig.intent()
    report = await rig.executor.execute(intent, received_at=rig.clock.monotonic())
    assert report.status is OrderStatus.FILLED
    # not found: looked up again once the first send can no longer land, then resent
    assert [c.method for c in rig.venue.calls] == ["create", "fetch", "fetch", "create"]
    assert {c.client_order_id for c in rig.venue.calls} == {intent.client_order_id}
    assert len(rig.venue.orders) == 1
    assert rig.venue.position == intent.amount
    assert rig.sample("hedgerd_decision_latency_seconds_count") == 1  # first hand-off only


async def test_caller_side_timeout_is_an_unknown_outcome() -> None:
    rig = make_rig(order_timeout=0.05)
    rig.venue.create_faults.append(Fault.HANG_AFTER_ACCEPT)
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED
    assert [c.method for c in rig.venue.calls] == ["create", "fetch"]
    assert rig.errors_metric("timeout") == 1


async def test_late_landing_request_is_not_placed_twice(rig: Rig) -> None:
    # The lookup misses the order; no resend before the send can no longer land: look again.
    rig.venue.create_faults.append(Fault.ACCEPT_LATE)
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED
    assert [c.method for c in rig.venue.calls] == ["create", "fetch", "fetch"]
    assert len(rig.venue.orders) == 1
    assert rig.venue.position == intent.amount
    assert rig.results == [(True, "")]


async def test_lookup_failing_leaves_order_unknown_and_in_flight(rig: Rig) -> None:
    rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
    rig.venue.fetch_faults.extend([TransientVenueError("502")] * (rig.config.max_retries + 1))
    intent = await rig.intent(side=Side.SELL)
    report = await rig.executor.execute(intent)
    cid = intent.client_order_id
    assert report.status is OrderStatus.UNKNOWN
    assert len(rig.venue.calls_of("create")) == 1  # never resent blind
    assert len(rig.venue.calls_of("fetch")) == rig.config.max_retries + 1
    assert rig.ledger.order_state(cid) == (OrderStatus.UNKNOWN, 0)
    assert rig.executor.in_flight(SYMBOL) == -intent.amount
    assert rig.executor.has_open(SYMBOL)
    assert rig.results == [(False, "unknown_outcome")]
    assert rig.orders_metric("unknown") == 1

    # Later (safety tick), the venue answers: the order is resolved and settled.
    await rig.executor.refresh_open()
    assert rig.ledger.order_state(cid) == (OrderStatus.FILLED, intent.amount)
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)


async def test_a_duplicate_found_by_the_lookup_halts_naming_the_client_id(rig: Rig) -> None:
    rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
    intent = await rig.intent()
    cid = intent.client_order_id
    rig.venue.fetch_faults.append(DuplicateOrder(f"2 orders under client order id {cid}: 7, 8", cid, ("7", "8")))
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.UNKNOWN
    assert len(rig.venue.calls_of("create")) == 1  # never resent
    assert len(rig.venue.calls_of("fetch")) == 1  # nor retried: looking again cannot make it unique
    assert rig.ledger.order_state(cid) == (OrderStatus.UNKNOWN, 0)
    assert rig.executor.in_flight(SYMBOL) == intent.amount  # the risk loop does not hedge it again
    assert len(rig.halts) == 1
    reason, source = rig.halts[0]
    assert cid in reason and rig.venue.name in reason and source == "auto:duplicate_order"
    assert rig.results == [(False, "unknown_outcome")]
    assert rig.errors_metric("duplicate_order") == 1


async def test_gate_denial_after_unknown_keeps_the_order_in_flight(rig: Rig) -> None:
    rig.venue.create_faults.append(Fault.TIMEOUT_BEFORE_ACCEPT)
    rig.denials = [None, "trading halted: operator"]
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.UNKNOWN
    assert len(rig.venue.calls_of("create")) == 1
    assert rig.executor.in_flight(SYMBOL) == intent.amount  # the request may still land
    assert rig.results == [(False, "unknown_outcome")]
    # Once order_timeout has passed and the venue still has not seen it, it is closed.
    rig.clock.advance(rig.config.order_timeout)
    await rig.executor.refresh_open()
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.CANCELED, 0)
    assert not rig.executor.has_open(SYMBOL)


async def test_executing_an_intent_again_never_duplicates(rig: Rig) -> None:
    done = await rig.intent()
    await rig.executor.execute(done)
    again = await rig.new_executor().execute(done)  # e.g. a caller retrying after a crash
    assert again.status is OrderStatus.FILLED
    assert len(rig.venue.calls_of("create")) == 1

    rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
    rig.venue.fetch_faults.extend([TransientVenueError("502")] * (rig.config.max_retries + 1))
    unknown = await rig.intent()
    assert (await rig.executor.execute(unknown)).status is OrderStatus.UNKNOWN
    report = await rig.new_executor().execute(unknown)  # looks it up before any send
    assert report.status is OrderStatus.FILLED
    assert len(rig.venue.calls_of("create")) == 2
    assert len(rig.venue.orders) == 2


# ---------------------------------------------------------------------------- in flight
async def test_in_flight_until_fills_land_in_the_ledger(rig: Rig) -> None:
    rig.venue.report_fills = False  # fills only come on the stream
    buy = await rig.intent(side=Side.BUY, amount="0.030")
    sell = await rig.intent(side=Side.SELL, amount="0.010")
    assert rig.executor.in_flight(SYMBOL) == 0
    await rig.executor.execute(buy)
    await rig.executor.execute(sell)
    assert rig.executor.in_flight(SYMBOL) == buy.amount - sell.amount
    assert rig.executor.in_flight("ETH/USDT:USDT") == 0
    assert rig.executor.has_open(SYMBOL)
    assert {r.client_order_id for r in rig.executor.open_orders()} == {buy.client_order_id,
                                                                      sell.client_order_id}
    buy_fill, sell_fill = rig.venue.unreported_fills
    await rig.ledger.record_fill(buy_fill)
    assert rig.executor.in_flight(SYMBOL) == -sell.amount
    await rig.ledger.record_fill(sell_fill)
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)
    assert rig.executor.open_orders() == []  # settled orders are forgotten


async def test_what_a_fill_or_a_streamed_update_changes_for_the_risk_loop(rig: Rig) -> None:
    rig.venue.report_fills = False  # the answer says FILLED; the fills come on the stream
    intent = await rig.intent(side=Side.BUY, amount="0.030")
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.FILLED and rig.executor.in_flight(SYMBOL) == intent.amount
    assert not rig.executor.settled_as_sized(intent)  # nothing landed yet
    [fill] = rig.venue.unreported_fills
    await rig.ledger.record_fill(fill)
    assert rig.executor.absorbs(fill)  # it moved from in flight to position: net delta unchanged
    assert rig.executor.settled_as_sized(intent)
    stray = replace(fill, trade_id="stray", client_order_id="someone-else")
    await rig.ledger.record_fill(stray)
    assert not rig.executor.absorbs(stray)  # not an order of ours in flight: position moved

    # A streamed update returns the intent only when it journals something new.
    other = await rig.intent(side=Side.SELL, amount="0.010")
    await rig.executor.execute(other)
    [other_fill] = rig.venue.unreported_fills[1:]
    update = replace(rig.venue.orders[other.client_order_id], fills=(other_fill,))
    assert await rig.executor.on_order_update(update) == other  # its fill is new
    assert await rig.executor.on_order_update(update) is None  # a repeat (and now settled)
    assert await rig.executor.on_order_update(replace(update, client_order_id="unknown")) is None
    short = await rig.intent(side=Side.SELL, amount="0.010")
    rig.venue.fill_fraction = Decimal("0.5")
    await rig.executor.execute(short)
    half = rig.venue.unreported_fills[-1]
    await rig.ledger.record_fill(half)
    assert rig.executor.absorbs(half) and not rig.executor.settled_as_sized(short)


async def test_start_sends_nothing_before_the_intent_is_durable(rig: Rig) -> None:
    intent = await rig.intent(amount="0.020")
    durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = rig.executor.start(intent, durable=durable)
    assert rig.executor.in_flight(SYMBOL) == intent.amount  # counted at once
    for _ in range(5):
        await asyncio.sleep(0)
    assert rig.venue.calls_of("create") == []
    assert rig.ledger.history(intent.client_order_id) == [OrderStatus.NEW]
    durable.set_result(None)
    report = await task
    assert report.status is OrderStatus.FILLED
    assert [c.client_order_id for c in rig.venue.calls_of("create")] == [intent.client_order_id]
    assert rig.executor.in_flight(SYMBOL) == 0


async def test_start_drops_the_order_unsent_when_the_intent_commit_fails(rig: Rig) -> None:
    intent = await rig.intent(amount="0.020")
    durable: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    task = rig.executor.start(intent, durable=durable)
    await asyncio.sleep(0)
    durable.set_exception(LedgerError("ledger write failed: disk I/O error"))
    with pytest.raises(LedgerError, match="disk I/O"):
        await task
    assert rig.venue.calls_of("create") == []
    assert rig.executor.in_flight(SYMBOL) == 0
    assert not rig.executor.has_open(SYMBOL)
    assert rig.results == []  # not an order error: the ledger's failure halts trading on its own


# ---------------------------------------------------------------------------- recovery
async def test_recover_after_restart(rig: Rig) -> None:
    # Run 1 dies with one order's outcome unknown and two intents journaled but never sent.
    rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
    rig.venue.fetch_faults.extend([TransientVenueError("502")] * (rig.config.max_retries + 1))
    sent = await rig.intent(amount="0.020")
    assert (await rig.executor.execute(sent)).status is OrderStatus.UNKNOWN
    stale = await rig.intent(created_at=rig.clock.time() - 60)
    fresh = await rig.intent(side=Side.SELL, amount="0.005")
    other_venue = await rig.ledger.new_intent(underlying="BTC", venue="elsewhere", symbol=SYMBOL,
                                              side=Side.BUY, amount=Decimal(1), created_at=0.0)

    restarted = rig.new_executor(metrics=Metrics())
    assert restarted.in_flight(SYMBOL) == 0
    await restarted.recover()

    assert rig.ledger.order_state(sent.client_order_id) == (OrderStatus.FILLED, sent.amount)
    assert rig.ledger.filled_for(sent.client_order_id) == sent.amount
    assert rig.ledger.order_state(stale.client_order_id) == (OrderStatus.CANCELED, 0)
    assert rig.ledger.detail(stale.client_order_id) == "never reached the venue"
    assert rig.ledger.order_state(fresh.client_order_id) == (OrderStatus.NEW, 0)
    assert rig.ledger.order_state(other_venue.client_order_id) == (OrderStatus.NEW, 0)
    assert "elsewhere" not in {c.client_order_id for c in rig.venue.calls}
    # Too young to tell: it may still land, so it counts in flight until resolved.
    assert restarted.in_flight(SYMBOL) == -fresh.amount
    assert len(rig.venue.calls_of("create")) == 1  # recovery never places orders

    rig.clock.advance(rig.config.order_timeout + LANDING_GRACE)
    await restarted.refresh_open()
    assert rig.ledger.order_state(fresh.client_order_id) == (OrderStatus.CANCELED, 0)
    assert restarted.in_flight(SYMBOL) == 0
    assert not restarted.has_open(SYMBOL)


async def test_recover_keeps_intents_open_while_the_venue_errors(rig: Rig) -> None:
    intent = await rig.intent(created_at=rig.clock.time() - 60)
    rig.venue.fetch_faults.extend([TransientVenueError("timeout")] * (rig.config.max_retries + 1))
    await rig.executor.recover()
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.NEW, 0)
    assert rig.executor.in_flight(SYMBOL) == intent.amount
    assert rig.executor.has_open(SYMBOL)


# ---------------------------------------------------------------------------- cancel
async def test_cancel_all_cancels_open_orders_by_client_id(rig: Rig) -> None:
    rig.venue.mode = "rest"
    intent = await rig.intent()
    report = await rig.executor.execute(intent)
    assert report.status is OrderStatus.SUBMITTED
    assert rig.executor.has_open(SYMBOL)
    assert rig.executor.in_flight(SYMBOL) == intent.amount

    await rig.executor.cancel_all()
    assert [c.client_order_id for c in rig.venue.calls_of("cancel")] == [intent.client_order_id]
    assert rig.ledger.history(intent.client_order_id) == [OrderStatus.NEW, OrderStatus.SUBMITTED,
                                                          OrderStatus.CANCELED]
    assert rig.orders_metric("canceled") == 1
    assert not rig.executor.has_open(SYMBOL)
    assert rig.executor.in_flight(SYMBOL) == 0


async def test_cancel_all_keeps_an_order_it_could_not_cancel(rig: Rig) -> None:
    rig.venue.mode = "rest"
    intent = await rig.intent()
    await rig.executor.execute(intent)
    rig.venue.cancel_faults.append(TransientVenueError("503"))
    await rig.executor.cancel_all()
    assert rig.ledger.order_state(intent.client_order_id) == (OrderStatus.SUBMITTED, 0)
    assert rig.executor.has_open(SYMBOL)
    await rig.executor.cancel_all()
    assert not rig.executor.has_open(SYMBOL)


# ---------------------------------------------------------------------------- real ledger
async def test_real_ledger_journals_orders_and_recovers_after_restart(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite"
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        rig = make_rig(ledger=ledger)
        done = await rig.intent(amount="0.020")
        assert (await rig.executor.execute(done)).status is OrderStatus.FILLED
        assert ledger.order_state(done.client_order_id) == (OrderStatus.FILLED, done.amount)
        assert ledger.filled_for(done.client_order_id) == done.amount
        assert ledger.position(rig.venue.name, SYMBOL) == done.amount

        rig.venue.create_faults.append(Fault.ACCEPT_THEN_TIMEOUT)
        rig.venue.fetch_faults.extend([TransientVenueError("502")] * (rig.config.max_retries + 1))
        unknown = await rig.intent(side=Side.SELL, amount="0.005")
        assert (await rig.executor.execute(unknown)).status is OrderStatus.UNKNOWN
        assert rig.executor.in_flight(SYMBOL) == -unknown.amount
    finally:
        await ledger.close()

    reopened = InventoryLedger(path)  # the daemon restarts on the same journal
    await reopened.open()
    try:
        assert [i.client_order_id for i in reopened.open_intents()] == [unknown.client_order_id]
        rig.ledger = reopened
        restarted = rig.new_executor(metrics=Metrics())
        await restarted.recover()
        assert reopened.order_state(unknown.client_order_id) == (OrderStatus.FILLED, unknown.amount)
        assert reopened.open_intents() == []
        assert reopened.position(rig.venue.name, SYMBOL) == done.amount - unknown.amount
        assert restarted.in_flight(SYMBOL) == 0
        assert len(rig.venue.calls_of("create")) == 2  # one per intent, never a duplicate
    finally:
        await reopened.close()


async def test_endpoint_weights_take_that_many_tokens() -> None:
    """Bucket of 5 at 10/s: two creates of weight 4 must wait ~0.3 s; of weight 1, not at all."""
    waits = {}
    for weight in (1, 4):
        rig = make_rig(default_rate_limit=RateLimitConfig(weights={"create_order": weight}))
        for amount in ("0.01", "0.02"):
            await rig.executor.execute(await rig.intent(amount=amount), reference_price=Decimal(60000))
        waits[weight] = rig.sample("hedgerd_rate_limit_wait_seconds_sum", venue="perp")
    assert waits[1] == 0
    assert waits[4] == pytest.approx(0.3, abs=0.05)


def test_endpoint_weights_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        RateLimitConfig(weights={"fetch_balance": 1})
    with pytest.raises(ValueError, match="must be positive"):
        RateLimitConfig(weights={"fetch_order": 0})
