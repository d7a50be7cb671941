"""The engine on an options desk: spot, linear, inverse and option inventory hedged on an inverse perpetual.

The inventory venue is a fake that reports its positions (adopted by startup reconciliation) and its
equity; option quotes and hedge prices are pushed into the engine as a venue's streams would. Every
expected delta is recomputed here from the positions and quotes, independently of hedgerd.risk.book.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd.clock import RealClock
from hedgerd.config import (
    ExecutorConfig,
    HedgeConfig,
    InventorySource,
    KillSwitchConfig,
    LedgerConfig,
    PolicyConfig,
    RiskConfig,
    Settings,
    VenueConfig,
    VenueKind,
    VenueRole,
)
from hedgerd.connectors.base import VenueEventSink
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import (
    Fill,
    HedgeIntent,
    MarketInfo,
    OptionGreeks,
    OptionQuote,
    OrderReport,
    PriceUpdate,
    Side,
    TradingState,
)
from hedgerd.policy.sizing import size_inverse
from hedgerd.reconciliation import PositionSnapshot
from hedgerd.risk.greeks import black76, year_fraction
from tests.fakes import FakeClock, FakeVenue

D = Decimal
PERP = "BTC/USD:BTC"  # Deribit's BTC-PERPETUAL in ccxt's notation: 10 USD per contract
LINEAR = "BTC/USDT:USDT"
FUTURE = "BTC/USD:BTC-271231"
CALL_USDT = "BTC/USDT:USDT-270326-100000-C"
CALL_COIN = "BTC/USD:BTC-270326-100000-C"
EXPIRING = "BTC/USD:BTC-EXPIRING-40000-C"
MID = D(50000)
FORWARD = 50000.0
IV = 0.6
QUIET = 0.5


def _option(symbol: str, settle: str, quote: str, size: str, strike: int, expiry: float) -> Instrument:
    return Instrument(symbol=symbol, kind=InstrumentKind.OPTION, underlying="BTC", quote=quote, settle=settle,
                      contract_size=D(size), expiry=expiry, strike=D(strike), option_type=OptionType.CALL)


def _market(instrument: Instrument, step: str = "1") -> MarketInfo:
    return MarketInfo(symbol=instrument.symbol, base="BTC", quote=instrument.quote, amount_step=D(step),
                      price_step=D("0.5"), contract_size=instrument.contract_size, instrument=instrument)


PERP_INSTRUMENT = Instrument(symbol=PERP, kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD", settle="BTC",
                             contract_size=D(10))


class BookVenue:
    """An inventory account holding derivatives (and a spot balance), with its equity."""

    name = "book"

    def __init__(self, markets: dict[str, MarketInfo], positions: dict[str, Decimal],
                 equity: dict[str, Decimal] | None = None) -> None:
        self.markets = markets
        self.positions = positions
        self.equity = equity or {}

    @property
    def connected(self) -> bool:
        return True

    async def start(self, sink: VenueEventSink) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_markets(self) -> dict[str, MarketInfo]:
        return dict(self.markets)

    async def fetch_positions(self) -> dict[str, Decimal]:
        return dict(self.positions)

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(dict(self.positions))

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        return []

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        raise AssertionError("nothing is ever sent to an inventory venue")

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        return []

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return None

    async def fetch_collateral(self) -> dict[str, Decimal]:
        return dict(self.equity)


class SilentBookVenue(BookVenue):
    """An inventory account that does not report its equity (not a CollateralSource)."""

    fetch_collateral = None  # type: ignore[assignment]


@dataclass
class Desk:
    engine: HedgeEngine
    hedge: FakeVenue
    book: BookVenue
    metrics: Metrics
    instruments: dict[str, Instrument]

    @property
    def state(self) -> Any:
        return self.engine.hedges["BTC"]

    def snapshot(self) -> Any:
        return self.engine.risk_pass.snapshot(self.state)

    def creates(self) -> list[Any]:
        return self.hedge.calls_of("create")

    async def placed(self, index: int) -> OrderReport:
        """The venue's report of the ``index``-th order sent (once the venue has placed it)."""
        await eventually(lambda: len(self.creates()) > index and self.creates()[index].client_order_id
                         in self.hedge.orders, f"order {index} placed")
        return self.hedge.orders[self.creates()[index].client_order_id]

    async def price(self, mid: Decimal = MID) -> None:
        self.hedge.price = mid
        await self.engine.on_price(PriceUpdate(venue="hedge", symbol=PERP, bid=mid - D("0.5"), ask=mid + D("0.5"),
                                               ts=time.time()))

    async def quote(self, symbol: str, *, forward: float = FORWARD, iv: float = IV,
                    greeks: OptionGreeks | None = None) -> None:
        """The option's mark as the venue would stream it (coin-settled marks in coin)."""
        instrument = self.instruments[symbol]
        model = black76(forward=forward, strike=float(instrument.strike or 0), call=True, vol=iv,
                        t=year_fraction(instrument.expiry or 0.0, time.time()))
        mark = model.price / forward if instrument.coin_settled else model.price
        await self.engine.on_option_quote(OptionQuote(
            venue="book", symbol=symbol, mark_price=D(repr(mark)), mark_iv=iv, underlying_price=D(repr(forward)),
            ts=time.time(), greeks=greeks))

    async def quote_all(self, **kwargs: Any) -> None:
        for symbol, instrument in self.instruments.items():
            if instrument.kind is InstrumentKind.OPTION and not instrument.expired(time.time()):
                await self.quote(symbol, **kwargs)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def expected_option_delta(instrument: Instrument, contracts: Decimal, forward: float = FORWARD,
                          iv: float = IV) -> float:
    """Textbook delta of the position: Black-76 N(d1), minus the mark in coin when coin-settled."""
    t = year_fraction(instrument.expiry or 0.0, time.time())
    if t <= 0:
        return 0.0
    strike = float(instrument.strike or 0)
    d1 = (math.log(forward / strike) + 0.5 * iv * iv * t) / (iv * math.sqrt(t))
    n_d1 = 0.5 * math.erfc(-d1 / math.sqrt(2))
    delta = n_d1
    if instrument.coin_settled:
        d2 = d1 - iv * math.sqrt(t)
        price = forward * n_d1 - strike * 0.5 * math.erfc(-d2 / math.sqrt(2))
        delta -= price / forward
    return float(contracts * instrument.contract_size) * delta


