"""SIGUSR1 halts sends at once, even while the event loop is stuck in a callback.

In-process (the daemon's signal handlers on the test's loop, nothing started); the end-to-end
signal tests with a real process are in test_e2e_signals.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from decimal import Decimal
from pathlib import Path

from hedgerd.config import KillSwitchConfig, LedgerConfig, Settings
from hedgerd.daemon import Daemon
from hedgerd.models import HedgeIntent, Side, TradingState


def intent(reduce_only: bool = False) -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id="hgd0badc0dex1", underlying="BTC", venue="sim-perp",
                       symbol="BTC/USDT:USDT", side=Side.SELL, amount=Decimal("0.1"), created_at=0.0,
                       reduce_only=reduce_only)


async def test_sigusr1_refuses_sends_before_the_stuck_loop_gets_to_the_kill_switch(tmp_path: Path) -> None:
    settings = Settings(ledger=LedgerConfig(path=tmp_path / "ledger.sqlite"),
                        kill_switch=KillSwitchConfig(kill_file=None))
    daemon = Daemon(settings)
    engine = daemon.engine
    loop = asyncio.get_running_loop()
    daemon._install_signals(loop)
    gate_after_stall: list[str | None] = []
    try:
        assert engine.control.gate(intent()) is None

        def stuck() -> None:  # e.g. a ledger write held up by the disk, with a send queued behind it
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1)).start()
            deadline = time.monotonic() + 10.0
            while engine.control.halt_requested is None and time.monotonic() < deadline:
                time.sleep(0.01)  # still inside this callback: the loop cannot poll for anything

        loop.call_soon(stuck)
        loop.call_soon(lambda: gate_after_stall.append(engine.control.gate(intent(reduce_only=True))))
        await asyncio.sleep(0.5)
        # the send right behind the stuck callback (before the loop polled for the signal) is refused
        assert gate_after_stall and gate_after_stall[0] is not None
        assert "operator kill via SIGUSR1" in gate_after_stall[0]
        # then the loop halted trading for good: the kill switch holds it, the flag is cleared
        assert engine.kill_switch.state is TradingState.HALTED
        assert engine.kill_switch.source == "signal:SIGUSR1"
        assert engine.control.halt_requested is None
        assert engine.control.gate(intent()) is not None
        assert engine.control.gate(intent(reduce_only=True)) is not None
    finally:
        daemon._remove_signals(loop)
    assert signal.getsignal(signal.SIGUSR1) != daemon._on_sigusr1
