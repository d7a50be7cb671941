"""Startup reconciliation under client flow: the pure cut/decision functions
(:mod:`hedgerd.reconciliation`) and :class:`hedgerd.reconciliation.reconciler.PositionReconciler` with a real
ledger against a venue whose trades keep landing between (and during) every request."""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hedgerd.config import Mode, ReconcileConfig, Settings
from hedgerd.connectors import build_venues
from hedgerd.connectors.base import PositionSeeding, Venue
from hedgerd.errors import TransientVenueError
from hedgerd.foreign import ForeignOrderWatch
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, Side
from hedgerd.reconciliation import (
    Cut,
    PositionSnapshot,
    Verdict,
    check_position,
    decide,
    locate_cut,
    pending_fills,
    position_deltas,
    trade_order,
    usable_cursor,
)
from hedgerd.reconciliation.reconciler import SNAPSHOT_ATTEMPTS, PositionReconciler, StartupReconciliation
from tests.fakes import FakeClock

T0_MS = 1_700_000_000_000
PRICE = Decimal(60000)
TOLERANCE = Decimal("0.00001")


def trade(n: int, ms: int, signed_milli: int, symbol: str = "BTC/USDT", venue: str = "desk") -> Fill:
    side = Side.BUY if signed_milli > 0 else Side.SELL
    return Fill(venue=venue, trade_id=f"{symbol}#{n}", symbol=symbol, side=side,
                amount=Decimal(abs(signed_milli)) / 1000, price=PRICE, ts=ms / 1000)


def btc(fills: Sequence[Fill]) -> Decimal:
    return sum((f.signed_amount for f in fills), ZERO)


# --------------------------------------------------------------------------- pure parts
def test_trade_order_compares_trade_ids_as_numbers_within_a_millisecond() -> None:
    fills = [trade(10, T0_MS, 1), trade(9, T0_MS, 1), trade(11, T0_MS - 1, 1)]
    assert [f.trade_id for f in sorted(fills, key=trade_order)] == ["BTC/USDT#11", "BTC/USDT#9", "BTC/USDT#10"]


def test_pending_fills_are_the_new_ones_once_each_in_venue_order() -> None:
    a, b, c = trade(1, T0_MS, 5), trade(2, T0_MS + 1, -3), trade(3, T0_MS + 1, 7)
    assert pending_fills([a], [c, a, b, c]) == [b, c]


def test_a_cursor_contradicted_by_a_trade_listed_before_the_snapshot_is_not_used() -> None:
    early, late = trade(1, T0_MS, 5), trade(2, T0_MS + 50, 5)
    assert usable_cursor("BTC", [early], T0_MS / 1000) == T0_MS / 1000
    assert usable_cursor("BTC", [early, late], (T0_MS + 10) / 1000) is None  # late is inside, yet stamped after
    assert usable_cursor("ETH", [early, late], (T0_MS + 10) / 1000) == (T0_MS + 10) / 1000  # not ETH's


def test_locate_cut_splits_pending_trades_at_the_cursor() -> None:
    pending = [trade(1, T0_MS - 1, 100), trade(2, T0_MS, 20), trade(3, T0_MS, -3), trade(4, T0_MS + 1, 1000)]
    cut = locate_cut("BTC", pending, T0_MS / 1000)
    assert cut == Cut(inside=Decimal("0.1"), ambiguous=(Decimal("0.02"), Decimal("-0.003")))
    assert cut.offsets() == [Decimal("0.1"), Decimal("0.12"), Decimal("0.117")]
    assert locate_cut("BTC", pending, None).ambiguous == tuple(f.signed_amount for f in pending)
    assert locate_cut("BTC", pending, (T0_MS + 5) / 1000) == Cut(inside=Decimal("1.117"))


