"""Inventory ledger: a durable journal of fills, hedge intents and order states, in a SQLite (WAL)
file or a PostgreSQL database (:mod:`~hedgerd.ledger.storage`: what differs between the two; what
follows is said of SQLite, the default).

Positions per (venue, asset) are held in memory and served without I/O. Writes are queued and
committed in batches (group commit, up to ``batch_max`` per transaction) by one writer with its
own connection; a caller's ``await`` resolves only after the transaction holding its write has
committed, so whatever the risk loop acts on is on disk (safe against a process crash with
``synchronous=NORMAL``, against power loss with ``FULL``). The ``submit_*`` forms queue a write
and return its future at once: :meth:`InventoryLedger.submit_intent` also returns the intent
(id and client order id allocated on the event loop, in queue order), so the risk loop hands it
to the executor without waiting, and the executor sends nothing before the future resolves.
Where the writer runs (``commit_on``) is the committer's (:mod:`hedgerd.ledger.committer`):

* ``"loop"`` (default with ``NORMAL``): on the event loop's thread, in a callback scheduled by
  the first write of a loop iteration, so every write queued in that iteration shares the
  transaction. A ``NORMAL`` commit appends to the WAL without fsync, which is cheaper than a
  round trip to another thread (wake-up, GIL hand-over, ``call_soon_threadsafe``; figures in
  docs/performance.md). Opening, checkpoints and WAL resets (which fsync) run in threads.
* ``"thread"`` (default with ``FULL``): on a dedicated writer thread, so a commit's fsync never
  stalls the event loop.

The package: this facade (API, lifecycle, writes); :mod:`~hedgerd.ledger.view` (the event
loop's view: positions, totals, order states, caches); :mod:`~hedgerd.ledger.accounting` (pure
position accounting); :mod:`~hedgerd.ledger.journal` (the writer side: connection,
commits, aggregates); :mod:`~hedgerd.ledger.storage` (the backends: dialect, connections,
transactions); :mod:`~hedgerd.ledger.schema` (DDL of both, migrations);
:mod:`~hedgerd.ledger.committer`; :mod:`~hedgerd.ledger.checkpointer`; :mod:`~hedgerd.ledger.lock`.

What each table holds is in :mod:`~hedgerd.ledger.schema`; how the WAL is checkpointed, in
:mod:`~hedgerd.ledger.checkpointer`.

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
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from hedgerd.ledger import client_ids
from hedgerd.ledger.accounting import (
    Snapshot,
    TradeTotals,
    VenueTotals,
)
from hedgerd.ledger.committer import Committer, LoopCommitter, ThreadCommitter
from hedgerd.ledger.costs import CostJournal
from hedgerd.ledger.gauges import LedgerGauges
from hedgerd.ledger.journal import (
    JournalWriter,
    _AdjustmentRequest,
    _CallRequest,
    _IntentRequest,
    _is_echo,
    _StateRequest,
    read_child_orders,
    read_for_verify,
)
from hedgerd.ledger.lock import LedgerLockError
from hedgerd.ledger.outcome import BatchOutcome
from hedgerd.ledger.schema import SYNCHRONOUS_LEVELS
from hedgerd.ledger.storage import DB_ERRORS, Connection, LedgerError, PostgresStorage, storage_for
from hedgerd.ledger.view import LedgerView
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, HedgeIntent, OrderStatus, OrderType, Side

log = logging.getLogger(__name__)

ZERO = Decimal(0)
CLIENT_ID_MAX_LEN = 36
CLIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]+$")
_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_-]{0,8}$")  # 8 + 8 (ledger id) + 1 + 19 (int64) = 36
CHECKPOINT_INTERVAL = 0.05  # seconds between background WAL checkpoints (small: each fsync stays short)
SNAPSHOT_INTERVAL = 1.0  # seconds between writes of the aggregate tables (a crash replays at most this much)
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes: a larger WAL is brought back to the start (and truncated to this)


T = TypeVar("T")


PreparedIntent = tuple[HedgeIntent, "asyncio.Future[Any]"]
"""An intent from :meth:`InventoryLedger.prepare_intent` and the future of its commit."""
CommitHook = Callable[[list[Fill]], Sequence[PreparedIntent]]
"""Asked once per commit with its new fills for the intents that join it (see ``commit_hook``)."""


def _check_finite(name: str, value: Decimal) -> None:
    if not value.is_finite():
        raise ValueError(f"{name} must be finite, got {value}")


class InventoryLedger:
    """Durable journal of fills, hedge intents and order states, with in-memory positions
    (accounted as :mod:`hedgerd.ledger.accounting` says)."""

    def __init__(self, path: Path | str, *, synchronous: str = "NORMAL", batch_max: int = 512,
                 metrics: Metrics | None = None, checkpoint_interval: float = CHECKPOINT_INTERVAL,
                 wal_size_limit: int = WAL_SIZE_LIMIT, commit_on: str | None = None,
                 snapshot_interval: float = SNAPSHOT_INTERVAL) -> None:
        self.storage = storage = storage_for(path)
        if commit_on is None and isinstance(storage, PostgresStorage):
            commit_on = "thread"  # each commit waits for the server: never on the event loop
        level, commit_on = _checked_settings(synchronous, commit_on, batch_max=batch_max,
                                             checkpoint_interval=checkpoint_interval,
                                             wal_size_limit=wal_size_limit, snapshot_interval=snapshot_interval)
        #: the SQLite file (None on PostgreSQL); :attr:`location` names either, without secrets
        self.path: Path | None = None if isinstance(storage, PostgresStorage) else Path(path)
        self.location = storage.display
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
        self._checkpointer = storage.checkpointer(synchronous=level, interval=checkpoint_interval,
                                                  wal_size_limit=wal_size_limit,
                                                  wake_writer=self._committer.kick_from_thread)
        self._file_lock = storage.lock()
        self._journal = JournalWriter(storage, synchronous=level, wal_size_limit=wal_size_limit,
                                      snapshot_interval=snapshot_interval, connect=self._open_connection)
        self._reader: Connection | None = None

        self._view = LedgerView(self._read_one)  # event-loop side, updated after each commit
        self._gauges = LedgerGauges(metrics) if metrics is not None else None

        self._next_intent_id = 1  # allocated on the event loop (submit_intent), in queue order
        #: what the hedging cost is rebuilt from: funding payments, fee conversions, hedge fills
        self.costs = CostJournal(self)
        self.commit_hook: CommitHook | None = None
        """Asked on the event loop, once per commit with new fills, for the intents to journal
        with them: it gets the new fills once the view (:meth:`position`, :meth:`trade_totals`,
        ...) includes them and before any caller's future resolves, and returns intents made by
        :meth:`prepare_intent`. It runs inside the fills' transaction, before COMMIT, and its
        intents join that transaction (queued behind, if other writes were queued meanwhile, so
        the queue's order is kept); with a writer thread, the writer waits for the event loop's
        turn meanwhile (should the loop not answer, the hook runs right after the commit and
        its intents are queued). It must not raise; if the commit then fails, every future of
        the transaction (its intents' included) fails and the ledger refuses further writes."""

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
        self._view.load(result.snapshot, result.open_intents)
        self.fill_count = sum(t.fills for t in self._view.venues.values())
        try:
            self._reader = self.storage.reader()
        except DB_ERRORS as exc:
            await self._close()
            raise LedgerError(f"ledger open failed: {self.location}: reader: {exc}") from exc
        if self._gauges is not None:
            self._gauges.positions(self._view.positions)
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
        stands still meanwhile (:class:`hedgerd.sim.ledger.SimulationLedger`). Nothing here.
        (``record_fill`` awaits :meth:`submit_fill`, whose future a subclass can hold itself.)"""
        return contextlib.nullcontext()

    async def __aenter__(self) -> InventoryLedger:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def replayed_fills(self) -> int:
        """Fills the last open added to aggregates written before them (after a crash: at most
        ``snapshot_interval`` seconds of fills)."""
        return self._journal.replayed_fills

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
        parent = client_ids.parent_client_id(fill.client_order_id)
        if parent != fill.client_order_id:  # a passive intent's child order: the intent's fill
            fill = replace(fill, client_order_id=parent)
        if fill.client_order_id is not None and self._view.recent_own_fills.get((fill.venue, fill.trade_id)):
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
        if self._gauges is not None:
            self._gauges.repeat(echo)
        return future

    async def record_fill(self, fill: Fill) -> bool:
        """Journal a fill; True if new, False if (venue, trade_id) was already recorded.
        Returns after the commit that made it durable; positions are updated by then."""
        return await self.submit_fill(fill)

    async def new_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                         created_at: float, reduce_only: bool = False,
                         order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                         reason: str = "", client_id_prefix: str = "hgd",
                         decision_mid: Decimal | None = None,
                         decision_half_spread: Decimal | None = None) -> HedgeIntent:
        """Journal a hedge intent (and its NEW order state) and return it with its intent id and
        client order id ``f"{prefix}{ledger_id}x{intent_id}"``; durable before it returns."""
        intent, durable = self.submit_intent(
            underlying=underlying, venue=venue, symbol=symbol, side=side, amount=amount, created_at=created_at,
            reduce_only=reduce_only, order_type=order_type, limit_price=limit_price, reason=reason,
            client_id_prefix=client_id_prefix, decision_mid=decision_mid, decision_half_spread=decision_half_spread)
        with self._awaiting_outside_work():
            await durable
        return intent

    def submit_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                      created_at: float, reduce_only: bool = False,
                      order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                      reason: str = "", client_id_prefix: str = "hgd",
                      decision_mid: Decimal | None = None,
                      decision_half_spread: Decimal | None = None) -> tuple[HedgeIntent, asyncio.Future[Any]]:
        """Queue a hedge intent for the next group commit; return it at once (intent id and client
        order id allocated) with a future that resolves once it is durable.

        Nothing may be sent for the intent before that future has resolved (:meth:`new_intent`
        awaits it; :meth:`hedgerd.executor.HedgeExecutor.start` takes it as ``durable``). Meanwhile
        the intent already counts as open (:meth:`open_intents`, :meth:`order_state` NEW); if
        the commit fails, the future fails and the ledger refuses every later write."""
        intent, durable = self.prepare_intent(
            underlying=underlying, venue=venue, symbol=symbol, side=side, amount=amount, created_at=created_at,
            reduce_only=reduce_only, order_type=order_type, limit_price=limit_price, reason=reason,
            client_id_prefix=client_id_prefix, decision_mid=decision_mid, decision_half_spread=decision_half_spread)
        self._queue_op(_IntentRequest(intent), durable)
        return intent, durable

    def prepare_intent(self, *, underlying: str, venue: str, symbol: str, side: Side, amount: Decimal,
                       created_at: float, reduce_only: bool = False,
                       order_type: OrderType = OrderType.MARKET, limit_price: Decimal | None = None,
                       reason: str = "", client_id_prefix: str = "hgd",
                       decision_mid: Decimal | None = None,
                       decision_half_spread: Decimal | None = None) -> PreparedIntent:
        """:meth:`submit_intent` without queueing it: for the :attr:`commit_hook` to return, which
        journals it with the fills the hook was asked about. Every prepared intent must be
        returned by the hook that made it (it counts as open from here)."""
        if not self._accepting:
            raise self._unwritable()
        intent = _new_intent(
            self._next_intent_id, self.ledger_id, underlying=underlying, venue=venue, symbol=symbol, side=side,
            amount=amount, created_at=created_at, reduce_only=reduce_only, order_type=order_type,
            limit_price=limit_price, reason=reason, client_id_prefix=client_id_prefix,
            decision_mid=decision_mid, decision_half_spread=decision_half_spread)
        self._next_intent_id = intent.intent_id + 1  # never reused, even if this commit fails
        self._view.add_intent(intent)
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
        await self._writer_call(self._journal.flush_aggregates)
        journal, stored, total = await asyncio.to_thread(read_for_verify, self.storage)
        problems = _compare(journal, stored, "snapshot tables")
        covered = sum(t.fills for t in journal.venues.values())
        if self.fill_count == total == covered:  # memory is at the same point
            problems += _compare(journal, self._view.snapshot(), "memory", check_orders=False)
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

    async def _writer_call(self, fn: Callable[[Connection], T]) -> T:
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
        return self._view.positions.get((venue, asset), ZERO)

    def positions(self) -> dict[tuple[str, str], Decimal]:
        """A copy of every (venue, asset) position."""
        return dict(self._view.positions)

    def fees_paid(self, venue: str) -> Decimal:
        """Sum of fees of the journaled fills of ``venue``."""
        totals = self._view.venues.get(venue)
        return totals.fees if totals is not None else ZERO

    def trade_totals(self) -> dict[tuple[str, str], TradeTotals]:
        """Per (venue, symbol): what its journaled fills add up to (for PnL, see :mod:`hedgerd.risk`)."""
        return dict(self._view.trades)

    def symbol_trades(self, venue: str, symbol: str) -> Iterator[tuple[Decimal, Decimal]]:
        """Every journaled fill of ``symbol`` on ``venue`` as (signed amount, price), oldest first,
        read in pages from the read connection (for replaying a position's lots at startup)."""
        if self._reader is None:
            raise self._unwritable()
        try:
            cursor = self._reader.execute("SELECT side, amount, price FROM fills WHERE venue = ? AND symbol = ? "
                                          "ORDER BY fill_id", (venue, symbol))
            for side, amount, price in cursor:
                yield (Decimal(amount) if side == Side.BUY.value else -Decimal(amount)), Decimal(price)
        except DB_ERRORS as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc

    def last_fill_ts(self, venue: str) -> float | None:
        """Latest venue timestamp among the journaled fills of ``venue``."""
        totals = self._view.venues.get(venue)
        return totals.last_fill_ts if totals is not None else None

    def last_adjustment_ts(self, venue: str) -> float | None:
        """Time of the latest position adjustment journaled for ``venue`` (e.g. a startup adoption)."""
        row = self._read_one("SELECT MAX(ts) FROM adjustments WHERE venue = ?", venue)
        return None if row is None or row[0] is None else float(row[0])

    def filled_for(self, client_order_id: str) -> Decimal:
        """Sum of the amounts of journaled fills carrying ``client_order_id``."""
        return self._view.filled_for(client_order_id)

    def order_state(self, client_order_id: str) -> tuple[OrderStatus, Decimal] | None:
        """Last recorded (status, filled) of ``client_order_id``, or None if never recorded.

        Answers for the client order ids this ledger issued (from memory, else from the intent
        row, which carries the last state). States recorded for any other id are journaled in
        ``order_events`` but answered only while they are among the recent ones in memory."""
        return self._view.order_state(client_order_id, self.ledger_id)

    def child_orders(self, parent_client_id: str) -> list[tuple[str, OrderStatus, Decimal, float]]:
        """Each journaled child order of the passive intent ``parent_client_id``, by sequence
        (:func:`~hedgerd.ledger.journal.read_child_orders`: a scan, never per order)."""
        if self._reader is None:
            raise self._unwritable()
        try:
            return read_child_orders(self._reader, parent_client_id)
        except DB_ERRORS as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc

    def open_intents(self) -> list[HedgeIntent]:
        """Intents whose last order state is not final, oldest first."""
        return list(self._view.open_intents.values())

    def _read_one(self, sql: str, *params: object) -> tuple[Any, ...] | None:
        if self._reader is None:
            raise self._unwritable()
        try:
            row: tuple[Any, ...] | None = self._reader.execute(sql, params).fetchone()
        except DB_ERRORS as exc:
            raise LedgerError(f"ledger read failed: {exc}") from exc
        return row

    # ------------------------------------------------------------------ event-loop callbacks

    def _apply(self, outcome: BatchOutcome) -> None:
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
        self._view.committed(outcome.inserted)  # committed by now: a repeat of these needs no commit
        for future, result in zip(outcome.futures, outcome.results, strict=True):
            if not future.done():
                future.set_result(result)
        if self._gauges is not None:
            self._gauges.committed(outcome)

    def _apply_view(self, outcome: BatchOutcome) -> None:
        """Move the event loop's view (positions, totals, order states) forward by ``outcome``."""
        outcome.view_applied = True
        self._view.apply(outcome)
        self.fill_count += outcome.new_fills
        self.duplicate_fills += outcome.duplicates
        self.fill_echoes += outcome.echoes

    def _fail(self, futures: list[asyncio.Future[Any]], error: LedgerError) -> None:
        for future in futures:
            if not future.done():
                failure = LedgerError(str(error))
                failure.__cause__ = error.__cause__
                future.set_exception(failure)

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


    def _reset_wal(self) -> None:
        """Let the next write start the WAL over (writer thread, between transactions).

        Under a steady stream of commits the background checkpoints never catch up with the
        last frame, and SQLite only rewinds the WAL when a write begins with every frame
        copied back. Here no frame can be added meanwhile, and the checkpointer has already
        copied all but the most recent ones, so this is short; the next commit rewinds the
        log (and truncates the file to ``wal_size_limit``)."""
        self._checkpointer.reset_due = 0.0
        if self._failure is None and self._journal.checkpoint_passive():
            self.wal_resets += 1

    def _final_flush(self) -> None:
        """On close: write the aggregates, so the next open replays nothing."""
        if self._failure is None:
            self._journal.final_flush()

    def _open_connection(self) -> Connection:
        """The writer's connection (overridable in tests to simulate failing storage)."""
        return self.storage.connect()

    def _ask_hook(self, fills: list[Fill]) -> Sequence[PreparedIntent]:
        hook = self.commit_hook
        if hook is None:
            return ()
        try:
            return hook(fills)
        except Exception:  # its bug must neither fail the commit nor leave a caller waiting
            log.exception("ledger commit hook failed")
            return ()


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


def _checked_settings(synchronous: str, commit_on: str | None, *, batch_max: int, checkpoint_interval: float,
                      wal_size_limit: int, snapshot_interval: float) -> tuple[str, str]:
    """(synchronous level, commit mode) of valid ledger settings; ValueError names a bad one."""
    level = synchronous.upper()
    if level not in SYNCHRONOUS_LEVELS:
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
    return level, commit_on


def _new_intent(intent_id: int, ledger_id: str, *, underlying: str, venue: str, symbol: str, side: Side,
                amount: Decimal, created_at: float, reduce_only: bool, order_type: OrderType,
                limit_price: Decimal | None, reason: str, client_id_prefix: str,
                decision_mid: Decimal | None = None, decision_half_spread: Decimal | None = None) -> HedgeIntent:
    """Check an intent's arguments and build it with client order id
    ``<prefix><ledger id>x<intent id>``."""
    if not _PREFIX_PATTERN.match(client_id_prefix):
        raise ValueError(f"client id prefix must be 0-8 of [A-Za-z0-9_-], got {client_id_prefix!r}")
    _check_finite("amount", amount)
    if amount <= ZERO:
        raise ValueError(f"intent amount must be positive, got {amount}")
    for name, value in (("limit_price", limit_price), ("decision_mid", decision_mid),
                        ("decision_half_spread", decision_half_spread)):
        if value is not None:
            _check_finite(name, value)
    cid = client_ids.client_order_id(client_id_prefix, ledger_id, intent_id)
    if len(cid) > CLIENT_ID_MAX_LEN or not CLIENT_ID_PATTERN.match(cid):
        raise LedgerError(f"client order id {cid!r} is not a valid venue client id")
    return HedgeIntent(
        intent_id=intent_id, client_order_id=cid, underlying=underlying, venue=venue,
        symbol=symbol, side=Side(side), amount=amount, created_at=float(created_at),
        reduce_only=bool(reduce_only), order_type=OrderType(order_type), limit_price=limit_price,
        reason=reason, decision_mid=decision_mid, decision_half_spread=decision_half_spread)


def _no_loop() -> asyncio.Future[Any]:
    raise LedgerError("ledger not open")
