"""Hedging cost decomposition (hedgerd.risk.cost): fee valuation in any currency, spread and
slippage against the decision quote, and the sum that must always hold."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from hedgerd.config import SimSettings, VenueConfig, VenueKind, VenueRole
from hedgerd.cost_book import CostBook
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, PriceUpdate, Side
from hedgerd.risk.cost import (
    Conversion,
    DecisionQuote,
    FeeStatus,
    HedgeCost,
    add_fill,
    execution_cost,
    value_fee,
)

D = Decimal
PERP = "BTC/USDT:USDT"


def fill(*, side: Side = Side.BUY, amount: str = "2", price: str = "100.2", fee: str = "0",
         fee_currency: str | None = None, ts: float = 1000.0) -> Fill:
    return Fill(venue="perp", trade_id="t1", symbol=PERP, side=side, amount=D(amount), price=D(price),
                fee=D(fee), fee_currency=fee_currency, ts=ts, client_order_id="hd-1")


def bnb_at(price: str, ts: float) -> Callable[[str, str], Conversion | None]:
    def lookup(currency: str, quote: str) -> Conversion | None:
        return Conversion(D(price), ts) if (currency, quote) == ("BNB", "USDT") else None
    return lookup


def no_conversion(currency: str, quote: str) -> Conversion | None:
    return None


def test_fee_in_quote_or_settle_currency_is_taken_as_is() -> None:
    assert value_fee(fill(fee="0.08", fee_currency="USDT"), no_conversion, max_age=60).value == D("0.08")
    assert value_fee(fill(fee="0.08"), no_conversion, max_age=60).value == D("0.08")


def test_fee_in_base_currency_is_valued_at_the_fill_price() -> None:
    fee = value_fee(fill(fee="0.001", fee_currency="BTC", price="100"), no_conversion, max_age=60)
    assert fee.value == D("0.1") and fee.status is FeeStatus.OK


def test_fee_in_a_third_currency_is_valued_at_its_conversion_price() -> None:
    # 0.0002 BNB at 600 USDT = 0.12 USDT
    fee = value_fee(fill(fee="0.0002", fee_currency="BNB"), bnb_at("600", 990.0), max_age=60)
    assert fee == type(fee)(D("0.12"), FeeStatus.OK)


def test_missing_or_stale_conversion_is_flagged_never_zero() -> None:
    missing = value_fee(fill(fee="0.0002", fee_currency="BNB"), no_conversion, max_age=60)
    assert missing.value is None and missing.status is FeeStatus.MISSING
    stale = value_fee(fill(fee="0.0002", fee_currency="BNB", ts=1000.0), bnb_at("600", 900.0),
                      max_age=60)
    assert stale.value is None and stale.status is FeeStatus.STALE
    cost = HedgeCost()
    added = add_fill(cost, fill(fee="0.0002", fee_currency="BNB"), None, no_conversion, max_age=60)
    assert added.fee_status is FeeStatus.MISSING and "fee" not in added.parts
    assert cost.unvalued_fees == 1 and cost.unmeasured_fills == 1 and cost.total == 0


def test_spread_and_slippage_against_the_decision_quote() -> None:
    # decided at bid 99.9 / ask 100.1 (mid 100, half spread 0.1); bought 2 at 100.2
    quote = DecisionQuote.from_touch(D("99.9"), D("100.1"))
    spread, slippage = execution_cost(fill(side=Side.BUY, price="100.2"), quote)
    assert (spread, slippage) == (D("0.2"), D("0.2"))  # shortfall 0.4 = 0.2 spread + 0.2 slippage
    # sold 2 at 99.95: better than the bid, slippage negative
    spread, slippage = execution_cost(fill(side=Side.SELL, price="99.95"), quote)
    assert (spread, slippage) == (D("0.2"), D("-0.1"))


def test_add_fill_accumulates_and_reports_what_it_added() -> None:
    cost = HedgeCost()
    quote = DecisionQuote(mid=D(100), half_spread=D("0.1"))
    added = add_fill(cost, fill(price="100.2", fee="0.0002", fee_currency="BNB"), quote,
                     bnb_at("600", 999.0), max_age=60)
    assert added.parts == {"fee": D("0.12"), "spread": D("0.2"), "slippage": D("0.2")}
    assert cost.total == D("0.52")
    assert cost.as_status() == {"fee": "0.1200", "spread": "0.2", "slippage": "0.2", "funding": "0",
                                "total": "0.5200", "unvalued_fees": 0, "unmeasured_fills": 0, "unvalued_funding": 0}


@settings(deadline=None)
@given(st.sampled_from(list(Side)), st.decimals("0.001", "10", places=3), st.decimals("90", "110", places=2),
       st.decimals("95", "105", places=2), st.decimals("0", "1", places=2), st.decimals("0", "1", places=4))
def test_parts_always_sum_to_the_shortfall_plus_fee(side: Side, amount: Decimal, price: Decimal, mid: Decimal,
                                                    half_spread: Decimal, fee: Decimal) -> None:
    cost = HedgeCost()
    f = Fill(venue="perp", trade_id="x", symbol=PERP, side=side, amount=amount, price=price, fee=fee,
             fee_currency="USDT", ts=1.0)
    add_fill(cost, f, DecisionQuote(mid, half_spread), no_conversion, max_age=60)
    assert cost.total == side.sign * (price - mid) * amount + fee
    assert sum(cost.parts().values()) == cost.total


def test_unknown_symbol_shape_is_an_error() -> None:
    with pytest.raises(ValueError):
        value_fee(Fill(venue="v", trade_id="t", symbol="BTCUSDT", side=Side.BUY, amount=D(1), price=D(1),
                       fee=D(1), fee_currency="BNB"), no_conversion, max_age=60)


def test_the_cost_book_values_a_bnb_fee_at_the_venues_quote_and_flags_it_when_that_quote_is_stale() -> None:
    metrics = Metrics()
    prices = {("perp", "BNB/USDT"): PriceUpdate("perp", "BNB/USDT", D("599"), D("601"), ts=995.0)}
    book = CostBook(metrics, prices, max_conversion_age=60)
    book.track("BTC", "perp", PERP)
    book.decided([HedgeIntent(1, "hd-1", "BTC", "perp", PERP, Side.BUY, D(2), 990.0,
                              decision_mid=D(100), decision_half_spread=D("0.1"))])
    book.on_fills([fill(price="100.2", fee="0.0002", fee_currency="BNB", ts=1000.0),
                   Fill(venue="perp", trade_id="desk", symbol=PERP, side=Side.BUY, amount=D(1), price=D(1))])
    assert book.status("BTC") == {"fee": "0.1200", "spread": "0.2", "slippage": "0.2", "funding": "0",
                                  "total": "0.5200", "unvalued_fees": 0, "unmeasured_fills": 0, "unvalued_funding": 0}
    # later: the BNB quote is 100 s old at the fill; a fill of an order decided before a restart
    late = Fill(venue="perp", trade_id="t2", symbol=PERP, side=Side.SELL, amount=D(1), price=D(100),
                fee=D("0.0001"), fee_currency="BNB", ts=1095.0, client_order_id="hd-unknown")
    book.on_fills([late])
    assert book.total("BTC") == D("0.52")  # nothing guessed
    assert book.status("BTC") == {"fee": "0.1200", "spread": "0.2", "slippage": "0.2", "funding": "0",
                                  "total": "0.5200", "unvalued_fees": 1, "unmeasured_fills": 1, "unvalued_funding": 0}
    sample = metrics.registry.get_sample_value
    assert sample("hedgerd_fee_unvalued_total", {"venue": "perp", "currency": "BNB",
                                                 "reason": "stale_conversion"}) == 1
    assert sample("hedgerd_hedge_cost", {"underlying": "BTC", "kind": "fee"}) == pytest.approx(0.12)
    assert sample("hedgerd_hedge_cost", {"underlying": "BTC", "kind": "funding"}) == 0


def test_a_simulated_third_fee_currency_needs_its_price() -> None:
    with pytest.raises(ValidationError, match="fee_currency needs fee_currency_price"):
        SimSettings(symbol=PERP, fee_currency="BNB")
    with pytest.raises(ValidationError, match="fee_currency_discount"):
        SimSettings(symbol=PERP, fee_currency="BNB", fee_currency_price=D(600), fee_currency_discount=D(1))


def test_the_readme_worked_example() -> None:
    quote = DecisionQuote.from_touch(D(59994), D(60006))
    bnb_fee = (D("0.5") * 59990 * D("0.0005") * D("0.9") / 600).quantize(D("1e-8"))
    cost = HedgeCost()
    hedge = Fill(venue="perp", trade_id="t", symbol=PERP, side=Side.SELL, amount=D("0.5"), price=D(59990),
                 fee=bnb_fee, fee_currency="BNB", ts=1000.0, client_order_id="hd-1")
    add_fill(cost, hedge, quote, bnb_at("600", 999.0), max_age=60)
    assert (bnb_fee, cost.fee, cost.spread, cost.slippage, cost.total) == (
        D("0.02249625"), D("13.49775"), 3, 2, D("18.49775"))
    stale = HedgeCost()
    add_fill(stale, hedge, quote, bnb_at("600", 880.0), max_age=60)  # the BNB quote 2 minutes old
    assert (stale.total, stale.unvalued_fees) == (5, 1)


def test_price_symbols_must_be_unified_symbols() -> None:
    with pytest.raises(ValidationError, match="not a unified symbol"):
        VenueConfig(name="binance", role=VenueRole.HEDGE, kind=VenueKind.CCXT, price_symbols=["BNBUSDT"])
    assert VenueConfig(name="binance", role=VenueRole.HEDGE, price_symbols=["BNB/USDT:USDT"]).price_symbols == [
        "BNB/USDT:USDT"]


def test_the_cost_book_falls_back_to_the_fee_currencys_perpetual() -> None:
    prices = {("perp", "BNB/USDT:USDT"): PriceUpdate("perp", "BNB/USDT:USDT", D(599), D(601), ts=999.0)}
    book = CostBook(Metrics(), prices)
    book.track("BTC", "perp", PERP)
    book.on_fills([fill(fee="0.0002", fee_currency="BNB")])
    assert book.by_underlying["BTC"].fee == D("0.12")


def test_a_fill_the_arithmetic_fails_on_is_counted_unmeasured_and_the_book_goes_on() -> None:
    prices = {("perp", "BNB/USDT"): PriceUpdate("perp", "BNB/USDT", D("sNaN"), D(601), ts=999.0)}
    book = CostBook(Metrics(), prices)
    book.track("BTC", "perp", PERP)
    book.on_fills([fill(fee="0.0002", fee_currency="BNB"), fill(fee="0.08", fee_currency="USDT")])
    assert (book.by_underlying["BTC"].unmeasured_fills, book.by_underlying["BTC"].fee) == (2, D("0.08"))
