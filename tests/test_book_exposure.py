"""The pure pieces of options and inverse hedging: a book's exposure by source, an order on an inverse
hedge in contracts, the greeks triggers and the gamma policy's decisions."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from hedgerd.book import MarketBook
from hedgerd.config import HedgeConfig, InventorySource
from hedgerd.cost_book import CostBook
from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.killswitch import evaluate_auto_triggers
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, MarketInfo, OptionGreeks, OptionQuote, Side
from hedgerd.policy import AdaptiveBandPolicy, AdaptiveParams, GammaBandPolicy, HedgeLimits
from hedgerd.policy.gamma import gamma_band
from hedgerd.policy.sizing import hedge_order_amount, policy_market, venue_contracts
from hedgerd.risk.book import Holding, InventoryExposure, instrument_delta, inventory_exposure
from hedgerd.risk.greeks import SECONDS_PER_YEAR, black76
from tests.test_adaptive_policy import feed

D = Decimal
NOW = 1_800_000_000.0
QUARTER = NOW + 0.25 * SECONDS_PER_YEAR
MARK = D(50000)
INVERSE = Instrument(symbol="BTC/USD:BTC", kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD", settle="BTC",
                     contract_size=D(10))
LINEAR = Instrument(symbol="BTC/USDT:USDT", kind=InstrumentKind.LINEAR, underlying="BTC", quote="USDT",
                    settle="USDT", contract_size=D("0.001"))


def option(settle: str, size: str = "1", expiry: float = QUARTER, kind: OptionType = OptionType.CALL) -> Instrument:
    quote = "USD" if settle == "BTC" else settle
    return Instrument(symbol=f"BTC/{quote}:{settle}-X-100000-{kind.value[0].upper()}", kind=InstrumentKind.OPTION,
                      underlying="BTC", quote=quote, settle=settle, contract_size=D(size), expiry=expiry,
                      strike=D(100000), option_type=kind)


def quote_for(instrument: Instrument, *, greeks: OptionGreeks | None = None, forward: float = 95000.0,
              iv: float = 0.6) -> OptionQuote:
    model = black76(forward=forward, strike=100000.0, t=0.25, vol=iv, call=instrument.option_type is OptionType.CALL)
    mark = model.price / forward if instrument.coin_settled else model.price
    return OptionQuote(venue="book", symbol=instrument.symbol, mark_price=D(repr(mark)), mark_iv=iv,
                       underlying_price=D(repr(forward)), ts=NOW, greeks=greeks)


def value(holdings: list[Holding]) -> InventoryExposure:
    return inventory_exposure(holdings, quotes={}, mark_of=lambda key: None, fallback_mark=MARK, now=NOW)


def test_spot_linear_and_inverse_holdings_by_source_with_the_inverse_sign_and_units() -> None:
    book = inventory_exposure(
        [Holding("spot", "BTC", D("1.5")), Holding("perp", "BTC/USDT:USDT", D(-250), LINEAR),
         Holding("deribit", "BTC/USD:BTC", D(100), INVERSE), Holding("deribit", "BTC/USD:BTC", D(-300), INVERSE)],
        quotes={}, mark_of=lambda key: None, fallback_mark=D(50000), now=NOW)
    # long 100 x 10 USD at 50,000 = +0.02 BTC, short 300 = -0.06 BTC; a linear -250 x 0.001 = -0.25 BTC
    assert book.by_source == {"spot": D("1.5"), "linear": D("-0.250"), "inverse": D("-0.04")}
    assert book.total == D("1.21")
    assert book.gamma == pytest.approx(-(1000 - 3000) / 50000 ** 2)  # short USD: long gamma
    assert book.unvalued == () and book.held_options == ()


def test_an_inverse_holding_is_valued_at_its_own_mid_else_the_hedge_mid_else_not_at_all() -> None:
    holding = [Holding("deribit", "BTC/USD:BTC-FUT", D(100), INVERSE)]
    own = inventory_exposure(holding, quotes={}, mark_of=lambda key: D(40000), fallback_mark=D(50000), now=NOW)
    assert own.total == D("0.025")
    none = inventory_exposure(holding, quotes={}, mark_of=lambda key: None, fallback_mark=None, now=NOW)
    assert none.total == 0 and none.unvalued == ("BTC/USD:BTC-FUT on deribit: no price to value it",)


def test_options_quote_settled_and_coin_settled_premium_adjusted() -> None:
    usdt, coin = option("USDT", "0.01"), option("BTC")
    quotes = {("book", usdt.symbol): quote_for(usdt), ("book", coin.symbol): quote_for(coin)}
    book = inventory_exposure([Holding("book", usdt.symbol, D(-300), usdt), Holding("book", coin.symbol, D(2), coin)],
                              quotes=quotes, mark_of=lambda key: None, fallback_mark=None, now=NOW)
    # docs/instruments.md's worked examples: short 3 BTC of calls at Δ 0.4916, long 2 coin calls at 0.4916 - 0.0978
    greeks = black76(forward=95000.0, strike=100000.0, t=0.25, vol=0.6, call=True)
    expected = -3 * greeks.delta + 2 * (greeks.delta - greeks.price / 95000.0)
    assert float(book.by_source["option"]) == pytest.approx(expected, abs=1e-12)
    assert float(book.by_source["option"]) == pytest.approx(-3 * 0.4916 + 2 * 0.3938, abs=2e-3)
    assert book.held_options == (("book", usdt.symbol), ("book", coin.symbol))
    assert book.vega == pytest.approx((-3 + 2) * greeks.vega / 100)  # per vol point
    assert book.option_venue is None and book.disagreement is None  # the quotes carry no venue greeks


def test_an_expired_option_leaves_the_book_and_needs_no_quote() -> None:
    expired = option("BTC", expiry=NOW - 1)
    book = value([Holding("book", expired.symbol, D(5), expired)])
    assert book.total == 0 and book.held_options == () and book.unvalued == ()


def test_an_option_without_a_quote_is_held_but_unvalued() -> None:
    call = option("BTC")
    book = value([Holding("book", call.symbol, D(1), call)])
    assert book.held_options == (("book", call.symbol),)
    assert book.unvalued == (f"{call.symbol} on book: no option quote",)


def test_venue_greeks_are_used_when_configured_and_the_disagreement_is_measured() -> None:
    call = option("BTC")
    quotes = {("book", call.symbol): quote_for(call, greeks=OptionGreeks(delta=0.45, gamma=2e-5, vega=150.0))}
    holding = [Holding("book", call.symbol, D(2), call)]
    by_model = inventory_exposure(holding, quotes=quotes, mark_of=lambda k: None, fallback_mark=None, now=NOW)
    by_venue = inventory_exposure(holding, quotes=quotes, mark_of=lambda k: None, fallback_mark=None, now=NOW,
                                  greeks_source="venue")
    assert by_venue.total == D("0.90") and by_venue.gamma == pytest.approx(4e-5) and by_venue.vega == 300.0
    assert by_model.disagreement == by_venue.disagreement == abs(by_model.total - D("0.90"))
    no_greeks = {("book", call.symbol): quote_for(call)}
    missing = inventory_exposure(holding, quotes=no_greeks, mark_of=lambda k: None, fallback_mark=None, now=NOW,
                                 greeks_source="venue")
    assert missing.unvalued == (f"{call.symbol} on book: the venue published no greeks",)
    assert missing.disagreement is None


def test_a_hedge_position_on_an_inverse_contract_is_valued_at_the_mark() -> None:
    assert instrument_delta(INVERSE, D(-117), D(50000)) is not None
    assert instrument_delta(INVERSE, D(-117), D(50000)).delta == D("-0.0234")  # type: ignore[union-attr]
    assert instrument_delta(INVERSE, D(-117), None) is None
    assert instrument_delta(None, D("0.3"), None).delta == D("0.3")  # type: ignore[union-attr]  # legacy base units


def _market(instrument: Instrument | None, *, size: str = "10", min_amount: str = "0",
            max_amount: str | None = None) -> MarketInfo:
    return MarketInfo(symbol="X", base="BTC", quote="USD", amount_step=D(1), price_step=D("0.5"),
                      contract_size=D(size), min_amount=D(min_amount),
                      max_amount=None if max_amount is None else D(max_amount), instrument=instrument)


def test_an_order_on_an_inverse_hedge_is_in_contracts_rounded_toward_zero() -> None:
    inverse = _market(INVERSE)
    assert policy_market(inverse) is None  # the policy sizes in coin without the USD contract size
    assert hedge_order_amount(D("0.0234"), inverse, D(50000)) == D(117)
    assert hedge_order_amount(D("0.02349"), inverse, D(50000)) == D(117)
    assert str(hedge_order_amount(D("0.0234"), inverse, D(50000))) == "117"
    assert hedge_order_amount(D("0.0001"), inverse, D(50000)) == 0  # half a contract: nothing
    assert hedge_order_amount(D("0.0234"), _market(INVERSE, min_amount="200"), D(50000)) == 0
    assert hedge_order_amount(D("0.0234"), _market(INVERSE, max_amount="100"), D(50000)) == D(100)
    linear = _market(LINEAR, size="0.001")
    assert policy_market(linear) is linear and hedge_order_amount(D("0.25"), linear, D(50000)) == D(250)
    legacy = _market(None, size="1")
    assert hedge_order_amount(D("0.25"), legacy, D(50000)) == D("0.25")
    assert venue_contracts(D(117), inverse) == (D(117), D(117))  # contracts in, contracts journaled
    assert venue_contracts(D("0.25"), _market(None, size="0.001")) == (D(250), D("0.250"))  # legacy: base units


def test_stale_greeks_and_a_disagreement_halt_with_a_clear_reason_after_stale_prices() -> None:
    fresh = {"BTC/USD:BTC": (1.0, 5.0)}
    assert evaluate_auto_triggers(price_ages=fresh, delta_notionals={}, consecutive_errors=0,
                                  max_consecutive_errors=5, greeks_ages={"BTC": (3.0, 10.0)},
                                  greeks_disagreements={"BTC": (D("0.05"), D("0.1"))}) is None
    stale = evaluate_auto_triggers(price_ages=fresh, delta_notionals={}, consecutive_errors=0,
                                   max_consecutive_errors=5, greeks_ages={"BTC": (12.5, 10.0)},
                                   greeks_disagreements={"BTC": (D("0.5"), D("0.1"))})
    assert stale == "stale greeks: BTC oldest option quote 12.5s old (max 10s)"
    apart = evaluate_auto_triggers(price_ages=fresh, delta_notionals={}, consecutive_errors=0,
                                   max_consecutive_errors=5, greeks_ages={"BTC": (3.0, 10.0)},
                                   greeks_disagreements={"BTC": (D("0.5"), D("0.1"))})
    assert apart == "greeks disagreement: BTC options delta by model and by venue differ by 0.500000 > 0.1"
    not_a_number = evaluate_auto_triggers(price_ages=fresh, delta_notionals={}, consecutive_errors=0,
                                          max_consecutive_errors=5, greeks_ages={"BTC": (math.nan, 10.0)})
    assert not_a_number is not None and not_a_number.startswith("stale greeks: BTC")  # fails closed
    stale_price = evaluate_auto_triggers(price_ages={"BTC/USD:BTC": (9.0, 5.0)}, delta_notionals={},
                                         consecutive_errors=0, max_consecutive_errors=5,
                                         greeks_ages={"BTC": (12.5, 10.0)})
    assert stale_price is not None and stale_price.startswith("stale price")


def limits(threshold: str = "0.05") -> HedgeLimits:
    return HedgeLimits(threshold=D(threshold), target=D(0), min_order=D("0.001"), max_order=D(10),
                       max_position=D(100))


PARAMS = AdaptiveParams(warmup=60.0, cost_bps=D(5), risk_aversion=1e-3, max_band=D(5))


def test_the_gamma_policy_decides_as_the_adaptive_one_when_gamma_is_negligible() -> None:
    adaptive, gamma = AdaptiveBandPolicy(PARAMS), GammaBandPolicy(PARAMS, negligible_gamma=1e-6)
    for policy in (adaptive, gamma):
        feed(policy, seconds=120, vol=0.8, fill="0.05")
    gamma.observe_gamma(5e-7)
    for delta in ("0.01", "0.08", "-0.4", "1.5"):
        assert gamma.decide(D(delta), D(0), limits(), None, price=D(60000)) == \
            adaptive.decide(D(delta), D(0), limits(), None, price=D(60000))
    assert gamma.trigger == adaptive.trigger and gamma.gamma_band is not None
    assert gamma.gamma_band.source == "inventory"


def test_the_gamma_policy_widens_the_band_with_the_books_gamma_and_trades_back_to_its_edge() -> None:
    adaptive, gamma = AdaptiveBandPolicy(PARAMS), GammaBandPolicy(PARAMS, negligible_gamma=1e-9)
    for policy in (adaptive, gamma):
        feed(policy, seconds=120, vol=0.8, fill="0.005")  # little client flow: an inventory band of ~0.2 BTC
    gamma.observe_gamma(-7e-4)  # short 50 BTC of calls (docs/instruments.md): w ≈ 0.28 BTC at 60,000
    assert adaptive.decide(D("0.25"), D(0), limits(), None, price=D(60000)) is not None
    inventory_trigger = adaptive.trigger
    assert inventory_trigger is not None
    assert gamma.decide(D("0.25"), D(0), limits(), None, price=D(60000)) is None  # inside the wider band
    expected = gamma_band(gamma=-7e-4, price=60000.0, cost=5e-4, risk_aversion=1e-3,
                          inventory_band=float(inventory_trigger), negligible_gamma=1e-9)
    assert gamma.trigger is not None and float(gamma.trigger) == pytest.approx(expected.half_width, abs=1e-8)
    assert gamma.trigger > inventory_trigger
    decision = gamma.decide(D("2"), D(0), limits(), None, price=D(60000))
    assert decision is not None and "gamma" in decision.reason
    band = adaptive.current_band(D(60000))
    assert band is not None
    # back to the widened band's rebalance point: moved out by as much as the trigger
    assert decision.signed_amount == -(D(2) - (band.back_to(1) + gamma.trigger - inventory_trigger))


def test_the_gamma_band_is_capped_at_max_band_and_used_while_warming_up() -> None:
    gamma = GammaBandPolicy(AdaptiveParams(warmup=60.0, cost_bps=D(5), risk_aversion=1e-3, max_band=D("0.4")))
    gamma.observe_gamma(-1e-2)  # huge: w of several BTC
    assert gamma.decide(D("0.3"), D(0), limits("0.05"), None, price=D(60000)) is None  # not warmed up, still wider
    assert gamma.trigger == D("0.4")
    decision = gamma.decide(D("1"), D(0), limits("0.05"), None, price=D(60000))
    assert decision is not None and decision.signed_amount == -(D(1) - (D("0.4") - D("0.05")))


def test_an_inverse_hedge_fills_cost_is_valued_in_coin_and_its_coin_fee_in_the_quote() -> None:
    book = CostBook(Metrics(), {})
    book.track("BTC", "deribit", "BTC/USD:BTC", INVERSE)
    book.decided([HedgeIntent(intent_id=1, client_order_id="hgd1", underlying="BTC", venue="deribit",
                              symbol="BTC/USD:BTC", side=Side.BUY, amount=D(100), created_at=NOW,
                              decision_mid=D(50000), decision_half_spread=D("0.5"))])
    # 100 contracts of 10 USD bought at 50,010: 1,000 USD = 0.0199960... BTC; fee 0.00001 BTC
    book.on_fills([Fill(venue="deribit", trade_id="T1", symbol="BTC/USD:BTC", side=Side.BUY, amount=D(100),
                        price=D(50010), fee=D("0.00001"), fee_currency="BTC", ts=NOW, client_order_id="hgd1")])
    cost = book.by_underlying["BTC"]
    coin = D(1000) / D(50010)
    assert cost.fee == D("0.00001") * D(50010)  # in USD, not 0.00001 "USD"
    assert cost.spread == D("0.5") * coin
    assert cost.spread + cost.slippage == D(10) * coin  # paid 10 USD over mid on 0.02 BTC: 0.20 USD


def test_a_listed_derivative_the_venue_no_longer_lists_is_not_valued_rather_than_taken_for_base_units() -> None:
    book = MarketBook()
    call = option("BTC")
    book.add_markets("deribit", {call.symbol: _market(call)})
    cfg = HedgeConfig(underlying="BTC", venue="hedge", symbol="BTC/USD:BTC", inventory=[
        InventorySource(venue="deribit", asset="BTC/USD:BTC-261225-90000-P"),  # expired and delisted
        InventorySource(venue="legacy", asset="BTC/USDT:USDT")])  # a venue without instruments: base units
    positions = {("deribit", "BTC/USD:BTC-261225-90000-P"): D(5), ("legacy", "BTC/USDT:USDT"): D("0.5")}
    holdings = book.holdings(cfg, lambda venue, asset: positions.get((venue, asset), D(0)))
    assert [h.unlisted for h in holdings] == [True, False]
    exposure = value(holdings)
    assert exposure.total == D("0.5")
    assert exposure.unvalued == ("BTC/USD:BTC-261225-90000-P on deribit: not listed by the venue",)
