"""What the hedging cost is rebuilt from (:class:`CostJournal`, the ledger's ``costs``): the
funding journal and the fee conversions (written here), and the hedge fills with the quote each
was decided on (read here).

Both are written off the reaction path: each write runs on the writer's connection between
group commits (the ledger queues it like any write) in a transaction of its own. Funding is
``INSERT ... ON CONFLICT (venue, payment_id) DO NOTHING`` (one statement for SQLite and
PostgreSQL alike, as the ledger's upserts are) and returns the payments that were new, so each
payment counts once however often it is fetched. A fee conversion is queued as the cost
book values the fee, after the fill's commit: a crash in between loses it, and the rebuild then
counts that fee as not valued (flagged, never zero).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hedgerd.ledger.journal import _CallRequest
from hedgerd.ledger.storage import Connection, Storage
from hedgerd.models import Fill, FundingPayment, Side

if TYPE_CHECKING:
    from hedgerd.ledger.ledger import InventoryLedger

log = logging.getLogger(__name__)

_INSERT = ("INSERT INTO funding (venue, payment_id, symbol, amount, currency, ts, price) "
           "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (venue, payment_id) DO NOTHING")
_SELECT = "SELECT venue, payment_id, symbol, amount, currency, ts, price FROM funding"


@dataclass(frozen=True, slots=True)
class HedgeFillRow:
    """A journaled fill of one of our orders, with its intent's decision quote (None if unknown)."""

    fill: Fill
    decision_mid: Decimal | None
    decision_half_spread: Decimal | None


