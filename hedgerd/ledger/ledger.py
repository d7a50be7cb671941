"""Inventory ledger: a durable SQLite (WAL) journal of fills, hedge intents and order states.

Positions per (venue, asset) are held in memory and served without I/O. Writes are queued and
committed in batches (group commit, up to ``batch_max`` per transaction) by one writer with its
own connection; a caller's ``await`` resolves only after the transaction holding its write has
committed, so whatever the risk loop acts on is on disk (safe against a process crash with
``synchronous=NORMAL``, against power loss with ``FULL``). The ``submit_*`` forms queue a write
and return its future at once: :meth:`InventoryLedger.submit_intent` also returns the intent
(id and client order id allocated on the event loop, in queue order), so the risk loop hands it
to the executor without waiting, and the executor sends nothing before the future resolves.
Where the writer runs
(``commit_on``):

* ``"loop"`` (default with ``NORMAL``): on the event loop's thread, in a callback scheduled by
  the first write of a loop iteration, so every write queued in that iteration shares the
  transaction. A ``NORMAL`` commit appends to the WAL without fsync (tens of microseconds),
  which is cheaper than a round trip to another thread (~100 us here: wake-up, GIL hand-over,
  ``call_soon_threadsafe``). Opening, checkpoints and WAL resets (which fsync) run in threads.
* ``"thread"`` (default with ``FULL``): on a dedicated writer thread, so a commit's fsync never
  stalls the event loop.

Storage layout (schema version 2; a version-1 file is migrated when opened). Every Decimal is
stored as TEXT, exactly. Each table or index a commit touches costs it at least one WAL page, so
the tables written on the reaction path (fills, intents, order events) carry no index they can
do without:

* ``fills``: the journal, ``UNIQUE(venue, trade_id)``; a repeat is ignored and counted, as an
  echo when it is a fill of an order this ledger issued (its client order id carries the ledger
  id: the order response, order stream and trade stream each deliver it), else as a duplicate.
* ``intents``: one row per hedge intent, by intent id (no other index: a client order id is
  ``<prefix><ledger id>x<intent id>``, so the rowid finds its intent), carrying the order's last
  state. Open intents reload with one range read from ``meta.open_intents_from`` (no open intent
  has a smaller id; raised with the aggregates, lowered in the transaction that reopens one).
* ``order_events``: every order state change after the intent's creation, append-only.
* ``adjustments``: manual position corrections (e.g. a venue position adopted at startup).
* ``positions``, ``venue_totals``, ``order_fills``, ``trade_totals``: a snapshot of the aggregates
  derived from the journal (``trade_totals``: per venue and symbol, the fill count, net base
  amount, net quote notional and quote fees that :mod:`hedgerd.risk` turns into hedged-book
  PnL), so opening costs O(assets) instead of O(fills). ``order_fills`` (read back on a cache
  miss) is written in the same transaction as the fills; the other three at most every
  ``snapshot_interval`` seconds, in a transaction with fills, together with the fill id they
  cover (``meta.snapshot_fill_id``), and always with an adjustment and on close — each costs
  as much as the fill insert itself. On open the fills after that id (at most
  ``snapshot_interval`` seconds of them after a crash) are added to the snapshot; then its fill
  counts (``venue_totals`` and ``trade_totals``) are checked against the journal and it is
  rebuilt from the journal if either differs (so a ledger written before ``trade_totals``
  existed gets it on its next open); :meth:`InventoryLedger.verify` recomputes everything from
  the journal.

The writer never checkpoints inside a commit (``wal_autocheckpoint=0``): a checkpointer thread
copies the WAL back into the database every ``checkpoint_interval`` seconds from its own
connection (PASSIVE, so it never waits for or blocks the writer); when the log outgrows
``wal_size_limit`` the writer's connection, between transactions (in a worker thread in loop
mode, writes waiting meanwhile), copies the last few frames so the next commit rewinds the WAL,
and ``close`` checkpoints and truncates it.

A flock on the database file itself keeps a second ledger instance off it, whatever name
(symlink, hard link, relative path) it is opened by (:mod:`hedgerd.ledger.lock`).

Memory stays flat in the number of fills: trade ids live only in the UNIQUE index on disk
(duplicates inside one batch are caught in memory, and so are repeats of the last few thousand
fills of our own orders, which arrive up to three times each), and per-order lookups use
bounded caches backed by the database.

All public methods must be called from the thread running the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
import re
import secrets
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Generic, TypeVar

from hedgerd.ledger.accounting import (
    ARITHMETIC,
    Snapshot,
    TradeTotals,
    VenueTotals,
    apply_fills,
)
from hedgerd.ledger.checkpointer import Checkpointer
from hedgerd.ledger.committer import Committer, LoopCommitter, ThreadCommitter, _settle_exception, _settle_result
from hedgerd.ledger.lock import LedgerFileLock, LedgerLockError
from hedgerd.ledger.schema import (
    _FILL_COLUMNS,
    _FILL_ROW,
    _FILL_WIDTH,
    _INSERT_EVENT,
    _INTENT_COLUMNS,
    _INTENT_FIELDS,
    _SCHEMA,
    _SET_META,
    _UPSERT_ORDER_FILL,
    _UPSERT_POSITION,
    _UPSERT_TRADES,
    _UPSERT_VENUE,
    SCHEMA_VERSION,
    _migrate_from_v1,
)
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)

ZERO = Decimal(0)
CLIENT_ID_MAX_LEN = 36
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{0,8}$")  # 8 + 8 (ledger id) + 1 + 19 (int64) = 36
_SYNCHRONOUS_LEVELS = {"NORMAL": 1, "FULL": 2}
_AGGREGATE_BATCH = 4_096  # fills per apply_fills call when aggregating the whole journal
_CACHE_SIZE = 16_384  # per-order entries kept in memory; misses read the database
#: Trade ids of our own orders' fills journaled lately. Each such fill arrives up to three times
#: (the order's response, the order stream, the trade stream); a repeat found here is answered as
#: the repeat it is (an echo, see ``_is_echo``) without a commit. A repeat older than this goes to
#: the UNIQUE index as before.
_RECENT_OWN_FILLS = 4_096
CHECKPOINT_INTERVAL = 0.05  # seconds between background WAL checkpoints (small: each fsync stays short)
SNAPSHOT_INTERVAL = 1.0  # seconds between writes of the aggregate tables (a crash replays at most this much)
#: Page size of a new ledger file (an existing file keeps its own). Every commit writes each page
#: it touches to the WAL in full, and the checkpoint writes it again: a hedge cycle touches about
#: fifteen pages (fills, intents, order events and their indexes), so 1 KiB pages write a third of
#: the bytes 4 KiB pages would, and commits stall less often behind the disk.
PAGE_SIZE = 1024
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes: a larger WAL is brought back to the start (and truncated to this)

_BUY = Side.BUY

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class LedgerError(Exception):
    """The ledger cannot be used: an I/O failure (read-only file, disk full), a corrupt or
    foreign file, or use after close. The message says which."""


class _LRU(Generic[K, V]):
    """A bounded mapping that forgets the least recently used entry."""

    def __init__(self, capacity: int) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._capacity = capacity

    def get(self, key: K) -> V | None:
        value = self._data.get(key)
        if value is not None:
            self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self._capacity:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


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
    fn: Callable[[sqlite3.Connection], Any]


_Op = tuple[Any, "asyncio.Future[Any]"]
PreparedIntent = tuple[HedgeIntent, "asyncio.Future[Any]"]
"""An intent from :meth:`InventoryLedger.prepare_intent` and the future of its commit."""
CommitHook = Callable[[list[Fill]], Sequence[PreparedIntent]]
"""Asked once per commit with its new fills for the intents that join it (see ``commit_hook``)."""


@dataclass(slots=True)
class _OpenResult:
    ledger_id: str
    snapshot: Snapshot
    open_intents: list[tuple[HedgeIntent, OrderStatus, Decimal, Decimal]]  # intent, status, reported, journaled
    rebuilt: bool
    synchronous: str
    journal_mode: str
    next_intent_id: int


@dataclass(slots=True)
class _BatchOutcome:
    """What one committed transaction changed, handed from the writer to the event loop."""

    futures: list[asyncio.Future[Any]]
    results: list[Any]
    new_fills: int = 0
    duplicates: int = 0  # repeats of fills that are not our own orders' (see _is_echo)
    echoes: int = 0  # repeats of our own orders' fills
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    venues: dict[str, VenueTotals] = field(default_factory=dict)
    order_fills: dict[str, Decimal] = field(default_factory=dict)
    trades: dict[tuple[str, str], TradeTotals] = field(default_factory=dict)
    fills_by_symbol: dict[tuple[str, str], int] = field(default_factory=dict)
    hedge_fees: dict[str, Decimal] = field(default_factory=dict)  # fees of our own (client id) fills
    reopened: list[HedgeIntent] = field(default_factory=list)
    states: list[tuple[str, OrderStatus, Decimal]] = field(default_factory=list)
    seconds: float = 0.0  # BEGIN to COMMIT
    inserted: list[Fill] = field(default_factory=list)  # the new fills, in order
    view_applied: bool = False  # the event loop's view already has this batch (commit hook)


def _intent_from_row(row: Sequence[Any]) -> HedgeIntent:
    return HedgeIntent(
        intent_id=int(row[0]), client_order_id=str(row[1]), underlying=row[2], venue=row[3], symbol=row[4],
        side=Side(row[5]), amount=Decimal(row[6]), created_at=float(row[7]), reduce_only=bool(row[8]),
        order_type=OrderType(row[9]), limit_price=None if row[10] is None else Decimal(row[10]),
        reason=row[11])


def _issued_intent_id(client_order_id: str, ledger_id: str) -> int | None:
    """The intent id inside a client order id this ledger issued (``<prefix><ledger id>x<id>``),
    or None for any other id. Callers match the row's ``client_order_id`` too, so a look-alike
    (another prefix, leading zeros) finds nothing."""
    head, sep, digits = client_order_id.rpartition("x")
    if not sep or not digits.isascii() or not digits.isdigit() or not head.endswith(ledger_id):
        return None
    return int(digits)


def _is_echo(fill: Fill, ledger_id: str) -> bool:
    """True when ``fill`` (a repeat) is of an order this ledger issued: its client order id
    carries this ledger's id. Such a fill arrives up to three times by design."""
    cid = fill.client_order_id
    return cid is not None and _issued_intent_id(cid, ledger_id) is not None


