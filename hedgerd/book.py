"""What the risk pass values inventory with besides the ledger: instruments, option quotes, collateral.

:class:`MarketBook` is filled by the engine (markets at startup, option quotes as they stream,
account equity polled from :class:`~hedgerd.connectors.base.CollateralSource` venues) and read
by the pure exposure aggregation (:func:`hedgerd.risk.delta.book_exposure`). It does no I/O of
its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from hedgerd.instruments import Instrument
from hedgerd.models import MarketInfo, OptionQuote


class MarketBook:
    """Instruments by (venue, symbol), the latest option quote of each, and each venue's equity."""

    def __init__(self) -> None:
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self.quotes: dict[tuple[str, str], OptionQuote] = {}
        self.collateral: dict[str, dict[str, Decimal]] = {}  # venue -> currency -> equity

    def add_markets(self, venue: str, markets: Mapping[str, MarketInfo]) -> None:
        """Remember the instrument of every market of ``venue`` that has one."""
        for symbol, market in markets.items():
            if market.instrument is not None:
                self.instruments[(venue, symbol)] = market.instrument

    def on_quote(self, quote: OptionQuote) -> None:
        """Keep ``quote`` unless an older one arrives late (venue timestamps, when both have one)."""
        key = (quote.venue, quote.symbol)
        last = self.quotes.get(key)
        if last is not None and quote.ts > 0 and last.ts > quote.ts:
            return
        self.quotes[key] = quote

    def set_collateral(self, venue: str, equity: Mapping[str, Decimal]) -> None:
        """The latest account equity of ``venue`` (currency -> amount)."""
        self.collateral[venue] = dict(equity)
