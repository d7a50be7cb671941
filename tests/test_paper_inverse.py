"""The inverse paper perpetual (BTC/USD:BTC, 10 USD contracts) under what the linear one models:
funding in the coin, resting orders matched in contracts, and a margin account kept in the coin
(docs/instruments.md, "Inverse perpetual")."""

from __future__ import annotations

from decimal import Decimal

from hedgerd.config import SimSettings
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.connectors.paper_margin import PaperMargin
from hedgerd.models import FundingPayment, HedgeIntent, OrderStatus, OrderType, Side
from hedgerd.risk.liquidation import inverse_liquidation_price, inverse_margin_ratio
from hedgerd.sim.market import SimMarketData
from tests import fakes
from tests.test_sim import FakeClock
from tests.test_sim_resting import Sink, settle

INVERSE = "BTC/USD:BTC"
D = Decimal
H8 = 8 * 3600.0
T0 = 1_700_006_400.0  # a funding time (a multiple of 8 h)


def test_the_inverse_liquidation_price_is_where_the_coin_balance_meets_the_maintenance_margin() -> None:
    for usd, entry, wallet in ((D(50_000), D(50_000), D("0.2")), (D(-50_000), D(50_000), D("0.5"))):
        price = inverse_liquidation_price(usd, entry, wallet, D("0.005"))
        assert price is not None and price > 0
        balance = wallet + usd * (1 / entry - 1 / price)
        assert abs(balance - abs(usd) / price * D("0.005")) < D("1e-20")
        ratio = inverse_margin_ratio(usd, entry, price, wallet, D("0.005"))
        assert ratio is not None and abs(ratio - 1) < D("1e-20")  # 1 is liquidation
    # a short backed by more coin than it is worth at entry loses at most that: never liquidated
    assert inverse_liquidation_price(D(-50_000), D(50_000), D(2), D("0.005")) == 0
    assert inverse_liquidation_price(D(0), D(50_000), D(1), D("0.005")) is None


def test_the_inverse_margin_account_counts_contracts_and_realizes_in_the_coin() -> None:
    margin = PaperMargin(D(1), D("0.005"), inverse_size=D(10))
    margin.fill(D(100), D(50_000), D("0.00001"))  # long 100 contracts = 1000 USD
    assert margin.position == D(100) and margin.entry == D(50_000)
    margin.fill(D(-100), D(55_000), D(0))
    assert margin.position == 0 and margin.entry is None
    expected = D(1) + D(1000) * (1 / D(50_000) - 1 / D(55_000)) - D("0.00001")
    assert abs(margin.wallet - expected) < D("1e-20")
    margin.seed(D(-30), D(40_000))
    assert margin.position == D(-30) and margin.entry == D(40_000)
    assert margin.clearance_fee(D(40_000)) == D(300) / D(40_000) * D("0.005")


async def test_the_inverse_paper_perp_charges_funding_in_the_coin_on_the_contracts_value() -> None:
    clock = fakes.FakeClock(start=0.0, wall_offset=T0 - 60)  # a minute before a funding time
    settings = SimSettings(seed=3, symbol=INVERSE, volatility=0.0, latency_ms=0.0, funding_premium_std=0.0,
                           funding_interest_rate=D("0.0001"))
    venue = SimPerpVenue("perp", settings, SimMarketData("BTC", settings, clock), clock)
    venue.seed_position(INVERSE, D(-600))  # short 6000 USD
    mid = venue.market.mid()
    clock.advance(120)
    [payment] = await venue.fetch_funding_since(None)
    assert payment == FundingPayment(venue="perp", symbol=INVERSE, payment_id=f"{INVERSE}@{int(T0 * 1000)}",
                                     amount=(D(6000) / mid * D("0.0001")).quantize(D("1e-8")), currency="BTC",
                                     ts=T0)
    assert venue.position("BTC") == payment.amount  # the short received it, in BTC


async def test_an_inverse_resting_order_fills_whole_contracts_with_a_coin_maker_fee_and_can_be_liquidated() -> None:
    clock = FakeClock()
    settings = SimSettings(symbol=INVERSE, seed=3, latency_ms=0, volatility=0.8, price_interval=1.0,
                           market_volume=D(4), touch_depth=D(1), maker_fee_bps=D(2), adverse_selection_bps=D(1),
                           funding=False, margin_balance=D("0.05"))  # 0.05 BTC behind a 6000 USD long
    venue = SimPerpVenue("perp", settings, SimMarketData("BTC", settings, clock), clock)
    assert venue.market_info.amount_step == 1 and venue.market_info.contract_size == 10
    sink = Sink()
    await venue.start(sink)
    await settle()
    try:
        bid, _ = venue.quote()
        intent = HedgeIntent(intent_id=1, client_order_id="m1", underlying="BTC", venue="perp", symbol=INVERSE,
                             side=Side.BUY, amount=D(600), created_at=0.0, order_type=OrderType.POST_ONLY,
                             limit_price=bid)
        await venue.create_order(intent, D(600), bid)
        for _ in range(400):
            await clock.advance(1.0)
            report = await venue.fetch_order(INVERSE, "m1")
            if report is not None and report.status is OrderStatus.FILLED:
                break
        assert sink.fills, "the buy must fill within 400 ticks"
        for fill in sink.fills:
            assert fill.amount == fill.amount.to_integral_value() and fill.price == bid  # whole contracts
            assert fill.fee_currency == "BTC"
            assert fill.fee == (fill.amount * 10 / bid * D("0.0002")).quantize(D("1e-8"))
        held = sum(f.amount for f in sink.fills)
        assert venue.margin.position == venue.position() == held
        risk = await venue.fetch_position_risk(INVERSE)
        assert risk is not None and risk.liquidation_price is not None and risk.liquidation_price > 0
        assert risk.liquidation_price == venue.margin.liquidation_price()
        venue.market.set_mid(risk.liquidation_price - 200)  # through it at the next tick
        await clock.advance(1.0)
        assert venue.liquidations == 1 and venue.position() == 0
        liquidation = sink.fills[-1]
        assert (liquidation.side, liquidation.amount, liquidation.client_order_id) == (Side.SELL, held, None)
        assert liquidation.fee_currency == "BTC"
    finally:
        await venue.close()
