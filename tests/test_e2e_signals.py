"""End to end: SIGHUP reloads the config file (safe fields only), SIGTERM stops cleanly."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from hedgerd.ledger import InventoryLedger
from hedgerd.models import OrderStatus
from tests.daemon_proc import DaemonProcess, running_daemon

pytestmark = pytest.mark.e2e

VENUES = """
[[venues]]
name = "sim-spot"
role = "inventory"
[venues.sim]
seed = 1
symbol = "BTC/USDT"

[[venues]]
name = "sim-perp"
role = "hedge"
[venues.sim]
seed = 2
symbol = "BTC/USDT:USDT"
flow_rate = 0.0
latency_ms = {perp_latency_ms}
"""
EXTRA_VENUE = """
[[venues]]
name = "sim-spot-2"
role = "inventory"
[venues.sim]
seed = 3
symbol = "BTC/USDT"
"""


def config_text(*, threshold: str = "0.05", level: str = "info", extra_venue: bool = False,
                perp_latency_ms: float = 5.0, order_timeout: float = 5.0) -> str:
    return (VENUES.format(perp_latency_ms=perp_latency_ms) + (EXTRA_VENUE if extra_venue else "") + f"""
[[hedges]]
underlying = "BTC"
venue = "sim-perp"
symbol = "BTC/USDT:USDT"
threshold = {threshold}
[[hedges.inventory]]
venue = "sim-spot"
asset = "BTC"

[executor]
order_timeout = {order_timeout}

[logging]
level = "{level}"
""")


def log_events(d: DaemonProcess) -> list[dict[str, Any]]:
    events = []
    for line in d.log_path.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def events_named(d: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in log_events(d) if e.get("event") == name]


def band(d: DaemonProcess) -> float:
    return d.total("hedgerd_hedge_band", underlying="BTC")


def threshold_in_status(d: DaemonProcess) -> str:
    return str(json.loads(d.get("/status")[1])["underlyings"]["BTC"]["threshold"])


def test_sighup_applies_safe_changes_and_keeps_the_config_on_errors(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    config.write_text(config_text())
    with running_daemon(tmp_path, args=["--config", str(config)]) as d:
        d.wait_for(lambda: bool(events_named(d, "hedge_decision")), 30, "a first hedge decision")
        assert band(d) == 0.05

        # A safe change: applied and logged.
        config.write_text(config_text(threshold="0.2"))
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: band(d) == 0.2, 20, "the new hedge band")
        assert threshold_in_status(d) == "0.2"
        reloaded = events_named(d, "config_reloaded")
        assert len(reloaded) == 1 and reloaded[0]["changed"] == ["hedges.0.threshold"]

        # An invalid file: rejected with the field, the old config stays.
        config.write_text(config_text(threshold="-1"))
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: len(events_named(d, "reload_rejected")) == 1, 20, "reload_rejected")
        rejected = events_named(d, "reload_rejected")[0]
        assert rejected["path"] == "hedges.0.threshold"
        assert band(d) == 0.2 and threshold_in_status(d) == "0.2"

        # An unsafe change (a new venue) next to a safe one: refused as a whole.
        config.write_text(config_text(threshold="0.3", extra_venue=True))
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: len(events_named(d, "reload_rejected")) == 2, 20, "the second reload_rejected")
        refused = events_named(d, "reload_rejected")[1]
        assert any(field.startswith("venues.2") for field in refused["fields"])
        assert band(d) == 0.2 and threshold_in_status(d) == "0.2"
        assert len(events_named(d, "config_reloaded")) == 1

        # The log level: at "warning" the info lines (hedge decisions, order sends) stop.
        config.write_text(config_text(threshold="0.01", level="warning"))
        d.signal(signal.SIGHUP)
        d.wait_for(lambda: len(events_named(d, "config_reloaded")) == 2, 20, "the level change")
        orders = d.total("hedgerd_hedge_orders_total")
        d.wait_for(lambda: d.total("hedgerd_hedge_orders_total") >= orders + 2, 30, "more hedge orders")
        events = log_events(d)
        after = events[max(i for i, e in enumerate(events) if e.get("event") == "config_reloaded") + 1:]
        assert after == [] or all(e.get("level") != "info" for e in after), after[:3]
        assert sorted(events_named(d, "config_reloaded")[1]["changed"]) == ["hedges.0.threshold", "logging.level"]


def test_sigterm_with_an_order_in_flight_exits_0_within_10s_and_flushes_the_ledger(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    # Every request to the perp takes 1.5 s: the hedge order is in flight for that long.
    config.write_text(config_text(perp_latency_ms=1500.0, order_timeout=4.0))
    with running_daemon(tmp_path, args=["--config", str(config)]) as d:
        d.wait_for(lambda: bool(events_named(d, "order_send")), 40, "a hedge order sent")
        cid = events_named(d, "order_send")[0]["client_order_id"]
        d.signal(signal.SIGTERM)
        started = time.monotonic()
        code = d.proc.wait(timeout=15)
        elapsed = time.monotonic() - started
        assert code == 0, d.log_tail()
        assert elapsed < 10, f"took {elapsed:.1f}s"
        names = [(e.get("event"), e.get("client_order_id")) for e in log_events(d)]
        assert names.index(("shutting_down", None)) < names.index(("order_result", cid)), \
            "the order was no longer in flight when SIGTERM arrived"
        assert ("engine_stopped", None) in names, d.log_tail()
        sent_amount = events_named(d, "order_send")[0]["contracts"]

    ledger_path = tmp_path / "ledger.sqlite"
    wal = ledger_path.with_name(ledger_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed on close"

    async def reopen() -> tuple[int, Any, Any, list[Any]]:
        ledger = InventoryLedger(ledger_path)
        await ledger.open()
        try:
            return ledger.fill_count, ledger.filled_for(cid), ledger.order_state(cid), ledger.open_intents()
        finally:
            await ledger.close()

    fill_count, filled, state, open_intents = asyncio.run(reopen())
    # The in-flight order's fill (the last one before the stop) was journaled, and the
    # order settled before the ledger closed.
    assert str(filled) == sent_amount
    assert state is not None and state[0] is OrderStatus.FILLED
    assert open_intents == []
    assert fill_count >= 2  # the client fill(s) that triggered the hedge, and the hedge fill


def test_sigterm_during_a_slow_startup_exits_0_quickly(tmp_path: Path) -> None:
    config = tmp_path / "hedgerd.toml"
    # 10 s per perp request: reconciliation alone would take about a minute.
    config.write_text(config_text(perp_latency_ms=10_000.0))
    with running_daemon(tmp_path, args=["--config", str(config)]) as d:
        d.signal(signal.SIGTERM)
        started = time.monotonic()
        code = d.proc.wait(timeout=15)
        assert code == 0, d.log_tail()
        assert time.monotonic() - started < 10
        names = [e.get("event") for e in log_events(d)]
        assert "startup_interrupted" in names and "engine_started" not in names
