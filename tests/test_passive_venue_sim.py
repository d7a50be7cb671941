"""Passive execution end to end: the executor, the real ledger and the real ccxt.pro binanceusdm
client against the exchange simulator (GTX post-only orders, -5022, cancels by client id)."""

from __future__ import annotations

import asyncio
import dataclasses
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd import errors as herr
from hedgerd import exchange_sim
from hedgerd.clock import RealClock
from hedgerd.config import ExecutorConfig
from hedgerd.exchange_sim.model import default_instruments
from hedgerd.executor import HedgeExecutor, TokenBucket
from hedgerd.ledger import InventoryLedger
from hedgerd.ledger.client_ids import child_client_id
from hedgerd.metrics import Metrics
from hedgerd.models import HedgeIntent, OrderStatus, OrderType, Side
from tests.test_ccxt_venue import PERP, SIM_PERP_SYMBOLS, sim_venue, wait_for

D = Decimal


@pytest.fixture
async def still_sim() -> Any:
    """A simulator whose mid moves only when the test moves it, and whose market flow never
    reaches a resting order by itself (no sweeps beyond the touch)."""
    instruments = tuple(dataclasses.replace(i, volatility=0.0) for i in default_instruments())
    engine = exchange_sim.EngineConfig(seed=3, instruments=instruments, sweep_probability=0.0)
    async with exchange_sim.start_venue_sim(config=exchange_sim.SimConfig(port=0, engine=engine)) as running:
        yield running


def usdm_orders(sim: Any, cid: str) -> list[Any]:
    return [o for o in sim.engine.orders(exchange_sim.USDM) if o.client_order_id == cid]


async def test_a_crossing_post_only_order_is_refused_with_5022(still_sim: Any) -> None:
    venue = sim_venue(still_sim, "binanceusdm", SIM_PERP_SYMBOLS)
    try:
        await venue.load_markets()
        book = still_sim.engine.book(exchange_sim.USDM, "BTCUSDT")
        crossing = HedgeIntent(intent_id=1, client_order_id="hgdsimx1c1", underlying="BTC", venue="perp",
                               symbol=PERP, side=Side.BUY, amount=D("0.01"), created_at=0.0,
                               order_type=OrderType.POST_ONLY)
        with pytest.raises(herr.PostOnlyRejected, match="5022"):
            await venue.create_order(crossing, D("0.01"), book.best_ask.price)
        assert usdm_orders(still_sim, "hgdsimx1c1") == []
        resting = dataclasses.replace(crossing, client_order_id="hgdsimx1c2")
        report = await venue.create_order(resting, D("0.01"), book.best_bid.price)
        assert report.status is OrderStatus.SUBMITTED
        (order,) = usdm_orders(still_sim, "hgdsimx1c2")
        assert order.time_in_force == "GTX" and order.is_open
    finally:
        await venue.close()


async def test_passive_intent_rests_reprices_and_halt_cancels_through_ccxt(still_sim: Any, tmp_path: Path) -> None:
    venue = sim_venue(still_sim, "binanceusdm", SIM_PERP_SYMBOLS)
    ledger = InventoryLedger(tmp_path / "ledger.sqlite")
    await ledger.open()
    gate: list[str] = []
    results: list[tuple[bool, str]] = []
    try:
        markets = await venue.load_markets()
        clock = RealClock()
        config = ExecutorConfig(order_type=OrderType.PASSIVE, passive_timeout=60, passive_check_interval=0.05,
                                passive_poll_interval=0.2)
        executor = HedgeExecutor(venue=venue, ledger=ledger, markets=markets, config=config,
                                 bucket=TokenBucket(50, 50, clock), clock=clock, metrics=Metrics(),
                                 gate=lambda intent: gate[0] if gate else None,
                                 on_result=lambda ok, kind: results.append((ok, kind)))

        def book() -> tuple[Decimal, Decimal]:
            b = still_sim.engine.book(exchange_sim.USDM, "BTCUSDT")
            return b.best_bid.price, b.best_ask.price

        executor.passive.attach(book=lambda symbol: book(), urgency=lambda intent: None)
        intent = await ledger.new_intent(underlying="BTC", venue="binanceusdm", symbol=PERP, side=Side.BUY,
                                         amount=D("0.01"), created_at=clock.time(), order_type=OrderType.PASSIVE)
        task = executor.start(intent)
        first, second = (child_client_id(intent.client_order_id, n) for n in (1, 2))
        await wait_for(lambda: bool(usdm_orders(still_sim, first)))
        (order,) = usdm_orders(still_sim, first)
        assert order.price == book()[0] and order.time_in_force == "GTX" and order.is_open

        still_sim.engine.set_mid("BTCUSDT", still_sim.engine.mid(exchange_sim.USDM, "BTCUSDT") + 50)
        await wait_for(lambda: bool(usdm_orders(still_sim, second)))
        assert usdm_orders(still_sim, first)[0].status == "CANCELED"
        (repriced,) = usdm_orders(still_sim, second)
        assert repriced.price == book()[0] and repriced.is_open  # at the new touch

        gate.append("halted")
        await executor.cancel_all()
        report = await asyncio.wait_for(task, 5)
        assert report.status is OrderStatus.CANCELED
        assert still_sim.engine.open_orders(exchange_sim.USDM) == []
        assert ledger.order_state(intent.client_order_id) == (OrderStatus.CANCELED, D(0))
        assert [c for c, _, _, _ in ledger.child_orders(intent.client_order_id)] == [first, second]
        assert results == [(True, "")]  # no error was counted
    finally:
        await ledger.close()
        await venue.close()


