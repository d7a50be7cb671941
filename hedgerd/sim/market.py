"""The one market model of the simulators: how the mid price moves and how client flow arrives.

Shared by the paper venues (:mod:`hedgerd.connectors.paper`, the embedded default), the
simulated day (:mod:`hedgerd.sim.day`) and the exchange simulator (:mod:`hedgerd.exchange_sim`).
Every draw comes from a :class:`random.Random` that the caller owns and seeds, so each of them
keeps its own reproducible random sequence.

Prices: the mid follows zero-drift geometric Brownian motion. A step of ``dt`` seconds
multiplies it by ``exp(-sigma**2 * t / 2 + sigma * sqrt(t) * Z)`` with ``t = dt`` in 365-day
years, ``sigma`` the annualised volatility and ``Z`` standard normal (:func:`gbm_step`). The
paper venues step at fixed tick times (:class:`SimMarketData`: tick ``k`` at ``origin + k *
interval``, so the path is a pure function of the seed and the clock); the exchange simulator
steps by the time elapsed between its requests. Bid and ask around the mid, and their tick,
are the venue's.

Client flow (:class:`ClientFlow`): client fills on the desk's account arrive as a Poisson
process of ``rate`` fills per second (the paper venues draw the wait to the next one, the
exchange simulator the number in the time elapsed); the desk buys with ``buy_probability``
(0.5 unless a scenario biases it), at the bid, else sells at the ask; the size is exponential
with mean ``mean_size`` (a scenario may choose lognormal or fixed), rounded to the venue's step.

Trade flow (:class:`TradeFlow`): the rest of the market's aggressive trades on the hedge venue,
which is what fills a resting order. Per price tick each side trades an exponential volume with
mean ``market_volume * interval / 2``; the sell flow prints down to the lower of the bids before
and after the tick, the buy flow up to the higher of the asks, and with ``sweep_probability`` a
side sweeps one or more ticks (geometric) beyond that. How a resting order fills from it is
:class:`RestingOrder`'s rule (docs/passive.md): never at the touch, only when the flow trades
through its price, and only the volume left after the queue ahead of it.

Fees are the venue's, not the market's: client fills carry none on the paper venues, and the
paper perpetual charges ``taker_fee_bps`` on our fills; the exchange simulator charges maker
and taker fees per market kind (``EngineConfig``: spot 0.1 %, USD-M 0.02 % maker, 0.05 % taker).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

from hedgerd.clock import Clock
from hedgerd.config import SimSettings

SECONDS_PER_YEAR = 31_536_000
_BPS = Decimal(10_000)
# Tolerance (in ticks) when mapping a clock reading to a tick index, so a sleep that ends a few
# nanoseconds early still lands on the tick it was aiming for.
_STEP_EPSILON = 1e-6


SizeDistribution = Literal["exponential", "lognormal", "fixed"]


def gbm_step(volatility: float, dt_seconds: float) -> tuple[float, float]:
    """(drift, diffusion) of a GBM step of ``dt_seconds``: the mid is multiplied by
    ``exp(drift + diffusion * Z)``, ``Z`` standard normal; zero drift in the mean."""
    dt = dt_seconds / SECONDS_PER_YEAR
    return -0.5 * volatility * volatility * dt, volatility * math.sqrt(dt)


def poisson_count(mean: float, rng: random.Random) -> int:
    """A Poisson draw with the given mean (Knuth's product of uniforms)."""
    if mean <= 0:
        return 0
    threshold = math.exp(-mean)
    k = 0
    p = rng.random()
    while p > threshold:
        k += 1
        p *= rng.random()
    return k


@dataclass
class ClientFlow:
    """Client fills on the desk's account: Poisson arrivals, the desk's side, the fill size."""

    rate: float
    """Arrivals per second."""
    mean_size: Decimal
    """Mean size in base units."""
    buy_probability: float = 0.5
    """Probability that a client fill makes the desk buy."""
    size_distribution: SizeDistribution = "exponential"
    size_sigma: float = 1.0
    """Log standard deviation of the lognormal size."""

    def wait(self, rng: random.Random) -> float:
        """Seconds to the next arrival."""
        return rng.expovariate(self.rate)

    def arrivals(self, seconds: float, rng: random.Random) -> int:
        """Number of arrivals in ``seconds``."""
        return poisson_count(self.rate * seconds, rng)

    def desk_buys(self, rng: random.Random) -> bool:
        """The side of one client fill: True if the desk buys (at the bid)."""
        return rng.random() < self.buy_probability

    def size(self, rng: random.Random, mean_size: Decimal | None = None) -> float:
        """The size of one client fill (unrounded); ``mean_size`` overrides the flow's (an
        instrument's own mean)."""
        mean = float(self.mean_size if mean_size is None else mean_size)
        if self.size_distribution == "exponential":
            return rng.expovariate(1.0 / mean)
        if self.size_distribution == "lognormal":
            sigma = self.size_sigma
            return rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)
        return mean


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
        self.volatility = volatility
        self._drift, self._diffusion = gbm_step(volatility, self.interval)

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


