"""Net delta arithmetic, snapshots and the price guard."""

from __future__ import annotations

from decimal import Decimal

import pytest

from hedgerd.models import PriceUpdate
from hedgerd.policy import FixedThresholdPolicy, HedgeLimits
from hedgerd.risk import (
    CROSSED,
    INFINITE,
    NON_POSITIVE,
    NOT_A_NUMBER,
    OUT_OF_ORDER,
    WILD_JUMP,
    PriceGuard,
    inventory_delta,
    make_snapshot,
    net_delta,
)

D = Decimal


# ----------------------------------------------------------------------------- delta math
def test_inventory_delta_sums_only_the_covered_sources() -> None:
    positions = {
        ("spot-a", "BTC"): D("1.5"),
        ("spot-b", "BTC"): D("-0.25"),
        ("spot-a", "USDT"): D("-90000"),
        ("perp", "BTC/USDT:USDT"): D("-1"),
    }
    assert inventory_delta(positions, [("spot-a", "BTC"), ("spot-b", "BTC")]) == D("1.25")


def test_inventory_delta_missing_source_is_zero_and_duplicates_count_once() -> None:
    positions = {("spot-a", "BTC"): D("2")}
    assert inventory_delta(positions, [("spot-a", "BTC"), ("spot-a", "BTC"), ("nowhere", "BTC")]) == D("2")
    assert inventory_delta(positions, []) == D(0)


def test_net_delta_applies_hedge_ratio_to_inventory_only() -> None:
    # 2 BTC inventory hedged at 50 %: 1 BTC to offset; perp -0.75 and -0.2 in flight leave 0.05.
    assert net_delta(D("2"), D("0.5"), D("-0.75"), D("-0.2")) == D("0.05")
    assert net_delta(D("-3"), D("1"), D("2"), D("0.5")) == D("-0.5")


def test_snapshot_carries_inputs_and_notional() -> None:
    snap = make_snapshot(underlying="BTC", inventory=D("1"), hedge_ratio=D("1"),
                         perp_position=D("-0.4"), in_flight=D("-0.5"), mid=D("60000"))
    assert snap.net_delta == D("0.1")
    assert snap.notional == D("6000")
    fields = snap.as_log_fields()
    assert fields["net_delta"] == "0.1" and fields["in_flight"] == "-0.5" and fields["underlying"] == "BTC"


def test_snapshot_without_price_has_no_notional() -> None:
    snap = make_snapshot(underlying="ETH", inventory=D("-2"), hedge_ratio=D("1"),
                         perp_position=D("0"), in_flight=D("0"), mid=None)
    assert snap.net_delta == D("-2")
    assert snap.notional is None
    assert snap.as_log_fields()["mid"] is None


def test_in_flight_term_prevents_a_second_hedge() -> None:
    """A client buys 1 BTC; the hedge (sell 1) is sent but its fill has not landed yet."""
    policy = FixedThresholdPolicy()
    limits = HedgeLimits(threshold=D("0.05"), target=D(0), min_order=D("0.001"), max_order=D(5),
                         max_position=D(10))
    inventory, ratio, perp = D("1"), D("1"), D("0")

    first = policy.decide(net_delta(inventory, ratio, perp, D(0)), perp, limits, None)
    assert first is not None
    assert first.signed_amount == D("-1")

    in_flight = first.signed_amount  # sent, not yet in the ledger
    with_in_flight = policy.decide(net_delta(inventory, ratio, perp, in_flight), perp, limits, None)
    without_in_flight = policy.decide(net_delta(inventory, ratio, perp, D(0)), perp, limits, None)

    assert with_in_flight is None
    assert without_in_flight is not None  # the double hedge the in-flight term exists to prevent
    assert without_in_flight.signed_amount == D("-1")

    # Once the fill lands, the quantity moves from in-flight to the perp position: still nothing to do.
    perp, in_flight = perp + first.signed_amount, D(0)
    assert policy.decide(net_delta(inventory, ratio, perp, in_flight), perp, limits, None) is None


# ----------------------------------------------------------------------------- price guard
def quote(bid: str | Decimal, ask: str | Decimal, *, ts: float = 0.0, venue: str = "perp",
          symbol: str = "BTC/USDT:USDT") -> PriceUpdate:
    return PriceUpdate(venue=venue, symbol=symbol, bid=D(bid), ask=D(ask), ts=ts)


@pytest.fixture
def guard() -> PriceGuard:
    return PriceGuard(max_jump=D("0.2"))


def test_first_sane_price_is_accepted_and_anchors(guard: PriceGuard) -> None:
    assert guard.check(quote("59990", "60010")) is None
    assert guard.last_mid("perp", "BTC/USDT:USDT") == D("60000")


