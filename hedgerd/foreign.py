"""Another hedger on our account: orders and trades under our client-id prefix that our ledger never issued.

Every hedge order hedgerd sends carries a client order id derived from a durable intent,
``<prefix><ledger id>x<intent id>`` (:meth:`hedgerd.ledger.InventoryLedger.submit_intent`). An
order or trade of that form that this ledger holds no intent for was placed by someone else
trading as us: typically a second daemon with a ledger of its own on the same exchange
account. Both would hedge the same inventory, each blind to the other's in-flight orders, so
the daemon halts (fail closed) with a reason that says so. Two deployments on one account need
different ``executor.client_id_prefix`` values.

:func:`classify` is the pure decision. "Issued" means the ledger has an intent with that client
id; an intent counts from the moment it is allocated, before its commit and long before any
venue echo of its order, so our own orders in flight are never foreign.

Trades on a hedged instrument without our prefix (the desk's manual trades, other bots, our own
fills whose client id the venue did not name) are not foreign to us: they move the position
like any fill, and are counted (``hedgerd_unowned_hedge_trades_total``) and logged, never halted on.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from enum import StrEnum

import structlog

from hedgerd.clock import Clock
from hedgerd.connectors.base import Venue
from hedgerd.ledger.client_ids import own_form, parent_client_id
from hedgerd.metrics import Metrics
from hedgerd.models import Fill

log = structlog.get_logger("hedgerd.foreign")

_REMEMBERED = 4096  # foreign client ids remembered, so that each is counted (and halts) once
_OTHER_LOG_INTERVAL = 60.0  # seconds between log lines about unowned trades on one instrument


class Origin(StrEnum):
    """Who placed an order, as far as its client order id tells."""

    OWN = "own"  # an intent of this ledger
    FOREIGN = "foreign"  # our prefix and id form, but not issued by this ledger: someone trades as us
    OTHER = "other"  # no client id, or not ours in form: the desk, other bots


def classify(client_order_id: str | None, form: re.Pattern[str], issued: Callable[[str], bool]) -> Origin:
    """The origin of an order or trade with ``client_order_id``.

    ``form`` is :func:`~hedgerd.ledger.client_ids.own_form` of our prefix; ``issued(cid)`` says
    whether the ledger holds an intent with that client id (allocated counts, committed or not).
    """
    client_order_id = parent_client_id(client_order_id)  # a passive intent's child is the intent's
    if not client_order_id or form.fullmatch(client_order_id) is None:
        return Origin.OTHER
    return Origin.OWN if issued(client_order_id) else Origin.FOREIGN


def foreign_reason(venue: str, client_order_id: str, prefix: str, trade_id: str | None = None) -> str:
    """The kill-switch reason for a foreign order (or a trade of one)."""
    what = f"foreign order {client_order_id}" if trade_id is None else (
        f"foreign trade {trade_id} of order {client_order_id}")
    return (f"{what} on {venue}: another hedger is trading on this account with our client-id prefix "
            f"{prefix!r} (this ledger never issued it); give each deployment on one account its own "
            f"executor.client_id_prefix")


class ForeignOrderWatch:
    """Applies :func:`classify` to what the venues report: halts on a foreign order, counts
    unowned trades on the hedged instruments.

    ``halt(reason)`` engages the kill switch; it is called once per foreign client id.
    ``detected`` is the last foreign-order reason until an operator clears it (on resume).
    """

    def __init__(self, *, prefix: str, issued: Callable[[str], bool], hedged: Iterable[tuple[str, str]],
                 metrics: Metrics, clock: Clock, halt: Callable[[str], object]) -> None:
        self.prefix = prefix
        self.form = own_form(prefix)
        self._issued = issued
        self._hedged = frozenset(hedged)  # (venue, symbol) of every hedge instrument
        self._metrics = metrics
        self._clock = clock
        self._halt = halt
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._other_logged: dict[tuple[str, str], tuple[float, int]] = {}  # -> (logged at, suppressed)
        self.detected: str | None = None

    def on_order(self, venue: str, client_order_id: str | None) -> Origin:
        """An order report from ``venue`` (a stream update or an open order)."""
        origin = classify(client_order_id, self.form, self._issued)
        if origin is Origin.FOREIGN:
            assert client_order_id is not None
            self._foreign(venue, client_order_id, None)
        return origin

    def on_fills(self, fills: Iterable[Fill]) -> None:
        """Fills new to the ledger (each is seen here once)."""
        for fill in fills:
            cid = fill.client_order_id
            if cid is None and (fill.venue, fill.symbol) not in self._hedged:
                continue  # client flow on an inventory venue: the usual case, nothing to check
            origin = classify(cid, self.form, self._issued)
            if origin is Origin.FOREIGN:
                assert cid is not None
                self._foreign(fill.venue, cid, fill.trade_id)
            elif origin is Origin.OTHER and (fill.venue, fill.symbol) in self._hedged:
                self._unowned(fill)

    async def scan_open_orders(self, venues: Iterable[Venue]) -> None:
        """At startup: the venues' open orders, so that one left by another hedger halts before
        anything is sent (reconciliation may cancel it afterwards)."""
        for venue in venues:
            for report in await venue.fetch_open_orders():
                self.on_order(venue.name, report.client_order_id)

    def _foreign(self, venue: str, client_order_id: str, trade_id: str | None) -> None:
        if client_order_id in self._seen:
            return
        self._seen[client_order_id] = None
        if len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        self._metrics.foreign_orders.labels(venue).inc()
        reason = foreign_reason(venue, client_order_id, self.prefix, trade_id)
        self.detected = reason
        log.error("foreign_order", venue=venue, client_order_id=client_order_id, trade_id=trade_id,
                  reason=reason)
        self._halt(reason)

    def _unowned(self, fill: Fill) -> None:
        self._metrics.unowned_hedge_trades.labels(fill.venue, fill.symbol).inc()
        key = (fill.venue, fill.symbol)
        now = self._clock.monotonic()
        logged_at, suppressed = self._other_logged.get(key, (-math.inf, 0))
        if now - logged_at < _OTHER_LOG_INTERVAL:
            self._other_logged[key] = (logged_at, suppressed + 1)
            return
        self._other_logged[key] = (now, 0)
        log.info("unowned_hedge_trade", venue=fill.venue, symbol=fill.symbol, trade_id=fill.trade_id,
                 client_order_id=fill.client_order_id, side=fill.side.value, amount=str(fill.amount),
                 suppressed_since_last=suppressed or None)
