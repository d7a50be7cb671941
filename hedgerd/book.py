"""What the risk pass values inventory with besides the ledger: instruments, option quotes, collateral.

:class:`MarketBook` is filled by the engine: markets at startup (:meth:`MarketBook.load` asks the
inventory venues for theirs when a hedge's inventory needs instruments), option quotes as they
stream, account equity polled from :class:`~hedgerd.connectors.base.CollateralSource` venues
(:meth:`MarketBook.refresh_collateral`, from the risk loop's safety tick). The pure exposure
aggregation (:func:`hedgerd.risk.book.inventory_exposure`) reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal

from hedgerd.config import HedgeConfig
from hedgerd.connectors.base import CollateralSource, Venue
from hedgerd.errors import ConfigError, VenueError
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.models import ZERO, MarketInfo, OptionQuote, is_derivative
from hedgerd.risk.book import Holding

COLLATERAL_INTERVAL = 5.0  # seconds between equity polls: equity moves with fills and funding, not ticks


class MarketBook:
    """Instruments by (venue, symbol), the latest option quote of each, and each venue's equity."""

    def __init__(self) -> None:
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self.quotes: dict[tuple[str, str], OptionQuote] = {}
        self.collateral: dict[str, dict[str, Decimal]] = {}  # venue -> currency -> equity
        # (venue, underlying) -> its derivatives' symbols, for inventory '*' (a venue lists thousands)
        self._derivatives: dict[tuple[str, str], list[str]] = {}
        self.instrument_venues: set[str] = set()  # venues whose markets come with instruments
        self.collateral_polled_at: float | None = None  # monotonic

    async def load(self, hedges: Sequence[HedgeConfig], venues: Mapping[str, Venue],
                   markets: dict[str, dict[str, MarketInfo]], now: float) -> None:
        """Take the instruments of ``markets`` (loaded hedge venues), loading those of every inventory
        venue a hedge needs instruments from (``*`` or a derivative symbol) into ``markets`` first,
        then poll collateral once (monotonic ``now``), so the first pass counts it. Raises
        ConfigError for a hedge that counts collateral on a venue that does not report it, and the
        venue's error when that first poll fails."""
        for index, cfg in enumerate(hedges):
            for j, source in enumerate(cfg.inventory):
                if source.venue not in markets and (source.all_instruments or is_derivative(source.asset)):
                    markets[source.venue] = await venues[source.venue].load_markets()
                if cfg.include_collateral and not isinstance(venues[source.venue], CollateralSource):
                    raise ConfigError(f"hedges.{index}.include_collateral",
                                      f"venue {source.venue!r} (inventory.{j}) does not report its collateral")
        for venue, venue_markets in markets.items():
            self.add_markets(venue, venue_markets)
        for _, exc in await self.refresh_collateral(hedges, venues, now):
            raise exc

    def add_markets(self, venue: str, markets: Mapping[str, MarketInfo]) -> None:
        """Remember the instrument of every market of ``venue`` that has one."""
        for symbol, market in markets.items():
            instrument = market.instrument
            if instrument is not None and (venue, symbol) not in self.instruments:
                self.instrument_venues.add(venue)
                self.instruments[(venue, symbol)] = instrument
                if instrument.kind is not InstrumentKind.SPOT:
                    self._derivatives.setdefault((venue, instrument.underlying), []).append(symbol)

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

    def derivatives(self, venue: str, underlying: str) -> tuple[str, ...]:
        """The symbols of every derivative of ``underlying`` that ``venue`` lists."""
        return tuple(self._derivatives.get((venue, underlying), ()))

    def holdings(self, cfg: HedgeConfig, position: Callable[[str, str], Decimal]) -> list[Holding]:
        """The inventory ``cfg`` covers, as the ledger (``position(venue, asset)``) holds it now, each
        with its instrument when its venue gave one; ``*`` expands to the venue's derivatives of the
        underlying (the hedge instrument itself left out)."""
        holdings: list[Holding] = []
        for source in cfg.inventory:
            if not source.all_instruments:
                key = (source.venue, source.asset)
                instrument = self.instruments.get(key)
                # A derivative its venue does not list (an expired option after a restart): its unit is
                # unknown, so it is not valued rather than taken for base units.
                unlisted = (instrument is None and source.venue in self.instrument_venues
                            and is_derivative(source.asset))
                holdings.append(Holding(source.venue, source.asset, position(*key), instrument, unlisted=unlisted))
                continue
            for symbol in self._derivatives.get((source.venue, cfg.underlying), ()):
                amount = position(source.venue, symbol)
                if amount and (source.venue, symbol) != (cfg.venue, cfg.symbol):
                    holdings.append(Holding(source.venue, symbol, amount, self.instruments[(source.venue, symbol)]))
        return holdings

    def collateral_of(self, cfg: HedgeConfig) -> Decimal | None:
        """The equity in the underlying on the hedge's inventory venues (None unless ``include_collateral``)."""
        if not cfg.include_collateral:
            return None
        venues = dict.fromkeys(source.venue for source in cfg.inventory)
        return sum((self.collateral.get(venue, {}).get(cfg.underlying, ZERO) for venue in venues), ZERO)

    def values_pnl(self, cfg: HedgeConfig, hedge_market: MarketInfo | None) -> bool:
        """Whether the hedged-book PnL (:mod:`hedgerd.risk.pnl`, amount x mid - notional) values this
        book: not yet for an inverse hedge, options or inverse inventory, or collateral."""
        if cfg.include_collateral or any(source.all_instruments for source in cfg.inventory):
            return False
        instruments = [hedge_market.instrument if hedge_market is not None else None]
        instruments += [self.instruments.get((s.venue, s.asset)) for s in cfg.inventory]
        return not any(i is not None and i.kind in (InstrumentKind.INVERSE, InstrumentKind.OPTION)
                       for i in instruments)

    def quote_age(self, key: tuple[str, str], now: float, started_at: float) -> float:
        """Seconds since the quote of option ``key`` arrived (monotonic ``now``), since ``started_at`` if none has."""
        quote = self.quotes.get(key)
        return now - (quote.received_at if quote is not None else started_at)

    async def refresh_collateral(self, hedges: Iterable[HedgeConfig], venues: Mapping[str, Venue], now: float,
                                 interval: float = COLLATERAL_INTERVAL) -> list[tuple[str, VenueError]]:
        """Poll the equity of the inventory venues of hedges with ``include_collateral``, at most every
        ``interval`` seconds (monotonic ``now``). Returns the venues that failed and why: their last
        equity stays in use until a poll succeeds."""
        if self.collateral_polled_at is not None and now - self.collateral_polled_at < interval:
            return []
        failed: list[tuple[str, VenueError]] = []
        wanted = dict.fromkeys(s.venue for cfg in hedges if cfg.include_collateral for s in cfg.inventory)
        for name in wanted:
            venue = venues[name]
            if isinstance(venue, CollateralSource):
                try:
                    self.set_collateral(name, await venue.fetch_collateral())
                except VenueError as exc:
                    failed.append((name, exc))
        self.collateral_polled_at = now
        return failed
