"""The in-process options venue and the inverse paper perpetual (hedgerd/connectors/paper_options.py)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from hedgerd.config import Settings, SimSettings, VenueConfig, VenueRole
from hedgerd.connectors.paper import SimPerpVenue, build_sim_venues
from hedgerd.connectors.paper_options import (
    OPTION_AMOUNT_STEP,
    SimOptionsVenue,
    expiry_times,
    smile_vol,
)
from hedgerd.errors import ConfigError, InvalidOrder
from hedgerd.instruments import InstrumentKind, OptionType
from hedgerd.models import OptionQuote, Side
from tests.test_sim import FakeClock, RecordingSink, intent, place

OPTIONS = "BTC/USD:BTC"
INVERSE = "BTC/USD:BTC"


class QuoteSink(RecordingSink):
    """Also keeps option quotes."""

    def __init__(self) -> None:
        super().__init__()
        self.quotes: list[OptionQuote] = []

    async def on_option_quote(self, quote: OptionQuote) -> None:
        self.quotes.append(quote)


def build(clock: FakeClock, options: dict[str, Any] | None = None, *, symbol: str = OPTIONS,
          perp: dict[str, Any] | None = None) -> tuple[SimOptionsVenue, SimPerpVenue]:
    opts = {"expiry_days": [1, 7], "strikes_each_side": 2, "flow_rate": 0.5, **(options or {})}
    cfgs = [
        VenueConfig(name="opts", role=VenueRole.INVENTORY,
                    sim=SimSettings(seed=1, symbol=symbol, latency_ms=0.0, options=opts)),
        VenueConfig(name="perp", role=VenueRole.HEDGE,
                    sim=SimSettings(seed=2, symbol=INVERSE, latency_ms=0.0, taker_fee_bps=Decimal(5),
                                    **(perp or {}))),
    ]
    venues = build_sim_venues(cfgs, clock)
    opts_venue, perp_venue = venues["opts"], venues["perp"]
    assert isinstance(opts_venue, SimOptionsVenue) and isinstance(perp_venue, SimPerpVenue)
    return opts_venue, perp_venue


def bs_call_put(forward: float, strike: float, t: float, vol: float) -> tuple[float, float, float]:
    """Textbook Black-76 call, put and call delta (zero rate), written out here independently."""
    d1 = (math.log(forward / strike) + vol * vol * t / 2) / (vol * math.sqrt(t))
    d2 = d1 - vol * math.sqrt(t)
    n = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    call = forward * n(d1) - strike * n(d2)
    return call, call - (forward - strike), n(d1)


def test_listing_is_a_strike_grid_per_expiry_at_eight_utc() -> None:
    clock = FakeClock()  # 2023-11-14 22:13:20 UTC
    venue, _ = build(clock)
    live = venue.live()
    assert len(live) == 2 * 5 * 2  # expiries x strikes x (call, put)
    expiries = sorted({i.expiry for i in live if i.expiry is not None})
    assert [datetime.fromtimestamp(e, UTC).isoformat() for e in expiries] == [
        "2023-11-15T08:00:00+00:00", "2023-11-21T08:00:00+00:00"]
    strikes = sorted({i.strike for i in live if i.strike is not None})
    assert strikes == [Decimal(v) for v in (55000, 57500, 60000, 62500, 65000)]
    call = venue.instruments["BTC/USD:BTC-231115-60000-C"]
    assert call.kind is InstrumentKind.OPTION and call.option_type is OptionType.CALL
    assert call.coin_settled and call.contract_size == 1 and call.underlying == "BTC"


def test_an_expiry_less_than_an_hour_away_moves_a_day_on() -> None:
    start = datetime(2026, 12, 7, 7, 30, tzinfo=UTC).timestamp()
    (expiry,) = expiry_times(start, [0])
    assert datetime.fromtimestamp(expiry, UTC) == datetime(2026, 12, 8, 8, 0, tzinfo=UTC)


def test_the_smile_has_its_documented_shape() -> None:
    params = SimSettings(symbol=OPTIONS, options={"atm_vol": 0.6, "skew": -0.1, "curvature": 0.4,
                                                  "term_slope": 0.1}).options
    assert params is not None
    month = 30 / 365
    assert smile_vol(params, strike=60000, forward=60000, t=month) == pytest.approx(0.6)
    k = math.log(50000 / 60000)
    assert smile_vol(params, strike=50000, forward=60000, t=month) == pytest.approx(0.6 - 0.1 * k + 0.4 * k * k)
    assert smile_vol(params, strike=60000, forward=60000, t=month / 4) == pytest.approx(0.6 * 4 ** 0.1)
    # puts richer than calls at the same distance: the skew is negative
    assert smile_vol(params, strike=54000, forward=60000, t=month) > smile_vol(params, strike=66000,
                                                                                forward=60000, t=month)


async def test_quotes_are_black76_on_the_forward_in_coin_with_premium_adjusted_delta() -> None:
    clock = FakeClock()
    venue, _ = build(clock, {"flow_rate": 0.0})
    sink = QuoteSink()
    await venue.start(sink)
    await clock.advance(1.0)  # quote rounds at 0 s and 1 s: the last one is of this instant's price
    await venue.close()
    latest = {q.symbol: q for q in sink.quotes}
    assert set(latest) == {i.symbol for i in venue.live()}  # every listed option is quoted
    call = latest["BTC/USD:BTC-231121-62500-C"]
    put = latest["BTC/USD:BTC-231121-62500-P"]
    expiry = venue.instruments[call.symbol].expiry
    assert expiry is not None
    t = (expiry - call.ts) / (365 * 86400)
    spot = float(venue.market.mid())
    forward = float(call.underlying_price)
    assert forward == pytest.approx(spot * math.exp(0.05 * t), abs=1e-4)
    price_call, price_put, delta = bs_call_put(forward, 62500, t, call.mark_iv)
    assert float(call.mark_price) == pytest.approx(price_call / forward, abs=1e-9)
    assert float(put.mark_price) == pytest.approx(price_put / forward, abs=1e-9)
    # put-call parity in coin: C - P = (F - K) / F
    assert float(call.mark_price - put.mark_price) == pytest.approx((forward - 62500) / forward, abs=1e-9)
    assert call.greeks is not None
    assert call.greeks.delta == pytest.approx(delta - price_call / forward, abs=1e-9)


async def test_client_flow_leaves_the_desk_short_options_in_tenths_of_contracts() -> None:
    clock = FakeClock()
    venue, _ = build(clock, {"flow_rate": 1.0, "client_buy_probability": 0.7, "quote_interval": 30.0})
    sink = QuoteSink()
    await venue.start(sink)
    await clock.advance(600)
    await venue.close()
    fills = sink.fills
    assert 450 < len(fills) < 750
    assert all(f.amount > 0 and f.amount % OPTION_AMOUNT_STEP == 0 and f.fee == 0 for f in fills)
    sells = sum(1 for f in fills if f.side is Side.SELL)
    assert 0.62 < sells / len(fills) < 0.78  # the desk sells when a client buys
    positions = await venue.fetch_positions()
    assert sum(positions.values()) < 0
    gamma = 0.0
    for symbol, contracts in positions.items():  # the book's Black-76 gamma at the venue's marks
        instrument = venue.instruments[symbol]
        assert instrument.strike is not None and instrument.expiry is not None
        mark = venue.mark(instrument)
        forward, vol, t = mark.forward, mark.vol, mark.t
        d1 = (math.log(forward / float(instrument.strike)) + vol * vol * t / 2) / (vol * math.sqrt(t))
        gamma += float(contracts) * math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) / (forward * vol * math.sqrt(t))
    assert gamma < 0  # short gamma
    quoted = {q.symbol for q in sink.quotes}
    assert all(f.symbol in quoted for f in fills)  # each fill's option was quoted first
    # the desk sold above and bought below the mark: its spread, a vol point each side
    marks = {q.symbol: q.mark_price for q in sink.quotes}
    first = fills[0]
    assert first.price >= marks[first.symbol] if first.side is Side.SELL else first.price <= marks[first.symbol]


async def test_an_expiry_settles_every_position_at_intrinsic_value_and_leaves_the_listing() -> None:
    clock = FakeClock()
    venue, _ = build(clock, {"flow_rate": 0.0, "quote_interval": 60.0})
    call, put = "BTC/USD:BTC-231115-57500-C", "BTC/USD:BTC-231115-62500-P"
    venue.seed_position(call, Decimal("-2.5"))
    venue.seed_position(put, Decimal("1.2"))
    sink = QuoteSink()
    await venue.start(sink)
    expiry = venue.expiries[0]
    await clock.advance(expiry - clock.time() + 1)
    await venue.close()
    settlement = {f.symbol: f for f in sink.fills}
    delivery = float(venue.deliveries[expiry])
    assert settlement[call].side is Side.BUY and settlement[call].amount == Decimal("2.5")
    assert float(settlement[call].price) == pytest.approx(max(delivery - 57500, 0) / delivery, abs=1e-9)
    assert settlement[put].side is Side.SELL and settlement[put].amount == Decimal("1.2")
    assert float(settlement[put].price) == pytest.approx(max(62500 - delivery, 0) / delivery, abs=1e-9)
    assert all("-settle-" in f.trade_id and f.client_order_id is None for f in settlement.values())
    positions = await venue.fetch_positions()
    assert positions[call] == 0 and positions[put] == 0
    markets = await venue.load_markets()
    assert call not in markets and len(markets) == 10
    assert all(m.instrument is not None for m in markets.values())


async def test_collateral_is_equity_in_coin() -> None:
    clock = FakeClock()
    venue, _ = build(clock, {"flow_rate": 0.0, "collateral": 3})
    assert await venue.fetch_collateral() == {"BTC": Decimal(3)}
    symbol = "BTC/USD:BTC-231121-60000-C"
    mark = venue.option_quote(venue.instruments[symbol]).mark_price
    venue.seed_position(symbol, Decimal(-1))
    assert (await venue.fetch_collateral())["BTC"] == Decimal(3) - mark


async def test_options_venue_takes_no_hedge_orders() -> None:
    clock = FakeClock()
    venue, _ = build(clock)
    with pytest.raises(InvalidOrder):
        await venue.create_order(intent(symbol="BTC/USD:BTC-231121-60000-C"), Decimal(1), None)


async def test_the_inverse_perpetual_counts_ten_usd_contracts_and_charges_its_fee_in_coin() -> None:
    clock = FakeClock()
    _, perp = build(clock)
    info = (await perp.load_markets())[INVERSE]
    assert info.contract_size == 10 and info.amount_step == 1 and info.min_amount == 1
    assert perp.instrument.kind is InstrumentKind.INVERSE
    bid, _ = perp.quote()
    report = await place(perp, intent(Side.SELL, "300", symbol=INVERSE))
    (fill,) = report.fills
    assert fill.amount == 300 and fill.price == bid and fill.fee_currency == "BTC"
    assert fill.fee == (Decimal(3000) / bid * Decimal(5) / Decimal(10_000)).quantize(Decimal("1e-8"))
    assert perp.position() == -300
    with pytest.raises(InvalidOrder):  # whole contracts only
        await place(perp, intent(Side.BUY, "0.5", symbol=INVERSE))


def test_config_checks_the_options_venue(tmp_path: Any) -> None:
    base = {
        "venues": [
            {"name": "opts", "role": "inventory", "sim": {"symbol": OPTIONS, "options": {}}},
            {"name": "perp", "role": "hedge", "sim": {"symbol": INVERSE, "seed": 2}},
        ],
        "hedges": [{"underlying": "BTC", "venue": "perp", "symbol": INVERSE,
                    "inventory": [{"venue": "opts", "asset": "*"}]}],
    }
    Settings.model_validate(base)
    wrong_asset = {**base, "hedges": [{**base["hedges"][0], "inventory": [{"venue": "opts", "asset": "BTC"}]}]}
    with pytest.raises((ValidationError, ConfigError), match="asset = '\\*'"):
        Settings.model_validate(wrong_asset)
    with pytest.raises(ValidationError, match="options venue's symbol"):
        SimSettings(symbol="BTC/USD", options={})


async def test_the_initial_book_arrives_as_one_batch_after_its_quotes() -> None:
    clock = FakeClock()
    venue, _ = build(clock, {"flow_rate": 0.0, "initial_trades": 50, "quote_interval": 60.0})
    batches: list[int] = []

    class BatchSink(QuoteSink):
        async def on_fills(self, fills: Any) -> None:
            batches.append(len(fills))
            await super().on_fills(fills)

    sink = BatchSink()
    await venue.start(sink)
    await clock.advance(0.01)
    await venue.close()
    assert batches == [50]
    assert {f.symbol for f in sink.fills} <= {q.symbol for q in sink.quotes}
    assert all(f.ts == sink.fills[0].ts for f in sink.fills)  # at start, together
    positions = await venue.fetch_positions()
    assert sum(abs(v) for v in positions.values()) > 0
