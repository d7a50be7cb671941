"""Crash mid-hedge: ``kill -9`` of a live daemon, restarted on the same ledger (issue 5).

The scenario test runs the daemon as a subprocess against a simulator subprocess; the others
pin down, in-process, the reconciliation fixes the scenario found.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd import errors as herr
from hedgerd.connectors.ccxt import CcxtVenue
from hedgerd.exchange_sim import start_venue_sim
from tests.fault.harness import (
    SPOT_VENUE,
    async_wait_until,
    format_table,
    running_engine,
    sim_server_config,
)
from tests.fault.scenarios import PROTOCOLS, crash_scenario


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_kill_9_mid_hedge_places_nothing_twice_and_loses_no_fill(tmp_path: Path, protocol: str) -> None:
    # 5 cycles here (every kill mode at least once); bench/faults.py runs 20 per protocol
    result = crash_scenario(tmp_path, restarts=5, seed=11, protocol=protocol)
    report = format_table(result.rows()) + "\n" + "\n".join(result.notes)
    assert result.restarts == 5, report
    assert result.recovered_orders >= 1, "no kill caught an order in flight:\n" + report
    assert result.recovered_filled >= 1, "no kill came between a venue fill and its journal:\n" + report
    assert result.hedge_orders > 0, report
    assert result.duplicate_orders == 0, report
    assert result.missing_fills == 0, report
    assert result.doubled_fills == 0, report
    assert result.reconcile_gaps == [Decimal(0)] * 5, report
    assert result.reconcile_mismatches == 0, report
    assert result.final_gap == 0, report
    assert all(r.ok for r in result.rows()), report


@pytest.mark.e2e
def test_kill_9_mid_hedge_on_a_postgresql_ledger_places_nothing_twice_and_loses_no_fill(
        tmp_path: Path, pg_url: str) -> None:
    # The same guarantees on the other ledger backend: every kill is a crash of the database
    # client too (its sessions end with the process), every restart reopens the same database.
    result = crash_scenario(tmp_path, restarts=3, seed=12, ledger_url=pg_url)
    report = format_table(result.rows()) + "\n" + "\n".join(result.notes)
    assert result.restarts == 3, report
    assert result.hedge_orders > 0, report
    assert result.duplicate_orders == 0, report
    assert result.missing_fills == 0, report
    assert result.doubled_fills == 0, report
    assert result.reconcile_gaps == [Decimal(0)] * 3, report
    assert result.reconcile_mismatches == 0, report
    assert result.final_gap == 0, report
    assert all(r.ok for r in result.rows()), report


async def test_first_start_does_not_replay_fills_inside_the_adopted_balance(tmp_path: Path) -> None:
    # Fills from just before the first start are inside the balance the ledger adopts; the
    # streams' start-up backfill (overlap 10 s) must not journal them on top of it.
    async with start_venue_sim(config=sim_server_config(seed=21)) as sim:
        for side, qty in (("BUY", "0.031"), ("SELL", "0.012"), ("BUY", "0.007")):
            assert sim.engine.client_fill("BTCUSDT", side, Decimal(qty)) is not None
        async with running_engine(tmp_path, sim) as stack:
            await async_wait_until(lambda: stack.engine.readiness()[0], 60, "the engine to be ready")
            await async_wait_until(lambda: stack.open_orders() == 0 and stack.hedged(), 60,
                                   "the adopted balance hedged")
            await asyncio.sleep(1.0)  # the fills stream's start-up backfill has run by now
            assert stack.engine.ledger.fill_count >= 3  # the three fills were seen...
            assert stack.gaps() == {key: 0 for key in stack.venue_positions()}  # ...and counted once
            assert stack.engine.kill_switch.reason == ""


async def test_restart_backfills_from_the_adoption_when_no_fill_was_journaled(tmp_path: Path) -> None:
    # Run 1 adopts the balance and journals no spot fill; fills land while it is down. Run 2
    # has no fill cursor for the venue: it must backfill from the adoption, not skip the venue.
    overrides = {"reconcile": {"backfill_overlap": 0.5}}  # the down-time fills are older than the overlap
    async with start_venue_sim(config=sim_server_config(seed=22)) as sim:
        async with running_engine(tmp_path, sim, overrides) as stack:
            await async_wait_until(lambda: stack.settled() and stack.hedged(), 60, "run 1 hedged")
        assert not [t for t in _ledger_trade_ids(tmp_path) if t.startswith("BTC/USDT#")]  # no spot fill yet
        sim.engine.client_fill("BTCUSDT", "BUY", Decimal("0.04"))
        sim.engine.client_fill("BTCUSDT", "SELL", Decimal("0.01"))
        await asyncio.sleep(1.0)
        async with running_engine(tmp_path, sim, overrides) as stack:
            await async_wait_until(lambda: stack.engine.reconciled, 60, "run 2 reconciled")
            assert stack.engine.kill_switch.reason == "", stack.engine.kill_switch.reason
            assert stack.engine.ledger.position(SPOT_VENUE, "BTC") == stack.venue_positions()[(SPOT_VENUE, "BTC")]


async def test_reconciliation_retries_a_transient_venue_error(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    original = CcxtVenue.fetch_position_snapshot
    calls: list[str] = []

    async def flaky(self: CcxtVenue) -> Any:
        calls.append(self.name)
        if len(calls) == 1:
            raise herr.TransientVenueError("RequestTimeout: simulated")
        return await original(self)

    monkeypatch.setattr(CcxtVenue, "fetch_position_snapshot", flaky)
    async with start_venue_sim(config=sim_server_config(seed=23)) as sim, running_engine(tmp_path, sim) as stack:
        assert stack.engine.reconciled  # start() survived the error instead of failing the daemon
        assert len(calls) > 2
        assert stack.engine.kill_switch.reason == ""


def _ledger_trade_ids(workdir: Path) -> list[str]:
    from tests.fault.harness import read_ledger

    return [f["trade_id"] for f in read_ledger(workdir / "ledger.sqlite").fills]
