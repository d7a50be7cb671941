"""The ledger's writer side: its connection (of either backend, :mod:`hedgerd.ledger.storage`), the
journal tables and the aggregates as the writer knows them (:class:`JournalWriter`), with the row
types and helpers it shares with the ledger. It runs wherever the committer runs (see
:mod:`hedgerd.ledger.committer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hedgerd.ledger import client_ids
from hedgerd.ledger.accounting import ARITHMETIC, Snapshot, TradeTotals, VenueTotals, apply_fills
from hedgerd.ledger.caches import CACHE_SIZE, LRU
from hedgerd.ledger.client_ids import issued_intent_id, new_ledger_id
from hedgerd.ledger.outcome import BatchOutcome
from hedgerd.ledger.schema import (
    _FILL_WIDTH,
    _INSERT_EVENT,
    _INTENT_COLUMNS,
    _INTENT_FIELDS,
    _SET_META,
    _UPSERT_ORDER_FILL,
    _UPSERT_POSITION,
    _UPSERT_TRADES,
    _UPSERT_VENUE,
    SCHEMA_VERSION,
)
from hedgerd.ledger.storage import DB_ERRORS, Connection, LedgerError, Storage
from hedgerd.models import ZERO, Fill, HedgeIntent, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)

_AGGREGATE_BATCH = 4_096  # fills per apply_fills call when aggregating the whole journal
_BUY = Side.BUY


@dataclass(frozen=True, slots=True)
class _IntentRequest:
    intent: HedgeIntent  # id and client order id allocated on the event loop, in queue order


@dataclass(frozen=True, slots=True)
class _StateRequest:
    client_order_id: str
    status: OrderStatus
    filled: Decimal
    average_price: Decimal | None
    venue_order_id: str | None
    ts: float
    detail: str


@dataclass(frozen=True, slots=True)
class _AdjustmentRequest:
    venue: str
    asset: str
    delta: Decimal
    reason: str
    ts: float


@dataclass(frozen=True, slots=True)
class _CallRequest:
    fn: Callable[[Connection], Any]


_Op = tuple[Any, "asyncio.Future[Any]"]


@dataclass(slots=True)
class _OpenResult:
    ledger_id: str
    snapshot: Snapshot
    open_intents: list[tuple[HedgeIntent, OrderStatus, Decimal, Decimal]]  # intent, status, reported, journaled
    rebuilt: bool
    synchronous: str
    journal_mode: str
    next_intent_id: int


def _intent_from_row(row: Sequence[Any]) -> HedgeIntent:
    return HedgeIntent(
        intent_id=int(row[0]), client_order_id=str(row[1]), underlying=row[2], venue=row[3], symbol=row[4],
        side=Side(row[5]), amount=Decimal(row[6]), created_at=float(row[7]), reduce_only=bool(row[8]),
        order_type=OrderType(row[9]), limit_price=None if row[10] is None else Decimal(row[10]),
        reason=row[11], decision_mid=None if row[12] is None else Decimal(row[12]),
        decision_half_spread=None if row[13] is None else Decimal(row[13]))


_N = len(_INTENT_FIELDS)


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _is_echo(fill: Fill, ledger_id: str) -> bool:
    """True when ``fill`` (a repeat) is of an order this ledger issued: its client order id
    carries this ledger's id. Such a fill arrives up to three times by design."""
    cid = fill.client_order_id
    return cid is not None and issued_intent_id(cid, ledger_id) is not None


