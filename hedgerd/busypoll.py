"""Busy polling: keep the event loop spinning for a while after each venue event.

An event loop with nothing to do blocks in ``epoll_wait`` and its thread sleeps. The next fill
then finds a cold CPU: whatever ran on that core meanwhile (other processes, the hypervisor)
has evicted the loop's code and data from the caches, and the whole reaction path runs slower
(``bench/latency.py``: the less often the path runs, the slower each run of it; figures in
docs/performance.md).

:class:`BusyPoller` trades a CPU core for that latency, as kernel busy polling and kernel-bypass
network stacks do: for ``window`` seconds after the last venue event a callback keeps itself on
the event loop's ready queue, so the loop polls its selector without blocking (timeout 0) and
stays on the CPU. With a window longer than the gap between events it never sleeps while flow
lasts; once events stop for ``window`` seconds it sleeps again until the next one. A window of 0
(the default, ``risk.busy_poll``) turns it off.

Time here is the host's monotonic clock, never the engine's injected clock: the window is about
the CPU, and a simulated clock standing still while the loop spins would never end it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class BusyPoller:
    """Spins the running event loop for ``window()`` seconds after each :meth:`touch`.

    While spinning, a callback puts itself back on the loop's ready queue every turn, so the
    loop polls its selector with a zero timeout instead of blocking. ``window`` is read on every
    touch and every turn, so a config reload applies at once. Call :meth:`touch` on the loop.
    """

    def __init__(self, window: Callable[[], float]) -> None:
        self._window = window
        self._last_event = -float("inf")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped = False
        self.spinning = False
        self.spins = 0  # event-loop turns spent spinning (for tests and curiosity)
        self.episodes = 0  # times it started spinning after sleeping

    @property
    def window(self) -> float:
        """Seconds it spins after each event, as configured right now (0: it does not)."""
        return self._window()

    def touch(self) -> None:
        """A venue event arrived: spin for the window from now (nothing if the window is 0)."""
        if self._stopped or self._window() <= 0:
            return
        self._last_event = time.monotonic()
        if not self.spinning:
            self.spinning = True
            self.episodes += 1
            if self._loop is None:
                self._loop = asyncio.get_running_loop()
            self._loop.call_soon(self._spin)

    def stop(self) -> None:
        """Stop spinning for good (at the next turn)."""
        self._stopped = True

    def _spin(self) -> None:
        if not self._stopped and time.monotonic() - self._last_event < self._window():
            self.spins += 1
            assert self._loop is not None
            self._loop.call_soon(self._spin)  # ready again: the next turn polls without blocking
        else:
            self.spinning = False
