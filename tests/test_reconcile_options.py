"""Startup reconciliation of an options inventory: ``"*"`` compares every derivative position the
venue or the ledger holds, and an expired instrument the venue settled away closes in the ledger
instead of halting (pure decisions)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import cast

from hedgerd.config import ReconcileConfig
from hedgerd.connectors.base import Venue
from hedgerd.instruments import Instrument, InstrumentKind, OptionType
from hedgerd.ledger import InventoryLedger
from hedgerd.models import Fill, MarketInfo, Side
from hedgerd.reconciliation import PositionSnapshot
from hedgerd.reconciliation.decisions import (
    Cut,
    Verdict,
    check_position,
    expand_keys,
    expiry_day_reached,
    settled_at_expiry,
)
from hedgerd.reconciliation.reconciler import PositionReconciler
from tests.fakes import FakeClock

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


# --------------------------------------------------------------------------- with a ledger
class SettledVenue:
    """A Deribit-like account after an expiry: the option was settled away, the perpetual is held."""

    name = "deribit"

    def __init__(self, positions: dict[str, Decimal], markets: dict[str, MarketInfo]) -> None:
        self.positions = positions
        self.markets = markets

    async def load_markets(self) -> dict[str, MarketInfo]:
        return dict(self.markets)

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        return []

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(dict(self.positions))


def option_fill(symbol: str, amount: str, ts: float) -> Fill:
    return Fill(venue="deribit", trade_id=f"{symbol}#1", symbol=symbol, side=Side.SELL, amount=Decimal(amount),
                price=Decimal("0.04"), ts=ts)


async def test_an_expired_option_no_longer_listed_closes_and_a_live_one_missing_is_a_mismatch(tmp_path: Path) -> None:
    after_expiry = datetime(2026, 12, 11, 9, tzinfo=UTC).timestamp()
    live = "BTC/USD:BTC-270129-60000-P"
    clock = FakeClock(wall_offset=after_expiry - 1_000.0)
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        await ledger.record_fill(option_fill(CALL, "1.3", after_expiry - 86400))
        await ledger.record_fill(option_fill(live, "0.5", after_expiry - 86400))
        venue = SettledVenue({PERP: Decimal(-20)}, {})
        await ledger.record_adjustment("deribit", PERP, Decimal(-20), "known", after_expiry - 86400)
        reconciler = PositionReconciler(ledger, clock, ReconcileConfig(adopt_on_first_start=False))
        # the engine asks for the listed instruments only: the expired call is no longer among them
        problems = await reconciler.reconcile({"deribit": cast(Venue, venue)}, {"deribit": {PERP, live}},
                                              since=after_expiry - 10)
        assert ledger.position("deribit", CALL) == 0  # settled by the venue: closed, not a mismatch
        assert problems == [f"deribit:{live} ledger -0.5 venue 0"]  # still live: a real difference


async def test_a_listed_option_expires_at_its_instruments_hour_not_at_midnight(tmp_path: Path) -> None:
    """Deribit options expire at 08:00 UTC: at 07:00 on the day, a flat venue against a held option is a
    mismatch; from 08:00 it is the venue's settlement."""
    expiry = datetime(2026, 12, 11, 8, tzinfo=UTC).timestamp()
    instrument = Instrument(symbol=CALL, kind=InstrumentKind.OPTION, underlying="BTC", quote="USD", settle="BTC",
                            contract_size=Decimal(1), expiry=expiry, strike=Decimal(58000),
                            option_type=OptionType.CALL)
    market = MarketInfo(symbol=CALL, base="BTC", quote="USD", amount_step=Decimal("0.1"), price_step=Decimal("0.0001"),
                        instrument=instrument)
    venue = SettledVenue({}, {CALL: market})
    for hours, settled in ((-1, False), (1, True)):
        async with InventoryLedger(tmp_path / f"l{hours}.sqlite") as ledger:
            await ledger.record_fill(option_fill(CALL, "1.3", expiry - 86400))
            now = expiry + hours * 3600
            reconciler = PositionReconciler(ledger, FakeClock(wall_offset=now - 1_000.0),
                                            ReconcileConfig(adopt_on_first_start=False))
            problems = await reconciler.reconcile({"deribit": cast(Venue, venue)}, {"deribit": {CALL}},
                                                  since=now - 10)
            assert (problems == [], ledger.position("deribit", CALL) == 0) == (settled, settled), (hours, problems)
