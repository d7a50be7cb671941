"""Deribit's session settlement of the perpetuals' funding, and its settlement history.

The venue accrues funding continuously into the coin balance (see :mod:`.venue`); Deribit books
it per session: at each settlement (daily at 08:00 UTC; ``DeribitConfig.settlement_interval``)
every perpetual position gets a ``settlement`` record whose ``funding`` is what it received in
coin since the previous one (negative: paid), with the index and mark then.
``private/get_settlement_history_by_currency`` serves them newest first, ``count`` per page
(default 20, at most 1000) with a ``continuation`` token ("none" after the last page), from
``search_start_timestamp`` back (default: now). Not modelled: ``session_profit_loss`` (reported
0; the simulator realizes futures PnL at the fill), other settlement types (``delivery``,
``bankruptcy``).
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Any

from hedgerd.exchange_sim.deribit.venue import DeribitVenue, invalid_param
from hedgerd.exchange_sim.model import ZERO
from hedgerd.sim.funding import funding_times

SETTLEMENT_OFFSET_SECONDS = 8 * 3600.0  # 08:00 UTC
SETTLEMENTS_KEPT = 10_000
PAGE_DEFAULT, PAGE_MAX = 20, 1000


class SessionSettlements:
    """The settlement records, from the venue's funding received per perpetual (cumulative,
    ``DeribitVenue.funding_received``) at each session boundary."""

    def __init__(self, start_ms: int, *, interval: float) -> None:
        self.interval = interval
        self.records: deque[dict[str, Any]] = deque(maxlen=SETTLEMENTS_KEPT)
        self._settled: dict[str, Decimal] = {}  # funding received up to the last settlement
        self._at = start_ms / 1000.0

    def settle(self, now_ms: int, venue: DeribitVenue) -> None:
        """Record a settlement for every session boundary passed since the last call (the funding
        accrued up to this tick goes to the first of them)."""
        shift = SETTLEMENT_OFFSET_SECONDS
        for boundary in funding_times(self._at - shift, now_ms / 1000.0 - shift, self.interval):
            ts = round((boundary + shift) * 1000)
            for name, total in sorted(venue.funding_received.items()):
                funding = total - self._settled.get(name, ZERO)
                self._settled[name] = total
                inst = venue.instruments[name]
                pos = venue.positions.get(name)
                if not funding and (pos is None or not pos.size):
                    continue
                self.records.append({
                    "type": "settlement", "timestamp": ts, "instrument_name": name,
                    "position": float(pos.size if pos is not None else ZERO), "funding": float(funding),
                    "index_price": float(venue.index(inst.currency)), "mark_price": float(venue.mark(inst)),
                    "session_profit_loss": 0.0, "profit_loss": 0.0, "currency": inst.currency})
        self._at = now_ms / 1000.0

    def history(self, currency: str, params: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """``private/get_settlement_history_by_currency``."""
        kind = params.get("type")
        if kind not in (None, "settlement", "delivery", "bankruptcy"):
            raise invalid_param("type", "wrong format")
        count = _int(params, "count", PAGE_DEFAULT)
        if not 1 <= count <= PAGE_MAX:
            raise invalid_param("count", "must be 1..1000")
        newest = _int(params, "search_start_timestamp", now_ms)
        offset = 0 if params.get("continuation") in (None, "", "none") else _int(params, "continuation", 0)
        rows = [r for r in reversed(self.records) if r["currency"] == currency and r["timestamp"] <= newest
                and kind in (None, "settlement")]
        page = rows[offset:offset + count]
        more = offset + count < len(rows)
        return {"settlements": [{k: v for k, v in r.items() if k != "currency"} for r in page],
                "continuation": str(offset + count) if more else "none"}


def _int(params: dict[str, Any], name: str, default: int) -> int:
    raw = params.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise invalid_param(name, "wrong format") from None
