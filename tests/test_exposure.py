"""Delta and gamma of a position per instrument kind: units, signs, premium adjustment, expiry."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.risk.exposure import (
    NO_EXPOSURE,
    Exposure,
    OptionMarket,
    collateral_exposure,
    position_exposure,
    total_exposure,
)
from hedgerd.risk.greeks import SECONDS_PER_YEAR, black76

D = Decimal
NOW = 1_800_000_000.0
EXPIRY = NOW + 0.25 * SECONDS_PER_YEAR

SPOT = Instrument("BTC/USDT", InstrumentKind.SPOT, "BTC", "USDT", "USDT", D(1))
LINEAR = Instrument("BTC/USDT:USDT", InstrumentKind.LINEAR, "BTC", "USDT", "USDT", D("0.001"))
INVERSE = Instrument("BTC-PERPETUAL", InstrumentKind.INVERSE, "BTC", "USD", "BTC", D(10))


def option(call: bool, settle: str, size: str = "1") -> Instrument:
    return Instrument("OPT", InstrumentKind.OPTION, "BTC", "USD", settle, D(size), expiry=EXPIRY,
                      strike=D(100_000), option_type=OptionType.CALL if call else OptionType.PUT)


MKT = OptionMarket(forward=95_000.0, vol=0.6)


def test_spot_and_linear_are_contracts_times_size() -> None:
    assert position_exposure(SPOT, D("1.5"), now=NOW) == Exposure(delta=D("1.5"))
    assert position_exposure(LINEAR, D(-250), now=NOW) == Exposure(delta=D("-0.25"))


def test_inverse_long_usd_is_long_usd_over_mark_coins() -> None:
    # 100 contracts x 10 USD = 1000 USD long at 50000 USD/BTC is long 0.02 BTC; short is the mirror.
    assert position_exposure(INVERSE, D(100), now=NOW, mark=D(50_000)).delta == D("0.02")
    assert position_exposure(INVERSE, D(-100), now=NOW, mark=D(50_000)).delta == D("-0.02")


@settings(max_examples=50, deadline=None)
@given(contracts=st.integers(min_value=-10_000, max_value=10_000), mark=st.integers(min_value=1_000, max_value=200_000))
def test_inverse_gamma_is_the_derivative_of_its_delta(contracts: int, mark: int) -> None:
    exp = position_exposure(INVERSE, D(contracts), now=NOW, mark=D(mark))
    h = D(mark) * D("1e-6")
    up = position_exposure(INVERSE, D(contracts), now=NOW, mark=D(mark) + h).delta
    down = position_exposure(INVERSE, D(contracts), now=NOW, mark=D(mark) - h).delta
    assert float((up - down) / (2 * h)) == pytest.approx(exp.gamma, rel=1e-6, abs=1e-300)
    assert exp.gamma * contracts <= 0  # a long inverse position gets shorter in coin as the price rises


@pytest.mark.parametrize("mark", [None, D(0), D(-1)])
def test_inverse_without_a_positive_mark_is_refused(mark: Decimal | None) -> None:
    with pytest.raises(ValueError):
        position_exposure(INVERSE, D(1), now=NOW, mark=mark)


@pytest.mark.parametrize("call", [True, False])
def test_quote_settled_option_is_contracts_times_black76_delta(call: bool) -> None:
    g = black76(forward=95_000.0, strike=100_000.0, t=0.25, vol=0.6, call=call)
    exp = position_exposure(option(call, "USDT", "0.01"), D(-300), now=NOW, option=MKT)
    assert float(exp.delta) == pytest.approx(-3 * g.delta, rel=1e-12)
    assert exp.gamma == pytest.approx(-3 * g.gamma, rel=1e-12)
    assert exp.vega == pytest.approx(-3 * g.vega, rel=1e-12)
    assert (exp.delta > 0) == (not call)  # short calls are short delta, short puts long


@pytest.mark.parametrize("call", [True, False])
def test_coin_settled_option_is_premium_adjusted(call: bool) -> None:
    g = black76(forward=95_000.0, strike=100_000.0, t=0.25, vol=0.6, call=call)
    exp = position_exposure(option(call, "BTC"), D(2), now=NOW, option=MKT)
    assert float(exp.delta) == pytest.approx(2 * (g.delta - g.price / 95_000.0), rel=1e-12)
    # with the venue's mark price in coin, that mark is what is subtracted
    marked = position_exposure(option(call, "BTC"), D(2), now=NOW,
                               option=OptionMarket(forward=95_000.0, vol=0.6, mark_price_coin=0.05))
    assert float(marked.delta) == pytest.approx(2 * (g.delta - 0.05), rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(call=st.booleans(), coin=st.booleans(), strike=st.floats(min_value=50_000, max_value=150_000),
       vol=st.floats(min_value=0.2, max_value=1.5))
def test_option_position_gamma_is_the_derivative_of_its_delta(call: bool, coin: bool, strike: float,
                                                              vol: float) -> None:
    inst = Instrument("OPT", InstrumentKind.OPTION, "BTC", "USD", "BTC" if coin else "USDT", D(1), expiry=EXPIRY,
                      strike=D(repr(strike)), option_type=OptionType.CALL if call else OptionType.PUT)
    f, h = 95_000.0, 95_000.0 * vol * 0.5 * 1e-4

    def delta(x: float) -> float:
        return float(position_exposure(inst, D(-5), now=NOW, option=OptionMarket(forward=x, vol=vol)).delta)

    exp = position_exposure(inst, D(-5), now=NOW, option=OptionMarket(forward=f, vol=vol))
    assert (delta(f + h) - delta(f - h)) / (2 * h) == pytest.approx(exp.gamma, rel=1e-4, abs=1e-12)


def test_expired_option_contributes_nothing_even_without_market_data() -> None:
    for call in (True, False):
        assert position_exposure(option(call, "BTC"), D(10), now=EXPIRY) is NO_EXPOSURE
        assert position_exposure(option(call, "USDT"), D(10), now=EXPIRY + 1) is NO_EXPOSURE


def test_live_option_without_market_data_is_refused() -> None:
    with pytest.raises(ValueError):
        position_exposure(option(True, "BTC"), D(1), now=NOW)


def test_zero_position_needs_nothing() -> None:
    assert position_exposure(INVERSE, D(0), now=NOW) is NO_EXPOSURE
    assert position_exposure(option(True, "BTC"), D(0), now=NOW) is NO_EXPOSURE


def test_book_total_with_collateral() -> None:
    # A Deribit desk: 1 BTC equity, short 2 coin-settled calls, hedged with a long perp.
    call = position_exposure(option(True, "BTC"), D(-2), now=NOW, option=MKT)
    perp = position_exposure(INVERSE, D(3_000), now=NOW, mark=D(95_000))
    book = total_exposure([call, perp, collateral_exposure(D(1))])
    assert book.delta == call.delta + perp.delta + D(1)
    assert book.gamma == pytest.approx(call.gamma + perp.gamma)
    assert book.vega == call.vega
    assert total_exposure([]) == NO_EXPOSURE
