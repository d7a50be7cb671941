"""Resting orders on the Deribit protocol of the exchange simulator: the matcher's one fill rule
(docs/passive.md) on inverse futures, and the passive executor's lifecycle through the real,
unmodified ccxt.deribit (post_only with reject_post_only, 11054, cancels by label)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hedgerd.clock import RealClock
from hedgerd.config import ExecutorConfig, VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.connectors.ccxt.venue import CcxtVenue
from hedgerd.exchange_sim.deribit import DeribitError, DeribitSim, DeribitSimConfig, DeribitVenue, start_deribit_sim
from hedgerd.exchange_sim.deribit import venue as venue_module
from hedgerd.exchange_sim.deribit.venue import DOrder
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import USDM, EngineConfig, default_instruments
from hedgerd.executor import HedgeExecutor, TokenBucket
from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.client_ids import child_client_id
from hedgerd.metrics import Metrics
from hedgerd.models import OrderStatus, OrderType, Side
from tests.test_ccxt_venue import wait_for

D = Decimal
PERP = "BTC/USD:BTC"
PERP_ID = "BTC-PERPETUAL"


@pytest.fixture(autouse=True)
def still_premium(monkeypatch: pytest.MonkeyPatch) -> None:
    """The perpetual's premium stays at zero, so with a still index its touch does not move."""
    monkeypatch.setattr(venue_module, "step_premium", lambda premium, dt, rng: 0.0)


def still_engine_config(**config: Any) -> EngineConfig:
    instruments = tuple(dataclasses.replace(i, volatility=0.0) for i in default_instruments())
    return EngineConfig(seed=4, instruments=instruments, **config)


def still_venue(**config: Any) -> tuple[DeribitVenue, list[int]]:
    clock = [1_796_000_000_000]
    engine = MatchingEngine(still_engine_config(**config), now_ms=lambda: clock[0])
    return DeribitVenue(engine), clock


def rest_at_bid(venue: DeribitVenue, amount: D, improve: bool = False) -> DOrder:
    inst = venue.instrument(PERP_ID)
    bid = venue.book(inst)[0][0][0] + (inst.tick_size if improve else 0)
    order, trades = venue.place("buy", PERP_ID, amount, "limit", bid, post_only=True, reject_post_only=True)
    assert trades == [] and order.state == "open"
    return order


def step(venue: DeribitVenue, clock: list[int], seconds: int = 1) -> None:
    clock[0] += seconds * 1000
    venue.engine.advance(clock[0])
    venue.tick()


# ---------------------------------------------------------------------------- the fill rule
def test_a_resting_order_at_a_still_touch_never_fills_however_much_trades() -> None:
    venue, clock = still_venue(sweep_probability=0.0, market_volume=D(1000), touch_depth=D(0))
    order = rest_at_bid(venue, D(100))
    for _ in range(100):
        step(venue, clock)
    assert order.state == "open" and order.filled == 0  # flow at the touch is never a fill
    assert venue.trades == []


def test_flow_through_the_price_fills_in_parts_as_maker_and_moves_the_index_against_it() -> None:
    # ~0.001 BTC (about 100 USD) of sells per one-second step, every step sweeping beyond the touch
    venue, clock = still_venue(sweep_probability=1.0, market_volume=D("0.002"), touch_depth=D(0),
                               adverse_selection_bps=D(1))
    order = rest_at_bid(venue, D(2000))
    index = venue.index("BTC")
    steps = 0
    while order.filled == 0 and steps < 50:
        step(venue, clock)
        steps += 1
    assert 0 < order.filled < order.amount and order.state == "open"  # a partial fill, the rest rests
    assert venue.index("BTC") < index  # moved against the filled buy
    while order.state == "open" and steps < 500:
        step(venue, clock)
        steps += 1
    assert order.state == "filled"
    fills = [t for t in venue.trades if t.order is order]
    assert len(fills) > 1 and sum(t.amount for t in fills) == order.amount
    assert all(t.maker and t.price == order.price and t.fee == 0 for t in fills)  # maker fee 0 % on futures
    assert all(t.amount % 10 == 0 for t in fills)  # whole contracts of 10 USD


def test_the_queue_ahead_trades_first() -> None:
    # 50 BTC (about 5 M USD) queued ahead; about 200 USD trades through per step
    venue, clock = still_venue(sweep_probability=1.0, market_volume=D("0.002"), touch_depth=D(50))
    order = rest_at_bid(venue, D(100))
    ahead = venue.resting.queue_ahead(order)
    assert ahead is not None and ahead > D(100_000)
    for _ in range(20):
        step(venue, clock)
    left = venue.resting.queue_ahead(order)
    assert order.filled == 0
    assert left is not None and 0 < left < ahead  # the flow worked the queue down, not the order
    venue.engine.set_mid("BTCUSDT", venue.index("BTC") * D("0.999"))  # the mark falls through the bid
    step(venue, clock)
    assert venue.mark(venue.instrument(PERP_ID)) < order.price
    assert order.filled == 0  # traded through, but not beyond the queue ahead


def test_a_bought_put_fills_in_coin_through_the_flow_and_the_index_moves_up_against_it() -> None:
    venue, clock = still_venue(sweep_probability=1.0, market_volume=D("0.2"), touch_depth=D(0),
                               adverse_selection_bps=D(1))
    put = next(i for i in venue.instruments.values() if i.is_option and i.option_type == "put")
    bid = venue.book(put)[0][0][0]
    order, _ = venue.place("buy", put.name, D(1), "limit", bid, post_only=True, reject_post_only=True)
    index = venue.index("BTC")
    for _ in range(50):
        if order.filled:
            break
        step(venue, clock)
    assert order.filled > 0 and order.filled % put.min_trade_amount == 0
    assert all(t.maker and t.price == bid for t in venue.trades if t.order is order)
    assert venue.index("BTC") > index  # a higher index makes the bought put cheaper


