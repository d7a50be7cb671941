"""Startup reconciliation of an options inventory: ``"*"`` compares every derivative position the
venue or the ledger holds, and an expired instrument the venue settled away closes in the ledger
instead of halting (pure decisions)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hedgerd.reconciliation.decisions import (
    Cut,
    Verdict,
    check_position,
    expand_keys,
    expiry_day_reached,
    settled_at_expiry,
)

CALL = "BTC/USD:BTC-261211-58000-C"
PERP = "BTC/USD:BTC"


def test_every_derivative_is_the_union_of_the_venues_and_the_ledgers() -> None:
    keys = expand_keys(["*"], venue_positions=[CALL, "BTC"], ledger_positions=[PERP, CALL, "BTC/USD:BTC-261211"])
    assert keys == sorted([CALL, PERP, "BTC/USD:BTC-261211"])  # coins are not derivatives
    assert expand_keys(["BTC", CALL], venue_positions=[PERP], ledger_positions=[]) == ["BTC", CALL]


def test_the_expiry_day_is_read_from_a_dated_unified_symbol() -> None:
    day = datetime(2026, 12, 11, tzinfo=UTC).timestamp()
    assert expiry_day_reached(CALL, day) and expiry_day_reached("BTC/USD:BTC-261211", day + 3600)
    assert not expiry_day_reached(CALL, day - 1)
    assert not expiry_day_reached(PERP, day) and not expiry_day_reached("BTC/USDT", day)
    assert not expiry_day_reached("BTC/USD:BTC-261399-1-C", day)  # not a date


def test_an_expired_option_the_venue_settled_closes_in_the_ledger() -> None:
    check = check_position(CALL, Decimal(0), Decimal("-1.3"), Cut())
    decision = settled_at_expiry(check, expired=True)
    assert decision is not None
    assert (decision.verdict, decision.adjustment) == (Verdict.SETTLED, Decimal("1.3"))
    assert settled_at_expiry(check, expired=False) is None  # live: an ordinary mismatch
    still_held = check_position(CALL, Decimal("-1.3"), Decimal("-1.3"), Cut())
    assert settled_at_expiry(still_held, expired=True) is None  # the venue has not settled it yet