@pytest.mark.parametrize(
    ("bid", "ask", "kind"),
    [
        ("NaN", "60000", NOT_A_NUMBER),
        ("60000", "sNaN", NOT_A_NUMBER),
        ("Infinity", "60000", INFINITE),
        ("60000", "-Infinity", INFINITE),
        ("0", "60000", NON_POSITIVE),
        ("-1", "60000", NON_POSITIVE),
        ("60000", "0", NON_POSITIVE),
        ("60010", "60000", CROSSED),
    ],
)
def test_invalid_prices_are_rejected_with_their_kind(guard: PriceGuard, bid: str, ask: str,
                                                     kind: str) -> None:
    reason = guard.check(quote(bid, ask))
    assert reason is not None
    assert reason.split(":")[0] == kind
    assert guard.last_mid("perp", "BTC/USDT:USDT") is None
    assert guard.rejected[kind] == 1


def test_value_that_is_not_a_decimal_is_rejected(guard: PriceGuard) -> None:
    update = PriceUpdate(venue="perp", symbol="X/Y:Y", bid=float("nan"), ask=D(1), ts=0.0)  # type: ignore[arg-type]
    reason = guard.check(update)
    assert reason is not None and reason.startswith(NOT_A_NUMBER + ":")


def test_locked_book_is_accepted(guard: PriceGuard) -> None:
    assert guard.check(quote("60000", "60000")) is None


def test_jump_up_to_max_is_accepted_beyond_is_rejected(guard: PriceGuard) -> None:
    assert guard.check(quote("100", "100")) is None
    assert guard.check(quote("120", "120")) is None  # exactly +20 %: accepted, new anchor 120
    reason = guard.check(quote("150", "150"))        # +25 % vs 120
    assert reason is not None and reason.startswith(WILD_JUMP + ":")
    assert guard.check(quote("96", "96")) is None     # -20 % vs 120
    assert guard.check(quote("76", "76")) is not None  # -20.8 % vs 96


def test_rejected_price_does_not_move_the_anchor(guard: PriceGuard) -> None:
    assert guard.check(quote("60000", "60000")) is None
    assert guard.check(quote("90000", "90000")) is not None  # +50 % in one tick
    assert guard.last_mid("perp", "BTC/USDT:USDT") == D("60000")
    assert guard.check(quote("60100", "60100")) is None  # back to normal: accepted against the old anchor


def test_consistent_wild_prices_are_never_accepted_automatically(guard: PriceGuard) -> None:
    """Fail closed: a move beyond max_jump stays rejected until an operator resets the anchor."""
    assert guard.check(quote("60000", "60000")) is None
    for _ in range(50):
        assert guard.check(quote("90000", "90010")) is not None
    assert guard.rejected[WILD_JUMP] == 50
    assert guard.last_mid("perp", "BTC/USDT:USDT") == D("60000")

    guard.reset()
    assert guard.check(quote("90000", "90010")) is None
    assert guard.last_mid("perp", "BTC/USDT:USDT") == D("90005")


def test_reset_of_one_key_keeps_the_others(guard: PriceGuard) -> None:
    assert guard.check(quote("100", "100", venue="a")) is None
    assert guard.check(quote("100", "100", venue="b")) is None
    guard.reset("a", "BTC/USDT:USDT")
    assert guard.last_mid("a", "BTC/USDT:USDT") is None
    assert guard.last_mid("b", "BTC/USDT:USDT") == D(100)
    assert guard.check(quote("300", "300", venue="a")) is None
    assert guard.check(quote("300", "300", venue="b")) is not None


def test_anchor_is_per_venue_and_symbol(guard: PriceGuard) -> None:
    assert guard.check(quote("60000", "60000", symbol="BTC/USDT:USDT")) is None
    assert guard.check(quote("3000", "3000", symbol="ETH/USDT:USDT")) is None  # not a jump from BTC
    assert guard.check(quote("3000", "3000", venue="other", symbol="BTC/USDT:USDT")) is None


def test_out_of_order_timestamp_is_rejected(guard: PriceGuard) -> None:
    assert guard.check(quote("100", "100", ts=1000.0)) is None
    reason = guard.check(quote("101", "101", ts=999.0))
    assert reason is not None and reason.startswith(OUT_OF_ORDER + ":")
    assert guard.check(quote("101", "101", ts=1000.0)) is None  # same timestamp is fine
    assert guard.check(quote("102", "102", ts=0.0)) is None     # unknown timestamp is not compared


def test_max_jump_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PriceGuard(max_jump=D(0))