class CostJournal:
    """The ledger's funding payments, fee conversions and hedge fills (``InventoryLedger.costs``)."""

    def __init__(self, ledger: InventoryLedger) -> None:
        self._ledger = ledger

    def _reader(self) -> Connection:
        reader = self._ledger._reader
        if reader is None:
            raise self._ledger._unwritable()
        return reader

    async def record_funding(self, payments: Sequence[FundingPayment]) -> list[FundingPayment]:
        """Journal funding payments (queued behind the writes before them); returns the ones not
        journaled before, once durable. A payment already journaled (same venue and payment id)
        is ignored."""
        for p in payments:
            for name, value in (("funding amount", p.amount), ("funding price", p.price)):
                if value is not None and not value.is_finite():
                    raise ValueError(f"{name} must be finite, got {value}")
        with self._ledger._awaiting_outside_work():
            new: list[FundingPayment] = await self._ledger._writer_call(lambda conn: insert_funding(conn, payments))
        return new

    def funding_payments(self, venue: str | None = None) -> list[FundingPayment]:
        """The journaled funding payments (of ``venue``), in the order they were booked."""
        return read_funding(self._reader(), venue)

    def last_funding_ts(self, venue: str) -> float | None:
        """The latest funding time journaled for ``venue``, or None."""
        return last_funding_ts(self._reader(), venue)

    def first_activity_ts(self, venue: str) -> float | None:
        """The time of the first fill or position adjustment journaled for ``venue`` (before it,
        this ledger held nothing there that could pay funding), or None."""
        row = self._reader().execute(
            "SELECT min(ts) FROM (SELECT min(ts) AS ts FROM fills WHERE venue = ? "
            "UNION ALL SELECT min(ts) FROM adjustments WHERE venue = ?) AS firsts", (venue, venue)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def record_fee_conversion(self, venue: str, trade_id: str, currency: str, price: Decimal) -> None:
        """Queue the price a fill's third-currency fee was valued at (not awaited: a failure is logged)."""
        ledger = self._ledger
        if not ledger._accepting or not price.is_finite():
            return
        future: asyncio.Future[Any] = ledger._enqueue(_CallRequest(lambda conn: insert_fee_conversion(
            conn, venue, trade_id, currency, price)))
        future.add_done_callback(_log_failure)

    def fee_conversions(self) -> dict[tuple[str, str], tuple[str, Decimal]]:
        """(venue, trade id) -> (currency, price) of every journaled fee conversion."""
        return {(venue, trade_id): (currency, Decimal(price)) for venue, trade_id, currency, price in
                self._reader().execute("SELECT venue, trade_id, currency, price FROM fee_conversions")}

    async def hedge_fills(self, hedged: Sequence[tuple[str, str]]) -> list[HedgeFillRow]:
        """Our orders' fills on the ``hedged`` (venue, symbol) pairs with their decision quotes,
        oldest first (read in a worker thread; for rebuilding the hedging cost at start)."""
        ledger = self._ledger
        if not ledger.ledger_id or ledger._closed:
            raise ledger._unwritable()
        with ledger._awaiting_outside_work():
            return await asyncio.to_thread(read_hedge_fills, ledger.storage, list(hedged))


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("fee conversion not journaled: %s", future.exception())


def insert_fee_conversion(conn: Connection, venue: str, trade_id: str, currency: str, price: Decimal) -> None:
    conn.execute("INSERT INTO fee_conversions (venue, trade_id, currency, price) VALUES (?, ?, ?, ?) "
                 "ON CONFLICT (venue, trade_id) DO NOTHING", (venue, trade_id, currency, str(price)))


def insert_funding(conn: Connection, payments: Sequence[FundingPayment]) -> list[FundingPayment]:
    """Journal ``payments`` in one transaction; returns those not journaled before, in order."""
    new: list[FundingPayment] = []
    conn.execute("BEGIN")
    try:
        for p in payments:
            cursor = conn.execute(_INSERT, (p.venue, p.payment_id, p.symbol, str(p.amount), p.currency, p.ts,
                                            None if p.price is None else str(p.price)))
            if cursor.rowcount:
                new.append(p)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return new


def _payment(row: Sequence[object]) -> FundingPayment:
    venue, payment_id, symbol, amount, currency, ts, price = row
    return FundingPayment(venue=str(venue), payment_id=str(payment_id), symbol=str(symbol),
                          amount=Decimal(str(amount)), currency=str(currency), ts=float(str(ts)),
                          price=None if price is None else Decimal(str(price)))


def read_funding(conn: Connection, venue: str | None = None) -> list[FundingPayment]:
    """The journaled funding payments (of ``venue``), in the order they were booked."""
    if venue is None:
        rows = conn.execute(f"{_SELECT} ORDER BY funding_id")
    else:
        rows = conn.execute(f"{_SELECT} WHERE venue = ? ORDER BY funding_id", (venue,))
    return [_payment(row) for row in rows]


def last_funding_ts(conn: Connection, venue: str) -> float | None:
    """The latest funding time journaled for ``venue`` (where a backfill resumes)."""
    row = conn.execute("SELECT max(ts) FROM funding WHERE venue = ?", (venue,)).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def read_hedge_fills(storage: Storage, hedged: Iterable[tuple[str, str]]) -> list[HedgeFillRow]:
    """Our orders' fills on the ``hedged`` (venue, symbol) pairs, oldest first, each with the
    decision quote of its intent, from a read-only connection of its own (a worker thread's).

    One scan of the fills journal (client fills included: it has no index a filter could use),
    plus the intents' decision quotes by client order id."""
    wanted = set(hedged)
    with storage.snapshot_reader() as conn:  # one read snapshot for both tables
        quotes = {cid: (mid, half) for cid, mid, half in conn.execute(
            "SELECT client_order_id, decision_mid, decision_half_spread FROM intents")}
        rows: list[HedgeFillRow] = []
        for venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts, cid in conn.execute(
                "SELECT venue, trade_id, symbol, side, amount, price, fee, fee_currency, ts, client_order_id "
                "FROM fills WHERE client_order_id IS NOT NULL ORDER BY fill_id"):
            if (venue, symbol) not in wanted:
                continue
            mid, half = quotes.get(cid, (None, None))
            fill = Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=Side(side), amount=Decimal(amount),
                        price=Decimal(price), fee=Decimal(fee), fee_currency=fee_currency, ts=ts,
                        client_order_id=cid)
            rows.append(HedgeFillRow(fill, None if mid is None else Decimal(mid),
                                     None if half is None else Decimal(half)))
    return rows
