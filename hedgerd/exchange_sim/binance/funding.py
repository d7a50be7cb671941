"""Funding on the simulated USD-M account, as Binance charges it, and its income records.

Each perpetual has a :class:`~hedgerd.sim.funding.FundingSchedule` (the model every simulated
venue shares: an OU premium averaged over the interval, ``F = P + clamp(I - P, +-0.05 %)``).
At each funding time (every ``interval`` seconds of the engine clock, 00:00/08:00/16:00 UTC by
default) a position pays ``amount x mark x F`` to the wallet (longs pay a positive rate), and an
income record ``FUNDING_FEE`` is kept, which ``GET /fapi/v1/income`` serves (what ccxt's
``fetch_funding_history`` reads). Funding is applied on the simulator's tick, so it lands up
to one tick after the funding time, at the mark of that moment. Not modelled: the
``ACCOUNT_UPDATE`` (reason ``FUNDING_FEE``) pushed on the user stream, and income types other
than funding.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from decimal import Decimal

from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import ApiError
from hedgerd.sim.funding import FUNDING_PERIOD_SECONDS, FundingSchedule

FUNDING_QUANTUM = Decimal("1e-8")
INCOME_KEPT = 100_000
INCOME_DEFAULT_LIMIT = 100
INCOME_MAX_LIMIT = 1000
INCOME_DEFAULT_WINDOW_MS = 7 * 24 * 3600 * 1000  # neither startTime nor endTime: the last 7 days


@dataclass(frozen=True)
class Income:
    """One income record of the USD-M account (Binance's ``/fapi/v1/income`` entry)."""

    symbol: str
    income: Decimal
    asset: str
    time: int  # ms
    tran_id: int
    rate: float

    def wire(self) -> dict[str, object]:
        return {"symbol": self.symbol, "incomeType": "FUNDING_FEE", "income": f"{self.income:.8f}",
                "asset": self.asset, "info": "FUNDING_FEE", "time": self.time, "tranId": self.tran_id,
                "tradeId": ""}


class UsdmFunding:
    """Charges the USD-M account's funding at each funding time and keeps its income records."""

    def __init__(self, engine: MatchingEngine, *, interval: float = FUNDING_PERIOD_SECONDS) -> None:
        self.engine = engine
        start = engine.now() / 1000.0
        self.schedules = {symbol: FundingSchedule(random.Random(f"usdm-funding/{symbol}/{engine.config.seed}"),
                                                  start=start, interval=interval)
                          for symbol in engine.symbols()}
        self.records: deque[Income] = deque(maxlen=INCOME_KEPT)
        self._next_tran_id = 9_000_000_001

    def rate(self, symbol: str) -> float:
        """The last funding rate of ``symbol`` (the interest rate before the first)."""
        return self.schedules[symbol].last_rate

    def advance(self, now_ms: int) -> list[Income]:
        """Charge every funding time up to ``now_ms``; returns the records it added."""
        added: list[Income] = []
        for symbol, schedule in self.schedules.items():
            for ts, rate in schedule.due(now_ms / 1000.0):
                amount = self.engine.position(symbol).amount
                if not amount:
                    continue
                mark = self.engine.mark_price(symbol)
                income = -(amount * mark * Decimal(repr(rate))).quantize(FUNDING_QUANTUM)
                self.engine.usdm_wallet += income
                record = Income(symbol, income, self.engine.instrument(symbol).quote, round(ts * 1000),
                                self._next_tran_id, rate)
                self._next_tran_id += 1
                self.records.append(record)
                added.append(record)
        return added

    def income(self, *, symbol: str | None, income_type: str | None, start: int | None, end: int | None,
               limit: int | None, now: int) -> list[dict[str, object]]:
        """``GET /fapi/v1/income``: records oldest first from ``start`` (else the last 7 days)."""
        if limit is None:
            limit = INCOME_DEFAULT_LIMIT
        if not 1 <= limit <= INCOME_MAX_LIMIT:
            raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
        if income_type not in (None, "", "FUNDING_FEE"):
            return []  # no other income type is modelled
        if start is None:
            start = (end if end is not None else now) - INCOME_DEFAULT_WINDOW_MS
        if end is None:
            end = now
        if end < start:
            raise ApiError(-1128, "Combination of optional parameters invalid.")
        rows = [r for r in self.records
                if start <= r.time <= end and (symbol is None or r.symbol == symbol)]
        return [r.wire() for r in rows[:limit]]
