"""Liquidation safety of the hedge leg: the pure arithmetic, the venues' figures (paper perpetual,
the Binance and Deribit simulators through the real ccxt classes), the metrics and the REDUCING
trigger in a running engine."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import SecretStr

from hedgerd.clock import RealClock
from hedgerd.config import SimSettings, VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.connectors.ccxt.venue import CcxtVenue
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.errors import TransientVenueError
from hedgerd.exchange_sim import start_venue_sim
from hedgerd.exchange_sim.deribit import start_deribit_sim
from hedgerd.killswitch import evaluate_reducing_triggers
from hedgerd.liquidation import LiquidationWatch
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, OptionQuote, OrderReport, PositionRisk, PriceUpdate, Side, TradingState
from hedgerd.risk.liquidation import linear_liquidation_price, liquidation_distance, margin_ratio
from hedgerd.risk_pass import HedgeState
from hedgerd.sim.market import SimMarketData
from tests.test_engine import QUIET, eventually, make_settings, running_engine

D = Decimal
PERP = "BTC/USDT:USDT"


def risk(position: str, mark: str | None, liquidation: str | None) -> PositionRisk:
    return PositionRisk(venue="v", symbol=PERP, position=D(position), mark=None if mark is None else D(mark),
                        liquidation_price=None if liquidation is None else D(liquidation), margin_ratio=None)


# --------------------------------------------------------------------------- pure arithmetic

def test_linear_liquidation_price_where_the_margin_balance_meets_the_maintenance_margin() -> None:
    # 1 BTC at 60 000 with 6 000 USDT of collateral (10x), maintenance 0.4 %
    long = linear_liquidation_price(D(1), D(60_000), D(6_000), D("0.004"))
    short = linear_liquidation_price(D(-1), D(60_000), D(6_000), D("0.004"))
    assert long is not None and short is not None
    assert long.quantize(D("0.01")) == D("54216.87")  # 54 000 / 0.996
    assert short.quantize(D("0.01")) == D("65737.05")  # 66 000 / 1.004
    for amount, price in ((D(1), long), (D(-1), short)):  # at that mark: balance == maintenance
        assert abs(D(6_000) + amount * (price - 60_000) - abs(amount) * price * D("0.004")) < D("1e-20")
        assert margin_ratio(amount, D(60_000), price, D(6_000), D("0.004")) == pytest.approx(D(1))
    assert linear_liquidation_price(D(1), D(60_000), D(70_000), D("0.004")) == 0  # over-collateralised long
    assert linear_liquidation_price(D(0), D(60_000), D(6_000), D("0.004")) is None


def test_liquidation_distance_is_a_fraction_of_the_mark_or_none() -> None:
    assert liquidation_distance(risk("-1", "60000", "66000")) == D("0.1")
    assert liquidation_distance(risk("1", "60000", "54000")) == D("0.1")
    assert liquidation_distance(risk("1", "60000", "0")) is None  # Binance: nothing liquidates it
    assert liquidation_distance(risk("0", "60000", "66000")) is None  # flat
    assert liquidation_distance(risk("-1", None, "66000")) is None
    assert liquidation_distance(risk("-1", "60000", None)) is None
    assert liquidation_distance(risk("-1", "60000", "66000"), D(64_000)) == D("0.03125")  # at a fresher mid
    assert liquidation_distance(risk("-1", None, "66000"), D(60_000)) == D("0.1")


def test_the_reducing_trigger_fires_under_the_bound_only() -> None:
    assert evaluate_reducing_triggers(liquidation_distances={}) is None
    assert evaluate_reducing_triggers(liquidation_distances={"BTC": (D("0.2"), D("0.1"))}) is None
    assert evaluate_reducing_triggers(liquidation_distances={"BTC": (D("0.1"), D("0.1"))}) is None
    reason = evaluate_reducing_triggers(liquidation_distances={"ETH": (D("0.3"), D("0.1")),
                                                              "BTC": (D("0.05"), D("0.1"))})
    assert reason is not None and "BTC" in reason and "0.0500" in reason and "min 0.1" in reason
    assert evaluate_reducing_triggers(liquidation_distances={"BTC": (D("NaN"), D("0.1"))}) is not None


# --------------------------------------------------------------------------- the paper perpetual

class _Sink:
    def __init__(self) -> None:
        self.fills: list[Fill] = []

    async def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        self.fills.extend(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        pass

    async def on_option_quote(self, quote: OptionQuote) -> None:
        pass

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        pass

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        pass


def _intent(cid: str, side: Side, amount: str) -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id=cid, underlying="BTC", venue="perp", symbol=PERP, side=side,
                       amount=D(amount), created_at=0.0)


async def test_the_paper_perpetual_reports_its_margin_and_liquidates_at_the_price_it_reported() -> None:
    clock = RealClock()
    settings = SimSettings(symbol=PERP, volatility=0.0, price_interval=0.02, latency_ms=0.0,
                           margin_balance=D(10_000), taker_fee_bps=D(5))
    market = SimMarketData("BTC", settings, clock)
    venue = SimPerpVenue("perp", settings, market, clock)
    assert await venue.fetch_position_risk(PERP) is None  # flat
    report = await venue.create_order(_intent("h1", Side.SELL, "1"), D(1), None)
    entry = report.average_price
    assert entry is not None
    wallet = D(10_000) - report.fee
    expected = linear_liquidation_price(D(-1), entry, wallet, D("0.004"))
    assert expected is not None
    got = await venue.fetch_position_risk(PERP)
    assert got is not None and got.position == D(-1) and got.liquidation_price == expected
    mid = market.mid()
    assert got.mark == mid
    assert got.margin_ratio == margin_ratio(D(-1), entry, mid, wallet, D("0.004"))
    sink = _Sink()
    await venue.start(sink)
    try:
        market.set_mid(expected - 5)  # not yet
        await asyncio.sleep(0.1)
        assert venue.liquidations == 0 and venue.position() == D(-1)
        market.set_mid(expected + 5)  # through it: the venue closes the position, not us
        await eventually(lambda: venue.liquidations == 1 and bool(sink.fills), "the liquidation fill")
        liquidation = sink.fills[-1]
        assert (liquidation.side, liquidation.amount, liquidation.client_order_id) == (Side.BUY, D(1), None)
        assert venue.position() == 0 and await venue.fetch_position_risk(PERP) is None
        assert venue.margin.wallet < wallet - (liquidation.price - entry)  # the loss and the clearance fee
    finally:
        await venue.close()


# --------------------------------------------------------------------------- the exchange simulators

async def test_binance_simulator_reports_cross_and_isolated_liquidation_prices_through_ccxt() -> None:
    async with start_venue_sim(port=0) as sim:
        cfg = VenueConfig(name="usdm", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="binanceusdm",
                          api_key=SecretStr("sim-api-key"), secret=SecretStr("sim-secret"), sim_base_url=sim.base_url)
        venue = CcxtVenue("usdm", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[PERP])
        try:
            await venue.load_markets()
            assert await venue.fetch_position_risk(PERP) is None
            await venue.create_order(_intent("hgd1x1", Side.SELL, "1"), D(1), None)
            engine = sim.engine
            engine.usdm_wallet = D(10_000)  # a thin account: liquidation within reach
            pos = engine.position("BTCUSDT")
            # 60 000 notional: the second bracket (0.5 %, cum 50); cross: the wallet backs it
            cross = ((D(10_000) + 50 - pos.amount * pos.entry_price) / (abs(pos.amount) * D("0.005") - pos.amount))
            got = await venue.fetch_position_risk(PERP)
            assert got is not None and got.position == D(-1)
            assert got.liquidation_price == cross.quantize(D("1e-8"))
            mark = engine.mark_price("BTCUSDT")
            assert got.mark == mark
            assert got.margin_ratio is not None and D("0.02") < got.margin_ratio < D("0.04")  # ccxt's 300 / 10 050
            distance = liquidation_distance(got)
            assert distance is not None and abs(distance - (cross - mark) / mark) < D("1e-6")

            engine.set_margin_type("BTCUSDT", "isolated")  # isolated: only the entry's initial margin backs it
            leverage = engine.leverage("BTCUSDT")
            isolated_margin = pos.entry_price / leverage
            isolated = (isolated_margin + 50 - pos.amount * pos.entry_price) / (D("0.005") + 1)
            got = await venue.fetch_position_risk(PERP)
            assert got is not None and got.liquidation_price == isolated.quantize(D("1e-8"))
            assert got.liquidation_price < cross  # less margin: closer
        finally:
            await venue.close()


async def test_deribit_simulator_estimates_a_futures_liquidation_price_through_ccxt() -> None:
    inverse = "BTC/USD:BTC"
    async with start_deribit_sim(port=0, seed=5) as sim:
        cfg = VenueConfig(name="deribit", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                          api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                          sim_base_url=sim.base_url)
        venue = CcxtVenue("deribit", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[inverse])
        try:
            await venue.load_markets()
            await venue.create_order(HedgeIntent(
                intent_id=1, client_order_id="hgd1x1", underlying="BTC", venue="deribit", symbol=inverse,
                side=Side.BUY, amount=D(3000), created_at=0.0), D(300), None)  # 3 000 USD long
            sim.venue.balances["BTC"] = D("0.01")  # a thin account
            got = await venue.fetch_position_risk(inverse)
            assert got is not None and got.position > 0 and got.liquidation_price is not None
            pos = next(p for p in sim.venue.positions.values() if p.size)
            # at that price the account's equity meets its maintenance margin (1 % of the coin notional)
            price, size, average = got.liquidation_price, pos.size, pos.average
            equity = D("0.01") + size * (1 / average - 1 / price)
            assert abs(equity - abs(size) / price * D("0.01")) < D("1e-6")
            distance = liquidation_distance(got)
            assert distance is not None and 0 < distance < 1
            # ccxt gives no margin ratio for Deribit: the account summary's maintenance / margin balance
            summary = sim.venue.summary("BTC")
            assert got.margin_ratio is not None
            assert abs(got.margin_ratio - summary["maintenance_margin"] / summary["margin_balance"]) < D("1e-9")
        finally:
            await venue.close()


# --------------------------------------------------------------------------- metrics and the trigger

async def test_liquidation_distance_under_the_bound_allows_only_reducing_orders(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, perp={"margin_balance": D(20_000), "taker_fee_bps": D(0)},
                             kill_switch={"min_liquidation_distance": D("0.2")})
    async with running_engine(settings) as h:
        watch = LiquidationWatch(h.engine.hedges, h.engine.venues, h.metrics, RealClock(), lambda: 3600.0)
        await h.client_fill(Side.BUY, "1")  # the hedge sells 1: short 1 at the bid, 20 000 USDT behind it
        await eventually(h.in_band, "the hedge")
        entry = h.perp.margin.entry
        assert entry is not None
        liquidation = linear_liquidation_price(D(-1), entry, D(20_000), D("0.004"))
        assert liquidation is not None
        await watch.poll_once()
        mid = h.perp.market.mid()
        assert h.sample("hedgerd_hedge_liquidation_price", underlying="BTC") == pytest.approx(float(liquidation))
        assert h.sample("hedgerd_hedge_liquidation_distance", underlying="BTC") == pytest.approx(
            float((liquidation - mid) / mid))
        assert h.sample("hedgerd_hedge_margin_ratio", underlying="BTC") == pytest.approx(
            float(margin_ratio(D(-1), entry, mid, D(20_000), D("0.004")) or 0))
        await asyncio.sleep(QUIET)
        assert h.trading_state() is TradingState.ACTIVE  # about 0.33 of the mark away

        h.perp.market.set_mid(D(68_000))  # the short loses: liquidation about 0.17 of the mark away
        # no poll needed: the risk pass measures the polled liquidation price against the latest mid
        await eventually(lambda: h.trading_state() is TradingState.REDUCING, "REDUCING")
        assert h.engine.kill_switch.source == "auto:liquidation"
        assert "liquidation distance: BTC" in h.engine.kill_switch.reason
        await watch.poll_once()
        assert h.sample("hedgerd_hedge_liquidation_distance", underlying="BTC") == pytest.approx(
            float((liquidation - h.perp.market.mid()) / h.perp.market.mid()))

        sent = len(h.attempts)
        await h.client_fill(Side.BUY, "0.5")  # hedging it would grow the short: refused
        await asyncio.sleep(QUIET)
        assert len(h.attempts) == sent
        await h.client_fill(Side.SELL, "1")  # net short 0.5 now: buying back shrinks the short, allowed
        await eventually(lambda: len(h.attempts) > sent and h.settled(), "the reducing hedge")
        assert all(a.intent.side is Side.BUY and a.intent.reduce_only for a in h.attempts[sent:])
        assert h.trading_state() is TradingState.REDUCING  # never clears by itself

        await watch.poll_once()  # a smaller short: the liquidation price moved away
        assert h.engine.resume("http")[0]  # the operator resumes, as after every automatic trigger
        await asyncio.sleep(QUIET)
        assert h.trading_state() is TradingState.ACTIVE


class _RiskVenue:
    """A venue that reports position risk, counting the requests."""

    def __init__(self) -> None:
        self.calls = 0
        self.fail = False

    async def fetch_position_risk(self, symbol: str) -> PositionRisk | None:
        self.calls += 1
        if self.fail:
            raise TransientVenueError("perp: timeout")
        return PositionRisk(venue="sim-perp", symbol=symbol, position=D(-1), mark=D(60_000),
                            liquidation_price=D(66_000), margin_ratio=D("0.05"))


async def test_the_watch_polls_on_its_interval_and_soon_after_the_position_moves(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    state = HedgeState(config=settings.hedges[0], executor=cast(Any, None), market=None)
    venue = _RiskVenue()
    position = {"value": D(-1)}
    metrics = Metrics()
    watch = LiquidationWatch({"BTC": state}, {"sim-perp": cast(Any, venue)}, metrics, RealClock(),
                             lambda: 3600.0, lambda venue_name, symbol: position["value"])
    task = asyncio.create_task(watch.run())
    try:
        await eventually(lambda: venue.calls == 1, "the first poll")
        assert state.liquidation is not None and state.liquidation.liquidation_price == D(66_000)
        assert metrics.registry.get_sample_value("hedgerd_hedge_liquidation_distance", {"underlying": "BTC"}) == 0.1
        await asyncio.sleep(1.3)
        assert venue.calls == 1  # the interval is an hour and nothing moved
        position["value"] = D(-2)  # a hedge filled: poll again within about a second
        await eventually(lambda: venue.calls == 2, "a poll after the position moved", within=2.5)
        venue.fail = True
        position["value"] = D(-3)
        await eventually(lambda: (metrics.registry.get_sample_value(
            "hedgerd_venue_errors_total", {"venue": "sim-perp", "kind": "position_risk"}) or 0) == 1, "the error")
        assert state.liquidation is not None  # the last figures are kept
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_daemons_status_shows_the_hedge_positions_liquidation(tmp_path: Path) -> None:
    from hedgerd.config import masked_settings_dict
    from tests.test_reload import base_settings, running_daemon, write_config

    config_file = tmp_path / "hedgerd.toml"
    write_config(config_file, masked_settings_dict(base_settings(tmp_path)))
    async with running_daemon(config_file) as daemon:
        engine = daemon.engine
        assert daemon.status()["underlyings"]["BTC"]["liquidation"] is None  # not polled yet
        perp = engine.venues["sim-perp"]
        assert isinstance(perp, SimPerpVenue)
        perp.seed_position(PERP, D(-10))  # 10 BTC short on 1 000 000 USDT, entered at the mid
        watch = LiquidationWatch(engine.hedges, engine.venues, daemon.metrics, RealClock(), lambda: 3600.0)
        await watch.poll_once()
        view = daemon.status()["underlyings"]["BTC"]["liquidation"]
        liquidation = perp.margin.liquidation_price()
        mid = engine.prices[("sim-perp", PERP)].mid
        assert liquidation is not None and view["liquidation_price"] == str(liquidation)
        assert view["distance"] == str(((liquidation - mid) / mid).quantize(D("0.0001")))
        assert view["position"] == "-10" and view["margin_ratio"] is not None