def test_an_order_improving_the_touch_has_nothing_ahead_and_a_crossing_post_only_one_is_refused() -> None:
    venue, _ = still_venue(touch_depth=D(5))
    assert venue.resting.queue_ahead(rest_at_bid(venue, D(100))) > 0
    assert venue.resting.queue_ahead(rest_at_bid(venue, D(100), improve=True)) == 0
    ask = venue.book(venue.instrument(PERP_ID))[1][0][0]
    with pytest.raises(DeribitError) as refused:
        venue.place("buy", PERP_ID, D(100), "limit", ask, post_only=True, reject_post_only=True)
    assert (refused.value.code, refused.value.message) == (11054, "post_only_reject")
    repriced, _ = venue.place("buy", PERP_ID, D(100), "limit", ask, post_only=True)  # Deribit moves it
    assert repriced.state == "open" and repriced.price == ask - venue.instrument(PERP_ID).tick_size


# ---------------------------------------------------------------------------- through ccxt
@pytest.fixture
async def still_sim() -> AsyncIterator[DeribitSim]:
    """A Deribit simulator whose index moves only when the test moves it, and whose market flow
    never reaches a resting order by itself (no sweeps beyond the touch)."""
    config = DeribitSimConfig(port=0, engine=still_engine_config(sweep_probability=0.0))
    async with start_deribit_sim(config=config) as running:
        yield running


@pytest.fixture
async def ccxt_venue(still_sim: DeribitSim) -> AsyncIterator[CcxtVenue]:
    cfg = VenueConfig(name="deribit-sim", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                      api_key=SecretStr(still_sim.config.client_id),
                      secret=SecretStr(still_sim.config.client_secret), sim_base_url=still_sim.base_url)
    connector = CcxtVenue("deribit-sim", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[PERP])
    try:
        yield connector
    finally:
        await connector.close()


def labelled(sim: DeribitSim, label: str) -> list[DOrder]:
    return [o for o in sim.venue.orders.values() if o.label == label]


def touch(sim: DeribitSim) -> tuple[D, D]:
    bids, asks = sim.venue.book(sim.venue.instrument(PERP_ID))
    return bids[0][0], asks[0][0]


async def passive_executor(sim: DeribitSim, venue: CcxtVenue, ledger: InventoryLedger,
                           results: list[tuple[bool, str]], **config: Any) -> HedgeExecutor:
    markets = await venue.load_markets()
    clock = RealClock()
    executor = HedgeExecutor(venue=venue, ledger=ledger, markets=markets,
                             config=ExecutorConfig(order_type=OrderType.PASSIVE, passive_check_interval=0.05,
                                                   passive_poll_interval=0.2, **config),
                             bucket=TokenBucket(50, 50, clock), clock=clock, metrics=Metrics(), gate=lambda i: None,
                             on_result=lambda ok, kind: results.append((ok, kind)))
    return executor


async def test_passive_intent_rejected_repriced_and_escalated_through_ccxt(
        still_sim: DeribitSim, ccxt_venue: CcxtVenue, tmp_path: Path) -> None:
    ledger = InventoryLedger(tmp_path / "ledger.sqlite")
    await ledger.open()
    results: list[tuple[bool, str]] = []
    try:
        executor = await passive_executor(still_sim, ccxt_venue, ledger, results, passive_timeout=3.0)
        # The first look at the book is stale: its bid is the ask now, so the first child crosses.
        stale = [True]

        def book(symbol: str) -> tuple[D, D]:
            bid, ask = touch(still_sim)
            if stale.pop() if stale else False:
                return ask, ask + 1
            return bid, ask

        executor.passive.attach(book=book, urgency=lambda intent: None)
        intent = await ledger.new_intent(underlying="BTC", venue="deribit-sim", symbol=PERP, side=Side.BUY,
                                         amount=D(3), created_at=RealClock().time(),
                                         order_type=OrderType.PASSIVE)
        task = executor.start(intent)
        first, second, third, fourth = (child_client_id(intent.client_order_id, n) for n in (1, 2, 3, 4))
        await wait_for(lambda: bool(labelled(still_sim, second)))
        assert labelled(still_sim, first) == []  # refused with 11054, never on the book
        (resting,) = labelled(still_sim, second)
        assert resting.post_only and resting.reject_post_only and resting.price == touch(still_sim)[0]

        index = still_sim.engine.mid(USDM, "BTCUSDT")
        still_sim.engine.set_mid("BTCUSDT", index + 50)  # the bid moves away: reprice
        await wait_for(lambda: bool(labelled(still_sim, third)))
        assert resting.state == "cancelled"
        (repriced,) = labelled(still_sim, third)
        assert repriced.price == touch(still_sim)[0] and repriced.state == "open"

        report = await asyncio.wait_for(task, 10)  # nothing trades through: the timeout escalates
        assert report.status is OrderStatus.FILLED
        assert repriced.state == "cancelled" and repriced.filled == 0
        (ioc,) = labelled(still_sim, fourth)
        assert ioc.time_in_force == "immediate_or_cancel" and ioc.state == "filled" and ioc.amount == 30
        assert [c for c, _, _, _ in ledger.child_orders(intent.client_order_id)] == [first, second, third, fourth]
        assert ledger.order_state(intent.client_order_id) == (OrderStatus.FILLED, D(3))
        assert results == [(True, "")]  # the 11054 counted as a reprice, not as an error
    finally:
        await ledger.close()