def test_decide_matches_the_old_rules_when_the_cut_is_exact() -> None:
    exact = check_position("BTC", Decimal("1.5"), Decimal(1), Cut())
    assert exact.difference == Decimal("0.5")
    rules = {"tolerance": TOLERANCE, "adopt_on_first_start": True, "adopt_venue_positions": False}
    assert decide(exact, first_sight=False, **rules).verdict is Verdict.MISMATCH  # type: ignore[arg-type]
    adopted = decide(exact, first_sight=True, **rules)  # type: ignore[arg-type]
    assert (adopted.verdict, adopted.adjustment) == (Verdict.ADOPT, Decimal("0.5"))
    same = check_position("BTC", Decimal(1), Decimal(1), Cut())
    assert decide(same, first_sight=False, **rules).verdict is Verdict.AGREES  # type: ignore[arg-type]
    zero = decide(same, first_sight=True, **rules)  # type: ignore[arg-type]
    assert (zero.verdict, zero.adjustment) == (Verdict.ADOPT, ZERO)  # journaled: the position becomes known
    forced = decide(exact, first_sight=False, tolerance=TOLERANCE, adopt_on_first_start=True,
                    adopt_venue_positions=True)
    assert (forced.verdict, forced.adjustment) == (Verdict.ADOPT, Decimal("0.5"))


def test_decide_never_adopts_from_an_ambiguous_cut_but_compares_against_every_possible_one() -> None:
    cut = Cut(ambiguous=(Decimal("0.2"), Decimal("0.3")))
    matching = check_position("BTC", Decimal("1.2"), Decimal(1), cut)
    assert matching.ledger == Decimal("1.2") and not matching.exact
    assert decide(matching, tolerance=TOLERANCE, first_sight=False, adopt_on_first_start=True,
                  adopt_venue_positions=False).verdict is Verdict.AGREES
    assert decide(matching, tolerance=TOLERANCE, first_sight=True, adopt_on_first_start=True,
                  adopt_venue_positions=False).verdict is Verdict.UNRESOLVED
    off = check_position("BTC", Decimal("2.9"), Decimal(1), cut)
    assert off.ledger == Decimal("1.5")  # the nearest possible cut is reported
    assert decide(off, tolerance=TOLERANCE, first_sight=False, adopt_on_first_start=True,
                  adopt_venue_positions=False).verdict is Verdict.MISMATCH


async def test_position_deltas_account_as_the_ledger_does(tmp_path: Path) -> None:
    fills = [
        Fill(venue="v", trade_id="1", symbol="BTC/USDT", side=Side.BUY, amount=Decimal("0.5"), price=PRICE,
             fee=Decimal("0.0005"), fee_currency="BTC", ts=1.0),
        Fill(venue="v", trade_id="2", symbol="BTC/USDT", side=Side.SELL, amount=Decimal("0.2"), price=PRICE,
             fee=Decimal("1.2"), fee_currency="USDT", ts=2.0),
        Fill(venue="v", trade_id="3", symbol="BTC/USDT", side=Side.BUY, amount=Decimal("0.1"), price=PRICE,
             fee=Decimal("0.01"), fee_currency="BNB", ts=3.0),
        Fill(venue="v", trade_id="4", symbol="BTC/USDT:USDT", side=Side.SELL, amount=Decimal("0.3"),
             price=PRICE, fee=Decimal("3"), fee_currency="USDT", ts=4.0),
    ]
    expected: dict[tuple[str, str], Decimal] = {}
    for fill in fills:
        for key, delta in position_deltas(fill).items():
            expected[("v", key)] = expected.get(("v", key), ZERO) + delta
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        for fill in fills:
            await ledger.record_fill(fill)
        assert ledger.positions() == expected


