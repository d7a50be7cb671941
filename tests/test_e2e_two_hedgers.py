"""End to end, live mode: two ``hedgerd run`` with separate ledgers on one simulated exchange account.

Both hedge the same inventory and neither sees the other's orders in flight, so together they
double-hedge. Each must notice the other's orders (our client-id prefix, a client id its ledger
never issued) and halt within seconds, after which the halted one sends nothing more.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

from hedgerd.exchange_sim import EngineConfig, SimConfig
from tests.daemon_proc import DaemonProcess
from tests.test_e2e_live_sim import (
    SimThread,
    ledger_rows,
    live_daemon,
    log_events,
    prepare_workdir,
    readyz,
    status,
    wait,
)

pytestmark = pytest.mark.e2e

FOREIGN = "another hedger is trading on this account with our client-id prefix 'hgd'"


def ledger_id(workdir: Path) -> str:
    [(value,)] = ledger_rows(workdir / "ledger.sqlite", "SELECT value FROM meta WHERE key = 'ledger_id'")
    return str(value)


def orders_of(sim: SimThread, ledger: str) -> int:
    """Hedge orders at the venue sent by the daemon whose ledger has id ``ledger``."""
    return sum(1 for o in sim.hedge_orders() if str(o["clientOrderId"]).startswith(f"hgd{ledger}x"))


def halted_by_foreign_order(d: DaemonProcess) -> bool:
    view = status(d)
    return view["trading_state"] == "halted" and FOREIGN in view["reason"]


def test_two_daemons_on_one_account_notice_each_other_and_the_double_hedging_stops(tmp_path: Path) -> None:
    # No BTC at the start: nothing to hedge until the client flow is turned on with both running.
    engine = EngineConfig(seed=7, flow_rate=0.0, spot_balances={"USDT": Decimal(1_000_000)})
    with SimThread(SimConfig(port=0, engine=engine)) as sim:
        dirs = [tmp_path / "a", tmp_path / "b"]
        configs = [prepare_workdir(workdir, sim.port) for workdir in dirs]
        with live_daemon(dirs[0], configs[0]) as a, live_daemon(dirs[1], configs[1]) as b:
            daemons = [a, b]
            for d in daemons:
                wait(lambda d=d: readyz(d)[0] == 200, 60, "/readyz ready", d)  # type: ignore[misc]
                assert status(d)["trading_state"] == "active", "halted before any order was sent"
            ids = [ledger_id(workdir) for workdir in dirs]
            assert ids[0] != ids[1]

            sim.post("/_sim/flow", {"rate": 4})
            started = time.monotonic()
            wait(lambda: any(orders_of(sim, i) for i in ids), 30, "a first hedge order")
            first_order = time.monotonic()
            wait(lambda: any(halted_by_foreign_order(d) for d in daemons), 15,
                 "a daemon halted on the other's orders",
                 describe=lambda: str([(status(d)["trading_state"], status(d)["reason"]) for d in daemons]))
            detected = time.monotonic()
            halted = [i for d, i in zip(daemons, ids, strict=True) if halted_by_foreign_order(d)]
            for d in daemons:
                if halted_by_foreign_order(d):
                    view = status(d)
                    assert view["source"] == "auto:foreign_order", view
                    assert view["reason"] in view["not_ready"], view
                    assert d.total("hedgerd_foreign_orders_total") >= 1

            # The halted daemons send nothing more while the flow goes on. An order already on its
            # way when the halt came may still reach the venue: sample once none is in flight.
            halted_daemons = [d for d in daemons if halted_by_foreign_order(d)]
            wait(lambda: all(not status(d)["open_orders"] for d in halted_daemons), 15,
                 "the halted daemons' orders in flight settled")
            sent = {i: orders_of(sim, i) for i in halted}
            time.sleep(4)
            assert {i: orders_of(sim, i) for i in halted} == sent, "a halted daemon kept sending orders"
            sim.post("/_sim/flow", {"rate": 0})
            states = [status(d)["trading_state"] for d in daemons]
            print(f"first order {first_order - started:.1f} s after the flow started, a halt "
                  f"{detected - first_order:.1f} s after it; orders per daemon {[orders_of(sim, i) for i in ids]}, "
                  f"now {states}")


def test_a_second_daemon_started_on_an_account_in_use_halts_at_startup_and_sends_nothing(tmp_path: Path) -> None:
    engine = EngineConfig(seed=11, flow_rate=0.0, spot_balances={"USDT": Decimal(1_000_000)})
    with SimThread(SimConfig(port=0, engine=engine)) as sim:
        dirs = [tmp_path / "a", tmp_path / "b"]
        configs = [prepare_workdir(workdir, sim.port) for workdir in dirs]
        with live_daemon(dirs[0], configs[0]) as a:
            wait(lambda: readyz(a)[0] == 200, 60, "/readyz ready", a)
            incumbent = ledger_id(dirs[0])
            sim.post("/_sim/flow", {"rate": 4})
            wait(lambda: orders_of(sim, incumbent) >= 2, 30, "the first daemon hedging", a)
            with live_daemon(dirs[1], configs[1]) as b:
                # Its startup reconciliation fetches the trades of the last seconds: the first
                # daemon's hedges carry our prefix and a client id its own fresh ledger never issued.
                wait(lambda: status(b)["source"] == "auto:foreign_order", 30, "the second daemon halted", b,
                     describe=lambda: str(status(b)["reason"]))
                view = status(b)
                assert view["trading_state"] == "halted" and FOREIGN in view["reason"], view
                # /status answers before the engine's start-up has logged its last line
                wait(lambda: bool(log_events(b, "engine_started")), 30, "the second daemon's engine_started", b)
                [started] = log_events(b, "engine_started")
                assert started["trading_state"] == "HALTED", "not halted by the startup reconciliation"
                newcomer = ledger_id(dirs[1])
                halted_at = orders_of(sim, incumbent)
                wait(lambda: orders_of(sim, incumbent) > halted_at, 30, "the first daemon hedging on", a)
                assert orders_of(sim, newcomer) == 0, "the second daemon sent orders"
                assert status(a)["trading_state"] == "active", status(a)["reason"]
            sim.post("/_sim/flow", {"rate": 0})
