"""The hedge venues' dead-man switches (:mod:`hedgerd.executor.deadman`): armed where the venue
offers one, refreshed unless fenced, a failure counted without halting, stopped at a clean
shutdown only for symbols with nothing left open; and the daemon doing all that on the Binance
simulator, where kill -9 leaves a resting order that the venue cancels within the window."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import ccxt
import pytest

from hedgerd.clock import RealClock
from hedgerd.config import ExecutorConfig
from hedgerd.errors import TransientVenueError
from hedgerd.executor import DeadManSwitches, TokenBucket
from hedgerd.metrics import Metrics
from tests.daemon_proc import running_daemon
from tests.fault.sim_daemon import (
    PERP,
    ccxt_daemon_config,
    log_events,
    sample,
    sim_credentials_env,
    sim_thread,
    wait_until,
    write_config,
)


class FakeSwitchVenue:
    """A venue with a dead-man switch that records its calls (``fail``: the next arms raise)."""

    def __init__(self, name: str = "perp", kind: str | None = "countdownCancelAll") -> None:
        self.name = name
        self.kind = kind
        self.calls: list[tuple[str, tuple[str, ...], float]] = []
        self.fail = 0

    @property
    def dead_man_switch(self) -> str | None:
        return self.kind

    async def arm_dead_man_switch(self, symbols: Sequence[str], window: float) -> None:
        if self.fail:
            self.fail -= 1
            raise TransientVenueError("perp: 503")
        self.calls.append(("arm", tuple(symbols), window))

    async def disarm_dead_man_switch(self, symbols: Sequence[str]) -> None:
        self.calls.append(("disarm", tuple(symbols), 0.0))


def _executor(venue: Any, open_symbols: set[str]) -> Any:
    bucket = TokenBucket(100.0, 10, RealClock())
    return SimpleNamespace(venue=venue, bucket=bucket, request_weight=lambda _endpoint: 1.0,
                           has_open=lambda symbol: symbol in open_symbols)


def _switches(config: ExecutorConfig, metrics: Metrics, fence: list[str | None]) -> DeadManSwitches:
    return DeadManSwitches(lambda: config, RealClock(), metrics, lambda: fence[0])


async def test_armed_per_symbol_refreshed_and_stopped_only_where_nothing_is_open() -> None:
    metrics = Metrics()
    venue = FakeSwitchVenue()
    open_symbols = {"ETH/USDT:USDT"}
    executor = _executor(venue, open_symbols)
    switches = _switches(ExecutorConfig(dead_man_switch_window=6.0), metrics, [None])
    await switches.start([(executor, "BTC/USDT:USDT"), (executor, "ETH/USDT:USDT")])
    try:
        assert venue.calls == [("arm", ("BTC/USDT:USDT",), 6.0), ("arm", ("ETH/USDT:USDT",), 6.0)]
        assert sample(metrics, "hedgerd_dead_man_switch_armed", venue="perp") == 1
        await switches.refresh()
        assert len(venue.calls) == 4
    finally:
        await switches.stop(orders_kept=False)
    # ETH still has an order of ours open after the shutdown's cancel: its timer is left to run
    assert venue.calls[4:] == [("disarm", ("BTC/USDT:USDT",), 0.0)]
    assert sample(metrics, "hedgerd_dead_man_switch_armed", venue="perp") == 0


async def test_orders_kept_at_shutdown_stop_every_timer() -> None:
    venue = FakeSwitchVenue()
    executor = _executor(venue, {"BTC/USDT:USDT"})
    switches = _switches(ExecutorConfig(cancel_on_shutdown=False), Metrics(), [None])
    await switches.start([(executor, "BTC/USDT:USDT")])
    await switches.stop(orders_kept=True)
    assert venue.calls[-1] == ("disarm", ("BTC/USDT:USDT",), 0.0)


async def test_a_failed_refresh_is_counted_and_the_next_one_rearms() -> None:
    metrics = Metrics()
    venue = FakeSwitchVenue()
    switches = _switches(ExecutorConfig(), metrics, [None])
    await switches.start([(_executor(venue, set()), PERP)])
    venue.fail = 1
    await switches.refresh()  # does not raise: trading goes on
    assert sample(metrics, "hedgerd_dead_man_switch_errors_total", venue="perp", kind="arm") == 1
    assert sample(metrics, "hedgerd_dead_man_switch_armed", venue="perp") == 0
    await switches.refresh()
    assert sample(metrics, "hedgerd_dead_man_switch_armed", venue="perp") == 1
    await switches.stop(orders_kept=False)


async def test_a_fenced_instance_neither_refreshes_nor_stops_the_shared_timer() -> None:
    metrics = Metrics()
    venue = FakeSwitchVenue()
    fence: list[str | None] = [None]
    switches = _switches(ExecutorConfig(), metrics, fence)
    await switches.start([(_executor(venue, set()), PERP)])
    fence[0] = "lease not confirmed"
    await switches.refresh()
    await switches.stop(orders_kept=False)
    assert [c[0] for c in venue.calls] == ["arm"]  # the new leader's timer is left alone
    assert sample(metrics, "hedgerd_dead_man_switch_armed", venue="perp") == 0


@pytest.mark.parametrize("setting,kind", [("off", "countdownCancelAll"), ("auto", None)])
async def test_off_or_a_venue_without_a_switch_sets_nothing(setting: str, kind: str | None) -> None:
    metrics = Metrics()
    venue = FakeSwitchVenue(kind=kind)
    switches = _switches(ExecutorConfig.model_validate({"dead_man_switch": setting}), metrics, [None])
    await switches.start([(_executor(venue, set()), PERP)])
    await switches.stop(orders_kept=False)
    assert venue.calls == [] and switches.switches == []
    assert "hedgerd_dead_man_switch_armed{" not in metrics.render().decode()


def test_the_window_is_validated() -> None:
    with pytest.raises(ValueError, match="dead_man_switch_window"):
        ExecutorConfig.model_validate({"dead_man_switch_window": 4})
    with pytest.raises(ValueError, match="dead_man_switch"):
        ExecutorConfig.model_validate({"dead_man_switch": "on"})


# --------------------------------------------------------------------------- the daemon on the Binance simulator
WINDOW = 5.0  # the smallest window the config takes


def _resting_desk_order(sim: Any) -> str:
    """A GTC buy 10% under the bid on the hedge symbol, placed through ccxt by someone else on the
    account (hedgerd tracks no resting order today; the venue's countdown cancels every open
    order of the symbol, whoever placed it)."""
    ex = ccxt.binanceusdm(sim.venue.ccxt_config())
    ex.load_markets()
    bid = ex.fetch_order_book(PERP, 5)["bids"][0][0]
    order = ex.create_order(PERP, "limit", "buy", 0.01, ex.price_to_precision(PERP, bid * 0.9),
                            {"timeInForce": "GTC", "clientOrderId": "desk-resting-1"})
    assert order["status"] == "open"
    return str(order["id"])


def _open_on_btcusdt(sim: Any) -> list[str]:
    return sim.call(lambda s: [o.client_order_id for o in s.engine.open_orders("usdm", "BTCUSDT")])


def test_the_daemon_keeps_the_countdown_armed_stops_it_on_sigterm_and_kill_9_leaves_it_to_cancel(
        tmp_path: Path) -> None:
    with sim_thread() as sim:
        config = write_config(tmp_path / "hedgerd.toml", ccxt_daemon_config(
            sim, extra={"executor": {"dead_man_switch_window": WINDOW}}))
        args, env = ["--config", str(config)], sim_credentials_env(sim)

        def countdown() -> dict[str, Any]:
            return sim.call(lambda s: s.countdowns.as_json(s.engine.now()))

        with running_daemon(tmp_path / "a", args=args, env=env) as d:
            wait_until(lambda: countdown()["refreshed"] >= 2, 20, "the countdown refreshed twice")
            assert 0 < countdown()["remaining_ms"]["BTCUSDT"] <= WINDOW * 1000
            assert d.total("hedgerd_dead_man_switch_armed", venue="sim-usdm") == 1
            d.signal(signal.SIGTERM)
            assert d.proc.wait(15) == 0
        stopped = countdown()
        assert stopped["disarmed"] == 1 and stopped["remaining_ms"] == {}  # a clean shutdown stops it
        events = [e["event"] for e in log_events(tmp_path / "a" / "daemon.log") if e["event"].startswith("dead_man")]
        assert (events[0], events[-1]) == ("dead_man_switch_armed", "dead_man_switch_disarmed")

        with running_daemon(tmp_path / "b", args=args, env=env) as d:
            d.wait_for(lambda: d.total("hedgerd_dead_man_switch_armed", venue="sim-usdm") == 1, 15, "armed")
            _resting_desk_order(sim)
            time.sleep(WINDOW)  # refreshed meanwhile: the order rests
            assert _open_on_btcusdt(sim) == ["desk-resting-1"]
            d.proc.kill()
            killed = time.monotonic()
            d.proc.wait(5)
            assert _open_on_btcusdt(sim) == ["desk-resting-1"]
            gone = wait_until(lambda: _open_on_btcusdt(sim) == [], WINDOW + 2, "the venue cancelling the order")
        after_kill = time.monotonic() - killed
        # one window after the last refresh at most, + the simulator's 250 ms tick and a loaded box's lag
        assert gone <= WINDOW + 1.0, after_kill
        assert countdown()["expired"] == 1 and countdown()["cancelled_orders"] == 1
        print(json.dumps({"window_s": WINDOW, "cancelled_after_kill_s": round(after_kill, 2)}))
