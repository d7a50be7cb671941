"""End to end: ``hedgerd run`` on its embedded default, driven by signals and HTTP."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.daemon_proc import running_daemon

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
