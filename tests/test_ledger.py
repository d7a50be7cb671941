"""InventoryLedger: dedupe, accounting, rebuild after restart, intents, group commit, failures."""

from __future__ import annotations

import asyncio
import decimal
import random
import re
import sqlite3
import statistics
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hedgerd.ledger import InventoryLedger, LedgerError
from hedgerd.ledger.accounting import ARITHMETIC, apply_fills
from hedgerd.ledger.storage import PostgresStorage, StorageError
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, OrderStatus, OrderType, Side, split_symbol

D = Decimal


def make_fill(trade_id: str, *, venue: str = "spot", symbol: str = "BTC/USDT", side: Side = Side.BUY,
              amount: str = "1", price: str = "100", fee: str = "0", fee_currency: str | None = None,
              ts: float = 1.0, client_order_id: str | None = None) -> Fill:
    return Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=side, amount=D(amount), price=D(price),
                fee=D(fee), fee_currency=fee_currency, ts=ts, client_order_id=client_order_id)


def expected_positions(fills: Iterable[Fill]) -> dict[tuple[str, str], Decimal]:
    """Reference accounting: every fill in one batch, whatever batches the ledger committed."""
    with decimal.localcontext(ARITHMETIC):
        return apply_fills(fills, {}, {}, {}).positions


