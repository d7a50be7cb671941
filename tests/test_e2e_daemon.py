"""End to end: ``hedgerd run`` on its embedded default, driven by signals and HTTP."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import DaemonProcess, running_daemon

pytestmark = pytest.mark.e2e


def _orders(d) -> float:  # type: ignore[no-untyped-def]
    return d.total("hedgerd_hedge_orders_total")


def test_paper_daemon_hedges_halts_resumes_and_exits_cleanly(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as d:
        d.wait_for(lambda: d.total("hedgerd_fills_total") >= 5 and _orders(d) >= 1, 30,
                   "fills and hedge orders in /metrics")
        assert d.get("/readyz")[0] == 200
        status = json.loads(d.get("/status")[1])
        assert status["trading_state"] == "active"
        assert status["mode"] == "paper"
        frozen = [json.loads(line) for line in d.log_path.read_text().splitlines() if "startup_heap_frozen" in line]
        assert len(frozen) == 1 and frozen[0]["objects"] > 10_000  # startup's heap is out of the cyclic GC

        # Halt by signal: no order may be sent while HALTED, although client flow continues.
        d.signal(signal.SIGUSR1)
        d.wait_for(lambda: d.total("hedgerd_trading_state") == 2, 5, "HALTED after SIGUSR1")
        time.sleep(0.5)  # let an order already past the gate finish
        orders_at_halt = _orders(d)
        fills_at_halt = d.total("hedgerd_fills_total")
        deltas = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            deltas.append(abs(d.total("hedgerd_net_delta", underlying="BTC")))
            time.sleep(0.2)
        assert d.total("hedgerd_fills_total") > fills_at_halt, "client flow stopped during the halt"
        assert max(deltas) > 0.05, "net delta never left the band, the halt proved nothing"
        assert _orders(d) == orders_at_halt, "an order was sent while HALTED"
        status = json.loads(d.get("/status")[1])
        assert status["trading_state"] == "halted"
        assert "SIGUSR1" in status["reason"] or "SIGUSR1" in status["source"]

        # Resume by signal: hedging starts again and brings delta back inside a bounded band.
        d.signal(signal.SIGUSR2)
        d.wait_for(lambda: d.total("hedgerd_trading_state") == 0, 5, "ACTIVE after SIGUSR2")
        d.wait_for(lambda: _orders(d) > orders_at_halt, 15, "hedge orders after resume")
        d.wait_for(lambda: abs(d.total("hedgerd_net_delta", underlying="BTC")) < 1.0, 15, "bounded delta")

        # Graceful stop.
        d.signal(signal.SIGTERM)
        started = time.monotonic()
        code = d.proc.wait(timeout=10)
        assert code == 0, d.log_tail()
        assert time.monotonic() - started < 10


def test_http_kill_requires_token_and_resume_restores(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as d:
        code, body = d.post("/kill", {"reason": "test"}, token=None)
        assert code == 401
        code, body = d.post("/kill", {"reason": "test"}, token="wrong-token-xxxxxxxx")
        assert code == 401
        assert d.total("hedgerd_trading_state") == 0
        code, body = d.post("/kill", {"reason": "desk says stop"})
        assert code == 200 and body["trading_state"] == "halted"
        assert d.total("hedgerd_trading_state") == 2
        status = json.loads(d.get("/status")[1])
        assert status["reason"] == "desk says stop"
        code, body = d.post("/resume")
        assert code == 200 and body["trading_state"] == "active"


def test_kill_file_halts_and_blocks_resume_until_removed(tmp_path: Path) -> None:
    with running_daemon(tmp_path) as d:
        kill_file = tmp_path / "KILL"
        kill_file.write_text("maintenance\n")
        d.wait_for(lambda: d.total("hedgerd_trading_state") == 2, 5, "HALTED from kill file")
        code, body = d.post("/resume")
        assert code == 409 and body["resumed"] is False
        kill_file.unlink()
        time.sleep(1.5)
        assert d.total("hedgerd_trading_state") == 2, "leaving HALTED must be deliberate"
        code, body = d.post("/resume")
        assert code == 200 and body["trading_state"] == "active"


def _log_events(d: DaemonProcess, since_line: int = 0) -> list[dict[str, Any]]:
    lines = d.log_path.read_text().splitlines()[since_line:]
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_each_paper_run_starts_clean_and_adopts_nothing(tmp_path: Path) -> None:
    """Issue 18.12/13: two paper runs on one var dir. The simulated venues restart empty, so the
    second run archives the first run's ledger instead of resuming its positions, and neither
    run reports an adopted position (all of them are zero at start). Repeats of own hedge fills
    are echoes, not duplicates."""
    perp = "sim-perp:BTC/USDT:USDT"
    with running_daemon(tmp_path) as d:
        d.wait_for(lambda: _orders(d) >= 2 and json.loads(d.get("/status")[1])["positions"].get(perp, "0") != "0",
                   30, "a hedge position")
        assert d.total("hedgerd_ledger_fill_echoes_total") > 0, "own hedge fills arrive more than once"
        assert d.total("hedgerd_ledger_duplicate_fills_total") == 0, "no replayed feed in a quiet paper run"
        status = json.loads(d.get("/status")[1])
        assert status["fill_echoes"] > 0 and status["duplicate_fills"] == 0
    first_run = _log_events(d)
    second_start = len(d.log_path.read_text().splitlines())
    with running_daemon(tmp_path) as d:
        d.wait_for(lambda: json.loads(d.get("/status")[1])["ready"], 30, "ready")
        d.wait_for(lambda: _log_events(d, second_start) and any(
            e["event"] == "reconciled" for e in _log_events(d, second_start)), 30, "reconciliation")
        second_run = _log_events(d, second_start)
    assert not [e for e in first_run + second_run if e["event"] == "position_adopted"]
    starts = [e for e in second_run if e["event"] == "paper_run_starts_clean"]
    assert len(starts) == 1, second_run
    archived = Path(str(starts[0]["previous_archived_to"]))
    assert archived.parent == tmp_path / "paper-archive" and archived.is_file()
    assert perp in starts[0]["previous_positions"]  # the stale position, left behind
    reconciled = [e for e in second_run if e["event"] == "reconciled"]
    assert reconciled[0]["positions"].get(perp, "0") == "0"
