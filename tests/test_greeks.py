"""Black-76 greeks: textbook values, put-call parity, derivatives, premium adjustment, edge cases."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.risk.greeks import SECONDS_PER_YEAR, black76, norm_cdf, premium_adjusted, year_fraction

N = NormalDist().cdf

forwards = st.floats(min_value=100.0, max_value=200_000.0)
moneyness = st.floats(min_value=0.3, max_value=3.0)
times = st.floats(min_value=1e-3, max_value=3.0)
vols = st.floats(min_value=0.05, max_value=3.0)
rates = st.floats(min_value=-0.02, max_value=0.15)


def test_hull_black76_put_on_futures() -> None:
    # Hull, "Options, Futures and Other Derivatives", Black's model example: a European put on a
    # futures price F=20, K=20, r=9 %, T=4 months, v=25 % is worth 1.12. By hand:
    # d1 = (ln(F/K) + v²T/2)/(v√T) = v√T/2, d2 = -d1, p = e^{-rT}(K N(-d2) - F N(-d1)).
    f, k, r, t, v = 20.0, 20.0, 0.09, 4.0 / 12.0, 0.25
    d1 = v * math.sqrt(t) / 2.0
    by_hand = math.exp(-r * t) * (k * N(d1) - f * N(-d1))
    g = black76(forward=f, strike=k, t=t, vol=v, rate=r, call=False)
    assert g.price == pytest.approx(by_hand, rel=1e-12)
    assert round(g.price, 2) == 1.12
    # delta_put = -e^{-rT} N(-d1); gamma = e^{-rT} φ(d1)/(F v √T); vega = e^{-rT} F φ(d1) √T
    pdf = math.exp(-d1 * d1 / 2.0) / math.sqrt(2.0 * math.pi)
    assert g.delta == pytest.approx(-math.exp(-r * t) * N(-d1), rel=1e-12)
    assert g.gamma == pytest.approx(math.exp(-r * t) * pdf / (f * v * math.sqrt(t)), rel=1e-12)
    assert g.vega == pytest.approx(math.exp(-r * t) * f * pdf * math.sqrt(t), rel=1e-12)


def test_black76_call_off_the_money_by_hand() -> None:
    # F=100000, K=110000, T=0.25, v=60 %, r=0: c = F N(d1) - K N(d2), d1 = (ln(F/K)+v²T/2)/(v√T)
    f, k, t, v = 100_000.0, 110_000.0, 0.25, 0.6
    d1 = (math.log(f / k) + v * v * t / 2.0) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    g = black76(forward=f, strike=k, t=t, vol=v, call=True)
    assert g.price == pytest.approx(f * N(d1) - k * N(d2), rel=1e-12)
    assert g.delta == pytest.approx(N(d1), rel=1e-12)
    assert 0.0 < g.delta < 0.5  # out of the money


@settings(max_examples=200, deadline=None)
@given(f=forwards, m=moneyness, t=times, v=vols, r=rates)
def test_put_call_parity(f: float, m: float, t: float, v: float, r: float) -> None:
    k = f * m
    c = black76(forward=f, strike=k, t=t, vol=v, rate=r, call=True)
    p = black76(forward=f, strike=k, t=t, vol=v, rate=r, call=False)
    disc = math.exp(-r * t)
    assert c.price - p.price == pytest.approx(disc * (f - k), abs=1e-9 * f)
    assert c.delta - p.delta == pytest.approx(disc, abs=1e-12)
    assert c.gamma == pytest.approx(p.gamma, rel=1e-12, abs=1e-300)
    assert c.vega == pytest.approx(p.vega, rel=1e-12, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(f=forwards, m=st.floats(min_value=0.6, max_value=1.6), t=st.floats(min_value=0.01, max_value=2.0),
       v=st.floats(min_value=0.1, max_value=1.5), call=st.booleans())
def test_delta_gamma_vega_are_derivatives(f: float, m: float, t: float, v: float, call: bool) -> None:
    k = f * m
    g = black76(forward=f, strike=k, t=t, vol=v, call=call)
    h = f * v * math.sqrt(t) * 1e-4  # a step small against the distribution's width v√T
    up = black76(forward=f + h, strike=k, t=t, vol=v, call=call)
    down = black76(forward=f - h, strike=k, t=t, vol=v, call=call)
    assert (up.price - down.price) / (2 * h) == pytest.approx(g.delta, abs=1e-6)
    assert (up.delta - down.delta) / (2 * h) == pytest.approx(g.gamma, rel=1e-4, abs=1e-9 / f)
    dv = 1e-5
    vup = black76(forward=f, strike=k, t=t, vol=v + dv, call=call)
    vdown = black76(forward=f, strike=k, t=t, vol=v - dv, call=call)
    assert (vup.price - vdown.price) / (2 * dv) == pytest.approx(g.vega, rel=1e-4, abs=1e-6 * f)


def test_theta_is_minus_the_time_derivative() -> None:
    f, k, t, v, r = 50_000.0, 52_000.0, 0.3, 0.7, 0.05
    dt = 1e-6
    for call in (True, False):
        g = black76(forward=f, strike=k, t=t, vol=v, rate=r, call=call)
        later = black76(forward=f, strike=k, t=t + dt, vol=v, rate=r, call=call)
        earlier = black76(forward=f, strike=k, t=t - dt, vol=v, rate=r, call=call)
        assert -(later.price - earlier.price) / (2 * dt) == pytest.approx(g.theta, rel=1e-5)


@settings(max_examples=100, deadline=None)
@given(f=forwards, m=moneyness, t=times, v=vols, call=st.booleans())
def test_premium_adjusted_delta_is_the_coin_value_sensitivity(f: float, m: float, t: float, v: float,
                                                              call: bool) -> None:
    # A coin-settled option is worth C/F coins; Deribit's delta Δ - C/F equals F ∂(C/F)/∂F.
    k = f * m
    g = black76(forward=f, strike=k, t=t, vol=v, call=call)
    delta, gamma = premium_adjusted(g, f)
    assert delta == pytest.approx(g.delta - g.price / f, abs=1e-15)
    h = f * v * math.sqrt(t) * 1e-4

    def coin_value(x: float) -> float:
        return black76(forward=x, strike=k, t=t, vol=v, call=call).price / x

    assert f * (coin_value(f + h) - coin_value(f - h)) / (2 * h) == pytest.approx(delta, abs=1e-6)

    def pa_delta(x: float) -> float:
        return premium_adjusted(black76(forward=x, strike=k, t=t, vol=v, call=call), x)[0]

    assert (pa_delta(f + h) - pa_delta(f - h)) / (2 * h) == pytest.approx(gamma, rel=1e-3, abs=1e-9 / f)


def test_premium_adjusted_call_delta_is_below_one_deep_in_the_money() -> None:
    # Deep ITM a coin call is worth ~(F-K)/F coins, so its adjusted delta tends to K/F, not 1.
    g = black76(forward=100_000.0, strike=50_000.0, t=0.1, vol=0.2, call=True)
    delta, _ = premium_adjusted(g, 100_000.0)
    assert delta == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize(("f", "k", "call", "delta", "price"), [
    (110.0, 100.0, True, 1.0, 10.0),
    (90.0, 100.0, True, 0.0, 0.0),
    (100.0, 100.0, True, 0.5, 0.0),
    (110.0, 100.0, False, 0.0, 0.0),
    (90.0, 100.0, False, -1.0, 10.0),
    (100.0, 100.0, False, -0.5, 0.0),
])
@pytest.mark.parametrize(("t", "vol"), [(0.0, 0.5), (-1.0, 0.5), (0.5, 0.0), (0.5, -0.1)])
def test_expired_or_zero_vol_is_intrinsic_with_finite_greeks(f: float, k: float, call: bool, delta: float,
                                                             price: float, t: float, vol: float) -> None:
    g = black76(forward=f, strike=k, t=t, vol=vol, call=call)
    assert g.price == pytest.approx(price)
    assert g.delta == pytest.approx(delta)
    assert (g.gamma, g.vega) == (0.0, 0.0)


def test_deep_in_and_out_of_the_money_stay_in_range() -> None:
    for k in (1e-3, 1e9):
        for call in (True, False):
            g = black76(forward=100.0, strike=k, t=1.0, vol=0.8, call=call)
            assert all(math.isfinite(x) for x in (g.price, g.delta, g.gamma, g.vega, g.theta))
            assert g.price >= 0.0
            assert -1.0 <= g.delta <= 1.0
            assert g.gamma >= 0.0
    assert black76(forward=100.0, strike=1e9, t=1.0, vol=0.8, call=False).delta == pytest.approx(-1.0)
    assert black76(forward=100.0, strike=1e-3, t=1.0, vol=0.8, call=True).delta == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_forward_or_strike_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError):
        black76(forward=bad, strike=100.0, t=1.0, vol=0.5, call=True)
    with pytest.raises(ValueError):
        black76(forward=100.0, strike=bad, t=1.0, vol=0.5, call=True)


def test_nan_time_or_vol_is_rejected() -> None:
    with pytest.raises(ValueError):
        black76(forward=100.0, strike=100.0, t=math.nan, vol=0.5, call=True)
    with pytest.raises(ValueError):
        black76(forward=100.0, strike=100.0, t=1.0, vol=math.nan, call=True)


def test_year_fraction_and_norm_cdf() -> None:
    assert year_fraction(SECONDS_PER_YEAR, 0.0) == 1.0
    assert year_fraction(1_000.0, 2_000.0) == 0.0
    assert norm_cdf(0.0) == 0.5
    assert norm_cdf(-30.0) > 0.0  # erfc keeps the far tail instead of rounding 1 - x to 0
