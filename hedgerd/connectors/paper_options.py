"""An in-process options venue: European options on one coin, client flow, quotes and expiry.

The venue's model (docs/instruments.md, "The paper options venue", says the same):

* Listing: at start, calls and puts at ``2 x strikes_each_side + 1`` strikes on a ``strike_step``
  grid around the initial price, for every expiry of ``expiry_days`` (08:00 UTC of the day that
  many days after the start, Deribit's hour; an expiry less than an hour away moves a day on).
  Symbols are ccxt's Deribit form ``BTC/USD:BTC-261208-60000-C``; one contract is one coin,
  amounts step 0.1 (Deribit's minimum). ``sim.symbol`` names the currencies: ``BTC/USD:BTC``
  lists coin-settled options (premium and marks in BTC, Deribit), ``BTC/USDC:USDC``
  quote-settled ones (Bybit, OKX, Binance, Deribit's USDC options).
* Marks: Black-76 on the forward ``F = S e^(basis T)`` of the shared price path ``S``
  (:class:`~hedgerd.sim.market.SimMarketData`, the hedge venue's market too), with the smile
  :func:`smile_vol`. A coin-settled mark is the quote price over ``F``. Quotes
  (:class:`~hedgerd.models.OptionQuote`) go out for every listed option every
  ``quote_interval`` seconds and for an option just before a client fill on it; their greeks
  are the venue's own model in Deribit's ticker convention (delta premium-adjusted when
  coin-settled, gamma per unit of price, vega per vol point).
* Client flow: Poisson arrivals (``flow_rate``); each picks an expiry with weight ``1/sqrt(days)``
  (short expiries trade most) and a strike with weight ``exp(-(k / moneyness_width)^2)``,
  ``k = ln(K/F)``; out-of-the-money type (call above the forward, put below) three times in
  four; the client buys with ``client_buy_probability`` (above 0.5 leaves the desk short
  options, hence short gamma); size exponential, mean ``flow_mean_size`` contracts, 0.1 steps.
  The desk sells at the vol ``mark + half_spread_vol`` and buys at ``mark - half_spread_vol``,
  rounded to the tick away from the client. Client fills carry no fee (as on the paper spot).
  ``initial_trades`` such trades are booked at start and delivered as one batch: the book a
  desk carries into the day.
* Expiry: at each expiry the venue delivers at its index (the mid at that instant). Every open
  position of that expiry is closed by a **settlement fill** at the intrinsic value (coin: per
  coin of underlying over the delivery price), ``trade_id`` ``...-settle-<n>``, no client order
  id, no fee (Deribit charges a small delivery fee); the ledger so reaches zero through the
  same path as any fill, and the venue's positions agree with it. The expired options leave
  the listing and the quote stream.
* Collateral (:meth:`SimOptionsVenue.fetch_collateral`): ``collateral`` plus premiums and
  settlements received minus paid, plus the options at their marks, in the settle currency.

Hedge orders are refused (:class:`~hedgerd.errors.InvalidOrder`): the desk hedges on a perpetual.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal

from hedgerd.clock import Clock
from hedgerd.config import SimOptionsSettings, SimSettings
from hedgerd.connectors.base import VenueEventSink
from hedgerd.connectors.paper import HISTORY_LIMIT, _InventoryOnlyVenue
from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.models import (
    ZERO,
    Fill,
    MarketInfo,
    OptionGreeks,
    OptionQuote,
    Side,
    split_symbol,
)
from hedgerd.risk.greeks import SECONDS_PER_YEAR, Greeks, black76, year_fraction
from hedgerd.sim.market import SimMarketData

OPTION_AMOUNT_STEP = Decimal("0.1")
COIN_PRICE_TICK = Decimal("0.0001")  # Deribit's option tick in coin
MARK_QUANTUM = Decimal("1e-10")
FORWARD_QUANTUM = Decimal("0.0001")
EXPIRY_HOUR = 8  # UTC, Deribit's
_MIN_VOL = 0.05
_MIN_T = 3600.0 / SECONDS_PER_YEAR  # the term structure's reference is clamped at an hour
_TERM_REFERENCE = 30.0 * 86_400.0 / SECONDS_PER_YEAR
_OTM_PROBABILITY = 0.75


def smile_vol(params: SimOptionsSettings, *, strike: float, forward: float, t: float) -> float:
    """The venue's implied vol: ``atm_vol (T / 30 d)^(-term_slope) + skew k + curvature k^2``,
    ``k = ln(K/F)``, ``T`` clamped at an hour, the result at least 5 %."""
    k = math.log(strike / forward)
    atm = params.atm_vol * (max(t, _MIN_T) / _TERM_REFERENCE) ** (-params.term_slope)
    return float(max(atm + params.skew * k + params.curvature * k * k, _MIN_VOL))


def expiry_times(start: float, days: Sequence[float]) -> list[float]:
    """08:00 UTC of the day ``d`` days after ``start`` for each ``d`` (a day later if that is
    less than an hour after ``start``), distinct and sorted; epoch seconds."""
    out: set[float] = set()
    for d in days:
        day = datetime.fromtimestamp(start, UTC) + timedelta(days=d)
        expiry = day.replace(hour=EXPIRY_HOUR, minute=0, second=0, microsecond=0).timestamp()
        while expiry < start + 3600.0:
            expiry += 86_400.0
        out.add(expiry)
    return sorted(out)


def option_symbol(base: str, quote: str, settle: str, expiry: float, strike: Decimal, kind: OptionType) -> str:
    """ccxt's unified option symbol, e.g. ``BTC/USD:BTC-261208-60000-C``."""
    date = datetime.fromtimestamp(expiry, UTC).strftime("%y%m%d")
    return f"{base}/{quote}:{settle}-{date}-{format(strike.normalize(), 'f')}-{'C' if kind is OptionType.CALL else 'P'}"


