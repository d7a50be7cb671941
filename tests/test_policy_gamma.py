"""The gamma-aware band: the Whalley-Wilmott width, its scaling, and the fallback to the inventory band."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.policy.adaptive import optimal_band
from hedgerd.policy.gamma import gamma_band, whalley_wilmott_half_width

gammas = st.floats(min_value=1e-9, max_value=1e-2)
prices = st.floats(min_value=1.0, max_value=200_000.0)
costs = st.floats(min_value=1e-5, max_value=1e-2)
aversions = st.floats(min_value=1e-6, max_value=1.0)


def test_by_hand() -> None:
    # w = (3 c Γ² S / (2 a))^(1/3): c = 5 bp, Γ = 2e-4 BTC per USD, S = 100000 USD, a = 1e-3 per USD
    # gives 3 x 5e-4 x 4e-8 x 1e5 / 2e-3 = 3e-3, so w = 0.3e-2^(1/3) ≈ 0.1442 BTC.
    w = whalley_wilmott_half_width(gamma=2e-4, price=100_000.0, cost=5e-4, risk_aversion=1e-3)
    assert w == pytest.approx(3e-3 ** (1 / 3), rel=1e-12)
    assert w == whalley_wilmott_half_width(gamma=-2e-4, price=100_000.0, cost=5e-4, risk_aversion=1e-3)


@settings(deadline=None)
@given(g=gammas, s=prices, c=costs, a=aversions)
def test_scaling(g: float, s: float, c: float, a: float) -> None:
    w = whalley_wilmott_half_width(gamma=g, price=s, cost=c, risk_aversion=a)
    assert whalley_wilmott_half_width(gamma=8 * g, price=s, cost=c, risk_aversion=a) == pytest.approx(4 * w)
    assert whalley_wilmott_half_width(gamma=g, price=s, cost=8 * c, risk_aversion=a) == pytest.approx(2 * w)
    assert whalley_wilmott_half_width(gamma=g, price=s, cost=c, risk_aversion=8 * a) == pytest.approx(w / 2)


@settings(deadline=None)
@given(g=gammas, s=prices, c=costs, a=aversions, vol=st.floats(min_value=1e-3, max_value=1e3))
def test_is_the_adaptive_cube_root_law_with_gamma_driven_variance(g: float, s: float, c: float, a: float,
                                                                  vol: float) -> None:
    # Price variance rate vol² moves the deviation at Γ² vol²; the adaptive law's penalty is a vol² / 2.
    trigger, _ = optimal_band(cost_per_unit=c * s, order_cost=0.0, flow_variance=g * g * vol * vol,
                              risk_penalty=a * vol * vol / 2)
    assert whalley_wilmott_half_width(gamma=g, price=s, cost=c, risk_aversion=a) == pytest.approx(trigger)


def test_degenerate_inputs() -> None:
    assert whalley_wilmott_half_width(gamma=0.0, price=1.0, cost=1e-3, risk_aversion=1.0) == 0.0
    assert whalley_wilmott_half_width(gamma=1e-3, price=1.0, cost=0.0, risk_aversion=1.0) == 0.0
    assert whalley_wilmott_half_width(gamma=1e-3, price=1.0, cost=1e-3, risk_aversion=0.0) == math.inf
    for bad in ({"price": 0.0}, {"cost": -1.0}, {"risk_aversion": -1.0}, {"gamma": math.nan}):
        kwargs = {"gamma": 1e-3, "price": 1.0, "cost": 1e-3, "risk_aversion": 1.0} | bad
        with pytest.raises(ValueError):
            whalley_wilmott_half_width(**kwargs)


def test_negligible_gamma_falls_back_to_the_inventory_band_exactly() -> None:
    for gamma in (0.0, 1e-9, -1e-9):
        band = gamma_band(gamma=gamma, price=100_000.0, cost=5e-4, risk_aversion=1e-3, inventory_band=0.37,
                          negligible_gamma=1e-9)
        assert (band.half_width, band.source) == (0.37, "inventory")
    band = gamma_band(gamma=2e-9, price=100_000.0, cost=5e-4, risk_aversion=1e-3, inventory_band=0.37,
                      negligible_gamma=1e-9)
    assert band.source == "gamma"
    assert band.half_width == pytest.approx(0.37, rel=1e-6)  # continuous across the threshold


@settings(deadline=None)
@given(g=gammas, s=prices, c=costs, a=aversions, inv=st.floats(min_value=0.0, max_value=100.0))
def test_combined_band_adds_the_cubes(g: float, s: float, c: float, a: float, inv: float) -> None:
    band = gamma_band(gamma=g, price=s, cost=c, risk_aversion=a, inventory_band=inv, negligible_gamma=0.0)
    w = whalley_wilmott_half_width(gamma=g, price=s, cost=c, risk_aversion=a)
    assert band.gamma_width == w
    assert band.half_width == pytest.approx((inv ** 3 + w ** 3) ** (1 / 3), rel=1e-9)
    assert max(inv, w) * (1 - 1e-12) <= band.half_width <= (inv + w) * (1 + 1e-12)


def test_gamma_dominates_when_large() -> None:
    band = gamma_band(gamma=1e-2, price=100_000.0, cost=5e-4, risk_aversion=1e-3, inventory_band=0.01,
                      negligible_gamma=1e-9)
    assert band.half_width == pytest.approx(band.gamma_width, rel=1e-6)


def test_band_rejects_negative_settings_and_handles_infinite_width() -> None:
    with pytest.raises(ValueError):
        gamma_band(gamma=1e-3, price=1.0, cost=1e-3, risk_aversion=1.0, inventory_band=-1.0, negligible_gamma=0.0)
    band = gamma_band(gamma=1e-3, price=1.0, cost=1e-3, risk_aversion=0.0, inventory_band=1.0, negligible_gamma=0.0)
    assert band.half_width == math.inf
