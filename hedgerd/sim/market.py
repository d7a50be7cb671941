"""The market model of the simulators: the mid price path (and, below, the client flow).

:class:`SimMarketData` is a seeded GBM mid price of one base asset, advanced on the clock.
"""

from __future__ import annotations

import math
import random
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from hedgerd.clock import Clock
from hedgerd.config import SimSettings

SECONDS_PER_YEAR = 31_536_000
_BPS = Decimal(10_000)
# Tolerance (in ticks) when mapping a clock reading to a tick index, so a sleep that ends a few
# nanoseconds early still lands on the tick it was aiming for.
_STEP_EPSILON = 1e-6


def default_tick(initial_price: Decimal) -> Decimal:
    """A price tick of about 0.1-1 ppm of the price: 0.1 for 60000, 0.01 for 3000."""
    return Decimal(1).scaleb(initial_price.adjusted() - 5)


class SimMarketData:
    """Seeded GBM mid price of one base asset, advanced on the clock.

    The mid changes only at tick times ``origin + k * interval`` (``origin`` is the clock's
    monotonic reading at construction); the path is generated lazily and depends only on the
    seed, so every reader sees the same price at the same clock time.
    """

    def __init__(self, base: str, settings: SimSettings, clock: Clock, *,
                 tick: Decimal | None = None) -> None:
        self.base = base
        self.seed = settings.seed
        self.interval = settings.price_interval
        self.tick = tick if tick is not None else default_tick(settings.initial_price)
        self._clock = clock
        self._rng = random.Random(f"hedgerd-price/{base}/{settings.seed}")
        self._origin = clock.monotonic()
        self._step = 0
        self._mid = float(settings.initial_price)
        self._mid_decimal: Decimal | None = None
        self._quotes: dict[Decimal, tuple[Decimal, Decimal]] = {}
        self._set_volatility(settings.volatility)

    def set_volatility(self, volatility: float) -> None:
        """Change the annualised volatility from the next tick on (regime changes)."""
        self._advance_to(self.current_step())
        self._set_volatility(volatility)

    def _set_volatility(self, volatility: float) -> None:
        dt = self.interval / SECONDS_PER_YEAR
        self.volatility = volatility
        self._drift = -0.5 * volatility * volatility * dt
        self._diffusion = volatility * math.sqrt(dt)

    def step_at(self, monotonic: float) -> int:
        """Index of the tick in force at clock reading ``monotonic``."""
        return max(0, math.floor((monotonic - self._origin) / self.interval + _STEP_EPSILON))

    def step_time(self, step: int) -> float:
        """Clock (monotonic) time at which tick ``step`` happens."""
        return self._origin + step * self.interval

    def current_step(self) -> int:
        return max(self._step, self.step_at(self._clock.monotonic()))

    def mid(self) -> Decimal:
        """The current mid, rounded to the tick."""
        self._advance_to(self.current_step())
        if self._mid_decimal is None:
            mid = Decimal(self._mid).quantize(self.tick, rounding=ROUND_HALF_EVEN)
            self._mid_decimal = max(mid, self.tick)
        return self._mid_decimal

    def quote(self, spread_bps: Decimal) -> tuple[Decimal, Decimal]:
        """Current (bid, ask) = mid -/+ half the spread, rounded outwards to the tick."""
        mid = self.mid()
        cached = self._quotes.get(spread_bps)
        if cached is None:
            half = mid * spread_bps / (2 * _BPS)
            bid = max((mid - half).quantize(self.tick, rounding=ROUND_FLOOR), self.tick)
            ask = max((mid + half).quantize(self.tick, rounding=ROUND_CEILING), bid)
            cached = self._quotes[spread_bps] = (bid, ask)
        return cached

    def set_mid(self, mid: Decimal) -> None:
        """Move the mid to ``mid`` now (a price shock); the walk continues from there."""
        if not mid > 0:
            raise ValueError("mid must be positive")
        self._advance_to(self.current_step())
        self._mid = float(mid)
        self._invalidate()

    def _advance_to(self, step: int) -> None:
        if step <= self._step:
            return
        mid, gauss, drift, diffusion = self._mid, self._rng.gauss, self._drift, self._diffusion
        for _ in range(step - self._step):
            mid *= math.exp(drift + diffusion * gauss(0.0, 1.0))
        self._mid = mid
        self._step = step
        self._invalidate()

    def _invalidate(self) -> None:
        self._mid_decimal = None
        self._quotes.clear()
