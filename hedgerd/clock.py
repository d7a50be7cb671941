"""Injected time source: every component reads time and sleeps through a :class:`Clock`.

:class:`RealClock` is wall time. A simulated clock (``hedgerd simulate``) implements the same
protocol so the same risk loop and executor run on simulated time.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Time source used by the engine."""

    def time(self) -> float:
        """Wall-clock time in epoch seconds (timestamps of records)."""
        ...

    def monotonic(self) -> float:
        """Monotonic seconds (intervals, ages, latencies)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for ``seconds`` of this clock's time."""
        ...


class RealClock:
    """The process's real clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
