"""End to end, live mode: ``hedgerd run`` starts (fresh ledger) and restarts while the desk keeps
trading on the Binance-protocol simulator at 50 and 200 client fills a second: it becomes ready,
hedges, and once the flow stops its ledger equals the venue, every trade journaled once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_e2e_live_sim import (
    SPOT_VENUE,
    SimThread,
    _agrees,
    _compare,
    assert_orders_exactly_once,
    ledger_trade_ids,
    live_daemon,
    log_events,
    prepare_workdir,
    readyz,
    status,
    stop,
    venue_sim,
    wait,
)

pytestmark = pytest.mark.e2e


def client_flow_ids(sim: SimThread) -> set[int]:
    return {t["id"] for t in sim.get("/_sim/trades?kind=spot") if t["clientFlow"]}


def ready_under_flow(sim: SimThread, tmp_path: Path, config: Path, *, restart: bool) -> None:
    """Start the daemon with the flow running; it must become ready, agree and hedge."""
    with live_daemon(tmp_path, config) as d:
        flow_before = len(client_flow_ids(sim))
        wait(lambda: readyz(d)[0] == 200, 60, "/readyz ready while client fills flow", d)
        assert len(client_flow_ids(sim)) > flow_before, "the desk stopped trading during the start"
        reconciled = log_events(d, "reconciled")
        assert reconciled and reconciled[-1]["mismatches"] == [], reconciled
        assert bool(log_events(d, "position_adopted")) is not restart  # a restart compares
        assert not log_events(d, "reconcile_retry")  # no snapshot failed for want of a quiet window
        orders_before = len(sim.hedge_orders())
        wait(lambda: len(sim.hedge_orders()) > orders_before, 30, "a hedge while client fills flow", d)
        assert status(d)["trading_state"] == "active", status(d)["reason"]
        if restart:
            sim.post("/_sim/flow", {"rate": 0})
            wait(lambda: _agrees(d, sim), 30, "ledger == venue after the flow stopped", d,
                 lambda: _compare(d, sim))
        stop(d)  # on the first run while the desk still trades: the restart starts under flow


@pytest.mark.parametrize("rate", [50, 200])
def test_starts_and_restarts_while_the_desk_trades(tmp_path: Path, rate: int) -> None:
    with venue_sim(flow_rate=rate) as sim:
        config = prepare_workdir(tmp_path, sim.port)
        wait(lambda: len(client_flow_ids(sim)) >= rate // 2, 20, "client flow before the start")
        ready_under_flow(sim, tmp_path, config, restart=False)
        ready_under_flow(sim, tmp_path, config, restart=True)

        ledger = tmp_path / "ledger.sqlite"
        assert_orders_exactly_once(sim, ledger)
        journaled = ledger_trade_ids(ledger, SPOT_VENUE)
        assert max(journaled.values()) == 1
        flow = client_flow_ids(sim)
        first_journaled = min(int(tid.split("#")[1]) for tid in journaled)
        missing = {i for i in flow if i >= first_journaled} - {int(tid.split("#")[1]) for tid in journaled}
        assert not missing, f"{len(missing)} client fills after the first journaled one never journaled"
        assert len(flow) > rate
