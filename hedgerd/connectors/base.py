"""The seam between the engine and any venue (simulated or ccxt).

A connector pushes what it observes into a :class:`VenueEventSink` and answers the
executor's requests through :class:`Venue`. Every error it raises is a
:class:`hedgerd.errors.VenueError` subclass.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol, runtime_checkable

from hedgerd.models import (
    Fill,
    FundingPayment,
    HedgeIntent,
    MarketInfo,
    OptionQuote,
    OrderReport,
    PositionRisk,
    PriceUpdate,
)
from hedgerd.reconciliation import PositionSnapshot


class VenueEventSink(Protocol):
    """Where connectors deliver streamed events. Implemented by the engine."""

    async def on_fill(self, fill: Fill) -> None:
        """A trade happened (our hedge fill or inventory flow). Returns once it is durable."""
        ...

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        """Trades that arrived together (one stream message, one backfill page), oldest first;
        journaled together, returns once all are durable. If it raises, redeliver them all."""
        ...

    async def on_price(self, price: PriceUpdate) -> None:
        """A new best bid/ask."""
        ...

    async def on_option_quote(self, quote: OptionQuote) -> None:
        """An option's mark, implied volatility, forward and (if the venue publishes them) greeks.

        A venue whose markets include options sends these for the options it holds (or all
        listed ones) at least every few seconds: an older quote on a held option halts trading.
        """
        ...

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        """A state change of one of our orders seen on a stream."""
        ...

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        """A malformed message, a dropped stream or another non-fatal venue problem."""
        ...


class Venue(Protocol):
    """One trading account on one exchange."""

    name: str

    @property
    def connected(self) -> bool:
        """True while the venue's streams are up."""
        ...

    async def start(self, sink: VenueEventSink) -> None:
        """Connect and start streaming fills, prices and order updates into ``sink``."""
        ...

    async def close(self) -> None:
        """Stop streams and release connections."""
        ...

    async def load_markets(self) -> dict[str, MarketInfo]:
        """Instrument metadata by unified symbol; a venue holding derivatives sets each one's
        ``instrument`` (:class:`hedgerd.instruments.Instrument`)."""
        ...

    async def fetch_positions(self) -> dict[str, Decimal]:
        """Signed positions: by symbol for derivatives (in contracts of a market with an
        ``instrument``, else base units), by asset for spot balances."""
        ...

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        """:meth:`fetch_positions` with the venue's timestamp of the state each position shows,
        where it gives one (startup reconciliation places the trades around it by it)."""
        ...

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        """Our account's trades since ``since`` (epoch seconds), oldest first, for backfill: all of
        them (reconciliation journals the list as complete), or an error rather than a list cut short."""
        ...

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        """Funding payments on this account's perpetual positions with a funding time at or after
        ``since`` (epoch seconds; None: as far back as the venue lists), oldest first; [] where the
        venue charges none. A payment may be returned again by a later call (the ledger books it
        once by venue and payment id)."""
        ...

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        """Place the order for ``intent`` with its client order id.

        ``amount`` is already rounded to the market's precision (in contracts); ``price`` is
        the limit for IOC orders. Raises :class:`~hedgerd.errors.OrderOutcomeUnknown` when the
        venue may have accepted the order without our knowing.
        """
        ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Look an order up by client order id; None if the venue has never seen it."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        """Our open orders."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        """Cancel by client order id; None if already gone."""
        ...


@runtime_checkable
class PositionSeeding(Protocol):
    """A venue that can be told its positions without trading: the in-process simulated ones,
    which restart empty, so paper mode aligns them with the ledger before reconciling."""

    def seed_position(self, symbol: str, amount: Decimal) -> None:
        """Set a position (derivative symbol) or balance (asset)."""
        ...


@runtime_checkable
class CollateralSource(Protocol):
    """A venue that reports its account equity (coin-margined accounts: the equity in coin is long
    delta, counted by a hedge with ``include_collateral``)."""

    async def fetch_collateral(self) -> dict[str, Decimal]:
        """Currency -> account equity in that currency."""
        ...


@runtime_checkable
class PositionRiskSource(Protocol):
    """A venue that reports a derivative position's liquidation price and margin ratio (ccxt
    ``fetch_positions``, the paper perpetual's margin model); polled by :mod:`hedgerd.liquidation`."""

    async def fetch_position_risk(self, symbol: str) -> PositionRisk | None:
        """The position's margin as the venue sees it now; None when it holds no position there."""
        ...


@runtime_checkable
class DeadManSwitchVenue(Protocol):
    """A venue that may offer a dead-man switch: a timer the venue runs, which cancels our open
    orders unless we restart it in time (docs/ha.md). The in-process simulated venues have none:
    their orders die with the process."""

    @property
    def dead_man_switch(self) -> str | None:
        """The switch's name (e.g. ``countdownCancelAll``), None where the venue offers none usable."""
        ...

    async def arm_dead_man_switch(self, symbols: Sequence[str], window: float) -> None:
        """(Re)start the timer of ``symbols`` at ``window`` seconds."""
        ...

    async def disarm_dead_man_switch(self, symbols: Sequence[str]) -> None:
        """Stop the timer of ``symbols``."""
        ...