def _check_finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")


def aggregate_journal(conn: sqlite3.Connection, upto: int | None = None) -> Snapshot:
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


class InventoryLedger:
    """Durable journal of fills, hedge intents and order states, with in-memory positions.

    Position accounting: a spot fill on ``BASE/QUOTE`` moves (venue, BASE) by the signed amount
    and (venue, QUOTE) by minus signed amount x price; a derivative fill moves (venue, symbol) by
    the signed amount (base units); a fee with a fee currency is subtracted from
    (venue, fee_currency). ``fees_paid`` sums fee amounts per venue as reported, whatever their
    currency.
    """

    def __init__(self, path: Path, *, synchronous: str = "NORMAL", batch_max: int = 512,
                 metrics: Metrics | None = None, checkpoint_interval: float = CHECKPOINT_INTERVAL,
                 wal_size_limit: int = WAL_SIZE_LIMIT, commit_on: str | None = None,
                 snapshot_interval: float = SNAPSHOT_INTERVAL) -> None:
        level = synchronous.upper()
        if level not in _SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        if commit_on is None:
            commit_on = "loop" if level == "NORMAL" else "thread"
        if commit_on not in ("loop", "thread"):
            raise ValueError(f"commit_on must be 'loop' or 'thread', got {commit_on!r}")
        if batch_max < 1:
            raise ValueError("batch_max must be at least 1")
        if not checkpoint_interval > 0:
            raise ValueError("checkpoint_interval must be positive")
        if wal_size_limit < 1:
            raise ValueError("wal_size_limit must be positive")
        if not snapshot_interval >= 0:
            raise ValueError("snapshot_interval must not be negative")
        self.path = Path(path)
        self.synchronous = level
        #: True: transactions commit on the event loop's thread at the end of the loop iteration the
        #: writes were queued in; False: on the writer thread (see the module docstring)
        self.commit_on_loop = commit_on == "loop"
        self.batch_max = batch_max
        self.metrics = metrics
        self.ledger_id = ""
        #: synchronous level and journal mode as read back from the writer connection
        self.synchronous_in_effect = ""
        self.journal_mode = ""
        #: True when the last open rebuilt the snapshot tables from the whole journal
        self.rebuilt_from_journal = False
        #: fills the last open added to aggregates written before them (after a crash: at most
        #: ``snapshot_interval`` seconds of fills)
        self.replayed_fills = 0
        #: transactions committed by the writer, and the most writes one of them carried
        self.commits = 0
        self.largest_batch = 0
        #: WAL resets the writer forced (checkpoints: see :attr:`checkpoints`)
        self.wal_resets = 0
        self.checkpoint_interval = checkpoint_interval
        self.snapshot_interval = snapshot_interval
        self.wal_size_limit = wal_size_limit
        #: repeats of journaled fills: of other fills (duplicates) and of our own orders' (echoes)
        self.duplicate_fills = 0
        self.fill_echoes = 0
        self.fill_count = 0

        self._loop: asyncio.AbstractEventLoop | None = None
        self._create_future: Callable[[], asyncio.Future[Any]] = _no_loop
        self._committer: Committer = LoopCommitter(self) if self.commit_on_loop else ThreadCommitter(self)
        self._opened = False  # open() was called
        self._accepting = False  # between a successful open() and close() or a write failure
        self._closed = False
        self._failure: LedgerError | None = None
        self._checkpointer = Checkpointer(self.path, synchronous=level, interval=checkpoint_interval,
                                          wal_size_limit=wal_size_limit,
                                          wake_writer=self._committer.kick_from_thread)
        self._file_lock = LedgerFileLock(self.path)
        self._reader: sqlite3.Connection | None = None

        # event-loop side view, updated after each commit
        self._positions: dict[tuple[str, str], Decimal] = {}
        self._venues: dict[str, VenueTotals] = {}
        self._trades: dict[tuple[str, str], TradeTotals] = {}
        self._filled_cache: _LRU[str, Decimal] = _LRU(_CACHE_SIZE)
        self._state_cache: _LRU[str, tuple[OrderStatus, Decimal]] = _LRU(_CACHE_SIZE)
        self._recent_own_fills: _LRU[tuple[str, str], bool] = _LRU(_RECENT_OWN_FILLS)  # committed only
        self._open_intents: dict[str, HedgeIntent] = {}
        self._open_states: dict[str, tuple[OrderStatus, Decimal]] = {}
        self._fill_counters: dict[tuple[str, str], Any] = {}
        self._inventory_gauges: dict[tuple[str, str], Any] = {}

        # writer-thread side state (touched only by the writer thread once it runs)
        self._conn: sqlite3.Connection | None = None
        self._w_positions: dict[tuple[str, str], Decimal] = {}
        self._w_venues: dict[str, VenueTotals] = {}
        self._w_trades: dict[tuple[str, str], TradeTotals] = {}
        self._w_order_fills: _LRU[str, Decimal] = _LRU(_CACHE_SIZE)
        self._w_last_fill_id = 0
        self._w_dirty = Snapshot()  # aggregates changed since they were last written (absolute values)
        self._w_snapshot_at = 0.0
        self._next_intent_id = 1  # allocated on the event loop (submit_intent), in queue order
        self._caller_decimal_context = decimal.getcontext()
        self.commit_hook: CommitHook | None = None
        """Asked on the event loop, once per commit with new fills, for the intents to journal
        with them: it gets the new fills once the view (:meth:`position`, :meth:`trade_totals`,
        ...) includes them and before any caller's future resolves, and returns intents made by
        :meth:`prepare_intent`. Committing on the loop it runs inside the fills' transaction,
        before COMMIT, and its intents join that transaction (queued behind, if other writes
        were queued meanwhile, so the queue's order is kept); with a writer thread it runs
        right after the commit and its intents are queued. It must not raise; if the commit
        then fails, every future of the transaction (its intents' included) fails and the
        ledger refuses further writes."""
        self._w_rows_per_statement = 1
        self._w_ledger_id = ""
        self._w_next_intent_id = 1
        self._w_open_ids: set[int] = set()  # intents open in the database (as of the current transaction)
        self._w_open_from = 1  # meta.open_intents_from: no open intent has a smaller id

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Lock the file, check its integrity, create the schema, start the writer thread and
        load positions and open intents. Raises :class:`LedgerError` on a corrupt or foreign
        file, a read-only file or a ledger already open elsewhere."""
        with self._awaiting_outside_work():
            await self._open()

    async def _open(self) -> None:
        if self._opened:
            raise LedgerError("ledger already opened")
        self._opened = True
        loop = asyncio.get_running_loop()
        try:
            self._acquire_file_lock()
        except LedgerError:
            self._closed = True
            raise
        self._loop = loop
        self._create_future = loop.create_future
        result = await self._committer.open()
        self.ledger_id = result.ledger_id
        self.synchronous_in_effect = result.synchronous
        self.journal_mode = result.journal_mode
        self.rebuilt_from_journal = result.rebuilt
        self._next_intent_id = result.next_intent_id
        snapshot = result.snapshot
        self._positions = dict(snapshot.positions)
        self._venues = {v: VenueTotals(t.fills, t.fees, t.last_fill_ts) for v, t in snapshot.venues.items()}
        self.fill_count = sum(t.fills for t in self._venues.values())
        self._trades = dict(snapshot.trades)
        for intent, status, reported, journaled in result.open_intents:
            self._open_intents[intent.client_order_id] = intent
            self._open_states[intent.client_order_id] = (status, reported)
            self._filled_cache.put(intent.client_order_id, journaled)
        self._reader = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                       check_same_thread=False)
        if self.metrics is not None:
            for key, amount in self._positions.items():
                self._inventory_gauge(key).set(float(amount))
        self._accepting = True

    async def close(self) -> None:
        """Commit everything queued, stop the writer thread, checkpoint and close the file."""
        with self._awaiting_outside_work():
            await self._close()

    async def _close(self) -> None:
        if not self._opened or self._closed:
            self._closed = True
            return
        self._closed = True
        self._accepting = False
        self._committer.stopping = True
        await self._committer.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._release_file_lock()

    def _awaiting_outside_work(self) -> contextlib.AbstractContextManager[None]:
        """Held by every public coroutine method while it waits for work off the event loop (the
        writer thread, worker threads): the seam a virtual-time simulation overrides so its time
        stands still meanwhile (:class:`hedgerd.simulate.SimulationLedger`). Nothing here.
        (``record_fill`` awaits :meth:`submit_fill`, whose future a subclass can hold itself.)"""
        return contextlib.nullcontext()

    async def __aenter__(self) -> InventoryLedger:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def checkpoints(self) -> int:
        """WAL checkpoints run by the background checkpointer."""
        return self._checkpointer.checkpoints

    @property
    def failure(self) -> LedgerError | None:
        """The write failure that stopped the ledger, if any."""
        return self._failure

    # ------------------------------------------------------------------ writes

    def submit_fill(self, fill: Fill) -> asyncio.Future[bool]:
        """Queue ``fill`` for the next group commit; the future resolves once it is durable
        (True if new, False for a duplicate). ``record_fill`` is ``await submit_fill(fill)``;
        this form lets a producer pipeline many fills before awaiting them. A fill whose
        awaiting caller is cancelled is still journaled."""
        if not self._accepting:
            raise self._unwritable()
        amount = fill.amount
        if not (amount.is_finite() and fill.price.is_finite() and fill.fee.is_finite()) \
                or amount <= ZERO or fill.price < ZERO:
            raise ValueError(f"invalid fill amounts: {fill!r}")
        if fill.client_order_id is not None and self._recent_own_fills.get((fill.venue, fill.trade_id)):
            return self._known_repeat(fill)
        future: asyncio.Future[bool] = self._enqueue(fill)
        return future

    def _known_repeat(self, fill: Fill) -> asyncio.Future[bool]:
        """The answer to a fill already committed: False, as the commit would give, without one."""
        future: asyncio.Future[bool] = self._create_future()
        future.set_result(False)
        echo = _is_echo(fill, self.ledger_id)
        if echo:
            self.fill_echoes += 1
        else:
            self.duplicate_fills += 1
        if self.metrics is not None:
            (self.metrics.fill_echoes if echo else self.metrics.duplicate_fills).inc()
        return future

    async def record_fill(self, fill: Fill) -> bool:
        """Journal a fill; True if new, False if (venue, trade_id) was already recorded.
        Returns after the commit that made it durable; positions are updated by then."""
        return await self.submit_fill(fill)

    async def new_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                         created_at: float, reduce_only: bool = False,
                         order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                         reason: str = "", client_id_prefix: str = "hgd") -> HedgeIntent:
        """Journal a hedge intent (and its NEW order state) and return it with its intent id and
        client order id ``f"{prefix}{ledger_id}x{intent_id}"``; durable before it returns."""
        intent, durable = self.submit_intent(
            underlying=underlying, venue=venue, symbol=symbol, side=side, amount=amount, created_at=created_at,
            reduce_only=reduce_only, order_type=order_type, limit_price=limit_price, reason=reason,
            client_id_prefix=client_id_prefix)
        with self._awaiting_outside_work():
            await durable
        return intent

    def submit_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                      created_at: float, reduce_only: bool = False,
                      order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                      reason: str = "", client_id_prefix: str = "hgd") -> tuple[HedgeIntent, asyncio.Future[Any]]:
        """Queue a hedge intent for the next group commit; return it at once (intent id and client
        order id allocated) with a future that resolves once it is durable.

        Nothing may be sent for the intent before that future has resolved (:meth:`new_intent`
        awaits it; :meth:`hedgerd.executor.HedgeExecutor.start` takes it as ``durable``). Meanwhile
        the intent already counts as open (:meth:`open_intents`, :meth:`order_state` NEW); if
        the commit fails, the future fails and the ledger refuses every later write."""
        intent, durable = self.prepare_intent(
            underlying=underlying, venue=venue, symbol=symbol, side=side, amount=amount, created_at=created_at,
            reduce_only=reduce_only, order_type=order_type, limit_price=limit_price, reason=reason,
            client_id_prefix=client_id_prefix)
        self._queue_op(_IntentRequest(intent), durable)
        return intent, durable

    def prepare_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                       created_at: float, reduce_only: bool = False,
                       order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                       reason: str = "", client_id_prefix: str = "hgd") -> PreparedIntent:
        """:meth:`submit_intent` without queueing it: for the :attr:`commit_hook` to return, which
        journals it with the fills the hook was asked about. Every prepared intent must be
        returned by the hook that made it (it counts as open from here)."""
        if not self._accepting:
            raise self._unwritable()
        if not _PREFIX_PATTERN.match(client_id_prefix):
            raise ValueError(f"client id prefix must be 0-8 of [A-Za-z0-9_-], got {client_id_prefix!r}")
        _check_finite("amount", amount)
        if amount <= ZERO:
            raise ValueError(f"intent amount must be positive, got {amount}")
        if limit_price is not None:
            _check_finite("limit_price", limit_price)
        intent_id = self._next_intent_id
        client_order_id = f"{client_id_prefix}{self.ledger_id}x{intent_id}"
        if len(client_order_id) > CLIENT_ID_MAX_LEN or not CLIENT_ID_PATTERN.match(client_order_id):
            raise LedgerError(f"client order id {client_order_id!r} is not a valid venue client id")
        intent = HedgeIntent(
            intent_id=intent_id, client_order_id=client_order_id, underlying=underlying, venue=venue,
            symbol=symbol, side=Side(side), amount=amount, created_at=float(created_at),
            reduce_only=bool(reduce_only), order_type=OrderType(order_type), limit_price=limit_price,
            reason=reason)
        self._next_intent_id = intent_id + 1  # never reused, even if this commit fails
        self._open_intents[client_order_id] = intent
        self._open_states[client_order_id] = (OrderStatus.NEW, ZERO)
        self._filled_cache.put(client_order_id, ZERO)
        future: asyncio.Future[Any] = self._create_future()
        return intent, future

    async def record_order_state(self, client_order_id: str, status: OrderStatus, filled: Decimal = ZERO,
                                 average_price: Decimal | None = None, venue_order_id: str | None = None,
                                 ts: float = 0.0, detail: str = "") -> None:
        """Append an order state change for ``client_order_id``; durable before it returns."""
        filled = Decimal(filled)
        _check_finite("filled", filled)
        if average_price is not None:
            _check_finite("average_price", average_price)
        with self._awaiting_outside_work():
            await self._submit(_StateRequest(client_order_id, OrderStatus(status), filled, average_price,
                                             venue_order_id, float(ts), detail))

    async def record_adjustment(self, venue: str, asset: str, delta: Decimal, reason: str, ts: float) -> None:
        """Journal a manual position correction (e.g. adopting a venue's position at startup):
        moves (venue, asset) by ``delta``; durable before it returns. Not a fill: fill counts,
        fees and trade-id dedupe are untouched."""
        delta = Decimal(delta)
        _check_finite("delta", delta)
        with self._awaiting_outside_work():
            await self._submit(_AdjustmentRequest(venue, asset, delta, reason, float(ts)))

    async def verify(self) -> None:
        """Recompute every aggregate from the whole journal (in a worker thread) and compare it
        with the snapshot tables and the in-memory view; raise LedgerError if they differ."""
        with self._awaiting_outside_work():
            await self._verify()

    async def _verify(self) -> None:
        if not self.ledger_id or self._closed:
            raise self._unwritable()
        uri = f"{self.path.resolve().as_uri()}?mode=ro"
        await self._writer_call(self._flush_aggregates)

        def compute() -> tuple[Snapshot, Snapshot, int]:
            conn = sqlite3.connect(uri, uri=True)
            try:
                conn.execute("BEGIN")  # one consistent read snapshot for all
                row = conn.execute("SELECT value FROM meta WHERE key = 'snapshot_fill_id'").fetchone()
                journal = aggregate_journal(conn, upto=None if row is None else int(row[0]))
                stored = _load_snapshot(conn)
                total = int(conn.execute("SELECT count(*) FROM fills").fetchone()[0])
                conn.execute("COMMIT")
                return journal, stored, total
            finally:
                conn.close()

        journal, stored, total = await asyncio.to_thread(compute)
        problems = _compare(journal, stored, "snapshot tables")
        covered = sum(t.fills for t in journal.venues.values())
        if self.fill_count == total == covered:  # memory is at the same point
            live = Snapshot(dict(self._positions), self._venues, {}, dict(self._trades))
            problems += _compare(journal, live, "memory", check_orders=False)
        if problems:
            raise LedgerError("ledger inconsistent: " + "; ".join(problems[:5]))

    async def _submit(self, request: object) -> Any:
        if not self._accepting:
            raise self._unwritable()
        return await self._enqueue(request)

    def _enqueue(self, request: object) -> asyncio.Future[Any]:
        """Queue a write for the next group commit; its future resolves once it is durable."""
        future: asyncio.Future[Any] = self._create_future()
        self._queue_op(request, future)
        return future

    def _queue_op(self, request: object, future: asyncio.Future[Any]) -> None:
        committer = self._committer
        committer.queue.append((request, future))
        committer.kick()

    def flush_now(self) -> bool:
        """Loop mode: commit what is queued right now rather than at the end of this event-loop
        iteration (a stream's batch, queued whole, needs no later company); the futures resolve
        before this returns. True if it did; it does nothing in thread mode, inside a commit,
        with nothing queued, or while a WAL reset holds the queue."""
        return self._committer.flush_now()

    async def _writer_call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer thread's connection after the writes queued before it
        (maintenance and test hook)."""
        result: T = await self._submit(_CallRequest(fn))
        return result

    def _unwritable(self) -> LedgerError:
        if self._failure is not None:
            return LedgerError(f"ledger unusable after an earlier failure: {self._failure}")
        if self._closed and self.ledger_id:  # opened successfully, then closed
            return LedgerError("ledger closed")
        return LedgerError("ledger not open")

    # ------------------------------------------------------------------ reads (no I/O on hits)

    def position(self, venue: str, asset: str) -> Decimal:
        """Signed position of ``asset`` on ``venue`` (base units; derivatives keyed by symbol)."""
        return self._positions.get((venue, asset), ZERO)

    def positions(self) -> dict[tuple[str, str], Decimal]:
        """A copy of every (venue, asset) position."""
        return dict(self._positions)

    def fees_paid(self, venue: str) -> Decimal:
        """Sum of fees of the journaled fills of ``venue``."""
        totals = self._venues.get(venue)
        return totals.fees if totals is not None else ZERO

    def trade_totals(self) -> dict[tuple[str, str], TradeTotals]:
        """Per (venue, symbol): what its journaled fills add up to (for PnL, see :mod:`hedgerd.risk`)."""
        return dict(self._trades)

    def last_fill_ts(self, venue: str) -> float | None:
        """Latest venue timestamp among the journaled fills of ``venue``."""
        totals = self._venues.get(venue)
        return totals.last_fill_ts if totals is not None else None

    def last_adjustment_ts(self, venue: str) -> float | None:
        """Time of the latest position adjustment journaled for ``venue`` (e.g. a startup adoption)."""
        row = self._read_one("SELECT MAX(ts) FROM adjustments WHERE venue = ?", venue)
        return None if row is None or row[0] is None else float(row[0])

    def filled_for(self, client_order_id: str) -> Decimal:
        """Sum of the amounts of journaled fills carrying ``client_order_id``."""
        cached = self._filled_cache.get(client_order_id)
        if cached is not None:
            return cached
        row = self._read_one("SELECT filled FROM order_fills WHERE client_order_id = ?", client_order_id)
        filled = Decimal(row[0]) if row is not None else ZERO
        self._filled_cache.put(client_order_id, filled)
        return filled

    def order_state(self, client_order_id: str) -> tuple[OrderStatus, Decimal] | None:
        """Last recorded (status, filled) of ``client_order_id``, or None if never recorded.

        Answers for the client order ids this ledger issued (from memory, else from the intent
        row, which carries the last state). States recorded for any other id are journaled in
        ``order_events`` but answered only while they are among the recent ones in memory."""
        state = self._open_states.get(client_order_id) or self._state_cache.get(client_order_id)
        if state is not None:
            return state
        intent_id = _issued_intent_id(client_order_id, self.ledger_id)
        if intent_id is None:
            return None
        row = self._read_one("SELECT status, filled FROM intents WHERE intent_id = ? AND client_order_id = ?",
                             intent_id, client_order_id)
        if row is None:
            return None
        state = (OrderStatus(row[0]), Decimal(row[1]))
        self._state_cache.put(client_order_id, state)
        return state

    def open_intents(self) -> list[HedgeIntent]:
        """Intents whose last order state is not final, oldest first."""
        return list(self._open_intents.values())

    def _read_one(self, sql: str, *params: object) -> tuple[Any, ...] | None:
        if self._reader is None:
            raise self._unwritable()
        try:
            row: tuple[Any, ...] | None = self._reader.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        return row

    # ------------------------------------------------------------------ event-loop callbacks

    def _apply(self, outcome: _BatchOutcome) -> None:
        """Runs on the event loop after a commit: update the view (unless the commit hook's turn
        inside the transaction already did), ask the commit hook (its intents are queued), then
        wake the callers."""
        self.commits += 1
        if len(outcome.futures) > self.largest_batch:
            self.largest_batch = len(outcome.futures)
        if not outcome.view_applied:
            self._apply_view(outcome)
            if outcome.inserted:
                for intent, future in self._ask_hook(outcome.inserted):
                    self._queue_op(_IntentRequest(intent), future)
        recent = self._recent_own_fills
        for fill in outcome.inserted:  # committed by now: a repeat of these needs no commit
            if fill.client_order_id is not None:
                recent.put((fill.venue, fill.trade_id), True)
        for future, result in zip(outcome.futures, outcome.results, strict=True):
            if not future.done():
                future.set_result(result)
        metrics = self.metrics
        if metrics is not None:
            metrics.ledger_commit.observe(outcome.seconds)
            if outcome.duplicates:
                metrics.duplicate_fills.inc(outcome.duplicates)
            if outcome.echoes:
                metrics.fill_echoes.inc(outcome.echoes)
            for key, count in outcome.fills_by_symbol.items():
                counter = self._fill_counters.get(key)
                if counter is None:
                    counter = self._fill_counters[key] = metrics.fills.labels(*key)
                counter.inc(count)
            for key, amount in outcome.positions.items():
                self._inventory_gauge(key).set(float(amount))
            for venue, fee in outcome.hedge_fees.items():
                metrics.hedge_fees.labels(venue).inc(float(fee))

    def _apply_view(self, outcome: _BatchOutcome) -> None:
        """Move the event loop's view (positions, totals, order states) forward by ``outcome``."""
        outcome.view_applied = True
        self._positions.update(outcome.positions)
        self._venues.update(outcome.venues)
        self._trades.update(outcome.trades)
        self.fill_count += outcome.new_fills
        for cid, filled in outcome.order_fills.items():
            self._filled_cache.put(cid, filled)
        for intent in outcome.reopened:  # a non-final state after a final one
            self._open_intents[intent.client_order_id] = intent
        for cid, status, filled in outcome.states:
            if cid in self._open_intents:
                if status.is_final:
                    self._open_states.pop(cid, None)
                    del self._open_intents[cid]
                    self._state_cache.put(cid, (status, filled))
                else:
                    self._open_states[cid] = (status, filled)
            else:
                self._state_cache.put(cid, (status, filled))
        self.duplicate_fills += outcome.duplicates
        self.fill_echoes += outcome.echoes

    def _fail(self, futures: list[asyncio.Future[Any]], error: LedgerError) -> None:
        for future in futures:
            if not future.done():
                failure = LedgerError(str(error))
                failure.__cause__ = error.__cause__
                future.set_exception(failure)

    def _inventory_gauge(self, key: tuple[str, str]) -> Any:
        gauge = self._inventory_gauges.get(key)
        if gauge is None:
            assert self.metrics is not None
            gauge = self._inventory_gauges[key] = self.metrics.inventory.labels(*key)
        return gauge

    # ------------------------------------------------------------------ file lock

    def _acquire_file_lock(self) -> None:
        try:
            self._file_lock.acquire()
        except LedgerLockError as exc:
            raise LedgerError(str(exc)) from exc

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold this ledger file's lock without opening it, e.g. to move an unused ledger's files
        aside; raises :class:`LedgerError` when another instance has it open."""
        if self._opened and not self._closed:
            raise LedgerError("ledger is open: it holds its lock already")
        self._acquire_file_lock()
        try:
            yield
        finally:
            self._release_file_lock()

    def _release_file_lock(self) -> None:
        self._file_lock.release()

    # ------------------------------------------------------------------ writer thread

    def _open_connection(self) -> sqlite3.Connection:
        """The writer's connection (overridable in tests to simulate failing storage)."""
        return sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, cached_statements=64)

    def _open_storage_checked(self) -> _OpenResult:
        """:meth:`_open_storage` with every failure a :class:`LedgerError` and the connection closed."""
        with decimal.localcontext(ARITHMETIC):
            try:
                return self._open_storage()
            except LedgerError:
                self._close_connection()
                raise
            except Exception as exc:
                self._close_connection()
                raise LedgerError(f"ledger open failed: {exc!r}") from exc

    def _open_storage(self) -> _OpenResult:
        try:
            self._conn = conn = self._open_connection()
            conn.execute("PRAGMA busy_timeout = 5000")
            check = [row[0] for row in conn.execute("PRAGMA quick_check(20)")]
            if check != ["ok"]:
                problems = [line for row in check for line in str(row).splitlines() if line.strip()]
                more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
                raise LedgerError(f"ledger corrupt: {self.path}: {'; '.join(problems[:3])}{more}")
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect on a new file only
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise LedgerError(f"ledger open failed: {self.path}: cannot switch to WAL "
                                  f"(journal mode {mode})")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            synchronous = {v: k for k, v in _SYNCHRONOUS_LEVELS.items()}.get(level, str(level))
            conn.execute("PRAGMA cache_size = -16000")  # 16 MiB page cache: memory bounded, not per fill
            # No checkpoint inside a COMMIT: copying the WAL back (and its fsyncs) would stall every
            # caller of that commit. The checkpointer thread does it on its own connection instead.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
            conn.execute(f"PRAGMA journal_size_limit = {int(self.wal_size_limit)}")
            conn.execute("PRAGMA temp_store = MEMORY")
            conn.execute("BEGIN IMMEDIATE")
        except LedgerError:
            raise
        except sqlite3.Error as exc:
            raise _classify_open_error(self.path, exc) from exc
        try:
            return self._prepare_schema(synchronous, mode)
        except LedgerError:
            self._rollback()
            raise
        except sqlite3.Error as exc:
            self._rollback()
            raise _classify_open_error(self.path, exc) from exc

    def _prepare_schema(self, synchronous: str, mode: str) -> _OpenResult:
        conn = self._conn
        assert conn is not None
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        version = int(meta.get("schema_version", SCHEMA_VERSION))
        if version == 1:
            try:
                _migrate_from_v1(conn)
            except sqlite3.Error as exc:  # rolled back by the caller: the file stays at version 1
                raise LedgerError(f"ledger {self.path}: migrating schema version 1 to {SCHEMA_VERSION} failed "
                                  f"(the file is unchanged): {exc}") from exc
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        elif version != SCHEMA_VERSION:
            raise LedgerError(f"ledger schema version {version} is not supported (expected {SCHEMA_VERSION})")
        ledger_id = meta.get("ledger_id")
        if ledger_id is None:
            ledger_id = secrets.token_hex(4)
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
        variables = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        rows = 1
        while rows * 2 * _FILL_WIDTH <= variables and rows < 1024:
            rows *= 2
        self._w_rows_per_statement = rows
        open_intents = [
            (_intent_from_row(row[:12]), OrderStatus(row[12]), Decimal(row[13]), Decimal(row[14] or 0))
            for row in conn.execute(
                f"SELECT {', '.join('i.' + name for name in _INTENT_FIELDS)}, i.status, i.filled, "
                "o.filled FROM intents AS i LEFT JOIN order_fills AS o USING (client_order_id) "
                "WHERE i.intent_id >= ? AND i.is_open = 1 ORDER BY i.intent_id", (open_from,))]
        self._w_ledger_id = ledger_id
        self._w_next_intent_id = next_intent_id
        self._w_open_ids = {intent.intent_id for intent, *_ in open_intents}
        self._w_open_from = open_from
        return _OpenResult(ledger_id, snapshot, open_intents, rebuilt, synchronous, mode, next_intent_id)

    def _replay_tail(self, conn: sqlite3.Connection, snapshot: Snapshot, covered: int) -> None:
        """Add the fills journaled after the aggregates were last written (``fill_id > covered``)
        to ``snapshot`` and write it back (opening, inside its transaction)."""
        self._w_positions, self._w_venues, self._w_trades = snapshot.positions, snapshot.venues, snapshot.trades
        outcome = _BatchOutcome(futures=[], results=[])
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

    def _close_connection(self, checkpoint: bool = False) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if checkpoint:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with contextlib.suppress(sqlite3.Error):
            conn.close()

    def _final_flush(self) -> None:
        """On close: write the aggregates, so the next open replays nothing."""
        if self._failure is not None or self._conn is None:
            return
        try:
            self._flush_aggregates(self._conn)
        except sqlite3.Error as exc:  # the journal has every fill: the next open replays them
            log.warning("ledger aggregates not written on close: %s", exc)

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")

    def _reset_wal(self) -> None:
        """Let the next write start the WAL over (writer thread, between transactions).

        Under a steady stream of commits the background checkpoints never catch up with the
        last frame, and SQLite only rewinds the WAL when a write begins with every frame
        copied back. Here no frame can be added meanwhile, and the checkpointer has already
        copied all but the most recent ones, so this is short; the next commit rewinds the
        log (and truncates the file to ``wal_size_limit``)."""
        self._checkpointer.reset_due = 0.0
        conn = self._conn
        if conn is None or self._failure is not None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:  # the WAL still holds every commit: not a durability problem
            log.warning("ledger WAL checkpoint on the writer failed: %s", exc)
        else:
            self.wal_resets += 1

    def _process(self, batch: list[_Op]) -> None:
        fills: list[Fill] = []
        fill_futures: list[asyncio.Future[Any]] = []
        others: list[_Op] = []
        calls: list[_Op] = []
        for op in batch:
            payload = op[0]
            if type(payload) is Fill:
                fills.append(payload)
                fill_futures.append(op[1])
            elif type(payload) is _CallRequest:
                calls.append(op)
            else:
                others.append(op)
        if fills or others:
            outcome = _BatchOutcome(futures=fill_futures, results=[])
            try:
                self._commit(fills, others, outcome)
            except Exception as exc:  # any failure to commit stops the ledger: nothing may go unjournaled
                # (outcome.futures also holds the intents the commit hook joined to the transaction)
                self._stop_writes(exc, list(dict.fromkeys(
                    [op[1] for op in batch if type(op[0]) is not _CallRequest] + outcome.futures)))
            else:
                self._committer.post(self._apply, outcome)
        for request, future in calls:
            try:
                value = request.fn(self._conn)
            except Exception as exc:
                self._committer.post(_settle_exception, future, exc)
            else:
                self._committer.post(_settle_result, future, value)

    def _stop_writes(self, exc: Exception, futures: list[asyncio.Future[Any]]) -> None:
        """Roll back, remember the failure (every later write is refused) and fail ``futures``."""
        self._rollback()
        error = LedgerError(f"ledger write failed: {exc}")
        error.__cause__ = exc
        self._failure = error
        self._accepting = False
        log.error("ledger write failed, refusing further writes: %s", exc)
        self._committer.post(self._fail, futures, error)

    def _commit(self, fills: list[Fill], others: list[_Op], outcome: _BatchOutcome) -> None:
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
                outcome.results.append(self._insert_intent(conn, request))
        if outcome.inserted and self.commit_on_loop and self.commit_hook is not None:
            self._hook_turn(conn, outcome)
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
                self._write_aggregates(self._w_last_fill_id + outcome.new_fills)
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
        self._w_last_fill_id += outcome.new_fills

    def _hook_turn(self, conn: sqlite3.Connection, outcome: _BatchOutcome) -> None:
        """Loop mode, inside the fills' transaction: bring the view forward, ask the commit hook
        for its intents and journal them in this same transaction (when nothing else is
        queued, so the queue's order is kept; else they are queued behind it)."""
        self._apply_view(outcome)
        with decimal.localcontext(self._caller_decimal_context):  # not the ledger's own arithmetic
            prepared = self._ask_hook(outcome.inserted)
        if self._committer.queue:
            for intent, future in prepared:
                self._queue_op(_IntentRequest(intent), future)
            return
        for intent, future in prepared:
            outcome.futures.append(future)
            outcome.results.append(self._insert_intent(conn, _IntentRequest(intent)))

    def _ask_hook(self, fills: list[Fill]) -> Sequence[PreparedIntent]:
        hook = self.commit_hook
        if hook is None:
            return ()
        try:
            return hook(fills)
        except Exception:  # its bug must neither fail the commit nor leave a caller waiting
            log.exception("ledger commit hook failed")
            return ()

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

    def _write_open_floor(self, conn: sqlite3.Connection) -> None:
        """Raise ``meta.open_intents_from`` to the oldest intent open now (inside the caller's
        transaction), so opening reads open intents from there instead of scanning them all."""
        floor = self._open_floor()
        if floor != self._w_open_from:
            conn.execute(_SET_META, ("open_intents_from", str(floor)))
            self._w_open_from = floor

    def _flush_aggregates(self, conn: sqlite3.Connection) -> None:
        """Bring the aggregate tables up to the journal in a transaction of their own (writer side)."""
        dirty = self._w_dirty
        if not (dirty.positions or dirty.venues or dirty.trades) and self._open_floor() == self._w_open_from:
            return
        conn.execute("BEGIN")
        try:
            self._write_aggregates(self._w_last_fill_id)
            conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._w_dirty = Snapshot()
        self._w_snapshot_at = time.monotonic()

    def _insert_fills(self, conn: sqlite3.Connection, fills: list[Fill], outcome: _BatchOutcome) -> None:
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
        start = 0
        remaining = len(unique)
        rows = self._w_rows_per_statement
        while remaining:
            while rows > remaining:
                rows //= 2
            sql = f"INSERT OR IGNORE INTO fills ({_FILL_COLUMNS}) VALUES " + ",".join([_FILL_ROW] * rows)
            cursor = conn.execute(sql, params[start * _FILL_WIDTH:(start + rows) * _FILL_WIDTH])
            inserted_count += cursor.rowcount
            start += rows
            remaining -= rows
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

    def _account(self, conn: sqlite3.Connection, fills: Iterable[Fill], outcome: _BatchOutcome) -> None:
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

    def _move(self, outcome: _BatchOutcome, key: tuple[str, str], delta: Decimal) -> None:
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

    def _insert_intent(self, conn: sqlite3.Connection, request: _IntentRequest) -> HedgeIntent:
        intent = request.intent
        conn.execute(
            "INSERT INTO intents (intent_id, client_order_id, underlying, venue, symbol, side, amount, created_at, "
            "reduce_only, order_type, limit_price, reason, status, filled, is_open) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '0', 1)",
            (intent.intent_id, intent.client_order_id, intent.underlying, intent.venue, intent.symbol,
             intent.side.value, str(intent.amount), intent.created_at, int(intent.reduce_only),
             intent.order_type.value, None if intent.limit_price is None else str(intent.limit_price),
             intent.reason, OrderStatus.NEW.value))
        self._w_open_ids.add(intent.intent_id)
        self._w_next_intent_id = intent.intent_id + 1
        self._w_order_fills.put(intent.client_order_id, ZERO)  # a new client id: no fill to read back
        return intent

    def _insert_state(self, conn: sqlite3.Connection, request: _StateRequest, outcome: _BatchOutcome) -> None:
        cid = request.client_order_id
        final = request.status.is_final
        filled_text = str(request.filled)
        conn.execute(_INSERT_EVENT, (
            cid, request.status.value, filled_text,
            None if request.average_price is None else str(request.average_price), request.venue_order_id,
            request.ts, request.detail))
        intent_id = _issued_intent_id(cid, self._w_ledger_id)
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


def _load_snapshot(conn: sqlite3.Connection, *, with_orders: bool = True) -> Snapshot:
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


def _compare(expected: Snapshot, actual: Snapshot, where: str, *, check_orders: bool = True) -> list[str]:
    problems: list[str] = []
    for key in sorted(set(expected.positions) | set(actual.positions)):
        want, got = expected.positions.get(key, ZERO), actual.positions.get(key, ZERO)
        if want != got:
            problems.append(f"{where}: position {key} is {got}, journal says {want}")
    for venue in sorted(set(expected.venues) | set(actual.venues)):
        want_t, got_t = expected.venues.get(venue, VenueTotals()), actual.venues.get(venue, VenueTotals())
        if (want_t.fills, want_t.fees, want_t.last_fill_ts) != (got_t.fills, got_t.fees, got_t.last_fill_ts):
            problems.append(f"{where}: totals of {venue} are {got_t}, journal says {want_t}")
    for key in sorted(set(expected.trades) | set(actual.trades)):
        want_tr, got_tr = expected.trades.get(key), actual.trades.get(key)
        if want_tr != got_tr:
            problems.append(f"{where}: trade totals of {key} are {got_tr}, journal says {want_tr}")
    if check_orders:
        for cid in sorted(set(expected.order_fills) | set(actual.order_fills)):
            want, got = expected.order_fills.get(cid, ZERO), actual.order_fills.get(cid, ZERO)
            if want != got:
                problems.append(f"{where}: filled for {cid} is {got}, journal says {want}")
    return problems


def _classify_open_error(path: Path, exc: sqlite3.Error) -> LedgerError:
    message = str(exc)
    if "not a database" in message:
        return LedgerError(f"ledger file is not a SQLite database: {path}: {message}")
    if "malformed" in message or "corrupt" in message:
        return LedgerError(f"ledger corrupt: {path}: {message}")
    if "readonly" in message or "read-only" in message:
        return LedgerError(f"ledger write failed: {path} is read-only: {message}")
    return LedgerError(f"ledger open failed: {path}: {message}")


def _no_loop() -> asyncio.Future[Any]:
    raise LedgerError("ledger not open")