# --------------------------------------------------------------------------- properties
@st.composite
def bracketed_flow(draw: Any) -> dict[str, Any]:
    """Trades in venue order; the snapshot includes the first ``k``; ``b <= k`` were listed
    before it and ``a >= k`` after it (the later listing may repeat trades, as overlapping pages
    do); a cursor consistent with the cut, or none."""
    moves = draw(st.lists(st.tuples(st.integers(-500, 500).filter(bool), st.sampled_from([0, 0, 1, 2, 7])),
                          max_size=40))
    fills, ms = [], T0_MS
    for n, (signed, gap) in enumerate(moves, start=1):
        ms += gap
        fills.append(trade(n, ms, signed))
    k = draw(st.integers(0, len(fills)))
    b = draw(st.integers(0, k))
    a = draw(st.integers(k, len(fills)))
    after = list(fills[:a]) + draw(st.lists(st.sampled_from(fills[:a]), max_size=5)) if a else []
    cursor: float | None = None
    if draw(st.booleans()):
        low = int(fills[k - 1].ts * 1000) if k else T0_MS - 5
        high = int(fills[k].ts * 1000) if k < len(fills) else ms + 5
        cursor = draw(st.integers(low, high)) / 1000
    return {"fills": fills, "k": k, "before": fills[:b], "after": after, "cursor": cursor,
            "start": Decimal(draw(st.integers(-10_000, 10_000))) / 1000}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bracketed_flow())
def test_snapshot_plus_backfill_after_the_cursor_is_the_final_position(case: dict[str, Any]) -> None:
    fills, k, before, after = case["fills"], case["k"], case["before"], case["after"]
    start = case["start"]
    venue_at_snapshot = start + btc(fills[:k])
    pending = pending_fills(before, after)
    # no trade counted twice, none lost: before and pending partition what the listings saw
    assert {f.trade_id for f in before}.isdisjoint(f.trade_id for f in pending)
    assert len({f.trade_id for f in pending}) == len(pending)
    assert {f.trade_id for f in before} | {f.trade_id for f in pending} == {f.trade_id for f in after} | {
        f.trade_id for f in before}
    cursor = usable_cursor("BTC", before, case["cursor"])
    assert cursor == case["cursor"]  # a cursor consistent with the cut is never thrown away
    cut = locate_cut("BTC", pending, cursor)
    final = start + btc(fills[:len({f.trade_id for f in after} | {f.trade_id for f in before})])

    # A restart: the ledger knew `start`, then journaled the trades listed before the snapshot.
    known = check_position("BTC", venue_at_snapshot, start + btc(before), cut)
    restart = decide(known, tolerance=ZERO, first_sight=False, adopt_on_first_start=True,
                     adopt_venue_positions=False)
    assert restart.verdict is Verdict.AGREES
    assert start + btc(before) + btc(pending) == final

    # A first start: the ledger knew nothing of `start`; adopting lands exactly on the venue.
    fresh = check_position("BTC", venue_at_snapshot, btc(before), cut)
    first = decide(fresh, tolerance=ZERO, first_sight=True, adopt_on_first_start=True,
                   adopt_venue_positions=False)
    if first.verdict is Verdict.ADOPT:
        assert btc(before) + first.adjustment + btc(pending) == final
    else:
        assert first.verdict is Verdict.UNRESOLVED
        assert cursor is None or any(f.ts == cursor for f in pending)

    # A trade the ledger never saw: with an exact cut, always a mismatch of exactly its size.
    missing = Decimal("0.7")
    short = check_position("BTC", venue_at_snapshot + missing, start + btc(before), cut)
    verdict = decide(short, tolerance=TOLERANCE, first_sight=False, adopt_on_first_start=True,
                     adopt_venue_positions=False).verdict
    if cut.exact:
        assert verdict is Verdict.MISMATCH and short.difference == missing