@pytest.fixture(params=["loop", "thread"], autouse=True)
def commit_on(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with commits on the event loop and on the writer thread."""
    mode: str = request.param
    original = InventoryLedger.__init__

    def init(self: InventoryLedger, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("commit_on", mode)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(InventoryLedger, "__init__", init)
    return mode


@pytest.fixture
def path(ledger_location: Path | str) -> Any:
    """The ledger's location on each backend (tests/conftest.py); typed Any because the tests of
    SQLite internals (marked sqlite_only) use it as a Path."""
    return ledger_location


def run_sql(location: Path | str, *statements: str) -> list[tuple[Any, ...]]:
    """Run ``statements`` on the ledger's database from a connection of its own (committed); the
    rows of the last one."""
    rows: list[tuple[Any, ...]] = []
    if isinstance(location, str):
        with psycopg.connect(location, autocommit=True) as conn:
            for statement in statements:
                cursor = conn.execute(statement.encode())
                rows = cursor.fetchall() if cursor.description else []
        return rows
    with sqlite3.connect(location) as conn:
        for statement in statements:
            rows = conn.execute(statement).fetchall()
    return rows


async def fill_the_storage(ledger: InventoryLedger) -> None:
    """From now on a long trade id (over 100 characters) fails its commit with "...full...".

    SQLite: the file may not grow by another page (a full disk). PostgreSQL has no per-database
    size limit to set, so a CHECK constraint named for the failure stands in for it: the commit
    fails in the server as a full disk's would, and everything before it stays."""
    if isinstance(ledger.storage, PostgresStorage):
        await ledger._writer_call(lambda c: c.execute(
            "ALTER TABLE fills ADD CONSTRAINT storage_full CHECK (length(trade_id) <= 100)"))
        return
    pages = await ledger._writer_call(lambda c: c.execute("PRAGMA page_count").fetchone()[0])
    await ledger._writer_call(lambda c: c.execute(f"PRAGMA max_page_count = {pages}"))


@pytest.fixture
def other_location(ledger_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path | str:
    """A second, independent ledger's location on the same backend."""
    if ledger_backend == "postgresql":
        return str(request.getfixturevalue("pg_server").create_database())
    return tmp_path / "other.sqlite"


def where(ledger: InventoryLedger) -> Path | str:
    """Where ``ledger`` is, to open it again (a path, or the PostgreSQL URL)."""
    storage = ledger.storage
    return storage.url if isinstance(storage, PostgresStorage) else storage.path  # type: ignore[attr-defined]


@pytest.fixture
async def ledger(path: Path) -> AsyncIterator[InventoryLedger]:
    ledger = InventoryLedger(path)
    await ledger.open()
    yield ledger
    await ledger.close()


async def reopen(ledger: InventoryLedger, **kwargs: object) -> InventoryLedger:
    await ledger.close()
    again = InventoryLedger(where(ledger), **kwargs)  # type: ignore[arg-type]
    await again.open()
    return again


# ---------------------------------------------------------------- dedupe


async def test_hedge_fees_counted_once_per_new_own_fill(path: Path) -> None:
    metrics = Metrics()
    ledger = InventoryLedger(path, metrics=metrics)
    await ledger.open()
    own = make_fill("h1", venue="perp", symbol="BTC/USDT:USDT", fee="0.25", fee_currency="USDT",
                    client_order_id="hgdabcx1")
    flow = make_fill("c1", venue="spot", fee="0.5", fee_currency="USDT")
    assert await ledger.record_fill(own) is True
    assert await ledger.record_fill(own) is False  # the stream echo of the order report
    assert await ledger.record_fill(flow) is True  # client flow: not a hedge fee
    await ledger.close()
    assert metrics.registry.get_sample_value("hedgerd_hedge_fees_total", {"venue": "perp"}) == 0.25
    assert metrics.registry.get_sample_value("hedgerd_hedge_fees_total", {"venue": "spot"}) is None
    # every transaction's duration is observed: 2 commits (the echo of an own fill needs none)
    assert metrics.registry.get_sample_value("hedgerd_ledger_commit_seconds_count") == ledger.commits == 2
    assert metrics.registry.get_sample_value("hedgerd_ledger_commit_seconds_sum") > 0


async def test_repeats_of_a_committed_own_fill_are_answered_without_a_commit(path: Path) -> None:
    metrics = Metrics()
    ledger = InventoryLedger(path, metrics=metrics)
    await ledger.open()
    try:
        own = make_fill("h1", venue="perp", symbol="BTC/USDT:USDT", client_order_id="hgdabcx1")
        flow = make_fill("c1")
        # in flight (not committed yet): a repeat goes to the same commit, which keeps the first
        assert await asyncio.gather(ledger.record_fill(own), ledger.record_fill(own)) == [True, False]
        assert await ledger.record_fill(flow) is True
        commits = ledger.commits
        # the order stream's and the trade stream's echoes of the order response
        assert await ledger.record_fill(own) is False
        assert await ledger.record_fill(replace(own, amount=D(5))) is False  # same trade id: a duplicate
        assert ledger.commits == commits
        assert await ledger.record_fill(flow) is False  # client flow is not remembered: the index says so
        assert ledger.commits == commits + 1
        assert ledger.duplicate_fills == 4
        assert metrics.registry.get_sample_value("hedgerd_ledger_duplicate_fills_total") == 4.0
        assert ledger.position("perp", "BTC/USDT:USDT") == D(1)
        assert ledger.fill_count == 2
    finally:
        await ledger.close()


async def test_echoes_of_own_hedge_fills_are_counted_apart_from_real_duplicates(path: Path) -> None:
    """Issue 18.13: an own-order fill repeated by the order stream and the trade stream is an echo
    (normal); a replayed inventory fill, or a fill of an order another ledger issued, is a duplicate."""
    metrics = Metrics()
    ledger = InventoryLedger(path, metrics=metrics)
    await ledger.open()
    try:
        intent = await ledger.new_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.BUY,
                                         amount=D(1), created_at=1.0)
        own = make_fill("h1", venue="perp", symbol="BTC/USDT:USDT", client_order_id=intent.client_order_id)
        stranger = make_fill("h2", venue="perp", symbol="BTC/USDT:USDT", client_order_id="hgd0badc0dex1")
        flow = make_fill("c1")
        # in one commit: the order response and the order stream carry the same own fill
        assert await asyncio.gather(ledger.record_fill(own), ledger.record_fill(own)) == [True, False]
        assert await ledger.record_fill(own) is False  # the trade stream's copy, answered from memory
        assert await ledger.record_fill(flow) is True
        assert await ledger.record_fill(flow) is False  # a backfill replaying client flow
        assert await ledger.record_fill(stranger) is True
        assert await ledger.record_fill(stranger) is False  # not an order of this ledger
        assert (ledger.fill_echoes, ledger.duplicate_fills) == (2, 2)
        sample = metrics.registry.get_sample_value
        assert sample("hedgerd_ledger_fill_echoes_total") == 2.0
        assert sample("hedgerd_ledger_duplicate_fills_total") == 2.0
        ledger = await reopen(ledger, metrics=metrics)  # older repeats: the UNIQUE index answers
        assert await ledger.record_fill(own) is False
        assert await ledger.record_fill(flow) is False
        assert (ledger.fill_echoes, ledger.duplicate_fills) == (1, 1)
        assert sample("hedgerd_ledger_fill_echoes_total") == 3.0
        assert sample("hedgerd_ledger_duplicate_fills_total") == 3.0
        assert ledger.position("perp", "BTC/USDT:USDT") == D(2)
    finally:
        await ledger.close()


async def test_own_fills_remembered_are_bounded_and_older_repeats_still_dedupe(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hedgerd.ledger import view as view_module

    monkeypatch.setattr(view_module, "_RECENT_OWN_FILLS", 2)
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        own = [make_fill(f"h{i}", venue="perp", symbol="BTC/USDT:USDT", client_order_id=f"hgdabcx{i}")
               for i in range(3)]
        for fill in own:
            assert await ledger.record_fill(fill) is True
        commits = ledger.commits
        assert [await ledger.record_fill(f) for f in own[1:]] == [False, False]  # the two remembered
        assert ledger.commits == commits
        assert await ledger.record_fill(own[0]) is False  # forgotten: the UNIQUE index answers
        assert ledger.commits == commits + 1
        assert ledger.fill_count == 3 and ledger.duplicate_fills == 3
    finally:
        await ledger.close()


async def test_duplicate_trade_is_ignored_and_counted(path: Path) -> None:
    metrics = Metrics()
    ledger = InventoryLedger(path, metrics=metrics)
    await ledger.open()
    fill = make_fill("t1", amount="2", price="50")
    assert await ledger.record_fill(fill) is True
    assert await ledger.record_fill(fill) is False
    assert ledger.duplicate_fills == 1
    assert ledger.fill_count == 1
    assert ledger.position("spot", "BTC") == D(2)
    assert metrics.registry.get_sample_value("hedgerd_ledger_duplicate_fills_total") == 1.0
    sample = metrics.registry.get_sample_value
    assert sample("hedgerd_fills_total", {"venue": "spot", "symbol": "BTC/USDT"}) == 1.0
    assert sample("hedgerd_inventory", {"venue": "spot", "asset": "USDT"}) == -100.0
    await ledger.close()


async def test_same_trade_id_on_another_venue_is_not_a_duplicate(ledger: InventoryLedger) -> None:
    assert await ledger.record_fill(make_fill("t1", venue="a"))
    assert await ledger.record_fill(make_fill("t1", venue="b"))
    assert ledger.duplicate_fills == 0


async def test_duplicate_within_one_batch_keeps_the_first(ledger: InventoryLedger) -> None:
    first = make_fill("t1", amount="1")
    second = make_fill("t1", amount="5")  # a replay carrying the same trade id
    results = await asyncio.gather(ledger.record_fill(first), ledger.record_fill(second),
                                   ledger.record_fill(make_fill("t2")))
    assert list(results) == [True, False, True]
    assert ledger.position("spot", "BTC") == D(2)
    assert ledger.duplicate_fills == 1


async def test_duplicate_across_restart(ledger: InventoryLedger) -> None:
    fills = [make_fill(f"t{i}", amount="0.5") for i in range(5)]
    for fill in fills:
        await ledger.record_fill(fill)
    ledger = await reopen(ledger)
    try:
        results = await asyncio.gather(*(ledger.record_fill(f) for f in [*fills, make_fill("t-new")]))
        assert results == [False] * 5 + [True]
        assert ledger.duplicate_fills == 5
        assert ledger.fill_count == 6
        assert ledger.position("spot", "BTC") == D("3.5")
    finally:
        await ledger.close()


async def test_fill_is_on_disk_when_record_fill_returns(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("t1", amount="0.125", price="60000.10"))
    rows = run_sql(where(ledger), "SELECT trade_id, amount, price FROM fills")
    assert rows == [("t1", "0.125", "60000.10")]


@pytest.mark.sqlite_only
async def test_a_new_ledger_uses_small_pages_and_an_old_one_keeps_its_own(
        path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hedgerd.ledger import storage as storage_module

    assert storage_module.PAGE_SIZE == 1024
    ledger = InventoryLedger(path)
    await ledger.open()
    await ledger.record_fill(make_fill("t1"))
    await ledger.close()
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA page_size").fetchone()[0] == 1024

    old_path = path.with_name("old.sqlite")  # a ledger created before: SQLite's default 4 KiB pages
    monkeypatch.setattr(storage_module, "PAGE_SIZE", 4096)
    ledger = InventoryLedger(old_path)
    await ledger.open()
    await ledger.record_fill(make_fill("t1", amount="2"))
    await ledger.close()
    monkeypatch.setattr(storage_module, "PAGE_SIZE", 1024)
    ledger = InventoryLedger(old_path)
    await ledger.open()
    await ledger.record_fill(make_fill("t2", amount="3"))
    assert ledger.position("spot", "BTC") == D(5)
    await ledger.close()
    with sqlite3.connect(old_path) as other:
        assert other.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert other.execute("SELECT count(*) FROM fills").fetchone()[0] == 2


# ---------------------------------------------------------------- accounting


async def test_spot_fill_moves_base_and_quote(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("b", side=Side.BUY, amount="0.5", price="60000"))
    await ledger.record_fill(make_fill("s", side=Side.SELL, amount="0.2", price="61000"))
    assert ledger.position("spot", "BTC") == D("0.3")
    assert ledger.position("spot", "USDT") == D("-30000") + D("12200")
    assert ledger.position("spot", "BTC/USDT") == 0


async def test_derivative_fill_moves_the_symbol_only(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("p1", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                       amount="2", price="60000"))
    await ledger.record_fill(make_fill("p2", venue="perp", symbol="BTC/USDT:USDT", side=Side.BUY,
                                       amount="0.75", price="59000"))
    assert ledger.positions() == {("perp", "BTC/USDT:USDT"): D("-1.25")}


async def test_fees_are_charged_to_the_fee_currency(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("b", amount="1", price="100", fee="0.001", fee_currency="BTC"))
    await ledger.record_fill(make_fill("p", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL, amount="1",
                                       price="100", fee="0.05", fee_currency="USDT"))
    await ledger.record_fill(make_fill("x", venue="perp", symbol="BTC/USDT:USDT", amount="1",
                                       price="100", fee="0.02"))  # no currency: counted, not moved
    assert ledger.position("spot", "BTC") == D("0.999")
    assert ledger.position("spot", "USDT") == D("-100")
    assert ledger.position("perp", "USDT") == D("-0.05")
    assert ledger.position("perp", "BTC/USDT:USDT") == 0
    assert ledger.fees_paid("spot") == D("0.001")
    assert ledger.fees_paid("perp") == D("0.07")
    assert ledger.fees_paid("nowhere") == 0


async def test_invalid_amounts_are_refused(ledger: InventoryLedger) -> None:
    for bad in (make_fill("n", amount="NaN"), make_fill("z", amount="0"), make_fill("p", price="-1"),
                make_fill("f", fee="Infinity")):
        with pytest.raises(ValueError):
            await ledger.record_fill(bad)
    assert ledger.fill_count == 0


async def test_rebuild_after_restart_equals_live_state(path: Path) -> None:
    rng = random.Random(7)
    instruments = [("spot-a", "BTC/USDT"), ("spot-a", "ETH/USDT"), ("spot-b", "BTC/USDC"),
                   ("perp", "BTC/USDT:USDT")]
    fills: list[Fill] = []
    for i in range(3000):
        venue, symbol = rng.choice(instruments)
        fee_currency = rng.choice([None, "USDT", split_symbol(symbol)[0]])
        fills.append(Fill(venue=venue, trade_id=f"t{i}", symbol=symbol, side=rng.choice(list(Side)),
                          amount=D(rng.randint(1, 10**8)) / 10**8, price=D(rng.randint(10**6, 10**8)) / 100,
                          fee=D(rng.randint(0, 1000)) / 10**6, fee_currency=fee_currency, ts=1000.0 + i))
    replays = rng.sample(fills, 200)
    ledger = InventoryLedger(path, batch_max=128)
    await ledger.open()
    results = await asyncio.gather(*(ledger.record_fill(f) for f in fills + replays))
    assert sum(results) == len(fills)
    live = ledger.positions()
    assert live == {k: v for k, v in expected_positions(fills).items()}
    live_fees = {v: ledger.fees_paid(v) for v, _ in instruments}
    live_last_ts = {v: ledger.last_fill_ts(v) for v, _ in instruments}
    await ledger.verify()

    ledger = await reopen(ledger)
    try:
        assert not ledger.rebuilt_from_journal
        assert ledger.positions() == live
        assert {v: ledger.fees_paid(v) for v, _ in instruments} == live_fees
        assert {v: ledger.last_fill_ts(v) for v, _ in instruments} == live_last_ts
        assert live_last_ts["perp"] == max(f.ts for f in fills if f.venue == "perp")
        assert ledger.fill_count == len(fills)
        assert ledger.duplicate_fills == 0
        await ledger.verify()
    finally:
        await ledger.close()


async def test_snapshot_out_of_step_with_journal_is_rebuilt(ledger: InventoryLedger) -> None:
    fills = [make_fill(f"t{i}", amount="0.1", price="10", fee="0.01", fee_currency="USDT") for i in range(10)]
    for fill in fills:
        await ledger.record_fill(fill)
    live = ledger.positions()
    await ledger.close()
    run_sql(where(ledger), "DELETE FROM venue_totals", "DELETE FROM positions")
    ledger = InventoryLedger(where(ledger))
    await ledger.open()
    try:
        assert ledger.rebuilt_from_journal
        assert ledger.positions() == live == expected_positions(fills)
        assert ledger.fill_count == 10
        assert ledger.fees_paid("spot") == D("0.1")
        await ledger.verify()
    finally:
        await ledger.close()


async def test_adjustment_moves_a_position_and_survives_rebuild(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("t1", venue="perp", symbol="BTC/USDT:USDT", amount="1"))
    await ledger.record_adjustment("perp", "BTC/USDT:USDT", D("-0.25"), "adopted venue position", 5.0)
    await ledger.record_adjustment("spot", "ETH", D("3"), "adopted venue position", 5.0)
    assert ledger.position("perp", "BTC/USDT:USDT") == D("0.75")
    assert ledger.position("spot", "ETH") == 3
    assert ledger.fill_count == 1
    await ledger.verify()
    await ledger.close()
    run_sql(where(ledger), "DELETE FROM venue_totals")
    ledger = InventoryLedger(where(ledger))
    await ledger.open()
    try:
        assert ledger.rebuilt_from_journal
        assert ledger.positions() == {("perp", "BTC/USDT:USDT"): D("0.75"), ("spot", "ETH"): D(3)}
        await ledger.verify()
    finally:
        await ledger.close()


async def test_verify_detects_a_tampered_snapshot(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("t1"))
    await ledger.close()
    run_sql(where(ledger), "UPDATE positions SET amount = '7' WHERE asset = 'BTC'")
    ledger = InventoryLedger(where(ledger))
    await ledger.open()
    try:
        with pytest.raises(LedgerError, match="inconsistent"):
            await ledger.verify()
    finally:
        await ledger.close()


# ---------------------------------------------------------------- intents and order states


async def new_intent(ledger: InventoryLedger, **overrides: object) -> HedgeIntent:
    fields: dict[str, object] = {"underlying": "BTC", "venue": "perp", "symbol": "BTC/USDT:USDT",
                                 "side": Side.SELL, "amount": D("0.25"), "created_at": 1700000000.5}
    fields.update(overrides)
    return await ledger.new_intent(**fields)  # type: ignore[arg-type]


async def test_intent_and_order_states_survive_restart(ledger: InventoryLedger) -> None:
    limit = await new_intent(ledger, reduce_only=True, order_type=OrderType.LIMIT_IOC,
                             limit_price=D("59999.5"), reason="delta 0.31 > band 0.05")
    market = await new_intent(ledger, side=Side.BUY, amount=D("0.1"))
    done = await new_intent(ledger, amount=D("0.2"))
    assert ledger.order_state(limit.client_order_id) == (OrderStatus.NEW, D(0))
    await ledger.record_order_state(limit.client_order_id, OrderStatus.SUBMITTED, venue_order_id="42", ts=2.0)
    await ledger.record_order_state(limit.client_order_id, OrderStatus.PARTIALLY_FILLED, D("0.1"),
                                    average_price=D("60000"), ts=3.0)
    await ledger.record_order_state(market.client_order_id, OrderStatus.UNKNOWN, detail="timeout")
    await ledger.record_order_state(done.client_order_id, OrderStatus.FILLED, D("0.2"))
    assert ledger.open_intents() == [limit, market]

    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == [limit, market]
        reloaded = ledger.open_intents()[0]
        assert (reloaded.limit_price, reloaded.order_type, reloaded.reduce_only, reloaded.reason) == (
            D("59999.5"), OrderType.LIMIT_IOC, True, "delta 0.31 > band 0.05")
        assert ledger.order_state(limit.client_order_id) == (OrderStatus.PARTIALLY_FILLED, D("0.1"))
        assert ledger.order_state(market.client_order_id) == (OrderStatus.UNKNOWN, D(0))
        assert ledger.order_state(done.client_order_id) == (OrderStatus.FILLED, D("0.2"))
        assert ledger.order_state("never-seen") is None
        await ledger.record_order_state(limit.client_order_id, OrderStatus.CANCELED, D("0.1"))
        assert ledger.open_intents() == [market]
        assert ledger.order_state(limit.client_order_id) == (OrderStatus.CANCELED, D("0.1"))
    finally:
        await ledger.close()


async def test_a_late_non_final_state_reopens_an_intent(ledger: InventoryLedger) -> None:
    intent = await new_intent(ledger)
    await ledger.record_order_state(intent.client_order_id, OrderStatus.CANCELED)
    assert ledger.open_intents() == []
    await ledger.record_order_state(intent.client_order_id, OrderStatus.UNKNOWN, detail="venue disagrees")
    assert ledger.open_intents() == [intent]
    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == [intent]
        assert ledger.order_state(intent.client_order_id) == (OrderStatus.UNKNOWN, D(0))
    finally:
        await ledger.close()


async def test_intents_states_and_fills_mixed_in_one_batch(ledger: InventoryLedger) -> None:
    intents = await asyncio.gather(*(new_intent(ledger, amount=D(i + 1)) for i in range(20)),
                                   *(ledger.record_fill(make_fill(f"t{i}")) for i in range(200)))
    created = [i for i in intents if isinstance(i, HedgeIntent)]
    assert len({i.intent_id for i in created}) == 20
    await asyncio.gather(*(ledger.record_order_state(i.client_order_id, OrderStatus.FILLED, i.amount)
                           for i in created[:10]),
                         *(ledger.record_fill(make_fill(f"h{i.intent_id}", venue="perp", symbol="BTC/USDT:USDT",
                                                        amount=str(i.amount), client_order_id=i.client_order_id))
                           for i in created))
    assert ledger.open_intents() == created[10:]
    assert all(ledger.filled_for(i.client_order_id) == i.amount for i in created)
    assert ledger.position("perp", "BTC/USDT:USDT") == sum(D(i + 1) for i in range(20))
    assert ledger.commits < 220


async def test_client_order_ids_are_well_formed_and_unique_across_restarts(path: Path, other_location: Any) -> None:
    seen: set[str] = set()
    ledger_ids: set[str] = set()
    ledger = InventoryLedger(path)
    for _ in range(3):
        await ledger.open()
        ledger_ids.add(ledger.ledger_id)
        for _ in range(5):
            intent = await new_intent(ledger, client_id_prefix="hgd")
            assert intent.client_order_id == f"hgd{ledger.ledger_id}x{intent.intent_id}"
            assert re.fullmatch(r"[A-Za-z0-9_-]+", intent.client_order_id)
            assert len(intent.client_order_id) <= 36
            seen.add(intent.client_order_id)
        await ledger.close()
        ledger = InventoryLedger(path)
    assert len(seen) == 15
    assert len(ledger_ids) == 1
    assert re.fullmatch(r"[0-9a-f]{8}", ledger_ids.pop())

    other = InventoryLedger(other_location)
    await other.open()
    try:
        intent = await new_intent(other, client_id_prefix="abcdefgh")
        assert intent.client_order_id not in seen
        assert len(intent.client_order_id) <= 36
    finally:
        await other.close()


def read_rows(path: Path | str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` read by a connection of its own."""
    return run_sql(path, sql)


def read_meta(path: Path) -> dict[str, str]:
    return dict(read_rows(path, "SELECT key, value FROM meta"))


async def test_open_intents_reload_from_the_oldest_open_one(path: Path) -> None:
    ledger = InventoryLedger(path, snapshot_interval=0)  # aggregates (and the floor) written with every fill
    await ledger.open()
    intents = [await new_intent(ledger) for _ in range(5)]
    for intent in intents[:3]:
        await ledger.record_order_state(intent.client_order_id, OrderStatus.FILLED, intent.amount)
    await ledger.record_fill(make_fill("t1"))
    assert read_meta(path)["open_intents_from"] == str(intents[3].intent_id)
    # a late non-final state reopens an intent below the floor: the floor comes down in that commit
    await ledger.record_order_state(intents[1].client_order_id, OrderStatus.UNKNOWN, detail="venue disagrees")
    assert read_meta(path)["open_intents_from"] == str(intents[1].intent_id)
    await ledger.record_fill(make_fill("t2"))
    assert read_meta(path)["open_intents_from"] == str(intents[1].intent_id)
    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == [intents[1], *intents[3:]]
        for intent in ledger.open_intents():
            await ledger.record_order_state(intent.client_order_id, OrderStatus.CANCELED)
        assert ledger.open_intents() == []
    finally:
        await ledger.close()  # no intent open: the floor moves past the last one issued
    assert read_meta(path)["open_intents_from"] == str(intents[-1].intent_id + 1)
    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == []
        assert (await new_intent(ledger)).intent_id == intents[-1].intent_id + 1
        assert ledger.order_state(intents[0].client_order_id) == (OrderStatus.FILLED, intents[0].amount)
    finally:
        await ledger.close()


async def test_order_state_of_an_id_the_ledger_did_not_issue(ledger: InventoryLedger) -> None:
    intent = await new_intent(ledger)
    await ledger.record_order_state(intent.client_order_id, OrderStatus.FILLED, intent.amount)
    look_alikes = [intent.client_order_id.replace("x", "x0"), "xyz" + intent.client_order_id,
                   intent.client_order_id + "x", f"hgd{ledger.ledger_id}x{intent.intent_id + 1}", "never-seen"]
    await ledger.record_order_state("foreign-1", OrderStatus.CANCELED, ts=2.0)
    ledger = await reopen(ledger)
    try:
        assert ledger.order_state(intent.client_order_id) == (OrderStatus.FILLED, intent.amount)
        assert [ledger.order_state(cid) for cid in look_alikes] == [None] * len(look_alikes)
        assert ledger.order_state("foreign-1") is None  # journaled, but not an order of this ledger
        assert read_rows(where(ledger), "SELECT status FROM order_events WHERE client_order_id = 'foreign-1'"
                         ) == [("canceled",)]
    finally:
        await ledger.close()


@pytest.mark.sqlite_only
async def test_a_fill_and_an_intent_commit_write_few_pages(path: Path) -> None:
    """Each table or index a commit touches is at least one WAL page: a client fill with the
    intent it causes touches the fills table, its trade-id index and the intents table only
    (and page 1 when the file grows)."""
    # no WAL rewind and no aggregates written during the test
    ledger = InventoryLedger(path, checkpoint_interval=60.0, snapshot_interval=3600.0)
    await ledger.open()
    try:
        wal = path.with_name(path.name + "-wal")
        page = 1024 + 24
        for i in range(50):  # warm up: tables past their first pages
            await ledger.record_fill(make_fill(f"w{i}"))
            await new_intent(ledger)
        frames = []
        for i in range(200):
            before = wal.stat().st_size
            commits = ledger.commits
            fill = ledger.submit_fill(make_fill(f"t{i}"))
            _, durable = ledger.submit_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                              amount=D("0.25"), created_at=1.0)
            await asyncio.gather(fill, durable)
            assert ledger.commits == commits + 1  # one transaction
            frames.append((wal.stat().st_size - before) // page)
        # schema version 1 wrote a median of 10 here (mean 10.2): the client id, open-intent and
        # order-event indexes, a NEW order event and the AUTOINCREMENT counter were 7 more pages
        assert statistics.median(frames) <= 3, frames
        assert statistics.mean(frames) <= 4.5, frames
    finally:
        await ledger.close()


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE fills (fill_id INTEGER PRIMARY KEY, venue TEXT NOT NULL, trade_id TEXT NOT NULL,
    symbol TEXT NOT NULL, side TEXT NOT NULL, amount TEXT NOT NULL, price TEXT NOT NULL, fee TEXT NOT NULL,
    fee_currency TEXT, ts REAL NOT NULL, received_at REAL NOT NULL, client_order_id TEXT, UNIQUE (venue, trade_id));
CREATE TABLE intents (intent_id INTEGER PRIMARY KEY AUTOINCREMENT, client_order_id TEXT UNIQUE,
    underlying TEXT NOT NULL, venue TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, amount TEXT NOT NULL,
    created_at REAL NOT NULL, reduce_only INTEGER NOT NULL, order_type TEXT NOT NULL, limit_price TEXT,
    reason TEXT NOT NULL, status TEXT NOT NULL, filled TEXT NOT NULL, is_open INTEGER NOT NULL);
CREATE INDEX intents_open ON intents (intent_id) WHERE is_open = 1;
CREATE TABLE order_events (event_id INTEGER PRIMARY KEY, client_order_id TEXT NOT NULL, status TEXT NOT NULL,
    filled TEXT NOT NULL, average_price TEXT, venue_order_id TEXT, ts REAL NOT NULL, detail TEXT NOT NULL);
CREATE INDEX order_events_by_client_id ON order_events (client_order_id, event_id);
"""


def write_v1_ledger(path: Path) -> list[str]:
    """A ledger as schema version 1 wrote it (the tables a migration touches): intents 1-4, of
    which 2 and 4 are open, and an AUTOINCREMENT counter at 6. Returns the client order ids."""
    cids = [f"hgd0badcafex{i}" for i in range(1, 5)]
    states = [("filled", "0.1", 0), ("submitted", "0", 1), ("canceled", "0", 0), ("new", "0", 1)]
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", "1"), ("ledger_id", "0badcafe")])
        for i, (cid, (status, filled, is_open)) in enumerate(zip(cids, states, strict=True), start=1):
            conn.execute("INSERT INTO intents (client_order_id, underlying, venue, symbol, side, amount, created_at, "
                         "reduce_only, order_type, limit_price, reason, status, filled, is_open) "
                         "VALUES (?, 'BTC', 'perp', 'BTC/USDT:USDT', 'sell', '0.1', ?, 0, 'market', NULL, 'r', "
                         "?, ?, ?)",
                         (cid, float(i), status, filled, is_open))
            conn.execute("INSERT INTO order_events (client_order_id, status, filled, ts, detail) "
                         "VALUES (?, 'new', '0', ?, 'r')", (cid, float(i)))
            if status != "new":
                conn.execute("INSERT INTO order_events (client_order_id, status, filled, ts, detail) "
                             "VALUES (?, ?, ?, ?, '')", (cid, status, filled, float(i)))
        conn.execute("UPDATE sqlite_sequence SET seq = 6 WHERE name = 'intents'")
    return cids


@pytest.mark.sqlite_only
async def test_a_version_1_ledger_is_migrated_on_open(path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cids = write_v1_ledger(path)
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        assert "migrated from version 1 to 4" in caplog.text
        assert ledger.ledger_id == "0badcafe"
        assert [i.client_order_id for i in ledger.open_intents()] == [cids[1], cids[3]]
        assert [ledger.order_state(cid) for cid in cids] == [
            (OrderStatus.FILLED, D("0.1")), (OrderStatus.SUBMITTED, D(0)),
            (OrderStatus.CANCELED, D(0)), (OrderStatus.NEW, D(0))]
        intent = await new_intent(ledger)  # the AUTOINCREMENT counter is kept: 5 and 6 were issued once
        assert (intent.intent_id, intent.client_order_id) == (7, "hgd0badcafex7")
        await ledger.record_order_state(cids[1], OrderStatus.FILLED, D("0.1"))
        schema = dict(read_rows(path, "SELECT name, sql FROM sqlite_master"))
        assert not set(schema) & {"intents_open", "order_events_by_client_id", "sqlite_autoindex_intents_1",
                                  "intents_v1"}
        assert "AUTOINCREMENT" not in schema["intents"]
        assert read_meta(path)["schema_version"] == "4"
        assert ledger.open_intents()[0].decision_mid is None  # not known for intents from before
    finally:
        await ledger.close()
    caplog.clear()
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        assert "migrated" not in caplog.text
        assert [i.client_order_id for i in ledger.open_intents()] == [cids[3], "hgd0badcafex7"]
        assert (await new_intent(ledger)).intent_id == 8
        assert ledger.order_state(cids[1]) == (OrderStatus.FILLED, D("0.1"))
    finally:
        await ledger.close()


@pytest.mark.sqlite_only
async def test_a_failed_migration_leaves_the_version_1_file_as_it_was(path: Path) -> None:
    write_v1_ledger(path)
    run_sql(path, "UPDATE intents SET client_order_id = NULL WHERE intent_id = 3")
    before = read_rows(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    ledger = InventoryLedger(path)
    with pytest.raises(LedgerError, match=r"migrating schema version 1 to 4 failed \(the file is unchanged\): "
                                          "NOT NULL constraint failed: intents.client_order_id"):
        await ledger.open()
    assert read_rows(path, "SELECT type, name, sql FROM sqlite_master ORDER BY name") == before
    assert read_meta(path)["schema_version"] == "1"


async def test_a_ledger_of_an_unknown_schema_version_is_refused(path: Path) -> None:
    run_sql(path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "INSERT INTO meta VALUES ('schema_version', '5')")
    ledger = InventoryLedger(path)
    with pytest.raises(LedgerError, match="schema version 5 is not supported"):
        await ledger.open()


@pytest.mark.sqlite_only
async def test_a_version_2_ledger_is_migrated_and_decision_quotes_survive_a_restart(
        path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ledger = InventoryLedger(path)
    await ledger.open()
    old = await new_intent(ledger)
    await ledger.close()
    run_sql(path, "ALTER TABLE intents DROP COLUMN decision_mid",
            "ALTER TABLE intents DROP COLUMN decision_half_spread",
            "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        assert "migrated from version 2 to 4" in caplog.text
        assert read_meta(path)["schema_version"] == "4"
        assert ledger.open_intents() == [old]  # its decision quote unknown (None), as before
        quoted = await new_intent(ledger, decision_mid=D("100.05"), decision_half_spread=D("0.05"))
    finally:
        await ledger.close()
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        reloaded = {i.client_order_id: i for i in ledger.open_intents()}[quoted.client_order_id]
        assert (reloaded.decision_mid, reloaded.decision_half_spread) == (D("100.05"), D("0.05"))
        assert reloaded == quoted
    finally:
        await ledger.close()


async def test_a_decision_quote_must_be_finite(ledger: InventoryLedger) -> None:
    with pytest.raises(ValueError, match="decision_mid"):
        await new_intent(ledger, decision_mid=D("NaN"))


def intent_rows(path: Path | str) -> list[tuple[int, str]]:
    """(intent_id, client_order_id) of every intent on disk, read by a connection of its own."""
    return [(int(i), str(c)) for i, c in run_sql(path, "SELECT intent_id, client_order_id FROM intents "
                                                       "ORDER BY intent_id")]


async def test_submit_intent_returns_the_intent_at_once_and_its_future_once_durable(
        ledger: InventoryLedger, commit_on: str) -> None:
    first = await new_intent(ledger)
    fields = {"underlying": "BTC", "venue": "perp", "symbol": "BTC/USDT:USDT", "side": Side.BUY,
              "created_at": 1700000001.0}
    submitted = [ledger.submit_intent(amount=D(n), **fields) for n in (1, 2, 3)]  # type: ignore[arg-type]
    intents = [intent for intent, _ in submitted]
    # allocated in call order, already open, nothing on disk yet
    assert [i.intent_id for i in intents] == [first.intent_id + 1, first.intent_id + 2, first.intent_id + 3]
    assert [i.client_order_id for i in intents] == [f"hgd{ledger.ledger_id}x{i.intent_id}" for i in intents]
    assert ledger.open_intents() == [first, *intents]
    assert all(ledger.order_state(i.client_order_id) == (OrderStatus.NEW, D(0)) for i in intents)
    assert all(ledger.filled_for(i.client_order_id) == 0 for i in intents)
    if commit_on == "loop":  # (a writer thread may already be committing them)
        assert not any(future.done() for _, future in submitted)
        assert [cid for _, cid in intent_rows(where(ledger))] == [first.client_order_id]

    assert await asyncio.gather(*(future for _, future in submitted)) == intents
    assert intent_rows(where(ledger)) == [(i.intent_id, i.client_order_id) for i in [first, *intents]]
    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == [first, *intents]
        after = await new_intent(ledger)
        assert after.intent_id == intents[-1].intent_id + 1
    finally:
        await ledger.close()


async def test_a_failed_intent_commit_fails_its_future_and_leaves_nothing_on_disk(
        ledger: InventoryLedger, commit_on: str) -> None:
    kept = await new_intent(ledger)
    await fill_the_storage(ledger)
    too_big = ledger.submit_fill(make_fill("big-" + "x" * 100_000))  # more than the file may grow
    fields = {"underlying": "BTC", "venue": "perp", "symbol": "BTC/USDT:USDT", "side": Side.SELL,
              "amount": D(1), "created_at": 0.0}
    try:
        lost, durable = ledger.submit_intent(**fields)  # type: ignore[arg-type]
    except LedgerError:  # the writer thread failed on the fill before the intent was queued
        assert commit_on == "thread"
    else:  # queued behind the fill: the same transaction fails, and the intent's future with it
        with pytest.raises(LedgerError, match="ledger write failed"):
            await durable
        assert lost.client_order_id not in [cid for _, cid in intent_rows(where(ledger))]
    with pytest.raises(LedgerError, match="full"):
        await too_big
    with pytest.raises(LedgerError):
        ledger.submit_intent(**fields)  # type: ignore[arg-type]
    assert intent_rows(where(ledger)) == [(kept.intent_id, kept.client_order_id)]
    ledger = await reopen(ledger)
    try:
        assert ledger.open_intents() == [kept]
    finally:
        await ledger.close()


async def test_the_commit_hook_sees_new_fills_in_the_view_and_its_intents_join_their_commit(
        ledger: InventoryLedger, commit_on: str) -> None:
    await ledger.record_fill(make_fill("seen-before", amount="1"))
    heard: list[tuple[list[str], Decimal]] = []
    submitted: list[tuple[HedgeIntent, asyncio.Future[Any]]] = []

    def hook(fills: list[Fill]) -> list[tuple[HedgeIntent, asyncio.Future[Any]]]:
        heard.append(([f.trade_id for f in fills], ledger.position("spot", "BTC")))
        submitted.append(ledger.prepare_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT",
                                               side=Side.SELL, amount=D(1), created_at=1.0))
        return submitted[-1:]

    ledger.commit_hook = hook
    commits = ledger.commits
    results = await asyncio.gather(ledger.record_fill(make_fill("a", amount="2")),
                                   ledger.record_fill(make_fill("seen-before", amount="1")),
                                   ledger.record_fill(make_fill("b", amount="3")))
    assert results == [True, False, True]
    # once per commit, with only the new fills, the view already including them
    assert heard == [(["a", "b"], D(6))]
    [(intent, durable)] = submitted
    # inside the fills' transaction, on the loop or the writer thread: one commit, durable with them
    assert durable.done() and durable.result() == intent
    assert ledger.commits == commits + 1
    assert await durable == intent
    assert intent.client_order_id in [cid for _, cid in intent_rows(where(ledger))]
    assert ledger.open_intents() == [intent]


async def test_a_writer_thread_not_answered_by_the_loop_commits_and_asks_the_hook_after(
        path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from hedgerd.ledger import committer as committer_module

    monkeypatch.setattr(committer_module, "HOOK_TURN_TIMEOUT", 0.05)
    ledger = InventoryLedger(path, commit_on="thread")
    await ledger.open()
    try:
        submitted: list[tuple[HedgeIntent, asyncio.Future[Any]]] = []

        def hook(fills: list[Fill]) -> list[tuple[HedgeIntent, asyncio.Future[Any]]]:
            submitted.append(ledger.prepare_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT",
                                                   side=Side.SELL, amount=D(1), created_at=1.0))
            return submitted[-1:]

        ledger.commit_hook = hook
        committed = threading.Event()
        commit = ledger._journal.commit

        def commit_and_tell(*args: Any) -> None:
            commit(*args)
            committed.set()

        monkeypatch.setattr(ledger._journal, "commit", commit_and_tell)
        commits = ledger.commits
        recorded = ledger.submit_fill(make_fill("a", amount="2"))
        # the event loop is stuck until the writer has committed: it must have given the turn up
        assert committed.wait(10)
        assert await recorded is True
        [(intent, durable)] = submitted  # asked once, after the commit, from its outcome
        assert await durable == intent
        assert ledger.commits == commits + 2  # the intent in a transaction of its own
        assert ledger.position("spot", "BTC") == 2 and ledger.open_intents() == [intent]
    finally:
        await ledger.close()


async def test_a_failing_commit_hook_neither_fails_the_commit_nor_blocks_callers(
        ledger: InventoryLedger, caplog: pytest.LogCaptureFixture) -> None:
    def hook(fills: list[Fill]) -> list[tuple[HedgeIntent, asyncio.Future[Any]]]:
        raise RuntimeError("bug in the hook")

    ledger.commit_hook = hook
    assert await ledger.record_fill(make_fill("a", amount="2")) is True
    assert ledger.position("spot", "BTC") == 2
    assert ledger.failure is None
    assert "ledger commit hook failed" in caplog.text
    ledger = await reopen(ledger)
    try:
        assert ledger.position("spot", "BTC") == 2
    finally:
        await ledger.close()


async def test_intent_arguments_are_validated(ledger: InventoryLedger) -> None:
    with pytest.raises(ValueError):
        await new_intent(ledger, client_id_prefix="too-long-prefix")
    with pytest.raises(ValueError):
        await new_intent(ledger, client_id_prefix="bad.char")
    with pytest.raises(ValueError):
        await new_intent(ledger, amount=D(0))
    assert ledger.open_intents() == []


async def test_filled_for_sums_fills_by_client_id_across_restart(ledger: InventoryLedger) -> None:
    intent = await new_intent(ledger)
    finished = await new_intent(ledger)
    cid = intent.client_order_id
    for i, amount in enumerate(["0.1", "0.05", "0.025"]):
        await ledger.record_fill(make_fill(f"h{i}", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                           amount=amount, client_order_id=cid))
    await ledger.record_fill(make_fill("h0", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                       amount="0.1", client_order_id=cid))  # replay: not counted
    await ledger.record_fill(make_fill("f0", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                       amount="0.2", client_order_id=finished.client_order_id))
    await ledger.record_order_state(finished.client_order_id, OrderStatus.FILLED, D("0.2"))
    assert ledger.filled_for(cid) == D("0.175")
    assert ledger.filled_for("unknown") == 0

    ledger = await reopen(ledger)
    try:
        assert ledger.filled_for(cid) == D("0.175")
        assert ledger.filled_for(finished.client_order_id) == D("0.2")  # not open: read from disk
        await ledger.record_fill(make_fill("h3", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                           amount="0.075", client_order_id=cid))
        assert ledger.filled_for(cid) == D("0.25")
    finally:
        await ledger.close()


# ---------------------------------------------------------------- group commit and settings


async def test_concurrent_fills_are_committed_in_batches(path: Path) -> None:
    ledger = InventoryLedger(path, batch_max=512)
    await ledger.open()
    try:
        results = await asyncio.gather(*(ledger.record_fill(make_fill(f"t{i}")) for i in range(1000)))
        assert all(results)
        assert ledger.fill_count == 1000
        assert 2 <= ledger.commits <= 100
        assert ledger.largest_batch <= 512
    finally:
        await ledger.close()


async def test_batch_max_caps_a_transaction(path: Path) -> None:
    ledger = InventoryLedger(path, batch_max=64)
    await ledger.open()
    try:
        await asyncio.gather(*(ledger.record_fill(make_fill(f"t{i}")) for i in range(1000)))
        assert ledger.commits >= 1000 // 64
        assert ledger.largest_batch == 64
        assert ledger.position("spot", "BTC") == 1000
    finally:
        await ledger.close()


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


async def wait_for(condition: Callable[[], bool], *, rounds: int = 1000) -> None:
    """Yield until ``condition`` holds (a hang guard, not a timing assertion)."""
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


@pytest.mark.sqlite_only
async def test_writer_does_not_checkpoint_and_the_checkpointer_keeps_the_wal_bounded(path: Path) -> None:
    limit = 64 * 1024
    ledger = InventoryLedger(path, checkpoint_interval=0.01, wal_size_limit=limit)
    await ledger.open()
    try:
        assert await ledger._writer_call(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0]) == 0
        assert await ledger._writer_call(lambda c: c.execute("PRAGMA journal_size_limit").fetchone()[0]) == limit
        for i in range(300):  # one commit each: several times the limit of WAL
            assert await ledger.record_fill(make_fill(f"t{i}"))
        await wait_for(lambda: ledger.checkpoints >= 2 and ledger.wal_resets >= 1)
        extra = iter(range(10**6))

        async def bounded() -> bool:  # a commit after a reset rewinds the log and trims the file
            await ledger.record_fill(make_fill(f"x{next(extra)}"))
            return wal_size(path) <= limit

        for _ in range(1000):
            if await bounded():
                break
            await asyncio.sleep(0.01)
        assert wal_size(path) <= limit
        assert ledger.position("spot", "BTC") == 300 + next(extra)
    finally:
        await ledger.close()


@pytest.mark.sqlite_only
async def test_close_checkpoints_and_truncates_the_wal(path: Path) -> None:
    ledger = InventoryLedger(path, checkpoint_interval=3600)  # no background checkpoint in this test
    await ledger.open()
    await asyncio.gather(*(ledger.record_fill(make_fill(f"t{i}")) for i in range(200)))
    assert wal_size(path) > 0
    await ledger.close()
    assert wal_size(path) == 0
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT count(*) FROM fills").fetchone()[0] == 200
    finally:
        conn.close()


async def test_commits_run_where_the_mode_says(path: Path, commit_on: str) -> None:
    async with InventoryLedger(path) as ledger:
        assert ledger.commit_on_loop is (commit_on == "loop")
        where = await ledger._writer_call(lambda c: threading.current_thread().name)
        assert (where == threading.current_thread().name) is (commit_on == "loop")
        before = ledger.commits
        await asyncio.gather(*(ledger.record_fill(make_fill(f"t{i}")) for i in range(50)))
        assert ledger.fill_count == 50
        if commit_on == "loop":  # writes queued in one event-loop iteration share one transaction
            assert ledger.commits - before == 1
            assert ledger.largest_batch == 50


async def test_flush_now_commits_what_is_queued_before_it_returns_on_the_loop(path: Path, commit_on: str) -> None:
    async with InventoryLedger(path) as ledger:
        assert not ledger.flush_now()  # nothing queued
        before = ledger.commits
        futures = [ledger.submit_fill(make_fill(f"t{i}")) for i in range(3)]
        intent, durable = ledger.submit_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT",
                                               side=Side.SELL, amount=D("0.25"), created_at=1.0)
        flushed = ledger.flush_now()
        if commit_on == "loop":  # in one transaction, with no event-loop iteration in between
            assert flushed
            assert all(f.done() for f in futures) and durable.done()
            assert [f.result() for f in futures] == [True, True, True]
            assert ledger.commits == before + 1
            assert read_rows(path, "SELECT count(*) FROM fills") == [(3,)]
            assert not ledger.flush_now()  # nothing left; the flush it replaced does not run again
            await asyncio.sleep(0)
            assert ledger.commits == before + 1
        else:  # the writer thread commits: nothing to do here
            assert not flushed
            assert await asyncio.gather(*futures) == [True, True, True]
            await durable
        assert ledger.position("spot", "BTC") == 3
        assert ledger.order_state(intent.client_order_id) == (OrderStatus.NEW, 0)


async def test_flush_now_inside_a_commit_does_not_reenter_it(path: Path, commit_on: str) -> None:
    async with InventoryLedger(path) as ledger:
        answers: list[bool] = []

        def hook(fills: list[Fill]) -> list[tuple[HedgeIntent, asyncio.Future[Any]]]:  # inside the commit (loop)
            if fills[0].trade_id == "t0":
                ledger.submit_fill(make_fill("t1"))
                answers.append(ledger.flush_now())
            return []

        ledger.commit_hook = hook
        await ledger.record_fill(make_fill("t0"))
        await wait_for(lambda: ledger.fill_count == 2)
        assert answers == [False]


@pytest.mark.sqlite_only
def test_commit_mode_defaults_to_the_loop_only_without_fsync(path: Path) -> None:
    assert InventoryLedger(path, synchronous="NORMAL", commit_on=None).commit_on_loop
    assert not InventoryLedger(path, synchronous="FULL", commit_on=None).commit_on_loop
    with pytest.raises(ValueError, match="commit_on"):
        InventoryLedger(path, commit_on="elsewhere")


@pytest.fixture
def crash_image(request: pytest.FixtureRequest) -> Callable[[Path | str], Path | str]:
    """Leave a ledger's storage as a crash at this instant would, and return where to open it.

    SQLite: a copy of the database and its WAL. PostgreSQL: the ledger's sessions are ended (as
    the server sees a killed process), so its close writes nothing; the same database then."""

    def crash(location: Path | str) -> Path | str:
        if isinstance(location, str):
            server = request.getfixturevalue("pg_server")
            assert server.terminate_backends(location.rsplit("/", 1)[1]) >= 2  # the writer and the reader
            return location
        to = location.with_name("crashed.sqlite")
        for suffix in ("", "-wal"):
            source = location.with_name(location.name + suffix)
            if source.exists():
                to.with_name(to.name + suffix).write_bytes(source.read_bytes())
        return to

    return crash


async def test_aggregates_written_late_are_caught_up_from_the_journal_after_a_crash(
        path: Path, crash_image: Callable[[Path | str], Path | str]) -> None:
    fills = [make_fill(f"t{i}", side=Side.BUY if i % 3 else Side.SELL, amount=f"0.{i % 7 + 1}",
                       price=str(100 + i), fee="0.01", fee_currency="USDT") for i in range(60)]
    fills.append(make_fill("p1", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL, amount="2",
                           client_order_id="hgdx1"))
    async with InventoryLedger(path, snapshot_interval=3600) as ledger:  # aggregates written at open/close
        for fill in fills:
            await ledger.record_fill(fill)
        live_positions, live_trades = ledger.positions(), ledger.trade_totals()
        image = crash_image(path)
    async with InventoryLedger(image) as crashed:
        assert crashed.replayed_fills == len(fills)
        assert not crashed.rebuilt_from_journal
        assert crashed.positions() == live_positions == expected_positions(fills)
        assert crashed.trade_totals() == live_trades
        assert crashed.filled_for("hgdx1") == D(2)
        assert crashed.fill_count == len(fills)
        assert not await crashed.record_fill(fills[5])  # still deduped
        await crashed.verify()
    async with InventoryLedger(image) as again:
        assert again.replayed_fills == 0  # the catch-up was written back
        assert again.positions() == live_positions


async def test_verify_and_adjustments_write_lagging_aggregates(
        path: Path, crash_image: Callable[[Path | str], Path | str]) -> None:
    def covered(conn: Any) -> int:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'snapshot_fill_id'").fetchone()[0])

    async with InventoryLedger(path, snapshot_interval=3600) as ledger:
        for i in range(10):
            await ledger.record_fill(make_fill(f"t{i}"))
        assert await ledger._writer_call(covered) == 0  # written at open, before any fill
        await ledger.verify()
        assert await ledger._writer_call(covered) == 10
        await ledger.record_fill(make_fill("t10"))
        await ledger.record_adjustment("spot", "BTC", D("0.5"), "test", 1.0)
        assert await ledger._writer_call(covered) == 11  # an adjustment writes them in its transaction
        image = crash_image(path)
    async with InventoryLedger(image) as crashed:
        assert crashed.replayed_fills == 0
        assert crashed.position("spot", "BTC") == D("11.5")


def test_checkpoint_settings_are_validated(path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint_interval"):
        InventoryLedger(path, checkpoint_interval=0)
    with pytest.raises(ValueError, match="wal_size_limit"):
        InventoryLedger(path, wal_size_limit=0)


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("setting", "level"), [("NORMAL", 1), ("FULL", 2), ("full", 2)])
async def test_synchronous_setting_is_applied(path: Path, setting: str, level: int) -> None:
    ledger = InventoryLedger(path, synchronous=setting)
    await ledger.open()
    try:
        assert ledger.synchronous_in_effect == setting.upper()
        assert ledger.journal_mode == "wal"
        read_back = await ledger._writer_call(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
        assert read_back == level
    finally:
        await ledger.close()


def test_unknown_synchronous_setting_is_refused(path: Path) -> None:
    with pytest.raises(ValueError):
        InventoryLedger(path, synchronous="OFF")


# ---------------------------------------------------------------- lifecycle and failures


async def test_use_before_open_and_after_close_raises(path: Path) -> None:
    ledger = InventoryLedger(path)
    with pytest.raises(LedgerError, match="not open"):
        await ledger.record_fill(make_fill("t1"))
    await ledger.open()
    pending = [ledger.submit_fill(make_fill(f"t{i}")) for i in range(100)]
    await ledger.close()  # flushes what was queued
    assert all(f.done() and f.result() for f in pending)
    with pytest.raises(LedgerError, match="closed"):
        await ledger.record_fill(make_fill("late"))
    with pytest.raises(LedgerError, match="closed"):
        await ledger.record_order_state("x", OrderStatus.CANCELED)
    assert run_sql(path, "SELECT count(*) FROM fills") == [(100,)]


@pytest.mark.sqlite_only
async def test_second_instance_on_the_same_file_is_refused(ledger: InventoryLedger) -> None:
    second = InventoryLedger(where(ledger))
    with pytest.raises(LedgerError, match="in use"):
        await second.open()
    with pytest.raises(LedgerError, match="not open"):
        await second.record_fill(make_fill("t1"))
    assert await ledger.record_fill(make_fill("t1"))


async def test_disk_full_fails_pending_writes_and_stops_the_ledger(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("before", amount="3"))
    await ledger.new_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                            amount=D(1), created_at=0.0)
    await fill_the_storage(ledger)
    batch = [make_fill(f"big-{i}-" + "x" * 200) for i in range(500)]
    results = await asyncio.gather(*(ledger.record_fill(f) for f in batch), return_exceptions=True)
    errors = [r for r in results if isinstance(r, LedgerError)]
    assert errors, "filling the database must fail"
    assert all(r is True or isinstance(r, LedgerError) for r in results)
    assert "ledger write failed" in str(errors[0]) and "full" in str(errors[0])
    committed = sum(1 for r in results if r is True)
    assert ledger.failure is not None
    with pytest.raises(LedgerError):
        await ledger.record_fill(make_fill("after"))
    with pytest.raises(LedgerError):
        await ledger.new_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                amount=D(1), created_at=0.0)
    assert ledger.position("spot", "BTC") == 3 + committed
    assert len(ledger.open_intents()) == 1

    ledger = await reopen(ledger)  # what was acknowledged is exactly what is on disk
    try:
        assert ledger.position("spot", "BTC") == 3 + committed
        assert ledger.fill_count == 1 + committed
        assert len(ledger.open_intents()) == 1
    finally:
        await ledger.close()


@pytest.mark.sqlite_only
async def test_read_only_database_fails_writes(ledger: InventoryLedger) -> None:
    await ledger._writer_call(lambda c: c.execute("PRAGMA query_only = ON"))
    with pytest.raises(LedgerError, match=r"ledger write failed: .*readonly"):
        await ledger.record_fill(make_fill("t1"))
    with pytest.raises(LedgerError):
        await ledger.record_fill(make_fill("t2"))
    assert ledger.fill_count == 0


class _ReadOnlyLedger(InventoryLedger):
    """Opens its file read-only, as if the file or its directory were not writable."""

    def _open_connection(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)


@pytest.mark.sqlite_only
async def test_read_only_file_is_refused_on_open(ledger: InventoryLedger) -> None:
    await ledger.record_fill(make_fill("t1"))
    await ledger.close()
    read_only = _ReadOnlyLedger(ledger.path)
    with pytest.raises(LedgerError, match="read-only"):
        await read_only.open()
    with pytest.raises(LedgerError, match="not open"):
        await read_only.record_fill(make_fill("t2"))


def overwrite_middle_page(path: Path, page: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    middle = (len(data) // page // 2) * page
    assert middle > page
    data[middle:middle + page] = random.Random(1).randbytes(page)
    path.write_bytes(bytes(data))


@pytest.mark.sqlite_only
async def test_corrupted_file_is_detected_on_open(ledger: InventoryLedger) -> None:
    await asyncio.gather(*(ledger.record_fill(make_fill(f"trade-{i:06d}")) for i in range(3000)))
    await ledger.close()
    overwrite_middle_page(ledger.path)
    with pytest.raises(LedgerError, match="ledger corrupt"):
        await InventoryLedger(where(ledger)).open()


@pytest.mark.sqlite_only
async def test_file_that_is_not_a_database_is_refused(path: Path) -> None:
    await asyncio.to_thread(path.write_text, "these are not the pages you are looking for\n" * 200)
    with pytest.raises(LedgerError, match="not a SQLite database"):
        await InventoryLedger(path).open()


class _BrokenStorageLedger(InventoryLedger):
    def _open_connection(self) -> sqlite3.Connection:
        raise RuntimeError("storage driver exploded")


async def test_unexpected_error_while_opening_is_reported_not_hung(path: Path) -> None:
    broken = _BrokenStorageLedger(path)
    with pytest.raises(LedgerError, match=r"ledger open failed: .*exploded"):
        await asyncio.wait_for(broken.open(), timeout=10)
    healthy = InventoryLedger(path)  # the file lock was released
    await healthy.open()
    await healthy.close()


# ---------------------------------------------------------------- PostgreSQL specifics


async def test_postgresql_commits_on_a_writer_thread_durably_and_names_itself_without_its_password(
        pg_url: str) -> None:
    assert not InventoryLedger(pg_url, commit_on=None).commit_on_loop  # each commit waits for the server
    assert InventoryLedger(pg_url, commit_on="loop").commit_on_loop  # still possible when asked for
    ledger = InventoryLedger(pg_url, synchronous="NORMAL")
    await ledger.open()
    try:
        assert ledger.path is None
        assert ledger.synchronous_in_effect == "synchronous_commit=on"  # whatever ledger.synchronous says
        assert ledger.journal_mode == "postgresql"
    finally:
        await ledger.close()
    with_password = pg_url.replace("postgres@", "postgres:hunter2@")
    masked = InventoryLedger(with_password)
    assert "hunter2" not in masked.location
    assert masked.location == pg_url.replace("postgres@", "postgres:**********@")


def test_postgresql_ends_a_transaction_a_frozen_process_left_open_so_a_standby_is_not_blocked(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by the HA frozen-leader failover test: a SIGSTOPped leader's open insert held the
    # fills' unique key and the new leader's insert of the same trade waited until its
    # statement timeout failed the ledger.
    import hedgerd.ledger.storage as storage_module
    monkeypatch.setattr(storage_module, "IDLE_IN_TRANSACTION_MS", 1000)
    storage = PostgresStorage(pg_url)
    frozen, standby = storage.connect(), storage.connect()
    for conn in (frozen, standby):
        storage.configure(conn, "FULL", 0)
    frozen.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    frozen.execute("BEGIN")
    frozen.execute("INSERT INTO t VALUES ('trade-1')")  # then the process stops, its transaction open
    standby.execute("SET statement_timeout = 5000")
    standby.execute("INSERT INTO t VALUES ('trade-1')")  # waits about 1 s, not until the timeout
    assert standby.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    with pytest.raises(StorageError, match="idle-in-transaction timeout"):
        frozen.execute("COMMIT")  # the server ended that session


async def test_postgresql_unreachable_fails_open_with_a_clear_error_and_no_password(pg_server: Any) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port}/no_such_database"
    ledger = InventoryLedger(url)
    with pytest.raises(LedgerError, match=r"ledger open failed: .*no_such_database") as raised:
        await ledger.open()
    assert "hunter2" not in str(raised.value)
    with pytest.raises(LedgerError, match="not open"):
        await ledger.record_fill(make_fill("t1"))


async def test_postgresql_connection_lost_fails_the_write_and_stops_the_ledger(pg_server: Any, pg_url: str) -> None:
    ledger = InventoryLedger(pg_url)
    await ledger.open()
    try:
        assert await ledger.record_fill(make_fill("t1"))
        pg_server.terminate_backends(pg_url.rsplit("/", 1)[1])  # a DBA, a failover or a network cut
        with pytest.raises(LedgerError, match="ledger write failed"):
            await ledger.record_fill(make_fill("t2"))
        assert ledger.failure is not None
        with pytest.raises(LedgerError, match="unusable after an earlier failure"):
            ledger.submit_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                 amount=D(1), created_at=0.0)
    finally:
        await ledger.close()
    again = InventoryLedger(pg_url)  # what was acknowledged is there; the failed write is not
    await again.open()
    try:
        assert again.fill_count == 1 and again.position("spot", "BTC") == 1
        await again.verify()
    finally:
        await again.close()


async def test_postgresql_schema_migrates_in_the_opening_transaction(
        pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from hedgerd.ledger import storage as storage_module

    ledger = InventoryLedger(pg_url)
    await ledger.open()
    kept = await new_intent(ledger)
    await ledger.close()
    run_sql(pg_url, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")  # as an older hedgerd left it
    real = storage_module.PG_MIGRATIONS
    monkeypatch.setattr(storage_module, "PG_MIGRATIONS", {2: ["ALTER TABLE intents ADD COLUMN note TEXT",
                                                              "SELECT no_such_function()"], 3: real[3]})
    with pytest.raises(LedgerError, match="migrating schema version 2 to 4 failed"):
        await InventoryLedger(pg_url).open()
    # DDL is transactional in PostgreSQL: the failed migration left nothing behind
    assert run_sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]
    assert run_sql(pg_url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == [(0,)]

    monkeypatch.setattr(storage_module, "PG_MIGRATIONS", {2: ["ALTER TABLE intents ADD COLUMN note TEXT"],
                                                          3: real[3]})
    ledger = InventoryLedger(pg_url)
    await ledger.open()
    try:
        assert ledger.open_intents() == [kept]
    finally:
        await ledger.close()
    assert run_sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [("4",)]
    assert run_sql(pg_url, "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'") == [(1,)]
    assert "ledger schema migrated from version 2 to 4" in caplog.text