@dataclass(frozen=True, slots=True)
class TickFlow:
    """The rest of the market's aggressive trades in one price tick on one venue."""

    sell_volume: Decimal
    """Base units sold into the bids."""
    buy_volume: Decimal
    """Base units bought from the asks."""
    low: Decimal
    """Lowest price the sells printed at."""
    high: Decimal
    """Highest price the buys printed at."""


class TradeFlow:
    """Per-tick market trade flow of one venue (module docstring). Each tick's draws come from a
    generator seeded by the seed and the tick index, so the flow does not depend on who asked
    for which tick, nor on whether anyone did: runs without resting orders draw nothing."""

    def __init__(self, seed: int, volume_per_second: Decimal, sweep_probability: float, tick: Decimal) -> None:
        self._seed = seed
        self._per_second = float(volume_per_second)
        self._sweep = sweep_probability
        self._tick = tick

    def at(self, step: int, before: tuple[Decimal, Decimal], after: tuple[Decimal, Decimal],
           seconds: float) -> TickFlow:
        """The flow of tick ``step`` (``seconds`` long), between the (bid, ask) ``before`` and ``after`` it."""
        rng = random.Random(self._seed * 1_000_003 + step)
        mean = self._per_second * seconds / 2
        sell = Decimal(repr(round(rng.expovariate(1.0 / mean), 6))) if mean > 0 else Decimal(0)
        buy = Decimal(repr(round(rng.expovariate(1.0 / mean), 6))) if mean > 0 else Decimal(0)
        low = min(before[0], after[0]) - self._sweep_ticks(rng) * self._tick
        high = max(before[1], after[1]) + self._sweep_ticks(rng) * self._tick
        return TickFlow(sell_volume=sell, buy_volume=buy, low=low, high=high)

    def _sweep_ticks(self, rng: random.Random) -> int:
        ticks = 0
        while rng.random() < self._sweep and ticks < 1000:
            ticks += 1
        return ticks


@dataclass
class RestingOrder:
    """A post-only order resting on a simulated book, and its fill rule (docs/passive.md).

    ``queue_ahead`` is the volume at its price that joined before it. Flow that reaches its
    price without going through it (a print at the price) only works the queue down: no fill.
    Flow that trades through it (prints beyond the price) first takes what is left of the queue
    ahead, then fills the order with the rest, at its limit price. The price path and the
    volumes are drawn independently; where they disagree (the price went through a level more
    volume was queued at than traded), the rule takes the side that fills less.
    """

    side_buy: bool
    price: Decimal
    remaining: Decimal
    queue_ahead: Decimal

    def match(self, flow: TickFlow, step: Decimal) -> Decimal:
        """Base units this tick's flow fills (a multiple of ``step``); updates the queue and the
        remaining amount."""
        volume = flow.sell_volume if self.side_buy else flow.buy_volume
        reached = flow.low <= self.price if self.side_buy else flow.high >= self.price
        through = flow.low < self.price if self.side_buy else flow.high > self.price
        if not reached:
            return Decimal(0)
        left = volume - self.queue_ahead
        self.queue_ahead = max(self.queue_ahead - volume, Decimal(0))
        if not through or left <= 0:
            return Decimal(0)
        filled = min(self.remaining, (left // step) * step)
        self.remaining -= filled
        return filled
