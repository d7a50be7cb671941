"""Binance-style request-weight accounting per IP: fixed windows, 429 + Retry-After, then 418 bans.

Pure: the caller passes the current time in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Admission:
    """Outcome of one request: ``status`` 200 (allowed), 429 (over the limit) or 418 (banned)."""

    status: int
    used: int
    retry_after: int = 0

    @property
    def allowed(self) -> bool:
        return self.status == 200


@dataclass
class _IpState:
    window_start: float = 0.0
    used: int = 0
    backoff_until: float = 0.0
    violations: int = 0
    banned_until: float = 0.0


@dataclass
class LimiterStats:
    """Counters the fault suite reads: how often clients hit and ignored the limit."""

    rejected_429: int = 0
    rejected_418: int = 0
    requests_during_backoff: int = 0
    bans: int = 0


@dataclass
class WeightLimiter:
    """Weight per IP per fixed window.

    Over the limit the request gets 429 with ``Retry-After`` = seconds to the window end. Every
    further request before that moment counts as a violation (and is refused with 429); after
    ``ban_after`` violations the IP is banned with 418 for ``ban_seconds``. ``ban_after = 0``
    disables bans (used for order-count limits).
    """

    limit: int
    window_seconds: float = 60.0
    ban_after: int = 3
    ban_seconds: float = 120.0
    stats: LimiterStats = field(default_factory=LimiterStats)
    _ips: dict[str, _IpState] = field(default_factory=dict)

    def reset(self) -> None:
        """Forget all usage, back-offs, bans and counters."""
        self._ips.clear()
        self.stats = LimiterStats()

    def used(self, ip: str, now: float) -> int:
        state = self._state(ip, now)
        return state.used

    def admit(self, ip: str, weight: int, now: float) -> Admission:
        """Account ``weight`` for ``ip`` at ``now`` and decide whether the request may run."""
        state = self._state(ip, now)
        if state.banned_until > now:
            self.stats.rejected_418 += 1
            self.stats.requests_during_backoff += 1
            return Admission(418, state.used, math.ceil(state.banned_until - now))
        if state.backoff_until > now:
            self.stats.requests_during_backoff += 1
            state.violations += 1
            if 0 < self.ban_after <= state.violations:
                state.banned_until = now + self.ban_seconds
                state.backoff_until = 0.0
                state.violations = 0
                self.stats.bans += 1
                self.stats.rejected_418 += 1
                return Admission(418, state.used, math.ceil(self.ban_seconds))
            self.stats.rejected_429 += 1
            return Admission(429, state.used, max(1, math.ceil(state.backoff_until - now)))
        state.used += weight
        if state.used > self.limit:
            state.backoff_until = state.window_start + self.window_seconds
            state.violations = 0
            self.stats.rejected_429 += 1
            return Admission(429, state.used, max(1, math.ceil(state.backoff_until - now)))
        return Admission(200, state.used)

    def _state(self, ip: str, now: float) -> _IpState:
        state = self._ips.setdefault(ip, _IpState())
        if now >= state.window_start + self.window_seconds:
            state.window_start = math.floor(now / self.window_seconds) * self.window_seconds
            state.used = 0
        return state
