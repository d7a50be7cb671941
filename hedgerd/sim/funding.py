"""The perpetual funding model every simulated venue shares: a premium of the perpetual over its
index, and the venues' formulas turning it into a funding rate.

- Premium: an Ornstein-Uhlenbeck process (mean 0, mean reversion ``reversion`` seconds,
  stationary standard deviation ``std``; defaults one hour and 0.06 %), stepped exactly
  (:func:`step_premium`), so a long step and many short ones have the same distribution.
- Binance USD-M (:func:`binance_rate`): ``F = P + clamp(I - P, -0.05 %, +0.05 %)`` per funding
  interval, ``P`` the premium averaged over the interval (Binance averages its premium index
  every minute: :class:`PremiumAverage` samples it every ``sample`` seconds), ``I`` the
  interest rate (0.01 % per 8 h). Paid at the interval's end (00:00, 08:00, 16:00 UTC) by longs
  to shorts when positive: ``position x mark x F``. Binance's cap (+-0.75 % for BTC) is not
  modelled: this premium never gets near it.
- Deribit (:func:`deribit_rate_8h`): the premium beyond a +-0.05 % dead zone, per 8 h, paid
  continuously.

What the model leaves out: a premium that follows the order flow or the trend (here it is
noise around zero, so over a long run Binance-style funding averages the interest rate: longs
pay about 0.01 % per 8 h), and the index as a basket of spot venues (the simulators' index is their mid).
"""

from __future__ import annotations

import math
import random

PREMIUM_REVERSION_SECONDS = 3600.0
PREMIUM_STD = 0.0006
FUNDING_DEAD_ZONE = 0.0005  # Deribit's dead zone, and Binance's clamp of I - P
BINANCE_INTEREST_RATE = 0.0001  # per 8 h
FUNDING_PERIOD_SECONDS = 8 * 3600.0
PREMIUM_SAMPLE_SECONDS = 60.0


def step_premium(premium: float, dt: float, rng: random.Random, *,
                 reversion: float = PREMIUM_REVERSION_SECONDS, std: float = PREMIUM_STD) -> float:
    """The premium ``dt`` seconds later (one exact Ornstein-Uhlenbeck step, one Gaussian draw)."""
    decay = math.exp(-dt / reversion)
    shock = std * math.sqrt(1.0 - decay * decay) * rng.gauss(0.0, 1.0)
    return premium * decay + shock


def deribit_rate_8h(premium: float) -> float:
    """Deribit's funding per 8 h from the premium: ``max(0.05 %, p) + min(-0.05 %, p)``."""
    return max(FUNDING_DEAD_ZONE, premium) + min(-FUNDING_DEAD_ZONE, premium)


def binance_rate(average_premium: float, interest: float = BINANCE_INTEREST_RATE,
                 clamp: float = FUNDING_DEAD_ZONE) -> float:
    """Binance's funding rate of one interval: ``P + clamp(I - P, -clamp, +clamp)``."""
    return average_premium + min(clamp, max(-clamp, interest - average_premium))


class PremiumAverage:
    """One perpetual's premium, sampled every ``sample`` seconds, with its average since the
    last :meth:`settle` (what a Binance-style funding rate is computed from)."""

    def __init__(self, rng: random.Random, *, std: float = PREMIUM_STD,
                 reversion: float = PREMIUM_REVERSION_SECONDS, sample: float = PREMIUM_SAMPLE_SECONDS) -> None:
        self.premium = 0.0
        self._rng = rng
        self._std = std
        self._reversion = reversion
        self._sample = sample
        self._pending = 0.0  # seconds since the last sample
        self._sum = 0.0
        self._count = 0

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass, sampling the premium every ``sample`` seconds."""
        self._pending += seconds
        while self._pending >= self._sample:
            self._pending -= self._sample
            if self._std > 0:
                self.premium = step_premium(self.premium, self._sample, self._rng,
                                            reversion=self._reversion, std=self._std)
            self._sum += self.premium
            self._count += 1

    def settle(self) -> float:
        """The average premium since the last settle (the current one if none was sampled); restarts it."""
        average = self._sum / self._count if self._count else self.premium
        self._sum, self._count = 0.0, 0
        return average


def funding_times(start: float, end: float, interval: float) -> list[float]:
    """The funding times (multiples of ``interval`` in epoch seconds) in ``(start, end]``."""
    first = math.floor(start / interval) + 1
    last = math.floor(end / interval)
    return [k * interval for k in range(first, last + 1)]


class FundingSchedule:
    """One perpetual's funding on Binance's schedule: every ``interval`` seconds (at multiples
    of it in epoch time) the rate of the interval ending then, from its averaged premium.

    The venue asks :meth:`due` as its time passes and charges each rate at its funding time:
    ``position x mark x rate`` from longs to shorts (``rate`` positive)."""

    def __init__(self, rng: random.Random, *, start: float, interval: float = FUNDING_PERIOD_SECONDS,
                 interest: float = BINANCE_INTEREST_RATE, std: float = PREMIUM_STD) -> None:
        self.interval = interval
        self.interest = interest
        self.premium = PremiumAverage(rng, std=std)
        self._at = start  # time up to which the premium has been stepped
        self.last_rate = interest

    def due(self, now: float) -> list[tuple[float, float]]:
        """(funding time, rate) of each funding time in (last call, ``now``], oldest first."""
        out: list[tuple[float, float]] = []
        for t in funding_times(self._at, now, self.interval):
            self.premium.advance(t - self._at)
            self._at = t
            self.last_rate = binance_rate(self.premium.settle(), self.interest)
            out.append((t, self.last_rate))
        if now > self._at:
            self.premium.advance(now - self._at)
            self._at = now
        return out
