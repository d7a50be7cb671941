"""Synthetic client flow on Deribit options: desk clients trading with the account's quotes.

The market model's :class:`~hedgerd.sim.market.ClientFlow` (Poisson arrivals, side 50/50,
exponential size) picks, per arrival, one live option of a flow currency uniformly; the account
fills as maker at the touch (:meth:`DeribitVenue.client_fill`), so an options inventory builds
up whose delta the daemon hedges on the perpetual.
"""

from __future__ import annotations

import random
from decimal import Decimal

from hedgerd.exchange_sim.deribit.venue import DeribitVenue, DTrade
from hedgerd.sim.market import ClientFlow


class OptionFlow:
    """Client fills on options at ``rate`` per second over ``currencies``."""

    def __init__(self, rate: float, mean_size: dict[str, Decimal], currencies: tuple[str, ...],
                 seed: int) -> None:
        self.flow = ClientFlow(rate=rate, mean_size=Decimal(1))
        self.mean_size = mean_size
        self.currencies = currencies
        self._rng = random.Random(seed)
        self._at: int | None = None

    def step(self, venue: DeribitVenue, now: int) -> list[DTrade]:
        """The client fills since the previous step."""
        last, self._at = self._at, now
        if last is None or now <= last or self.flow.rate <= 0:
            return []
        options = [i for i in venue.instruments.values() if i.is_option and i.currency in self.currencies
                   and i.name not in venue.delivered]
        if not options:
            return []
        fills: list[DTrade] = []
        for _ in range(self.flow.arrivals((now - last) / 1000.0, self._rng)):
            inst = self._rng.choice(options)
            size = self.flow.size(self._rng, self.mean_size.get(inst.currency, inst.min_trade_amount))
            side = "buy" if self.flow.desk_buys(self._rng) else "sell"
            trade = venue.client_fill(inst.name, side, Decimal(repr(size)))
            if trade is not None:
                fills.append(trade)
        return fills