def aggregate_journal(conn: Connection, upto: int | None = None) -> Snapshot:
    """Recompute positions, venue totals and per-order fills from the whole fills journal
    (positions and totals from the fills up to fill id ``upto`` only, when given)."""
    snapshot = Snapshot()
    order_fills = snapshot.order_fills

    def account(batch: list[Fill]) -> None:
        applied = apply_fills(batch, snapshot.positions, snapshot.venues, snapshot.trades)
        snapshot.positions.update(applied.positions)
        snapshot.venues.update(applied.venues)
        snapshot.trades.update(applied.trades)
        for cid, amount in applied.order_fills.items():
            order_fills[cid] = order_fills.get(cid, ZERO) + amount

    with decimal.localcontext(ARITHMETIC):
        batch: list[Fill] = []
        rows = conn.execute("SELECT venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts, "
                            "client_order_id, fill_id FROM fills ORDER BY fill_id")
        for venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts, cid, fill_id in rows:
            if upto is not None and fill_id > upto:
                if cid is not None:
                    order_fills[cid] = order_fills.get(cid, ZERO) + Decimal(amount)
                continue
            batch.append(Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=Side(side),
                              amount=Decimal(amount), price=Decimal(price), fee=Decimal(fee),
                              fee_currency=fee_currency, ts=ts, client_order_id=cid))
            if len(batch) == _AGGREGATE_BATCH:  # memory stays flat in the journal's length
                account(batch)
                batch = []
        account(batch)
        positions = snapshot.positions
        for venue, asset, delta in conn.execute("SELECT venue, asset, delta FROM adjustments"):
            positions[(venue, asset)] = positions.get((venue, asset), ZERO) + Decimal(delta)
    return snapshot


def _load_snapshot(conn: Connection, *, with_orders: bool = True) -> Snapshot:
    snapshot = Snapshot()
    for venue, asset, amount in conn.execute("SELECT venue, asset, amount FROM positions"):
        snapshot.positions[(venue, asset)] = Decimal(amount)
    for venue, fills, fees, last_ts in conn.execute("SELECT venue, fills, fees, last_fill_ts "
                                                    "FROM venue_totals"):
        snapshot.venues[venue] = VenueTotals(int(fills), Decimal(fees), last_ts)
    for venue, symbol, fills, amount, notional, fees in conn.execute(
            "SELECT venue, symbol, fills, amount, notional, fees FROM trade_totals"):
        snapshot.trades[(venue, symbol)] = TradeTotals(int(fills), Decimal(amount), Decimal(notional), Decimal(fees))
    if with_orders:
        for cid, filled in conn.execute("SELECT client_order_id, filled FROM order_fills"):
            snapshot.order_fills[cid] = Decimal(filled)
    return snapshot


def read_child_orders(conn: Connection, parent_client_id: str) -> list[tuple[str, OrderStatus, Decimal, float]]:
    """Each journaled child order of the passive intent ``parent_client_id``: (client id, last
    journaled status, filled, time of its first record), by sequence. Read from ``order_events``,
    which has no index by client id (it would cost every state change a page): a scan, done only
    when an intent is recovered or executed again, never per order."""
    low = parent_client_id + client_ids.CHILD_SEPARATOR
    # A prefix compare, not a range: PostgreSQL orders text by the database's collation, in which
    # "~" need not sort last. The length is an int of ours, inlined so both dialects type it alike.
    rows = conn.execute("SELECT client_order_id, status, filled, ts FROM order_events "
                        f"WHERE substr(client_order_id, 1, {len(low)}) = ? ORDER BY event_id", (low,)).fetchall()
    children: dict[str, tuple[OrderStatus, Decimal, float]] = {}
    for cid, status, filled, ts in rows:
        if client_ids.split_child_id(cid) is not None:
            first = children[cid][2] if cid in children else float(ts)
            children[cid] = (OrderStatus(status), Decimal(filled), first)
    ordered = sorted(children.items(), key=lambda item: client_ids.split_child_id(item[0]) or ("", 0))
    return [(cid, status, filled, ts) for cid, (status, filled, ts) in ordered]


def read_for_verify(storage: Storage) -> tuple[Snapshot, Snapshot, int]:
    """From one read snapshot of the storage: the aggregates recomputed from the journal (up to the
    fill id the stored ones cover), the stored aggregates, and the number of fills."""
    with storage.snapshot_reader() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = 'snapshot_fill_id'").fetchone()
        journal = aggregate_journal(conn, upto=None if row is None else int(row[0]))
        stored = _load_snapshot(conn)
        total = int(conn.execute("SELECT count(*) FROM fills").fetchone()[0])
    return journal, stored, total


