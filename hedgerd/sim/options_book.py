"""What the simulated day measures on an options book hedged on an inverse perpetual.

The recorder of :mod:`hedgerd.sim.day` measures the *actual* exposure, not the daemon's view of
it: for an options book that is the delta of every held option at the options venue's own model
right now (:meth:`~hedgerd.connectors.paper_options.SimOptionsVenue.model_delta`: Black-76 on the
forward and the smile, premium-adjusted when coin-settled), re-evaluated at every price tick since
it moves with the price. An inverse hedge position of ``n`` contracts of ``cs`` USD is ``n cs / S``
coins at the mid ``S``; its fees are in coin and are valued at the fill price, so every money
figure of such a run is in the quote currency (USD), like a linear run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from hedgerd.connectors.paper_options import SimOptionsVenue
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import Fill

PositionKey = tuple[str, str]


class HedgeUnits:
    """Coin and quote-money readings of an inverse hedge market's fills and position."""

    def __init__(self, instrument: Instrument) -> None:
        if instrument.kind is not InstrumentKind.INVERSE:
            raise ValueError(f"{instrument.symbol}: only an inverse hedge needs converting")
        self.contract_size = instrument.contract_size
        self.base = instrument.underlying

    def coin(self, contracts: float, mid: float | None) -> float:
        """The coins ``contracts`` are worth at ``mid`` (none before the first price)."""
        return 0.0 if not mid else contracts * float(self.contract_size) / mid

    def coin_amount(self, fill: Fill) -> Decimal:
        """The coins a fill traded (its USD amount over its price)."""
        return fill.amount * self.contract_size / fill.price

    def fee_in_quote(self, fill: Fill) -> Decimal:
        """The fee in quote money: coin fees at the fill price."""
        return fill.fee * fill.price if fill.fee_currency == self.base else fill.fee

    def spread_paid(self, fill: Fill, mid: Decimal) -> Decimal:
        """``fill - mid`` per coin against the side times the coins traded, in quote money: a taker
        fill pays ``|fill - mid|``, a passive fill on the right side of the mid earns (negative)."""
        return (fill.price - mid) * fill.side.sign * self.coin_amount(fill)


class OptionsDelta:
    """The options book's actual delta in coin from positions by (venue, symbol)."""

    def __init__(self, venue: SimOptionsVenue) -> None:
        self.venue = venue

    def __call__(self, positions: Mapping[PositionKey, Decimal]) -> float:
        venue = self.venue
        total = 0.0
        for (name, symbol), position in positions.items():
            instrument = venue.instruments.get(symbol) if name == venue.name else None
            if instrument is not None and position:
                total += float(position * instrument.contract_size) * venue.model_delta(instrument)
        return total