def list_options(settings: SimSettings, start: float) -> list[Instrument]:
    """Every option the venue lists at ``start`` (see the module docstring)."""
    params = settings.options
    if params is None:
        raise ValueError(f"{settings.symbol}: not an options venue (sim.options is unset)")
    base, quote, settle = split_symbol(settings.symbol)
    settle = settle or quote
    step = params.strike_step
    centre = (settings.initial_price / step).quantize(Decimal(1), rounding=ROUND_HALF_EVEN) * step
    strikes = [centre + i * step for i in range(-params.strikes_each_side, params.strikes_each_side + 1)]
    listed: list[Instrument] = []
    for expiry in expiry_times(start, params.expiry_days):
        for strike in (s for s in strikes if s > 0):
            for kind in (OptionType.CALL, OptionType.PUT):
                listed.append(Instrument(
                    symbol=option_symbol(base, quote, settle, expiry, strike, kind), kind=InstrumentKind.OPTION,
                    underlying=base, quote=quote, settle=settle, contract_size=Decimal(1), expiry=expiry,
                    strike=strike, option_type=kind))
    return listed


@dataclass(frozen=True, slots=True)
class OptionMark:
    """The venue's model of one option now: forward, vol and Black-76 in quote per coin."""

    forward: float
    vol: float
    t: float
    greeks: Greeks