# --------------------------------------------------------------------------- reconciler with flow
class FlowingVenue:
    """A spot account whose desk trades ``per_request`` times before every request is answered
    (some trades share a millisecond); a snapshot's cursor is the millisecond it was answered in,
    and ``late_same_ms`` snapshots are followed at once by one more trade in that millisecond."""

    name = "desk"

    def __init__(self, *, per_request: int, cursor: bool = True, late_same_ms: int = 0, seed: int = 7) -> None:
        self.per_request = per_request
        self.cursor = cursor
        self.late_same_ms = late_same_ms
        self.rng = random.Random(seed)
        self.ms = T0_MS
        self.trades: list[Fill] = []
        self.positions: dict[str, Decimal] = {"BTC": Decimal(10), "USDT": Decimal(1_000_000)}
        self.snapshots = 0

    def land(self, count: int, *, same_ms: bool = False) -> None:
        for _ in range(count):
            if not same_ms:
                self.ms += self.rng.choice([0, 1, 1, 3])
            fill = trade(len(self.trades) + 1, self.ms, self.rng.choice([-1, 1]) * self.rng.randint(1, 400),
                         venue=self.name)
            for key, delta in position_deltas(fill).items():
                self.positions[key] = self.positions.get(key, ZERO) + delta
            self.trades.append(fill)

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        self.land(self.per_request)
        return [f for f in self.trades if since is None or f.ts >= since]

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        self.land(self.per_request)
        self.snapshots += 1
        self.ms += 1  # the answer's time, as the simulator stamps it (Binance's updateTime)
        as_of = dict.fromkeys(self.positions, self.ms / 1000) if self.cursor else {}
        snapshot = PositionSnapshot(dict(self.positions), as_of)
        if self.late_same_ms > 0:
            self.late_same_ms -= 1
            self.land(1, same_ms=True)
        return snapshot


async def reconcile(ledger: InventoryLedger, venue: FlowingVenue, **config: Any) -> list[str]:
    reconciler = PositionReconciler(ledger, FakeClock(), ReconcileConfig(**config))
    return await reconciler.reconcile({venue.name: cast(Venue, venue)}, {venue.name: {"BTC", "USDT"}},
                                      since=(T0_MS - 1000) / 1000)


@pytest.mark.parametrize("per_request", [1, 20, 200])
async def test_adopts_and_then_agrees_while_trades_land_during_every_request(tmp_path: Path,
                                                                            per_request: int) -> None:
    # Before this module, trades landing between the two listings made every snapshot unusable:
    # "fills kept landing during 10 position snapshots".
    venue = FlowingVenue(per_request=per_request, late_same_ms=2)
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        assert await reconcile(ledger, venue) == []
        assert venue.snapshots == 3  # two snapshots were followed by a trade in their millisecond
        assert {k: ledger.position("desk", k) for k in ("BTC", "USDT")} == venue.positions
        assert ledger.trade_totals()[("desk", "BTC/USDT")].fills == len(venue.trades)  # each journaled once

        venue.late_same_ms = 3  # a restart compares: no exact cut needed
        assert await reconcile(ledger, venue) == []
        assert venue.snapshots == 4
        assert {k: ledger.position("desk", k) for k in ("BTC", "USDT")} == venue.positions
        assert ledger.trade_totals()[("desk", "BTC/USDT")].fills == len(venue.trades)


async def test_a_venue_without_a_cursor_is_compared_under_flow_but_not_adopted_from(tmp_path: Path) -> None:
    async with InventoryLedger(tmp_path / "flowing.sqlite") as ledger:
        venue = FlowingVenue(per_request=5, cursor=False)
        with pytest.raises(TransientVenueError, match="no exact position snapshot cut"):
            await reconcile(ledger, venue)
        assert venue.snapshots == SNAPSHOT_ATTEMPTS
    async with InventoryLedger(tmp_path / "quiet.sqlite") as ledger:
        quiet = FlowingVenue(per_request=0, cursor=False)
        assert await reconcile(ledger, quiet, adopt_on_first_start=True) == []  # a quiet venue adopts
        quiet.per_request = 50
        assert await reconcile(ledger, quiet) == []
        assert {k: ledger.position("desk", k) for k in ("BTC", "USDT")} == quiet.positions


