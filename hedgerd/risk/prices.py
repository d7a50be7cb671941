"""The prices the risk pass decides on, pure: the latest accepted best bid/ask per feed, when each
arrived, and how soon each goes stale (times are passed in, from the engine's clock)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

from hedgerd.models import PriceUpdate
from hedgerd.risk.delta import PriceGuard


class PriceBook:
    """Latest accepted price and its arrival time per ``(venue, symbol)``, behind a :class:`PriceGuard`."""

    def __init__(self, max_jump: Decimal) -> None:
        self.guard = PriceGuard(max_jump=max_jump)
        self.latest: dict[tuple[str, str], PriceUpdate] = {}
        self.seen_at: dict[tuple[str, str], float] = {}  # monotonic seconds

    def store(self, price: PriceUpdate, now: float) -> None:
        """Keep a price the guard accepted."""
        key = (price.venue, price.symbol)
        self.latest[key] = price
        self.seen_at[key] = now

    def age(self, venue: str, symbol: str, now: float, since: float) -> float:
        """Seconds since the last accepted price (since ``since`` if none yet)."""
        return now - self.seen_at.get((venue, symbol), since)

    def next_stale(self, feeds: Iterable[tuple[str, str, float]], now: float, since: float, wait: float) -> float:
        """``wait``, or less so that the first of ``feeds`` ``(venue, symbol, max age)`` to go stale
        is seen at its max age rather than up to ``wait`` later."""
        for venue, symbol, max_age in feeds:
            stale_in = self.seen_at.get((venue, symbol), since) + max_age - now
            if stale_in >= 0:
                wait = min(wait, stale_in + 0.01)
        return wait

    def reset_stale_anchors(self, now: float, max_age: float) -> None:
        """On a deliberate resume, a stale feed's next sane price becomes the new reference.

        Only stale anchors are dropped (a genuine big move while halted stops rejecting), so a
        wild tick on a live feed right after the resume is still rejected.
        """
        for (venue, symbol), seen in list(self.seen_at.items()):
            if now - seen > max_age:
                self.guard.reset(venue, symbol)


class LogThrottle:
    """At most one log line per key every ``interval`` seconds, counting the ones held back
    (a stuck feed sends the same bad tick several times a second)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._logged: dict[object, tuple[float, int]] = {}  # key -> (logged at, suppressed since)

    def admit(self, key: object, now: float) -> int | None:
        """How many lines were held back since the last one if a line is due now, else None."""
        logged_at, suppressed = self._logged.get(key, (-math.inf, 0))
        if now - logged_at >= self.interval:
            self._logged[key] = (now, 0)
            return suppressed
        self._logged[key] = (logged_at, suppressed + 1)
        return None