async def eventually(predicate: Callable[[], bool], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def desk(tmp_path: Path, *, positions: dict[str, Decimal] | None = None, expiring_in: float = 3600.0,
               hedge: dict[str, Any] | None = None, policy: str = "fixed",
               equity: dict[str, Decimal] | None = None, max_realized_loss: Decimal | None = None,
               reports_equity: bool = True, safety_tick: float = 0.1) -> AsyncIterator[Desk]:
    now = time.time()
    far = now + 0.3 * 365 * 86400
    instruments = {
        LINEAR: Instrument(symbol=LINEAR, kind=InstrumentKind.LINEAR, underlying="BTC", quote="USDT", settle="USDT",
                           contract_size=D("0.001")),
        FUTURE: Instrument(symbol=FUTURE, kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD", settle="BTC",
                           contract_size=D(10), expiry=far),
        CALL_USDT: _option(CALL_USDT, "USDT", "USDT", "0.01", 100000, far),
        CALL_COIN: _option(CALL_COIN, "BTC", "USD", "1", 100000, far),
        EXPIRING: _option(EXPIRING, "BTC", "USD", "1", 40000, now + expiring_in),
    }
    held = positions if positions is not None else {
        "BTC": D("1.5"), LINEAR: D(-250), FUTURE: D(1000), CALL_USDT: D(-300), CALL_COIN: D(2), EXPIRING: D(5)}
    book = (BookVenue if reports_equity else SilentBookVenue)({s: _market(i) for s, i in instruments.items()},
                                                               held, equity)
    clock = RealClock()
    metrics = Metrics()
    hedge_venue = FakeVenue(FakeClock(), _market(PERP_INSTRUMENT), name="hedge", price=MID)
    hedge_venue.clock = clock  # type: ignore[assignment]  # the fake only reads time() and monotonic()
    settings = Settings(
        venues=[VenueConfig(name="book", kind=VenueKind.CCXT, exchange="deribit", role=VenueRole.INVENTORY),
                VenueConfig(name="hedge", kind=VenueKind.CCXT, exchange="deribit", role=VenueRole.HEDGE)],
        hedges=[HedgeConfig(**{
            "underlying": "BTC", "venue": "hedge", "symbol": PERP, "threshold": D("0.01"), "max_order": D(10),
            "max_position": D(20), "max_greeks_age": 30.0,
            "inventory": [InventorySource(venue="book", asset="*"), InventorySource(venue="book", asset="BTC")],
            **(hedge or {})})],
        executor=ExecutorConfig(order_timeout=3.0, max_retries=2, backoff_initial=0.02, backoff_max=0.1),
        kill_switch=KillSwitchConfig(kill_file=tmp_path / "KILL", max_realized_loss=max_realized_loss),
        ledger=LedgerConfig(path=tmp_path / "ledger.sqlite"),
        risk=RiskConfig(safety_tick=safety_tick),
        policy=PolicyConfig(name=policy),  # type: ignore[arg-type]
    )
    ledger = InventoryLedger(settings.ledger.path, metrics=metrics)
    engine = HedgeEngine(settings, {"book": book, "hedge": hedge_venue}, ledger, clock, metrics)  # type: ignore[dict-item]
    try:
        await engine.start()
        yield Desk(engine, hedge_venue, book, metrics, instruments)
    finally:
        await engine.stop()


def _inventory_expected(d: Desk, now_instruments: dict[str, Instrument], mid: Decimal = MID) -> dict[str, float]:
    held = d.book.positions
    options = sum(expected_option_delta(i, held.get(s, D(0))) for s, i in now_instruments.items()
                  if i.kind is InstrumentKind.OPTION)
    return {"spot": float(held.get("BTC", D(0))), "linear": float(held.get(LINEAR, D(0)) * D("0.001")),
            "inverse": float(held.get(FUTURE, D(0)) * 10 / mid), "option": options}


async def test_each_instrument_counts_in_net_delta_and_the_inverse_hedge_is_sized_in_contracts(tmp_path: Path) -> None:
    async with desk(tmp_path) as d:
        await d.price()
        await asyncio.sleep(QUIET)
        # the options have no quote yet: the book cannot be valued whole and nothing is hedged
        assert d.creates() == []
        assert len(d.snapshot().book.unvalued) == 3
        ready, problems = d.engine.readiness()
        assert not ready and f"not valued: {CALL_COIN} on book: no option quote" in problems
        await d.quote_all()
        await eventually(lambda: len(d.creates()) == 1, "the hedge order")
        snap = d.snapshot()
        by_source = {k: float(v) for k, v in snap.delta_by_source().items()}
        expected = _inventory_expected(d, d.instruments)
        for source, value in expected.items():
            assert math.isclose(by_source[source], value, abs_tol=1e-6), (source, by_source[source], value)
        # the inverse future: long 1,000 contracts of 10 USD at 50,000 = +0.2 BTC; the coin-settled deep ITM
        # call is worth K/F = 0.8 BTC per contract, not 1
        assert math.isclose(by_source["inverse"], 0.2)
        inventory = sum(expected.values())
        # sold back to target on the inverse perp: contracts = BTC x mid / 10 USD, rounded toward zero
        order = d.creates()[0]
        assert order.amount is not None
        contracts = size_inverse(D(repr(inventory)), MID, D(10)).contracts
        assert abs(contracts - order.amount) <= 1  # the same up to where the rounding falls
        assert (await d.placed(0)).fills[0].side is Side.SELL  # long inventory: sell
        await eventually(lambda: d.engine.ledger.position("hedge", PERP) == -order.amount, "the hedge fill journaled")
        snap = d.snapshot()
        assert snap.book.hedge_contracts == -order.amount
        assert snap.perp_position == -order.amount * 10 / MID  # short USD on an inverse contract is short coin
        assert abs(float(snap.net_delta)) < 10 / 50000 + 1e-9  # within one contract of flat
        await eventually(lambda: d.sample("hedgerd_delta", underlying="BTC", source="hedge") == float(
            snap.perp_position), "the hedge's delta exported")
        assert d.sample("hedgerd_delta", underlying="BTC", source="inverse") == by_source["inverse"]
        gamma = d.sample("hedgerd_gamma", underlying="BTC")  # moves a little with time (the options' theta)
        assert gamma is not None and snap.book.gamma != 0.0 and math.isclose(gamma, snap.book.gamma, rel_tol=1e-6)
        status = d.engine.status()["underlyings"]["BTC"]
        assert status["greeks_source"] == "model" and set(status["delta_by_source"]) >= {"spot", "option", "hedge"}


async def test_an_expiring_option_leaves_the_book_and_the_engine_rehedges_without_a_fill(tmp_path: Path) -> None:
    async with desk(tmp_path, expiring_in=2.0) as d:
        await d.price()
        await d.quote_all()
        await eventually(lambda: len(d.creates()) == 1, "the first hedge")
        first = d.creates()[0]
        await eventually(lambda: len(d.creates()) == 2, "the hedge after expiry", within=6.0)
        second = d.creates()[1]
        assert EXPIRING not in dict.fromkeys(k[1] for k in d.snapshot().book.held_options)
        # five coin-settled calls struck at 40,000 were 5 x 0.8 = 4 BTC long: bought back on expiry
        assert first.amount is not None and second.amount is not None
        assert math.isclose(float(second.amount) * 10 / 50000, 4.0, abs_tol=0.01)
        assert [(await d.placed(i)).fills[0].side for i in (0, 1)] == [Side.SELL, Side.BUY]


async def test_a_move_of_the_forward_alone_rehedges_the_options_delta(tmp_path: Path) -> None:
    positions = {CALL_USDT: D(-300)}  # short 3 BTC of calls: short delta, short gamma
    async with desk(tmp_path, positions=positions) as d:
        await d.price()
        await d.quote_all()
        await eventually(lambda: len(d.creates()) == 1, "the first hedge")
        assert (await d.placed(0)).fills[0].side is Side.BUY  # short calls: buy
        await asyncio.sleep(QUIET)
        assert len(d.creates()) == 1  # no fill, no move: nothing more
        await d.quote(CALL_USDT, forward=60000.0)  # the market rallies; no trade on the book
        await d.price(D(60000))
        await eventually(lambda: len(d.creates()) == 2, "a hedge on the price move alone")
        assert (await d.placed(1)).fills[0].side is Side.BUY  # the short call's delta grew more negative


async def test_a_stale_option_quote_on_a_held_option_halts_trading_at_its_max_age(tmp_path: Path) -> None:
    # a safety tick of 5 s: the risk loop wakes for the quote going stale, not for the tick
    async with desk(tmp_path, positions={CALL_COIN: D(2)}, hedge={"max_greeks_age": 0.5, "max_price_age": 30.0},
                    safety_tick=5.0) as d:
        await d.price()
        await d.quote_all()
        quoted = time.monotonic()
        await eventually(lambda: d.engine.kill_switch.state is TradingState.HALTED, "the halt", within=4.0)
        assert time.monotonic() - quoted < 2.0
        assert d.engine.kill_switch.reason.startswith("stale greeks: BTC")
        assert d.engine.kill_switch.source == "auto"


async def test_greeks_disagreeing_beyond_the_bound_halt_trading(tmp_path: Path) -> None:
    async with desk(tmp_path, positions={CALL_COIN: D(2)}, hedge={"max_greeks_disagreement": D("0.1")}) as d:
        await d.price()
        # the venue says 0.75 per contract where the model says about 0.39: 0.72 BTC apart on 2 contracts
        await d.quote(CALL_COIN, greeks=OptionGreeks(delta=0.75, gamma=1e-5, vega=100.0))
        await eventually(lambda: d.engine.kill_switch.state is TradingState.HALTED, "the halt")
        assert d.engine.kill_switch.reason.startswith("greeks disagreement: BTC")
        gap = d.sample("hedgerd_greeks_disagreement", underlying="BTC")
        assert gap is not None and math.isclose(gap, 2 * 0.75 - expected_option_delta(
            d.instruments[CALL_COIN], D(2)), abs_tol=1e-4)


async def test_greeks_from_the_venue_are_used_when_configured_and_agreeing_ones_do_not_halt(tmp_path: Path) -> None:
    hedge = {"greeks_source": "venue", "max_greeks_disagreement": D("0.1")}
    async with desk(tmp_path, positions={CALL_COIN: D(2)}, hedge=hedge) as d:
        await d.price()
        model = expected_option_delta(d.instruments[CALL_COIN], D(1))
        await d.quote(CALL_COIN, greeks=OptionGreeks(delta=model + 0.01, gamma=2e-5, vega=120.0))
        await eventually(lambda: len(d.creates()) == 1, "the hedge")
        await eventually(lambda: d.engine.ledger.position("hedge", PERP) != 0, "the hedge fill journaled")
        await asyncio.sleep(QUIET)
        snap = d.snapshot()
        assert math.isclose(float(snap.delta_by_source()["option"]), 2 * (model + 0.01), abs_tol=1e-9)
        # the venue's gamma of the options, plus the inverse hedge's own: -(contracts x 10 USD) / mid²
        hedge_gamma = -float(snap.book.hedge_contracts) * 10 / 50000 ** 2
        assert math.isclose(snap.book.gamma, 2 * 2e-5 + hedge_gamma, rel_tol=1e-9)
        assert math.isclose(snap.book.vega, 2 * 120.0)
        assert d.engine.kill_switch.state is TradingState.ACTIVE


async def test_collateral_counts_as_long_delta_when_included(tmp_path: Path) -> None:
    async with desk(tmp_path, positions={}, equity={"BTC": D("0.7"), "ETH": D(3)},
                    hedge={"include_collateral": True}) as d:
        await d.price()
        await eventually(lambda: len(d.creates()) == 1, "the hedge of the equity")
        assert d.snapshot().delta_by_source()["collateral"] == D("0.7")
        assert d.creates()[0].amount == size_inverse(D("0.7"), MID, D(10)).contracts  # 3,500 contracts, sold


async def test_a_client_option_trade_on_the_book_is_journaled_in_contracts_and_hedged(tmp_path: Path) -> None:
    async with desk(tmp_path, positions={}) as d:
        await d.price()
        await d.quote_all()
        await asyncio.sleep(QUIET)
        assert d.creates() == []
        # a client buys 300 calls of 0.01 BTC from the desk: the desk is short 3 BTC of calls
        await d.engine.on_fill(Fill(venue="book", trade_id="client-1", symbol=CALL_USDT, side=Side.SELL,
                                    amount=D(300), price=D(4000), ts=time.time(), received_at=time.monotonic()))
        await eventually(lambda: len(d.creates()) == 1, "the hedge of the client trade")
        assert d.engine.ledger.position("book", CALL_USDT) == D(-300)
        short_calls = expected_option_delta(d.instruments[CALL_USDT], D(-300))
        order = d.creates()[0]
        assert order.amount == size_inverse(D(repr(-short_calls)), MID, D(10)).contracts
        assert (await d.placed(0)).fills[0].side is Side.BUY


async def test_the_gamma_policy_widens_the_band_by_the_books_gamma_and_the_band_gauge_shows_it(
        tmp_path: Path) -> None:
    # short 50 BTC of quote-settled calls, their delta hedged at start: gamma about -1.5e-4 BTC per USD
    async with desk(tmp_path, positions={CALL_USDT: D(-5000)}, policy="gamma") as d:
        await d.price()
        await d.quote_all()
        await eventually(lambda: len(d.creates()) == 1, "the first hedge (warming up: fixed threshold)")
        policy = d.engine.policy_for("BTC")
        await eventually(lambda: d.snapshot().book.in_flight_contracts == 0, "the hedge settled")
        await d.price(MID + 1)  # another pass: the book's gamma now includes the hedge's own
        await eventually(lambda: math.isclose(policy.gamma, d.snapshot().book.gamma, rel_tol=1e-6),
                         "the gamma of the hedged book observed")
        assert policy.gamma < 0 and policy.gamma_band is not None and policy.gamma_band.source == "gamma"
        band = d.sample("hedgerd_hedge_band", underlying="BTC")
        assert band is not None and band == float(policy.trigger) > 0.01  # wider than the 0.01 threshold


async def test_what_is_not_valued_yet_is_refused_at_start_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        async with desk(tmp_path, max_realized_loss=D(1000)):
            pass
    assert excinfo.value.path == "kill_switch.max_realized_loss" and "not computed yet" in excinfo.value.reason
    with pytest.raises(ConfigError) as excinfo:
        async with desk(tmp_path / "2", hedge={"include_collateral": True}, reports_equity=False):
            pass
    assert excinfo.value.path == "hedges.0.include_collateral"
