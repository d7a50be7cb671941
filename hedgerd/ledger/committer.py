"""Group commit: where the ledger's queued writes are committed, behind one interface.

:class:`LoopCommitter` commits on the event loop's thread, in a callback scheduled by the first
write of a loop iteration, so every write queued in that iteration shares the transaction; a
``synchronous=NORMAL`` commit does not fsync, so this is cheaper than handing the batch to another
thread. Opening, closing and WAL resets (which fsync) run in worker threads meanwhile.
:class:`ThreadCommitter` commits on a writer thread of its own, so a commit's fsync
(``synchronous=FULL``) never stalls the event loop. Both drive the ledger's writer side
(:meth:`InventoryLedger._process` and friends) the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import decimal
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from hedgerd.ledger.accounting import ARITHMETIC
from hedgerd.ledger.journal import _CallRequest, _IntentRequest, _Op, _OpenResult
from hedgerd.ledger.outcome import BatchOutcome
from hedgerd.ledger.storage import Connection, LedgerError
from hedgerd.models import Fill

log = logging.getLogger(__name__)

#: seconds the writer thread waits for the event loop's turn inside a transaction (see
#: ThreadCommitter._hook_turn); a running loop answers within one iteration
HOOK_TURN_TIMEOUT = 5.0

if TYPE_CHECKING:
    from hedgerd.ledger.ledger import InventoryLedger, PreparedIntent


class Committer(ABC):
    """Commits the ledger's queue of writes in transactions of up to ``batch_max`` writes and
    hands each outcome to the event loop."""

    #: True when transactions commit on the event loop's thread
    on_loop: ClassVar[bool]

    def __init__(self, ledger: InventoryLedger) -> None:
        self.ledger = ledger
        self.queue: deque[_Op] = deque()
        self.stopping = False  # close() or a failed open: commit what is queued, then stop

    @abstractmethod
    async def open(self) -> _OpenResult:
        """Open the storage (file lock already held) and start the checkpointer."""

    @abstractmethod
    async def close(self) -> None:
        """Commit everything queued, write the aggregates, stop the checkpointer, checkpoint
        and close the writer's connection."""

    @abstractmethod
    def kick(self) -> None:
        """Have the queue committed (on the event loop's thread)."""

    @abstractmethod
    def kick_from_thread(self) -> None:
        """:meth:`kick` from another thread (the checkpointer)."""

    @abstractmethod
    def post(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop (from the writer's side)."""

    def flush_now(self) -> bool:
        """Commit what is queued right now, if this committer can; True if it did."""
        return False

    def _in_transaction(self) -> Callable[[Connection, BatchOutcome], None] | None:
        """What runs inside a transaction that journaled new fills, before COMMIT: nothing here."""
        return None

    @abstractmethod
    def _reset_wal_between_transactions(self) -> bool:
        """A WAL reset is due between two transactions: run or start it; True when the queue
        must wait for it (draining stops here)."""

    def drain(self) -> None:
        """Commit the queue in transactions of up to ``batch_max`` writes (writer side).

        A WAL reset asked for by the checkpointer runs once the queue is empty, or between two
        transactions once it is overdue."""
        ledger = self.ledger
        queue = self.queue
        while queue:
            count = min(len(queue), ledger.batch_max)
            batch = [queue.popleft() for _ in range(count)]
            if ledger._failure is not None:
                self.post(ledger._fail, [op[1] for op in batch], ledger._failure)
                continue
            try:
                self._process(batch)
            except Exception as exc:  # a bug rather than I/O: still never leave a caller hanging
                self._stop_writes(exc, [op[1] for op in batch])
            due = ledger._checkpointer.reset_due
            if due and not self.stopping and (not queue or time.monotonic() - due > ledger.checkpoint_interval) \
                    and self._reset_wal_between_transactions():
                return

    def _process(self, batch: list[_Op]) -> None:
        """Commit one batch (writer side) and hand its outcome to the event loop."""
        ledger = self.ledger
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
            outcome = BatchOutcome(futures=fill_futures, results=[])
            try:
                ledger._journal.commit(fills, others, outcome, self._in_transaction())
            except Exception as exc:  # any failure to commit stops the ledger: nothing may go unjournaled
                # (outcome.futures also holds the intents the commit hook joined to the transaction)
                self._stop_writes(exc, list(dict.fromkeys(
                    [op[1] for op in batch if type(op[0]) is not _CallRequest] + outcome.futures)))
            else:
                self.post(ledger._apply, outcome)
        for request, future in calls:
            try:
                value = request.fn(ledger._journal.conn)
            except Exception as exc:
                self.post(_settle_exception, future, exc)
            else:
                self.post(_settle_result, future, value)

    def _stop_writes(self, exc: Exception, futures: list[asyncio.Future[Any]]) -> None:
        """Roll back, remember the failure (every later write is refused) and fail ``futures``."""
        ledger = self.ledger
        ledger._journal.rollback()
        error = LedgerError(f"ledger write failed: {exc}")
        error.__cause__ = exc
        ledger._failure = error
        ledger._accepting = False
        log.error("ledger write failed, refusing further writes: %s", exc)
        self.post(ledger._fail, futures, error)


class LoopCommitter(Committer):
    """Commits on the event loop's thread at the end of the loop iteration the writes were
    queued in (or at once, :meth:`flush_now`)."""

    on_loop = True

    def __init__(self, ledger: InventoryLedger) -> None:
        super().__init__(ledger)
        self._flush_handle: asyncio.Handle | None = None  # a _flush queued on the event loop
        self._flushing = False  # _flush is running (flush_now must not re-enter it)
        self._maintenance: asyncio.Future[None] | None = None  # a WAL reset running off the loop
        self._caller_decimal_context = decimal.getcontext()  # the commit hook runs in the flush caller's

    async def open(self) -> _OpenResult:
        """Open the storage in a worker thread (the integrity check reads the whole file)."""
        ledger = self.ledger
        opening = asyncio.ensure_future(asyncio.to_thread(ledger._journal.open_checked))
        try:
            result = await asyncio.shield(opening)
        except BaseException:
            ledger._closed = True
            self.stopping = True
            with contextlib.suppress(BaseException):
                await opening  # a cancelled open: let the worker finish before closing its connection
            ledger._journal.close_connection()
            ledger._release_file_lock()
            raise
        ledger._checkpointer.start()
        return result

    async def close(self) -> None:
        ledger = self.ledger
        if self._maintenance is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._maintenance)
        with decimal.localcontext(ARITHMETIC):
            self.drain()  # commit everything still queued
            ledger._final_flush()
        await asyncio.to_thread(ledger._checkpointer.join)
        await asyncio.to_thread(ledger._journal.close_connection, ledger._failure is None)

    def kick(self) -> None:
        """Flush at the end of this event-loop iteration, so every write queued meanwhile joins
        the same transaction."""
        if self._flush_handle is None and self._maintenance is None:
            loop = self.ledger._loop
            assert loop is not None
            self._flush_handle = loop.call_soon(self._flush)

    def kick_from_thread(self) -> None:
        loop = self.ledger._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # event loop closed
                loop.call_soon_threadsafe(self.kick)

    def post(self, callback: Callable[..., None], *args: Any) -> None:
        callback(*args)

    def flush_now(self) -> bool:
        """Commit what is queued right now rather than at the end of this event-loop iteration;
        not inside a commit, with nothing queued, or while a WAL reset holds the queue."""
        handle = self._flush_handle
        if handle is None or self._flushing or self._maintenance is not None:
            return False
        handle.cancel()
        self._flush()
        return True

    def _flush(self) -> None:
        """Commit everything queued (scheduled by :meth:`kick`)."""
        if self._maintenance is not None or self.stopping:
            self._flush_handle = None
            return  # the WAL reset's completion (or close) commits the queue
        self._caller_decimal_context = decimal.getcontext()  # the commit hook runs in it
        self._flushing = True
        try:
            with decimal.localcontext(ARITHMETIC):
                self.drain()  # writes queued meanwhile (by the commit hook) are drained too
        finally:
            self._flushing = False
            self._flush_handle = None
        if self.ledger._checkpointer.reset_due and not self.queue and self._maintenance is None:
            self._start_wal_reset()

    def _reset_wal_between_transactions(self) -> bool:
        self._start_wal_reset()
        return True

    def _in_transaction(self) -> Callable[[Connection, BatchOutcome], None] | None:
        return self._hook_turn if self.ledger.commit_hook is not None else None

    def _hook_turn(self, conn: Connection, outcome: BatchOutcome) -> None:
        """Inside the fills' transaction: bring the ledger's view forward, ask the commit hook
        for its intents and journal them in this same transaction (when nothing else is
        queued, so the queue's order is kept; else they are queued behind it)."""
        ledger = self.ledger
        ledger._apply_view(outcome)
        with decimal.localcontext(self._caller_decimal_context):  # not the ledger's own arithmetic
            prepared = ledger._ask_hook(outcome.inserted)
        if self.queue:
            for intent, future in prepared:
                ledger._queue_op(_IntentRequest(intent), future)
            return
        for intent, future in prepared:
            outcome.futures.append(future)
            outcome.results.append(ledger._journal.insert_intent(conn, _IntentRequest(intent)))

    def _start_wal_reset(self) -> None:
        """Run the WAL reset in a worker thread (its fsyncs must not stall the event loop);
        writes queue up meanwhile, as they would for the writer thread."""
        loop = self.ledger._loop
        assert loop is not None
        self._maintenance = loop.run_in_executor(None, self.ledger._reset_wal)
        self._maintenance.add_done_callback(self._wal_reset_done)

    def _wal_reset_done(self, _: asyncio.Future[None]) -> None:
        self._maintenance = None
        if self.queue and not self.stopping:
            self.kick()


class ThreadCommitter(Committer):
    """Commits on a dedicated writer thread, woken by each write."""

    on_loop = False

    def __init__(self, ledger: InventoryLedger) -> None:
        super().__init__(ledger)
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: asyncio.Future[None] | None = None

    async def open(self) -> _OpenResult:
        ledger = self.ledger
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[_OpenResult] = loop.create_future()
        self._done = done = loop.create_future()
        where = ledger.path.name if ledger.path is not None else ledger.storage.kind
        self._thread = threading.Thread(target=self._main, args=(opened,), name=f"ledger-writer:{where}", daemon=True)
        self._thread.start()
        try:
            return await opened
        except BaseException:
            ledger._closed = True
            self.stopping = True
            self._wake.set()
            await asyncio.shield(done)
            ledger._release_file_lock()
            raise

    async def close(self) -> None:
        self._wake.set()
        if self._done is not None:
            await self._done

    def kick(self) -> None:
        if not self._wake.is_set():
            self._wake.set()

    def kick_from_thread(self) -> None:
        self._wake.set()

    def post(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self.ledger._loop
        assert loop is not None
        with contextlib.suppress(RuntimeError):  # event loop already closed: nobody is waiting
            loop.call_soon_threadsafe(callback, *args)

    def _reset_wal_between_transactions(self) -> bool:
        self.ledger._reset_wal()
        return False

    def _in_transaction(self) -> Callable[[Connection, BatchOutcome], None] | None:
        return self._hook_turn if self.ledger.commit_hook is not None else None

    def _hook_turn(self, conn: Connection, outcome: BatchOutcome) -> None:
        """Inside the fills' transaction, on the writer thread: the event loop brings its view
        forward and asks the commit hook, as :class:`LoopCommitter` does on its own thread, and
        the intents join this transaction. The writer waits a loop iteration for that, where
        queueing the intents for a transaction of their own cost a second commit (on PostgreSQL
        or with ``FULL``, a second fsync) before any order could go out.

        If the loop does not answer within ``HOOK_TURN_TIMEOUT`` (stopped, closed), the turn is
        given up and the hook is asked after the commit, as before."""
        ledger = self.ledger
        loop = ledger._loop
        assert loop is not None
        lock = threading.Lock()
        answered = threading.Event()
        given_up = False
        prepared: list[PreparedIntent] = []

        def turn() -> None:
            with lock:
                if given_up:
                    return
                try:
                    ledger._apply_view(outcome)
                    intents = ledger._ask_hook(outcome.inserted)
                    if self.queue:  # writes queued meanwhile go first: the queue's order is kept
                        for intent, future in intents:
                            ledger._queue_op(_IntentRequest(intent), future)
                    else:
                        prepared.extend(intents)
                finally:
                    answered.set()

        try:
            loop.call_soon_threadsafe(turn)
        except RuntimeError:  # the event loop is closed: nobody is waiting for this commit's hook
            return
        if not answered.wait(HOOK_TURN_TIMEOUT):
            with lock:
                if not answered.is_set():
                    given_up = True
                    return
        for intent, future in prepared:
            outcome.futures.append(future)
            outcome.results.append(ledger._journal.insert_intent(conn, _IntentRequest(intent)))

    def _main(self, opened: asyncio.Future[_OpenResult]) -> None:
        ledger = self.ledger
        decimal.setcontext(ARITHMETIC.copy())
        try:
            try:
                result = ledger._journal.open_checked()
            except Exception as error:  # a LedgerError: open_checked converts the rest
                self.post(_settle_exception, opened, error)
                return
            self.post(_settle_result, opened, result)
            ledger._checkpointer.start()
            try:
                self._run()
                ledger._final_flush()
            finally:
                ledger._checkpointer.join()
            ledger._journal.close_connection(checkpoint=ledger._failure is None)
        finally:
            assert self._done is not None
            self.post(_settle_result, self._done, None)

    def _run(self) -> None:
        queue = self.queue
        wake = self._wake
        while True:
            wake.wait()
            wake.clear()
            self.drain()
            if self.ledger._checkpointer.reset_due and not queue and not self.stopping:  # woken while idle
                self.ledger._reset_wal()
            if self.stopping and not queue:
                return


def _settle_result(future: asyncio.Future[Any], value: object) -> None:
    if not future.done():
        future.set_result(value)


def _settle_exception(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