# ---------------------------------------------------------------------------- the matcher's rule
def still_engine(**config: Any) -> tuple[exchange_sim.MatchingEngine, list[int]]:
    clock = [1_700_000_000_000]
    instruments = tuple(dataclasses.replace(i, volatility=0.0) for i in default_instruments())
    engine = exchange_sim.MatchingEngine(exchange_sim.EngineConfig(seed=4, instruments=instruments, **config),
                                         now_ms=lambda: clock[0])
    return engine, clock


def test_a_resting_order_at_a_still_touch_never_fills_however_much_trades() -> None:
    engine, clock = still_engine(sweep_probability=0.0, market_volume=D(1000), touch_depth=D(0))
    bid = engine.book(exchange_sim.USDM, "BTCUSDT").best_bid.price
    order = engine.place_order(exchange_sim.USDM, symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                               quantity=D("0.01"), price=bid, time_in_force="GTX")
    for _ in range(100):
        clock[0] += 1000
        engine.advance()
    assert order.status == "NEW" and order.executed_qty == 0  # flow at the touch is never a fill


def test_flow_through_the_price_fills_after_the_queue_and_moves_the_mid_against_it() -> None:
    engine, clock = still_engine(sweep_probability=1.0, market_volume=D("0.02"), touch_depth=D(0),
                                 adverse_selection_bps=D(1))
    bid = engine.book(exchange_sim.USDM, "BTCUSDT").best_bid.price
    order = engine.place_order(exchange_sim.USDM, symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                               quantity=D("0.05"), price=bid, time_in_force="GTX")
    mid = engine.mid(exchange_sim.USDM, "BTCUSDT")
    steps = 0
    while order.executed_qty == 0 and steps < 50:
        clock[0] += 1000
        engine.advance()
        steps += 1
    assert order.executed_qty > 0  # swept through (every step sweeps here) with little volume each
    trades = [t for t in engine.trades(exchange_sim.USDM) if t.order_id == order.order_id]
    assert trades and all(t.is_maker and t.price == bid for t in trades)
    assert engine.mid(exchange_sim.USDM, "BTCUSDT") < mid  # moved against the filled buy
    assert order.status in ("PARTIALLY_FILLED", "FILLED")


def test_the_queue_ahead_trades_first() -> None:
    engine, clock = still_engine(sweep_probability=1.0, market_volume=D("0.2"), touch_depth=D(50))
    bid = engine.book(exchange_sim.USDM, "BTCUSDT").best_bid.price
    order = engine.place_order(exchange_sim.USDM, symbol="BTCUSDT", side="BUY", order_type="LIMIT",
                               quantity=D("0.05"), price=bid, time_in_force="GTX")
    for _ in range(20):  # ~2 base units trade through in 20 s; ~50 queued ahead
        clock[0] += 1000
        engine.advance()
    assert order.executed_qty == 0
