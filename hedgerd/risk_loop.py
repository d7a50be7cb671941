"""When the engine's risk pass runs.

A pass runs when something woke the loop (a price, an order update, a resume, a reload), at the
latest every ``risk.safety_tick`` (after refreshing open orders), and when a price is about to
go stale. A pass that only has to confirm an order filled as sized may wait a little for the
next event's (:meth:`RiskLoop.settle_soon`). The pass itself is the engine's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from hedgerd.clock import Clock

# seconds the risk pass after an order that filled as sized may wait for the next one (see
# hedgerd.engine.HedgeEngine._order_changed)
SETTLE_PASS_DELAY = 0.01


class RiskLoop:
    """The task that runs risk passes, and the wake-up event and timers that schedule them."""

    def __init__(self, clock: Clock, *, safety_tick: Callable[[], float], next_wait: Callable[[], float],
                 refresh: Callable[[], Awaitable[None]], run_pass: Callable[[], Awaitable[None]],
                 on_error: Callable[[Exception], None]) -> None:
        self.clock = clock
        self._safety_tick = safety_tick  # read on every turn: a reloaded value applies from the next one
        self._next_wait = next_wait
        self._refresh = refresh
        self._run_pass = run_pass
        self._on_error = on_error
        self.wake = asyncio.Event()
        self._settle_pass: asyncio.TimerHandle | None = None  # see settle_soon
        self.task: asyncio.Task[None] | None = None

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name="risk-loop")
        return self.task

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def settle_soon(self) -> None:
        """A risk pass within ``SETTLE_PASS_DELAY``, or the next one if it comes sooner."""
        if self._settle_pass is None and not self.wake.is_set():
            self._settle_pass = asyncio.get_running_loop().call_later(SETTLE_PASS_DELAY, self.wake.set)

    def passing(self) -> None:
        """A pass is running (in the loop or outside it): it is the one a settle timer waited for."""
        if self._settle_pass is not None:
            self._settle_pass.cancel()
            self._settle_pass = None

    async def _run(self) -> None:
        last_refresh = self.clock.monotonic()
        loop = asyncio.get_running_loop()
        wake = self.wake
        while True:
            if not wake.is_set():  # else no timer to arm and cancel
                # A plain timer that sets the wake-up event: cheaper than asyncio.timeout (no
                # cancellation of the task, no context manager) and equivalent here.
                timer = loop.call_later(self._next_wait(), wake.set)
                try:
                    await wake.wait()
                finally:
                    timer.cancel()
            wake.clear()
            try:
                if self.clock.monotonic() - last_refresh >= self._safety_tick():
                    last_refresh = self.clock.monotonic()
                    await self._refresh()
                await self._run_pass()
            except Exception as exc:  # a bug must halt trading, not kill the loop silently
                self._on_error(exc)
