"""Hedge policy, sizing and rounding."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgerd.config import HedgeConfig, InventorySource
from hedgerd.models import MarketInfo, Side
from hedgerd.policy import (
    FixedThresholdPolicy,
    HedgeDecision,
    HedgeLimits,
    HedgePolicy,
)
from hedgerd.policy.sizing import base_step, reduces_position, round_down, round_price, size_order

D = Decimal
POLICY = FixedThresholdPolicy()


def limits(threshold: str = "0.05", target: str = "0", min_order: str = "0.001", max_order: str = "5",
           max_position: str = "10") -> HedgeLimits:
    return HedgeLimits(threshold=D(threshold), target=D(target), min_order=D(min_order),
                       max_order=D(max_order), max_position=D(max_position))


def market(amount_step: str = "0.001", contract_size: str = "1", min_amount: str = "0",
           min_notional: str = "0", max_amount: str | None = None) -> MarketInfo:
    return MarketInfo(symbol="BTC/USDT:USDT", base="BTC", quote="USDT", amount_step=D(amount_step),
                      price_step=D("0.1"), min_amount=D(min_amount),
                      max_amount=None if max_amount is None else D(max_amount),
                      min_notional=D(min_notional), contract_size=D(contract_size))


# ----------------------------------------------------------------------------- rounding
@pytest.mark.parametrize(
    ("amount", "step", "expected"),
    [
        ("0.12345", "0.001", "0.123"),
        ("0.3", "0.1", "0.3"),
        ("-0.12345", "0.001", "-0.123"),  # toward zero
        ("7", "5", "5"),
        ("0.0009", "0.001", "0"),
        ("1.23456", None, "1.23456"),
        ("1.23456", "0", "1.23456"),
    ],
)
def test_round_down(amount: str, step: str | None, expected: str) -> None:
    assert round_down(D(amount), None if step is None else D(step)) == D(expected)


@pytest.mark.parametrize(
    ("price", "step", "side", "expected"),
    [
        ("60000.17", "0.1", Side.BUY, "60000.1"),   # buy cap: never pay more
        ("60000.11", "0.1", Side.SELL, "60000.2"),  # sell floor: never sell lower
        ("60000.1", "0.1", Side.BUY, "60000.1"),
        ("60000.1", "0.1", Side.SELL, "60000.1"),
        ("123.456", "0.5", Side.SELL, "123.5"),
        ("123.456", None, Side.BUY, "123.456"),
    ],
)
def test_round_price_stays_on_the_safe_side(price: str, step: str | None, side: Side, expected: str) -> None:
    assert round_price(D(price), None if step is None else D(step), side) == D(expected)


@pytest.mark.parametrize(("price", "side"), [("0", Side.BUY), ("-1", Side.SELL), ("0.05", Side.BUY)])
def test_round_price_rejects_non_positive_results(price: str, side: Side) -> None:
    with pytest.raises(ValueError):
        round_price(D(price), D("0.1"), side)


# ----------------------------------------------------------------------------- limits
def test_limits_validate() -> None:
    with pytest.raises(ValueError):
        limits(threshold="-0.1")
    with pytest.raises(ValueError):
        limits(max_order="0")
    with pytest.raises(ValueError):
        limits(min_order="2", max_order="1")


def test_limits_from_config() -> None:
    cfg = HedgeConfig(underlying="BTC", inventory=[InventorySource(venue="s", asset="BTC")], venue="p",
                      symbol="BTC/USDT:USDT", threshold=D("0.1"), target=D("0.2"), min_order=D("0.01"),
                      max_order=D(2), max_position=D(3))
    assert HedgeLimits.from_config(cfg) == limits("0.1", "0.2", "0.01", "2", "3")


# ----------------------------------------------------------------------------- fixed threshold
def test_fixed_policy_satisfies_the_protocol() -> None:
    policy: HedgePolicy = POLICY
    assert policy.name == "fixed"


@pytest.mark.parametrize("delta", ["0", "0.05", "-0.05", "0.0499"])
def test_holds_inside_the_band(delta: str) -> None:
    assert POLICY.decide(D(delta), D(0), limits(), market()) is None


@pytest.mark.parametrize(("delta", "side", "amount"),
                         [("0.0501", Side.SELL, "0.05"), ("1.2345", Side.SELL, "1.234"),
                          ("-0.8", Side.BUY, "0.8")])
def test_hedges_back_to_target_beyond_the_band(delta: str, side: Side, amount: str) -> None:
    decision = POLICY.decide(D(delta), D(0), limits(), market())
    assert decision is not None
    assert (decision.side, decision.amount) == (side, D(amount))
    assert "outside" in decision.reason


def test_band_is_centred_on_the_target() -> None:
    lim = limits(threshold="0.1", target="0.5")
    assert POLICY.decide(D("0.55"), D(0), lim, None) is None
    assert POLICY.decide(D(0), D(0), lim, None) == HedgeDecision(
        Side.BUY, D("0.5"), False, "net delta 0 outside 0.5 +/- 0.1")


def test_zero_threshold_hedges_any_deviation() -> None:
    decision = POLICY.decide(D("0.002"), D(0), limits(threshold="0"), market())
    assert decision is not None and decision.signed_amount == D("-0.002")


def test_amount_is_whole_contracts() -> None:
    # 1 contract = 0.01 BTC, venue takes whole contracts.
    mkt = market(amount_step="1", contract_size="0.01")
    decision = POLICY.decide(D("0.2789"), D(0), limits(), mkt)
    assert decision is not None
    assert decision.amount == D("0.27")
    assert (decision.amount / mkt.contract_size) % mkt.amount_step == 0
    # A big contract (100 base units, steps of 0.5 contract): 1234 -> 1200 (12 contracts).
    big = market(amount_step="0.5", contract_size="100")
    decision = POLICY.decide(D("1234"), D(0), limits(max_order="5000", max_position="10000"), big)
    assert decision is not None and decision.amount == D("1200")
    assert base_step(big) == D(50)


def test_without_market_there_is_no_step() -> None:
    decision = POLICY.decide(D("0.123456789"), D(0), limits(), None)
    assert decision is not None and decision.amount == D("0.123456789")


def test_holds_below_min_order() -> None:
    lim = limits(threshold="0.01", min_order="0.1")
    assert POLICY.decide(D("0.09"), D(0), lim, market()) is None
    decision = POLICY.decide(D("0.1"), D(0), lim, market())
    assert decision is not None and decision.amount == D("0.1")


def test_holds_when_rounding_leaves_nothing() -> None:
    assert POLICY.decide(D("0.06"), D(0), limits(), market(amount_step="1", contract_size="0.1")) is None


def test_holds_below_venue_min_amount() -> None:
    mkt = market(amount_step="1", contract_size="0.01", min_amount="10")  # at least 0.1 BTC
    assert POLICY.decide(D("0.09"), D(0), limits(), mkt) is None
    decision = POLICY.decide(D("0.1"), D(0), limits(), mkt)
    assert decision is not None and decision.amount == D("0.1")


def test_min_notional_needs_a_price() -> None:
    mkt = market(min_notional="100")
    assert POLICY.decide(D("0.06"), D(0), limits(), mkt) is None  # no price: fail closed
    assert POLICY.decide(D("0.06"), D(0), limits(), mkt, price=D(1000)) is None  # 60 < 100
    decision = POLICY.decide(D("0.06"), D(0), limits(), mkt, price=D(2000))  # 120
    assert decision is not None and decision.amount == D("0.06")
    held = size_order(D("-0.06"), D(0), limits(), mkt)
    assert held.signed_amount == 0 and held.hold_reason == "no price to check the venue min_notional"


def test_clamped_to_max_order() -> None:
    decision = POLICY.decide(D("7.5"), D(0), limits(max_order="2"), market())
    assert decision is not None
    assert decision.signed_amount == D("-2")
    assert "max_order" in decision.reason


def test_clamped_to_venue_max_amount_in_contracts() -> None:
    mkt = market(amount_step="1", contract_size="0.01", max_amount="150")  # 1.5 BTC
    sized = size_order(D("-3"), D(0), limits(), mkt)
    assert sized.signed_amount == D("-1.5")
    assert sized.clamped_by == ("max_amount",)


def test_clamped_to_max_position() -> None:
    # Perp already -9.5 of max 10: a sell of 2 may only add 0.5.
    sized = size_order(D("-2"), D("-9.5"), limits(), market())
    assert sized.signed_amount == D("-0.5")
    assert sized.clamped_by == ("max_position",)
    decision = POLICY.decide(D("2"), D("-9.5"), limits(), market())
    assert decision is not None and decision.signed_amount == D("-0.5") and "max_position" in decision.reason


def test_holds_at_max_position() -> None:
    assert POLICY.decide(D("2"), D("-10"), limits(), market()) is None
    sized = size_order(D("-2"), D("-10"), limits(), market())
    assert sized.signed_amount == 0 and sized.hold_reason is not None


def test_oversized_position_may_still_be_reduced() -> None:
    # max_position lowered under an existing short of 12: buying back is allowed, selling is not.
    decision = POLICY.decide(D("-1"), D("-12"), limits(), market())
    assert decision is not None and decision.signed_amount == D(1) and decision.reduce_only
    assert POLICY.decide(D("1"), D("-12"), limits(), market()) is None


def test_buying_through_zero_is_limited_on_the_other_side() -> None:
    # Short 3, wish to buy 15 (capped at max_order 5 first) -> +2 long, within 10.
    sized = size_order(D(15), D(-3), limits(), market())
    assert sized.signed_amount == D(5)
    sized = size_order(D(15), D(-3), limits(max_order="15", max_position="10"), market())
    assert sized.signed_amount == D(13)  # ends at +10
    assert sized.clamped_by == ("max_position",)


@pytest.mark.parametrize(
    ("perp", "order", "expected"),
    [("-1", "0.5", True), ("-1", "1", True), ("-0.2", "0.5", False), ("0", "0.5", False),
     ("-1", "-0.5", False), ("2", "-2", True), ("2", "0.1", False)],
)
def test_reduces_position(perp: str, order: str, expected: bool) -> None:
    assert reduces_position(D(perp), D(order)) is expected


def test_decision_reduce_only_flag() -> None:
    # Short hedge of 1 while the client sold half the inventory: buy back 0.5, reduce-only.
    decision = POLICY.decide(D("-0.5"), D("-1"), limits(), market())
    assert decision is not None and decision.side is Side.BUY and decision.reduce_only
    # Growing the short is not.
    decision = POLICY.decide(D("0.5"), D("-1"), limits(), market())
    assert decision is not None and decision.side is Side.SELL and not decision.reduce_only
    # Flipping short -0.2 to long +0.3 is not.
    decision = POLICY.decide(D("-0.5"), D("-0.2"), limits(), market())
    assert decision is not None and decision.signed_amount == D("0.5") and not decision.reduce_only


def test_observe_hooks_do_not_change_fixed_decisions() -> None:
    policy = FixedThresholdPolicy()
    before = policy.decide(D("0.3"), D(0), limits(), market())
    policy.observe_price(1.0, D(60000))
    policy.observe_flow(1.0, D("0.3"))
    assert policy.decide(D("0.3"), D(0), limits(), market()) == before


# ----------------------------------------------------------------------------- properties
def decimals(low: int, high: int, places: int) -> st.SearchStrategy[Decimal]:
    scale = 10**places
    return st.integers(low * scale, high * scale).map(lambda i: Decimal(i).scaleb(-places))


@st.composite
def hedge_limits(draw: st.DrawFn) -> HedgeLimits:
    max_order = draw(decimals(0, 5, 3).filter(lambda d: d > 0))
    return HedgeLimits(
        threshold=draw(decimals(0, 1, 3)),
        target=draw(decimals(-1, 1, 2)),
        min_order=draw(decimals(0, 1, 3).filter(lambda d: d <= max_order)),
        max_order=max_order,
        max_position=max_order + draw(decimals(0, 20, 2)),
    )


@st.composite
def markets(draw: st.DrawFn) -> MarketInfo | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    amount_step = draw(st.sampled_from([D("0.001"), D("0.01"), D("1"), D("0.5")]))
    contract_size = draw(st.sampled_from([D(1), D("0.001"), D("0.01"), D(10)]))
    return MarketInfo(
        symbol="X/USDT:USDT", base="X", quote="USDT", amount_step=amount_step, price_step=D("0.01"),
        min_amount=amount_step * draw(st.integers(0, 5)),
        max_amount=draw(st.none() | st.integers(1, 10_000).map(lambda n: amount_step * n)),
        min_notional=draw(st.sampled_from([D(0), D(5), D(100)])),
        contract_size=contract_size,
    )


deltas = decimals(-30, 30, 4)
prices = decimals(1, 100_000, 2).filter(lambda p: p > 0)


@settings(max_examples=300, deadline=None)
@given(net=deltas, perp=decimals(-25, 25, 3), lim=hedge_limits(), mkt=markets(), price=prices)
def test_property_sized_orders_respect_every_limit(net: Decimal, perp: Decimal, lim: HedgeLimits,
                                                   mkt: MarketInfo | None, price: Decimal) -> None:
    decision = POLICY.decide(net, perp, lim, mkt, price=price)
    if decision is None:
        return
    wish = lim.target - net
    after = perp + decision.signed_amount
    # Direction of the wish, never beyond it.
    assert decision.amount > 0
    assert decision.side is Side.for_delta(wish)
    assert decision.amount <= abs(wish)
    # Never takes |position| past max_position; never worsens an already oversized one.
    assert abs(after) <= lim.max_position or abs(after) < abs(perp)
    # Order size limits and venue rules.
    assert lim.min_order <= decision.amount <= lim.max_order
    if mkt is not None:
        contracts = decision.amount / mkt.contract_size
        assert contracts % mkt.amount_step == 0
        assert contracts >= mkt.min_amount
        assert mkt.max_amount is None or contracts <= mkt.max_amount
        assert decision.amount * price >= mkt.min_notional
    assert decision.reduce_only == (perp != 0 and (after == 0 or (after > 0) == (perp > 0))
                                    and abs(after) < abs(perp))


@settings(max_examples=300, deadline=None)
@given(net=deltas, perp=decimals(-5, 5, 3), lim=hedge_limits(), mkt=markets())
def test_property_unclamped_hedge_lands_within_band_and_is_not_repeated(
        net: Decimal, perp: Decimal, lim: HedgeLimits, mkt: MarketInfo | None) -> None:
    """With max_order/max_position out of the way, one decision brings |net - target| within
    max(threshold, step, min sizes); deciding again with the order in flight does nothing."""
    wish = lim.target - net
    roomy = HedgeLimits(threshold=lim.threshold, target=lim.target, min_order=lim.min_order,
                        max_order=max(lim.max_order, abs(wish) + 1),
                        max_position=max(lim.max_position, abs(perp) + abs(wish) + 1))
    if mkt is not None:  # keep the venue maximum and notional minimum out of the way too
        mkt = MarketInfo(symbol=mkt.symbol, base=mkt.base, quote=mkt.quote, amount_step=mkt.amount_step,
                         price_step=mkt.price_step, min_amount=mkt.min_amount,
                         contract_size=mkt.contract_size)
    decision = POLICY.decide(net, perp, roomy, mkt, price=D(1))
    step = base_step(mkt) or D(0)
    after = net + (decision.signed_amount if decision else 0)
    residual = abs(after - lim.target)
    if decision is not None:
        assert "clamped" not in decision.reason
        assert residual < step or residual == 0
        # In flight now: the next evaluation must not hedge again.
        assert POLICY.decide(after, perp, roomy, mkt, price=D(1)) is None
    else:
        venue_min = mkt.min_amount * mkt.contract_size if mkt is not None else D(0)
        assert residual <= lim.threshold or residual < max(lim.min_order, venue_min) + step


@settings(max_examples=200, deadline=None)
@given(amount=decimals(-1000, 1000, 6), step=st.sampled_from([D("0.001"), D("0.5"), D(3), D("0.0001")]))
def test_property_round_down_is_a_step_multiple_toward_zero(amount: Decimal, step: Decimal) -> None:
    rounded = round_down(amount, step)
    assert rounded % step == 0
    assert abs(rounded) <= abs(amount) < abs(rounded) + step
    assert rounded == 0 or (rounded > 0) == (amount > 0)


@settings(max_examples=200, deadline=None)
@given(price=decimals(1, 100_000, 4).filter(lambda p: p > 0), step=st.sampled_from([D("0.01"), D("0.5")]))
def test_property_round_price_never_crosses_the_cap(price: Decimal, step: Decimal) -> None:
    buy, sell = round_price(price, step, Side.BUY), round_price(price, step, Side.SELL)
    assert buy % step == 0 and sell % step == 0
    assert price - step < buy <= price <= sell < price + step
