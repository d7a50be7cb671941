"""Request pacing: a token bucket per venue that slows down on rate limits and recovers."""

from __future__ import annotations

import asyncio
import math

from hedgerd.clock import Clock

_EPSILON = 1e-9
# Rate-limit reaction: multiply the rate by this on a rate-limit error, never below
# nominal * floor; each successful request gives back this fraction of the nominal rate.
_THROTTLE_FACTOR = 0.5
_THROTTLE_FLOOR = 0.1
_RESTORE_STEP = 0.1


class TokenBucket:
    """A token bucket on the injected clock: ``rate`` tokens per second, ``burst`` capacity.

    Waiters are served first come, first served; a waiter computes how long it must wait and
    sleeps once (it re-checks afterwards only in case the rate or a pause changed meanwhile).
    """

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._clock = clock
        self._nominal_rate = float(rate)
        self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = clock.monotonic()
        self._paused_until = -math.inf
        self._lock = asyncio.Lock()

    @property
    def rate(self) -> float:
        """Current rate in tokens per second (lower than nominal while throttled)."""
        return self._rate

    @property
    def nominal_rate(self) -> float:
        """The configured rate, the ceiling :meth:`restore` climbs back to."""
        return self._nominal_rate

    @property
    def burst(self) -> int:
        return int(self._burst)

    def _refill(self, now: float) -> None:
        # Tokens do not accrue while paused.
        start = max(self._updated, self._paused_until)
        if now > start:
            self._tokens = min(self._burst, self._tokens + (now - start) * self._rate)
        self._updated = max(self._updated, now)

    async def acquire(self, weight: float = 1.0) -> float:
        """Take ``weight`` tokens, waiting as needed; returns the seconds waited.

        A weight above the burst waits for a full bucket and leaves it in debt.
        """
        if not weight > 0:
            raise ValueError(f"weight must be positive, got {weight}")
        started = self._clock.monotonic()
        need = min(float(weight), self._burst)
        async with self._lock:
            while True:
                now = self._clock.monotonic()
                self._refill(now)
                wait = max(0.0, self._paused_until - now)
                deficit = need - self._tokens
                if deficit > _EPSILON:
                    wait += deficit / self._rate
                if wait <= _EPSILON:
                    self._tokens -= weight
                    break
                await self._clock.sleep(wait)
        return max(0.0, self._clock.monotonic() - started)

    def configure(self, rate: float, burst: int) -> None:
        """Take a new configured rate and burst (config reload).

        A new rate ends any throttling; an unchanged one keeps it (a reload of some other
        setting must not undo the reaction to a venue's rate-limit error). A smaller burst
        caps the tokens held at once.
        """
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        self._refill(self._clock.monotonic())
        if float(rate) != self._nominal_rate:
            self._nominal_rate = float(rate)
            self._rate = float(rate)
        self._burst = float(burst)
        self._tokens = min(self._tokens, self._burst)

    def throttle(self, factor: float = _THROTTLE_FACTOR, floor: float = _THROTTLE_FLOOR) -> float:
        """Lower the current rate by ``factor``, not below ``nominal * floor``; returns the new rate."""
        self._refill(self._clock.monotonic())
        self._rate = max(self._rate * factor, self._nominal_rate * floor)
        return self._rate

    def restore(self, step: float = _RESTORE_STEP) -> float:
        """Raise a throttled rate by ``step * nominal``, up to nominal; returns the new rate."""
        if self._rate < self._nominal_rate:
            self._refill(self._clock.monotonic())
            self._rate = min(self._nominal_rate, self._rate + step * self._nominal_rate)
        return self._rate

    def pause_until(self, monotonic_ts: float) -> None:
        """Hand out no token before ``monotonic_ts`` (honours Retry-After).

        The bucket is drained to at most one token, so requests resume one at a time at the
        current rate instead of in a burst.
        """
        self._refill(self._clock.monotonic())
        if monotonic_ts > self._paused_until:
            self._paused_until = monotonic_ts
            self._tokens = min(self._tokens, 1.0)