class SimOptionsVenue(_InventoryOnlyVenue):
    """Inventory venue listing options on the shared market (model in the module docstring)."""

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: Clock,
                 *, history_limit: int = HISTORY_LIMIT) -> None:
        super().__init__(name, settings, market, clock, history_limit=history_limit)
        if settings.options is None:
            raise ValueError(f"venue {name}: sim.options is required for an options venue")
        self.params = settings.options
        self.option_prefix = settings.symbol
        self.symbol = f"{self.base}/{self.quote_asset}"  # the index the price stream carries
        self.settle_currency = self.settle or self.quote_asset
        self.coin_settled = self.settle_currency == self.base
        self.price_tick = COIN_PRICE_TICK if self.coin_settled else market.tick * 10
        self.instruments = {i.symbol: i for i in list_options(settings, clock.time())}
        self.expiries = sorted({i.expiry for i in self.instruments.values() if i.expiry is not None})
        self._flow_rng = random.Random(f"hedgerd-option-flow/{name}/{settings.seed}")
        self._quotes_stalled = False
        self.deliveries: dict[float, Decimal] = {}  # expiry -> delivery price (the index then)
        self._cash = ZERO  # premiums and settlements received minus paid, settle currency
        self._positions = {}

    # -- model -----------------------------------------------------------------------------

    def mark(self, instrument: Instrument, *, vol_shift: float = 0.0) -> OptionMark:
        """The venue's Black-76 of ``instrument`` now, at its smile vol plus ``vol_shift``."""
        assert instrument.strike is not None and instrument.expiry is not None
        spot = float(self._market.mid())
        t = year_fraction(instrument.expiry, self._clock.time())
        # Rounded as Deribit publishes it, so the quote's forward is the one its mark was priced on.
        forward = float(Decimal(repr(spot * math.exp(self.params.basis * t))).quantize(FORWARD_QUANTUM))
        strike = float(instrument.strike)
        vol = smile_vol(self.params, strike=strike, forward=forward, t=t)
        shifted = max(vol + vol_shift, _MIN_VOL)
        greeks = black76(forward=forward, strike=strike, t=t, vol=shifted,
                         call=instrument.option_type is OptionType.CALL)
        return OptionMark(forward=forward, vol=vol, t=t, greeks=greeks)

    def model_delta(self, instrument: Instrument) -> float:
        """Delta per contract-unit at the venue's model now (premium-adjusted when coin-settled); 0 once expired."""
        if instrument.expired(self._clock.time()):
            return 0.0
        mark = self.mark(instrument)
        if self.coin_settled:
            return mark.greeks.delta - mark.greeks.price / mark.forward
        return mark.greeks.delta

    def _in_settle(self, quote_price: float, forward: float) -> float:
        """A price per coin of underlying in the settle currency (coin: quote price / forward)."""
        return quote_price / forward if self.coin_settled else quote_price

    def option_quote(self, instrument: Instrument) -> OptionQuote:
        """The option's mark, vol, forward and venue greeks now (Deribit's ticker convention)."""
        mark = self.mark(instrument)
        greeks = mark.greeks
        price = self._in_settle(greeks.price, mark.forward)
        delta = greeks.delta - price if self.coin_settled else greeks.delta
        return OptionQuote(
            venue=self.name, symbol=instrument.symbol,
            mark_price=Decimal(repr(price)).quantize(MARK_QUANTUM), mark_iv=mark.vol,
            underlying_price=Decimal(repr(mark.forward)),
            ts=self._clock.time(), received_at=self._clock.monotonic(),
            greeks=OptionGreeks(delta=delta, gamma=greeks.gamma, vega=greeks.vega / 100.0))

    def live(self) -> list[Instrument]:
        """Listed options not yet expired."""
        now = self._clock.time()
        return [i for i in self.instruments.values() if not i.expired(now)]

    # -- streams ---------------------------------------------------------------------------

    def _start_streams(self, sink: VenueEventSink) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(self._quote_stream(sink), name=f"{self.name}-option-quotes"),
                asyncio.create_task(self._client_flow(sink), name=f"{self.name}-option-flow"),
                asyncio.create_task(self._expiries(sink), name=f"{self.name}-expiries")]

    def stall_quotes(self, stalled: bool = True) -> None:
        """Stop (True) or resume (False) the quote rounds (a fault for tests; the index's price
        stream has its own :meth:`stall_prices`). Quotes before client fills still go out."""
        self._quotes_stalled = stalled

    async def _quote_stream(self, sink: VenueEventSink) -> None:
        while True:
            if not self._quotes_stalled:
                for instrument in self.live():
                    await self._deliver(sink, sink.on_option_quote(self.option_quote(instrument)), "option quote")
            await self._clock.sleep(self.params.quote_interval)

    async def _client_flow(self, sink: VenueEventSink) -> None:
        rng, params = self._flow_rng, self.params
        if params.initial_trades:
            await self._initial_book(sink, rng)
        if params.flow_rate <= 0:
            return
        while True:
            await self._clock.sleep(rng.expovariate(params.flow_rate))
            fill = self._client_fill(rng)
            if fill is None:
                continue
            # The option's quote first, so the daemon never holds an option it has no mark for.
            await self._deliver(sink, sink.on_option_quote(self.option_quote(self.instruments[fill.symbol])),
                                "option quote")
            self._book_fill(fill)
            await self._deliver(sink, sink.on_fill(fill), "fill")

    async def _initial_book(self, sink: VenueEventSink, rng: random.Random) -> None:
        """``initial_trades`` client trades at start, delivered as one batch after their options' quotes."""
        fills = [fill for fill in (self._client_fill(rng) for _ in range(self.params.initial_trades))
                 if fill is not None]
        for symbol in dict.fromkeys(fill.symbol for fill in fills):
            await self._deliver(sink, sink.on_option_quote(self.option_quote(self.instruments[symbol])), "option quote")
        for fill in fills:
            self._book_fill(fill)
        await self._deliver(sink, sink.on_fills(fills), "initial book")

    def choose_option(self, rng: random.Random) -> Instrument | None:
        """One live option for a client trade (weights in the module docstring)."""
        live = self.live()
        if not live:
            return None
        spot = float(self._market.mid())
        now = self._clock.time()
        candidates: list[Instrument] = []
        weights: list[float] = []
        for instrument in live:
            assert instrument.strike is not None and instrument.expiry is not None
            days = max((instrument.expiry - now) / 86_400.0, 1.0 / 24.0)
            k = math.log(float(instrument.strike) / spot)
            otm = (instrument.option_type is OptionType.CALL) == (k >= 0)
            candidates.append(instrument)
            weights.append(days ** -0.5 * math.exp(-((k / self.params.moneyness_width) ** 2))
                           * (_OTM_PROBABILITY if otm else 1.0 - _OTM_PROBABILITY))
        return rng.choices(candidates, weights=weights)[0]

    def _client_fill(self, rng: random.Random) -> Fill | None:
        instrument = self.choose_option(rng)
        if instrument is None:
            return None
        client_buys = rng.random() < self.params.client_buy_probability
        mean = float(self.params.flow_mean_size)
        amount = Decimal(repr(rng.expovariate(1.0 / mean))).quantize(OPTION_AMOUNT_STEP, rounding=ROUND_HALF_EVEN)
        amount = max(amount, OPTION_AMOUNT_STEP)
        # The client pays the venue's offer vol, or sells at its bid vol.
        shift = self.params.half_spread_vol if client_buys else -self.params.half_spread_vol
        mark = self.mark(instrument, vol_shift=shift)
        raw = Decimal(repr(self._in_settle(mark.greeks.price, mark.forward)))
        price = raw.quantize(self.price_tick, rounding=ROUND_CEILING if client_buys else ROUND_FLOOR)
        return Fill(venue=self.name, trade_id=self._next_trade_id(), symbol=instrument.symbol,
                    side=Side.SELL if client_buys else Side.BUY, amount=amount, price=max(price, self.price_tick),
                    ts=self._clock.time(), received_at=self._clock.monotonic())

    async def _expiries(self, sink: VenueEventSink) -> None:
        for expiry in self.expiries:
            delay = expiry - self._clock.time()
            if delay > 0:
                await self._clock.sleep(delay)
            fills = self.settle_expiry(expiry)
            if fills:
                await self._deliver(sink, sink.on_fills(fills), "settlement fills")

    def settle_expiry(self, expiry: float) -> list[Fill]:
        """Close every position of ``expiry`` at its intrinsic value at the index now (see the
        module docstring); the fills are booked and returned."""
        index = self._market.mid()
        self.deliveries[expiry] = index
        delivery = float(index)
        fills: list[Fill] = []
        for instrument in self.instruments.values():
            position = self._positions.get(instrument.symbol, ZERO)
            if instrument.expiry != expiry or position == 0:
                continue
            assert instrument.strike is not None
            strike = float(instrument.strike)
            intrinsic = max(delivery - strike, 0.0) if instrument.option_type is OptionType.CALL \
                else max(strike - delivery, 0.0)
            price = Decimal(repr(self._in_settle(intrinsic, delivery))).quantize(MARK_QUANTUM)
            self._trade_seq += 1
            fill = Fill(venue=self.name, trade_id=f"{self.run_tag}-settle-{self._trade_seq}", symbol=instrument.symbol,
                        side=Side.SELL if position > 0 else Side.BUY, amount=abs(position), price=price,
                        ts=self._clock.time(), received_at=self._clock.monotonic())
            self._book_fill(fill)
            fills.append(fill)
        return fills

    # -- account ---------------------------------------------------------------------------

    def _book_fill(self, fill: Fill) -> None:
        """Options move the position by symbol and the cash by the premium (contracts of one coin)."""
        signed = fill.signed_amount
        self._positions[fill.symbol] = self._positions.get(fill.symbol, ZERO) + signed
        self._cash -= signed * fill.price * self.instruments[fill.symbol].contract_size
        self._history.append(fill)

    def position(self, symbol: str) -> Decimal:
        """Signed contracts of ``symbol`` without a venue request."""
        return self._positions.get(symbol, ZERO)

    def equity(self) -> Decimal:
        """Collateral + cash + options at their marks, in the settle currency."""
        value = self.params.collateral + self._cash
        for symbol, position in self._positions.items():
            instrument = self.instruments.get(symbol)  # a seeded position of an old listing has no mark
            if instrument is not None and position and not instrument.expired(self._clock.time()):
                value += position * instrument.contract_size * self.option_quote(instrument).mark_price
        return value

    async def fetch_collateral(self) -> dict[str, Decimal]:
        """The account's equity in its settle currency (:class:`~hedgerd.connectors.base.CollateralSource`)."""
        return await self._round_trip("fetch_positions", lambda: {self.settle_currency: self.equity()})

    async def load_markets(self) -> dict[str, MarketInfo]:
        """The live options, each with its instrument."""
        def markets() -> dict[str, MarketInfo]:
            return {i.symbol: MarketInfo(symbol=i.symbol, base=self.base, quote=self.quote_asset,
                                         amount_step=OPTION_AMOUNT_STEP, price_step=self.price_tick,
                                         min_amount=OPTION_AMOUNT_STEP, contract_size=i.contract_size,
                                         instrument=i)
                    for i in self.live()}
        return await self._round_trip("load_markets", markets)
