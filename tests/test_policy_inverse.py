"""Sizing a hedge on an inverse contract: coin delta to whole USD contracts, rounded toward zero."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.policy.sizing import size_inverse

D = Decimal


def test_coin_to_deribit_perpetual_contracts() -> None:
    # Sell 0.0234 BTC at 50000: 1170 USD, 117 contracts of 10 USD.
    order = size_inverse(D("-0.0234"), D(50_000), D(10))
    assert (order.contracts, order.usd_amount, order.coin) == (D(-117), D(-1170), D("-0.0234"))


def test_rounds_toward_smaller_size_on_both_sides() -> None:
    # 0.02349 BTC at 50000 = 1174.5 USD = 117.45 contracts -> 117 either way, never 118.
    assert size_inverse(D("0.02349"), D(50_000), D(10)).contracts == D(117)
    assert size_inverse(D("-0.02349"), D(50_000), D(10)).contracts == D(-117)


def test_below_one_contract_is_nothing() -> None:
    order = size_inverse(D("0.0001"), D(50_000), D(10))  # 5 USD < one 10 USD contract
    assert (order.contracts, order.usd_amount, order.coin) == (0, 0, 0)


def test_contract_step() -> None:
    assert size_inverse(D(1), D(1234), D(1), contract_step=D(100)).contracts == D(1200)


@pytest.mark.parametrize(("mark", "size"), [(D(0), D(10)), (D(-1), D(10)), (D(50_000), D(0))])
def test_bad_mark_or_contract_size_is_refused(mark: Decimal, size: Decimal) -> None:
    with pytest.raises(ValueError):
        size_inverse(D(1), mark, size)


@settings(deadline=None)
@given(coin=st.decimals(min_value=-100, max_value=100, places=8),
       mark=st.decimals(min_value=100, max_value=500_000, places=2),
       size=st.sampled_from([D(1), D(10), D(100)]))
def test_property_never_more_delta_than_asked_and_within_one_contract(coin: Decimal, mark: Decimal,
                                                                      size: Decimal) -> None:
    order = size_inverse(coin, mark, size)
    assert order.contracts == order.contracts.to_integral_value()
    assert order.usd_amount == order.contracts * size
    assert order.coin * coin >= 0 and abs(order.coin) <= abs(coin)
    assert abs(coin) - abs(order.coin) < size / mark  # less than one contract's worth left over
