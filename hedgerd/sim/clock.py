"""Virtual time for ``hedgerd simulate``: an event loop that jumps to its next timer.

Only time is simulated; the engine, ledger and venues run unchanged on it:

* :class:`VirtualTimeLoop` is an asyncio event loop whose ``time()`` is virtual: when no
  callback is ready it jumps straight to the next timer instead of sleeping, so
  ``asyncio.sleep``/``wait_for`` in the engine and the venues work unchanged.
* The ledger commits on the event loop (``commit_on="loop"``): a write is answered by a
  callback scheduled at once, so a run is a deterministic function of the seed whatever the
  ``batch_max``. Work handed to threads (``run_in_executor``/``asyncio.to_thread``: the ledger's
  open, close and WAL resets) holds virtual time until it is done; answers posted from other
  threads (``call_soon_threadsafe``) go to an inbox that the loop drains one at a time, only
  when nothing else is ready.
* Busy polling (``risk.busy_poll``) is off: spinning on virtual time would only burn wall time.
* :class:`SimulatedClock` implements :class:`~hedgerd.clock.Clock` over ``loop.time()``
  (monotonic) plus a fixed simulated epoch (``time()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor
from contextvars import Context
from typing import Any, TypeVar, TypeVarTuple

SIM_EPOCH = 1_700_000_000.0
"""Simulated wall-clock time at the start of every run (epoch seconds)."""
SIM_MONOTONIC_START = 1_000.0
"""Virtual ``loop.time()`` at the start of every run."""
STALL_TIMEOUT = 30.0
"""Real seconds to wait for the ledger thread before declaring the simulation stuck."""

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
_Callback = Callable[..., object]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time.

    ``time()`` starts at ``start`` and only moves when the loop is idle (nothing ready, no
    outstanding external work): it then jumps to the next timer. Callbacks posted from other
    threads (``call_soon_threadsafe``) wait in an inbox and are run one per idle point, in
    arrival order; while :meth:`external_work` is held the loop waits (really) for them instead
    of moving time. Without timers and external work the loop blocks on real I/O as usual.
    """

    def __init__(self, start: float = SIM_MONOTONIC_START, *, stall_timeout: float = STALL_TIMEOUT) -> None:
        self._virtual_now = start
        self._stall_timeout = stall_timeout
        self._inbox: deque[tuple[_Callback, tuple[Any, ...], Context | None]] = deque()
        self._inbox_ready = threading.Condition()
        self._external = 0
        self._owner: int | None = None
        self.jumps = 0
        super().__init__(selector=_VirtualSelector(self, selectors.DefaultSelector()))

    def time(self) -> float:
        return self._virtual_now

    def run_forever(self) -> None:
        self._owner = threading.get_ident()
        try:
            super().run_forever()
        finally:
            self._owner = None

    def call_soon_threadsafe(self, callback: _Callback, *args: Any,  # type: ignore[override]
                             context: Context | None = None) -> asyncio.Handle:
        if threading.get_ident() == self._owner:
            return self.call_soon(callback, *args, context=context)
        with self._inbox_ready:
            self._inbox.append((callback, args, context))
            self._inbox_ready.notify_all()
        return asyncio.Handle(callback, args, self, context)

    def hold_time(self) -> Callable[[], None]:
        """Stop virtual time (the loop waits for thread answers instead) until the returned
        release function is called (calling it again is harmless)."""
        self._external += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._external -= 1
        return release

    def hold_time_until_done(self) -> Callable[[asyncio.Future[Any]], None]:
        """Hold time now; returns a future done-callback that releases it (once)."""
        release = self.hold_time()
        return lambda _: release()

    def run_in_executor(self, executor: Executor | None, func: Callable[[*_Ts], _T],
                        *args: *_Ts) -> asyncio.Future[_T]:
        """As usual, and virtual time stands still until the job is done (``asyncio.to_thread``
        included): work in a thread takes no simulated time."""
        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(self.hold_time_until_done())
        return future

    @contextlib.contextmanager
    def external_work(self) -> Iterator[None]:
        """Context manager form of :meth:`hold_time`."""
        release = self.hold_time()
        try:
            yield
        finally:
            release()

    def _idle(self, timeout: float | None, inner: selectors.BaseSelector) -> list[Any]:
        """Called by the selector when nothing is ready: deliver a thread answer or move time."""
        events = _poll(inner)
        if events:
            return events
        deadline = time.monotonic() + self._stall_timeout
        with self._inbox_ready:
            while not self._inbox and (self._external > 0 or timeout is None):
                remaining = deadline - time.monotonic()
                if self._external > 0 and remaining <= 0:
                    raise RuntimeError(f"simulation stalled: no answer from a worker thread in "
                                       f"{self._stall_timeout:.0f} s")
                self._inbox_ready.wait(min(max(remaining, 0.001), 0.05))
                if self._external == 0 and timeout is None and not self._inbox:
                    events = inner.select(0)  # nothing to simulate: real I/O only
                    if events:
                        return events
            if self._inbox:
                callback, args, context = self._inbox.popleft()
                self.call_soon(callback, *args, context=context)
                return []
        if timeout is not None:
            self._virtual_now += timeout
            self.jumps += 1
        return []


def _poll(selector: selectors.BaseSelector) -> list[tuple[selectors.SelectorKey, int]]:
    """Ready real I/O, without a system call when only the loop's own self-pipe is registered
    (it is never written: thread answers go to the inbox and simulations install no signals)."""
    if len(selector.get_map()) <= 1:
        return []
    return selector.select(0)


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector; a blocking ``select`` becomes a virtual-time step.

    ``real_io`` is True while anything besides the loop's self-pipe is registered."""

    def __init__(self, loop: VirtualTimeLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner
        self.real_io = False

    def _registered(self, key: selectors.SelectorKey) -> selectors.SelectorKey:
        self.real_io = len(self._inner.get_map()) > 1
        return key

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._registered(self._inner.register(fileobj, events, data))

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._registered(self._inner.unregister(fileobj))

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._inner.select(0) if self.real_io else []
        return self._loop._idle(timeout, self._inner)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class SimulatedClock:
    """:class:`~hedgerd.clock.Clock` on a :class:`VirtualTimeLoop`: ``monotonic()`` is
    ``loop.time()``, ``time()`` is ``epoch`` plus the virtual time elapsed since construction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float = SIM_EPOCH) -> None:
        self._loop = loop
        self._offset = epoch - loop.time()
        self.monotonic: Callable[[], float] = loop.time  # the loop's own method: one call, not two

    def time(self) -> float:
        return self._offset + self._loop.time()

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(seconds)
