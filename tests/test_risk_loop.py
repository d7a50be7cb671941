"""When risk passes run (hedgerd.risk_loop.RiskLoop), against a stand-in pass."""

from __future__ import annotations

import asyncio

from hedgerd.clock import RealClock
from hedgerd.risk_loop import SETTLE_PASS_DELAY, RiskLoop


class Recorder:
    def __init__(self) -> None:
        self.passes = 0
        self.refreshes = 0
        self.errors: list[Exception] = []
        self.fail_next = False

    async def run_pass(self) -> None:
        self.passes += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bug in the pass")

    async def refresh(self) -> None:
        self.refreshes += 1


def loop_for(recorder: Recorder, *, tick: float = 60.0, wait: float = 60.0) -> RiskLoop:
    return RiskLoop(RealClock(), safety_tick=lambda: tick, next_wait=lambda: wait, refresh=recorder.refresh,
                    run_pass=recorder.run_pass, on_error=recorder.errors.append)


async def test_a_wake_up_runs_one_pass_and_an_error_is_reported_without_ending_the_loop() -> None:
    recorder = Recorder()
    risk_loop = loop_for(recorder)
    risk_loop.start()
    try:
        recorder.fail_next = True
        risk_loop.wake.set()
        await asyncio.sleep(0.05)
        assert recorder.passes == 1 and [str(e) for e in recorder.errors] == ["a bug in the pass"]
        risk_loop.wake.set()
        await asyncio.sleep(0.05)
        assert recorder.passes == 2 and recorder.refreshes == 0  # the safety tick has not come
    finally:
        await risk_loop.stop()
    assert risk_loop.task is not None and risk_loop.task.done()


async def test_the_wait_bounds_the_sleep_and_the_safety_tick_refreshes_first() -> None:
    recorder = Recorder()
    risk_loop = loop_for(recorder, tick=0.0, wait=0.02)
    risk_loop.start()
    try:
        await asyncio.sleep(0.2)
        assert recorder.passes >= 2 and recorder.refreshes == recorder.passes
    finally:
        await risk_loop.stop()


async def test_settle_soon_wakes_after_the_delay_unless_a_pass_runs_first() -> None:
    recorder = Recorder()
    risk_loop = loop_for(recorder)
    risk_loop.settle_soon()
    await asyncio.sleep(SETTLE_PASS_DELAY * 3)
    assert risk_loop.wake.is_set()
    risk_loop.wake.clear()
    risk_loop.passing()  # the pass it waited for ran meanwhile
    risk_loop.settle_soon()
    risk_loop.passing()
    await asyncio.sleep(SETTLE_PASS_DELAY * 3)
    assert not risk_loop.wake.is_set()