class JournalWriter:
    """The writer's connection and state: opens and checks the storage, commits batches of writes
    (fills, intents, order states, adjustments) and keeps the aggregate tables. Touched only
    by the committer's thread once the ledger is open."""

    def __init__(self, storage: Storage, *, synchronous: str, wal_size_limit: int, snapshot_interval: float,
                 connect: Callable[[], Connection]) -> None:
        self.storage = storage
        self.synchronous = synchronous
        self.wal_size_limit = wal_size_limit
        self.snapshot_interval = snapshot_interval
        self._connect = connect
        #: fills the last open added to aggregates written before them (after a crash: at most
        #: ``snapshot_interval`` seconds of fills)
        self.replayed_fills = 0
        self._conn: Connection | None = None
        self._w_positions: dict[tuple[str, str], Decimal] = {}
        self._w_venues: dict[str, VenueTotals] = {}
        self._w_trades: dict[tuple[str, str], TradeTotals] = {}
        self._w_order_fills: LRU[str, Decimal] = LRU(CACHE_SIZE)
        self._w_last_fill_id = 0
        self._w_dirty = Snapshot()  # aggregates changed since they were last written (absolute values)
        self._w_snapshot_at = 0.0
        self._w_rows_per_statement = 1
        self._w_ledger_id = ""
        self._w_next_intent_id = 1
        self._w_open_ids: set[int] = set()  # intents open in the database (as of the current transaction)
        self._w_open_from = 1  # meta.open_intents_from: no open intent has a smaller id

    @property
    def conn(self) -> Connection | None:
        """The writer's connection (None unless open)."""
        return self._conn

    def checkpoint_passive(self) -> bool:
        """Copy the WAL back as far as readers allow, between transactions; True if it ran."""
        conn = self._conn
        if conn is None:
            return False
        try:
            return self.storage.checkpoint_passive(conn)
        except DB_ERRORS as exc:  # the WAL still holds every commit: not a durability problem
            log.warning("ledger WAL checkpoint on the writer failed: %s", exc)
            return False

    def _open_connection(self) -> Connection:
        return self._connect()

    def open_checked(self) -> _OpenResult:
        """:meth:`_open_storage` with every failure a :class:`LedgerError` and the connection closed."""
        with decimal.localcontext(ARITHMETIC):
            try:
                return self._open_storage()
            except LedgerError:
                self.close_connection()
                raise
            except Exception as exc:
                self.close_connection()
                raise LedgerError(f"ledger open failed: {exc!r}") from exc

    def _open_storage(self) -> _OpenResult:
        storage = self.storage
        try:
            self._conn = conn = self._open_connection()
            synchronous, mode = storage.configure(conn, self.synchronous, self.wal_size_limit)
            conn.execute(storage.begin_open)
        except LedgerError:
            raise
        except DB_ERRORS as exc:
            raise storage.open_error(exc) from exc
        try:
            return self._prepare_schema(synchronous, mode)
        except LedgerError:
            self.rollback()
            raise
        except DB_ERRORS as exc:
            self.rollback()
            raise storage.open_error(exc) from exc

    def _prepare_schema(self, synchronous: str, mode: str) -> _OpenResult:
        conn = self._conn
        assert conn is not None
        for statement in self.storage.schema():
            conn.execute(statement)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        migrated = False
        if version < SCHEMA_VERSION:
            try:
                migrated = self.storage.migrate(conn, version)
            except DB_ERRORS as exc:  # rolled back by the caller: the file stays at its version
                raise LedgerError(f"ledger {self.storage.display}: migrating schema version {version} to "
                                  f"{SCHEMA_VERSION} failed (the file is unchanged): {exc}") from exc
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        if version != SCHEMA_VERSION and not migrated:
            raise LedgerError(f"ledger schema version {version} is not supported (expected {SCHEMA_VERSION})")
        ledger_id = meta.get("ledger_id")
        if ledger_id is None:
            ledger_id = new_ledger_id()
            conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                             [("schema_version", str(SCHEMA_VERSION)), ("ledger_id", ledger_id)])
        # a write on every open, so a read-only file fails here and not at the first fill
        conn.execute(_SET_META, ("last_opened_at", repr(time.time())))
        snapshot = _load_snapshot(conn, with_orders=False)
        journal_count = int(conn.execute("SELECT count(*) FROM fills").fetchone()[0])
        last_fill_id = int(conn.execute("SELECT coalesce(max(fill_id), 0) FROM fills").fetchone()[0])
        covered = int(meta.get("snapshot_fill_id", last_fill_id))  # absent: written by a per-commit version
        if covered < last_fill_id:
            self._replay_tail(conn, snapshot, covered)
        snapshot_count = sum(t.fills for t in snapshot.venues.values())
        trades_count = sum(t.fills for t in snapshot.trades.values())
        rebuilt = False
        if journal_count != snapshot_count or journal_count != trades_count:
            log.warning("ledger snapshot covers %d fills but the journal holds %d; rebuilding it from "
                        "the journal", snapshot_count, journal_count)
            snapshot = aggregate_journal(conn)
            conn.execute("DELETE FROM positions")
            conn.execute("DELETE FROM venue_totals")
            conn.execute("DELETE FROM order_fills")
            conn.execute("DELETE FROM trade_totals")
            self._write_snapshot(snapshot.positions, snapshot.venues, snapshot.order_fills, snapshot.trades)
            rebuilt = True
        conn.execute(_SET_META, ("snapshot_fill_id", str(last_fill_id)))
        conn.execute("COMMIT")
        self._w_snapshot_at = time.monotonic()
        self._w_last_fill_id = last_fill_id
        # never reuse an id (intents are never deleted; a version-1 file's AUTOINCREMENT counter is kept)
        next_intent_id = 1 + max(int(meta.get("intent_id_seq", 0)), int(conn.execute(
            "SELECT coalesce(max(intent_id), 0) FROM intents").fetchone()[0]))
        open_from = int(meta.get("open_intents_from", 1))
        self._w_positions = dict(snapshot.positions)
        self._w_venues = {v: VenueTotals(t.fills, t.fees, t.last_fill_ts)
                          for v, t in snapshot.venues.items()}
        self._w_trades = dict(snapshot.trades)
        self._w_rows_per_statement = self.storage.fill_rows_per_statement(conn, _FILL_WIDTH)
        open_intents = [
            (_intent_from_row(row[:_N]), OrderStatus(row[_N]), Decimal(row[_N + 1]), Decimal(row[_N + 2] or 0))
            for row in conn.execute(
                f"SELECT {', '.join('i.' + name for name in _INTENT_FIELDS)}, i.status, i.filled, "
                "o.filled FROM intents AS i LEFT JOIN order_fills AS o USING (client_order_id) "
                "WHERE i.intent_id >= ? AND i.is_open = 1 ORDER BY i.intent_id", (open_from,))]
        self._w_ledger_id = ledger_id
        self._w_next_intent_id = next_intent_id
        self._w_open_ids = {intent.intent_id for intent, *_ in open_intents}
        self._w_open_from = open_from
        return _OpenResult(ledger_id, snapshot, open_intents, rebuilt, synchronous, mode, next_intent_id)

    def _replay_tail(self, conn: Connection, snapshot: Snapshot, covered: int) -> None:
        """Add the fills journaled after the aggregates were last written (``fill_id > covered``)
        to ``snapshot`` and write it back (opening, inside its transaction)."""
        self._w_positions, self._w_venues, self._w_trades = snapshot.positions, snapshot.venues, snapshot.trades
        outcome = BatchOutcome(futures=[], results=[])
        tail = [Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=Side(side), amount=Decimal(amount),
                     price=Decimal(price), fee=Decimal(fee), fee_currency=fee_currency, ts=ts)
                for venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts in conn.execute(
                    "SELECT venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts FROM fills "
                    "WHERE fill_id > ? ORDER BY fill_id", (covered,))]
        self._account(conn, tail, outcome)  # order_fills are written with every commit: left out here
        snapshot.positions.update(outcome.positions)
        snapshot.venues.update(outcome.venues)
        snapshot.trades.update(outcome.trades)
        self._write_snapshot(outcome.positions, outcome.venues, {}, outcome.trades)
        self.replayed_fills = len(tail)
        log.info("ledger aggregates replayed %d fills journaled after their last write", len(tail))

    def close_connection(self, checkpoint: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if checkpoint:
            with contextlib.suppress(*DB_ERRORS):
                self.storage.before_close(conn)
        with contextlib.suppress(*DB_ERRORS):
            conn.close()

    def final_flush(self) -> None:
        """On close: write the aggregates, so the next open replays nothing."""
        if self._conn is None:
            return
        try:
            self.flush_aggregates(self._conn)
        except DB_ERRORS as exc:  # the journal has every fill: the next open replays them
            log.warning("ledger aggregates not written on close: %s", exc)

    def rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            with contextlib.suppress(*DB_ERRORS):
                self._conn.execute("ROLLBACK")

    def commit(self, fills: list[Fill], others: list[tuple[Any, asyncio.Future[Any]]], outcome: BatchOutcome,
               in_transaction: Callable[[Connection, BatchOutcome], None] | None = None) -> None:
        """Commit one batch in a transaction of its own; ``in_transaction`` runs before COMMIT
        when the batch journaled new fills (the commit hook's turn, on the event loop)."""
        conn = self._conn
        assert conn is not None
        started = time.perf_counter()
        conn.execute("BEGIN")
        if fills:
            self._insert_fills(conn, fills, outcome)
        for request, future in others:
            outcome.futures.append(future)
            if type(request) is _StateRequest:
                outcome.results.append(None)
                self._insert_state(conn, request, outcome)
            elif type(request) is _AdjustmentRequest:
                outcome.results.append(None)
                conn.execute("INSERT INTO adjustments (venue, asset, delta, reason, ts) VALUES (?, ?, ?, ?, ?)",
                             (request.venue, request.asset, str(request.delta), request.reason, request.ts))
                self._move(outcome, (request.venue, request.asset), request.delta)
            else:
                outcome.results.append(self.insert_intent(conn, request))
        if outcome.inserted and in_transaction is not None:
            in_transaction(conn, outcome)
        if outcome.order_fills:  # read back on a cache miss: always current
            self._write_snapshot({}, {}, outcome.order_fills)
        dirty = self._w_dirty
        dirty.positions.update(outcome.positions)
        dirty.venues.update(outcome.venues)
        dirty.trades.update(outcome.trades)
        flushed = False
        if dirty.positions or dirty.venues or dirty.trades:
            now = time.monotonic()
            if any(type(op[0]) is _AdjustmentRequest for op in others) \
                    or now - self._w_snapshot_at >= self.snapshot_interval:
                self._write_aggregates(outcome.last_fill_id or self._w_last_fill_id)
                flushed = True
        conn.execute("COMMIT")
        outcome.seconds = time.perf_counter() - started
        # only now does the writer's own view move forward
        if flushed:
            self._w_dirty = Snapshot()
            self._w_snapshot_at = time.monotonic()
        self._w_positions.update(outcome.positions)
        self._w_venues.update(outcome.venues)
        self._w_trades.update(outcome.trades)
        for cid, filled in outcome.order_fills.items():
            self._w_order_fills.put(cid, filled)
        if outcome.last_fill_id:
            self._w_last_fill_id = outcome.last_fill_id

    def _write_aggregates(self, covered_fill_id: int) -> None:
        """Write the aggregates changed since the last write, and the fill id they now cover
        (inside the caller's transaction)."""
        dirty = self._w_dirty
        self._write_snapshot(dirty.positions, dirty.venues, {}, dirty.trades)
        assert self._conn is not None
        self._conn.execute(_SET_META, ("snapshot_fill_id", str(covered_fill_id)))
        self._write_open_floor(self._conn)

    def _open_floor(self) -> int:
        return min(self._w_open_ids) if self._w_open_ids else self._w_next_intent_id

    def _write_open_floor(self, conn: Connection) -> None:
        """Raise ``meta.open_intents_from`` to the oldest intent open now (inside the caller's
        transaction), so opening reads open intents from there instead of scanning them all."""
        floor = self._open_floor()
        if floor != self._w_open_from:
            conn.execute(_SET_META, ("open_intents_from", str(floor)))
            self._w_open_from = floor

    def flush_aggregates(self, conn: Connection) -> None:
        """Bring the aggregate tables up to the journal in a transaction of their own (writer side)."""
        dirty = self._w_dirty
        if not (dirty.positions or dirty.venues or dirty.trades) and self._open_floor() == self._w_open_from:
            return
        conn.execute("BEGIN")
        try:
            self._write_aggregates(self._w_last_fill_id)
            conn.execute("COMMIT")
        except BaseException:
            self.rollback()
            raise
        self._w_dirty = Snapshot()
        self._w_snapshot_at = time.monotonic()

    def _insert_fills(self, conn: Connection, fills: list[Fill], outcome: BatchOutcome) -> None:
        results = [True] * len(fills)
        outcome.results = results
        keys = [(f.venue, f.trade_id) for f in fills]
        unique = fills
        if len(set(keys)) != len(keys):  # the same trade twice in one batch: keep the first
            seen: set[tuple[str, str]] = set()
            unique = []
            for index, (fill, key) in enumerate(zip(fills, keys, strict=True)):
                if key in seen:
                    results[index] = False
                else:
                    seen.add(key)
                    unique.append(fill)
        params: list[Any] = []
        extend = params.extend
        for f in unique:
            extend((f.venue, f.trade_id, f.symbol, "buy" if f.side is _BUY else "sell", str(f.amount),
                    str(f.price), str(f.fee), f.fee_currency, f.ts, f.received_at, f.client_order_id))
        inserted_count = 0
        last_id = self._w_last_fill_id
        returns_ids = self.storage.returns_fill_ids
        start = 0
        remaining = len(unique)
        rows = self._w_rows_per_statement
        while remaining:
            while rows > remaining:
                rows //= 2
            cursor = conn.execute(self.storage.fills_insert(rows),
                                  params[start * _FILL_WIDTH:(start + rows) * _FILL_WIDTH])
            if returns_ids:  # ids with gaps (PostgreSQL): the largest one returned
                ids = [row[0] for row in cursor.fetchall()]
                inserted_count += len(ids)
                last_id = max(last_id, *ids) if ids else last_id
            else:  # SQLite's rowids follow the largest one: dense
                inserted_count += cursor.rowcount
                last_id += cursor.rowcount
            start += rows
            remaining -= rows
        if inserted_count:
            outcome.last_fill_id = last_id
        inserted = unique
        if inserted_count != len(unique):  # some were already journaled: find which ones are new
            new_keys = set(conn.execute("SELECT venue, trade_id FROM fills WHERE fill_id > ?",
                                        (self._w_last_fill_id,)).fetchall())
            if len(new_keys) != inserted_count:
                raise LedgerError(f"journal out of step: {inserted_count} fills inserted, "
                                  f"{len(new_keys)} found after fill id {self._w_last_fill_id}")
            inserted = []
            for index, key in enumerate(keys):
                if not results[index]:
                    continue
                if key in new_keys:
                    new_keys.discard(key)
                    inserted.append(fills[index])
                else:
                    results[index] = False
        outcome.new_fills = len(inserted)
        outcome.inserted = inserted
        if len(inserted) != len(fills):
            ledger_id = self._w_ledger_id
            outcome.echoes = sum(1 for fill, new in zip(fills, results, strict=True)
                                 if not new and _is_echo(fill, ledger_id))
            outcome.duplicates = len(fills) - len(inserted) - outcome.echoes
        if inserted:
            self._account(conn, inserted, outcome)

    def _account(self, conn: Connection, fills: Iterable[Fill], outcome: BatchOutcome) -> None:
        """Aggregate the batch's new fills into absolute positions/totals (``outcome`` is fresh)."""
        applied = apply_fills(fills, self._w_positions, self._w_venues, self._w_trades)
        outcome.positions.update(applied.positions)
        outcome.venues.update(applied.venues)
        outcome.trades.update(applied.trades)
        outcome.fills_by_symbol.update(applied.fills_by_symbol)
        outcome.hedge_fees.update(applied.hedge_fees)
        for cid, amount in applied.order_fills.items():
            previous = self._w_order_fills.get(cid)
            if previous is None:
                row = conn.execute("SELECT filled FROM order_fills WHERE client_order_id = ?",
                                   (cid,)).fetchone()
                previous = Decimal(row[0]) if row is not None else ZERO
            outcome.order_fills[cid] = previous + amount

    def _move(self, outcome: BatchOutcome, key: tuple[str, str], delta: Decimal) -> None:
        """Move position ``key`` by ``delta`` within the batch (absolute value in the outcome)."""
        current = outcome.positions.get(key)
        if current is None:
            current = self._w_positions.get(key, ZERO)
        outcome.positions[key] = current + delta

    def _write_snapshot(self, positions: dict[tuple[str, str], Decimal], venues: dict[str, VenueTotals],
                        order_fills: dict[str, Decimal],
                        trades: dict[tuple[str, str], TradeTotals] | None = None) -> None:
        conn = self._conn
        assert conn is not None
        if positions:
            conn.executemany(_UPSERT_POSITION, [(v, a, str(amount)) for (v, a), amount in positions.items()])
        if venues:
            conn.executemany(_UPSERT_VENUE,
                             [(v, t.fills, str(t.fees), t.last_fill_ts) for v, t in venues.items()])
        if order_fills:
            conn.executemany(_UPSERT_ORDER_FILL, [(cid, str(filled)) for cid, filled in order_fills.items()])
        if trades:
            conn.executemany(_UPSERT_TRADES, [(v, s, t.fills, str(t.amount), str(t.notional), str(t.fees))
                                              for (v, s), t in trades.items()])

    def insert_intent(self, conn: Connection, request: _IntentRequest) -> HedgeIntent:
        intent = request.intent
        conn.execute(
            "INSERT INTO intents (intent_id, client_order_id, underlying, venue, symbol, side, amount, created_at, "
            "reduce_only, order_type, limit_price, reason, decision_mid, decision_half_spread, status, filled, "
            "is_open) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '0', 1)",
            (intent.intent_id, intent.client_order_id, intent.underlying, intent.venue, intent.symbol,
             intent.side.value, str(intent.amount), intent.created_at, int(intent.reduce_only),
             intent.order_type.value, None if intent.limit_price is None else str(intent.limit_price),
             intent.reason, _text(intent.decision_mid), _text(intent.decision_half_spread),
             OrderStatus.NEW.value))
        self._w_open_ids.add(intent.intent_id)
        self._w_next_intent_id = intent.intent_id + 1
        self._w_order_fills.put(intent.client_order_id, ZERO)  # a new client id: no fill to read back
        return intent

    def _insert_state(self, conn: Connection, request: _StateRequest, outcome: BatchOutcome) -> None:
        cid = request.client_order_id
        final = request.status.is_final
        filled_text = str(request.filled)
        conn.execute(_INSERT_EVENT, (
            cid, request.status.value, filled_text,
            None if request.average_price is None else str(request.average_price), request.venue_order_id,
            request.ts, request.detail))
        intent_id = issued_intent_id(cid, self._w_ledger_id)
        if intent_id is not None:  # the intent row carries the last state
            if not final:
                closed = conn.execute(f"SELECT {_INTENT_COLUMNS} FROM intents WHERE intent_id = ? "
                                      "AND client_order_id = ? AND is_open = 0", (intent_id, cid)).fetchone()
                if closed is not None:
                    outcome.reopened.append(_intent_from_row(closed))
                    if intent_id < self._w_open_from:  # reopened below the floor: lower it with the reopening
                        self._w_open_from = intent_id
                        conn.execute(_SET_META, ("open_intents_from", str(intent_id)))
            updated = conn.execute("UPDATE intents SET status = ?, filled = ?, is_open = ? "
                                   "WHERE intent_id = ? AND client_order_id = ?",
                                   (request.status.value, filled_text, 0 if final else 1, intent_id, cid)).rowcount
            if updated:
                if final:
                    self._w_open_ids.discard(intent_id)
                else:
                    self._w_open_ids.add(intent_id)
        outcome.states.append((cid, request.status, request.filled))
