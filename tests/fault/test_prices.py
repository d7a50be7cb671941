"""Fault suite, stale or wild prices: the price stream stops, jumps 50 % in one tick, or
carries NaN / negative / zero / infinite / crossed / out-of-order quotes.

Figures: seconds from the last accepted price to HALTED (goal: at most the configured
``max_price_age`` + 1 s), every bad price rejected and counted
(``hedgerd_rejected_prices_total`` and ``hedgerd_venue_errors_total{kind="bad_price"}``), and
no hedge sized on a rejected price (every IOC limit is within the slippage cap of the real
market, every ``hedge_decision`` mid is the last sane one). Scenarios: tests/fault/input_scenarios.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hedgerd.connectors.base import Venue
from hedgerd.models import TradingState
from hedgerd.reconciliation import PositionSnapshot
from tests.fault.input_scenarios import ccxt_prices, stale_sim_venue, wild_prices
from tests.fault.sim_daemon import engine_settings, running_engine, until


async def test_stalled_price_stream_halts_within_max_age(tmp_path: Path) -> None:
    result = await stale_sim_venue(tmp_path, max_age=1.0)
    assert result.in_time, f"stale for {result.stale_to_halt:.3f}s before HALTED (max age 1 s)"
    assert result.reason.startswith("stale price: BTC/USDT:USDT") and result.source == "auto"
    assert "price for BTC/USDT:USDT is stale" in result.ready_problems
    assert result.held_after_fresh_prices, "fresh prices must not lift the halt by themselves"
    assert result.resumed


async def test_a_slow_start_is_not_mistaken_for_a_stale_price(tmp_path: Path) -> None:
    """Reconciliation longer than max_price_age: the age of a price never seen counts from the
    moment the streams start, not from construction (else every slow start halts at once)."""
    def slow_positions(venues: dict[str, Venue]) -> None:
        perp = venues["sim-perp"]
        fetch = perp.fetch_position_snapshot

        async def slow() -> PositionSnapshot:
            await asyncio.sleep(1.5)
            return await fetch()

        perp.fetch_position_snapshot = slow  # type: ignore[method-assign]
        perp.stall_prices()  # type: ignore[attr-defined]  # and the first price takes a moment

    settings = engine_settings(tmp_path, flow_rate=0.0, max_price_age=1.0, safety_tick=0.2)
    async with running_engine(settings, prepare=slow_positions) as engine:
        await asyncio.sleep(0.4)
        engine.venues["sim-perp"].stall_prices(False)  # type: ignore[attr-defined]
        await until(lambda: ("sim-perp", "BTC/USDT:USDT") in engine.prices, 5, "first price")
        await asyncio.sleep(0.3)
        assert engine.kill_switch.state is TradingState.ACTIVE, engine.kill_switch.reason


async def test_wild_and_invalid_prices_are_rejected_counted_and_never_sized(tmp_path: Path) -> None:
    result = await wild_prices(tmp_path)
    assert result.stored == [], f"bad prices replaced the last sane one: {result.stored}"
    assert result.rejected == result.expected
    assert result.venue_errors == sum(result.expected.values())
    assert len(result.orders) >= sum(result.expected.values()), "a hedge must follow every bad tick"
    assert result.off_market == [], f"hedges sized on a rejected price: {result.off_market} {result.orders}"
    assert result.state is TradingState.ACTIVE, "bad ticks alone must not stop hedging"


@pytest.mark.e2e
def test_ccxt_daemon_halts_on_paused_market_data_and_rejects_a_50pct_jump(tmp_path: Path) -> None:
    result = ccxt_prices(tmp_path, max_age=2.0)
    assert 0 <= result.pause_stale_to_halt <= 3.0, result
    assert result.pause_polled <= 2.0 + 3.0, result
    assert result.bad_tickers_counted == result.bad_tickers_sent == 3, "NaN/negative/zero quotes not counted"
    assert result.active_after_bad_tickers
    assert result.wild_rejected >= 2, "the jumped ticks were not rejected and counted"
    assert result.bad_price_errors >= result.wild_rejected
    assert 0 <= result.jump_stale_to_halt <= 3.0, result
    assert result.wild_decisions == 0, "a hedge was sized on the jumped price"
    assert result.other_rejections == 0
    assert result.orders_after_halt == 0
