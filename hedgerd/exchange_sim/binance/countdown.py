"""Binance USD-M's dead-man switch: ``POST /fapi/v1/countdownCancelAll``, one countdown per symbol.

As Binance documents it: each call with ``countdownTime`` (ms) > 0 replaces the symbol's
countdown by a new one ending that long from now; ``countdownTime = 0`` stops it; when a
countdown ends, every open order of the symbol on the account is cancelled (whoever placed it)
and the countdown is gone until the next call. Binance checks its countdowns about every 10 ms;
the simulator checks them on each tick (``SimConfig.tick_interval``, 250 ms by default), so an
expiry lands up to one tick late here.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CountdownStats:
    """What tests read: calls by kind, countdowns that ran out, orders they cancelled."""

    armed: int = 0  # a call that started a countdown where none ran
    refreshed: int = 0  # a call that replaced a running countdown
    disarmed: int = 0  # countdownTime = 0
    expired: int = 0
    cancelled_orders: int = 0
    last_call_ms: dict[str, int] = field(default_factory=dict)  # symbol -> time of its last call


class Countdowns:
    """The running countdowns of one account, by symbol (exchange id, e.g. ``BTCUSDT``)."""

    def __init__(self) -> None:
        self.deadlines: dict[str, int] = {}  # symbol -> ms when its open orders are cancelled
        self.stats = CountdownStats()

    def set(self, symbol: str, countdown_ms: int, now_ms: int) -> None:
        """One call of the endpoint: start, replace or (0) stop the symbol's countdown."""
        self.stats.last_call_ms[symbol] = now_ms
        if countdown_ms == 0:
            if self.deadlines.pop(symbol, None) is not None:
                self.stats.disarmed += 1
            return
        if symbol in self.deadlines:
            self.stats.refreshed += 1
        else:
            self.stats.armed += 1
        self.deadlines[symbol] = now_ms + countdown_ms

    def due(self, now_ms: int) -> list[str]:
        """The symbols whose countdown has run out by ``now_ms`` (their countdowns removed)."""
        ended = [s for s, deadline in self.deadlines.items() if deadline <= now_ms]
        for symbol in ended:
            del self.deadlines[symbol]
            self.stats.expired += 1
        return ended

    def as_json(self, now_ms: int) -> dict[str, object]:
        """Remaining ms per running countdown and the counters (``/_sim/stats``)."""
        s = self.stats
        return {"remaining_ms": {sym: d - now_ms for sym, d in self.deadlines.items()},
                "armed": s.armed, "refreshed": s.refreshed, "disarmed": s.disarmed, "expired": s.expired,
                "cancelled_orders": s.cancelled_orders, "last_call_ms": dict(s.last_call_ms)}