async def test_a_difference_beyond_tolerance_under_flow_is_a_mismatch_with_both_figures(tmp_path: Path) -> None:
    venue = FlowingVenue(per_request=30)
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        assert await reconcile(ledger, venue) == []
        venue.positions["BTC"] += Decimal("1.5")  # a transfer: no trade says so
        problems = await reconcile(ledger, venue)
        assert len(problems) == 1 and problems[0].startswith("desk:BTC ledger ")
        ledger_figure, venue_figure = (Decimal(x) for x in problems[0].split()[2::2])
        assert venue_figure - ledger_figure == Decimal("1.5")
        assert ledger.position("desk", "BTC") == venue.positions["BTC"] - Decimal("1.5")  # nothing adopted

        problems = await reconcile(ledger, venue, adopt_venue_positions=True)
        assert problems == []
        assert {k: ledger.position("desk", k) for k in ("BTC", "USDT")} == venue.positions


# --------------------------------------------------------------------------- the startup pass
class SeedableVenue(FlowingVenue):
    """A quiet simulated account that restarts empty and can be seeded (see PositionSeeding)."""

    def __init__(self) -> None:
        super().__init__(per_request=0)
        self.positions = {}
        self.seeded: dict[str, Decimal] = {}

    def seed_position(self, symbol: str, amount: Decimal) -> None:
        self.seeded[symbol] = amount
        self.positions[symbol] = amount


def test_the_embedded_simulated_venues_can_be_seeded() -> None:
    venues = build_venues(Settings(), FakeClock())
    assert venues and all(isinstance(venue, PositionSeeding) for venue in venues.values())
    assert isinstance(SeedableVenue(), PositionSeeding) and not isinstance(FlowingVenue(per_request=0), PositionSeeding)


@pytest.mark.parametrize("mode", [Mode.PAPER, Mode.LIVE])
async def test_startup_pass_seeds_simulated_venues_from_the_journal_in_paper_mode_only(tmp_path: Path,
                                                                                      mode: Mode) -> None:
    clock = FakeClock()
    settings = Settings().model_copy(update={"mode": mode})
    watch = ForeignOrderWatch(prefix=settings.executor.client_id_prefix, issued=lambda cid: False, hedged=[],
                              metrics=Metrics(), clock=clock, halt=lambda reason: None)
    venue = SeedableVenue()
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        await ledger.record_fill(trade(1, T0_MS, 250, venue=venue.name))
        held = {key: ledger.position(venue.name, key) for key in ("BTC", "USDT")}
        startup = StartupReconciliation(settings, {venue.name: cast(Venue, venue)}, ledger, clock, [], watch,
                                        {venue.name: {"BTC", "USDT"}})
        problems = await startup.run()
    if mode is Mode.PAPER:
        assert venue.seeded == held and problems == []
    else:  # a real account is never told what it holds: the empty one disagrees with the journal
        assert venue.seeded == {} and len(problems) == 2


class FlakyVenue(SeedableVenue):
    """Its first ``failures`` position snapshots fail as a venue outage does."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        if self.failures:
            self.failures -= 1
            raise TransientVenueError("venue unavailable")
        return await super().fetch_position_snapshot()


@pytest.mark.parametrize(("failures", "succeeds"), [(4, True), (5, False)])
async def test_startup_pass_retries_a_transient_venue_error_up_to_five_attempts(tmp_path: Path, failures: int,
                                                                               succeeds: bool) -> None:
    clock = FakeClock()
    settings = Settings().model_copy(update={"mode": Mode.LIVE})
    watch = ForeignOrderWatch(prefix=settings.executor.client_id_prefix, issued=lambda cid: False, hedged=[],
                              metrics=Metrics(), clock=clock, halt=lambda reason: None)
    venue = FlakyVenue(failures)
    started = clock.monotonic()
    async with InventoryLedger(tmp_path / "l.sqlite") as ledger:
        startup = StartupReconciliation(settings, {venue.name: cast(Venue, venue)}, ledger, clock, [], watch,
                                        {venue.name: {"BTC"}})
        if succeeds:
            assert await startup.run() == []
        else:
            with pytest.raises(TransientVenueError):
                await startup.run()
    assert venue.failures == 0
    assert clock.monotonic() - started == 2 + 4 + 8 + 10  # backing off 2**attempt seconds, at most 10
