"""The ledger's Prometheus series, with their labelled children cached (labels() per commit costs)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from hedgerd.metrics import Metrics

if TYPE_CHECKING:
    from hedgerd.ledger.outcome import BatchOutcome


class LedgerGauges:
    """Updates the ledger's series in ``metrics`` from what the ledger saw or committed."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._fill_counters: dict[tuple[str, str], Any] = {}
        self._inventory_gauges: dict[tuple[str, str], Any] = {}

    def positions(self, positions: Mapping[tuple[str, str], Decimal]) -> None:
        """Set the inventory gauge of every (venue, asset) given."""
        for key, amount in positions.items():
            gauge = self._inventory_gauges.get(key)
            if gauge is None:
                gauge = self._inventory_gauges[key] = self.metrics.inventory.labels(*key)
            gauge.set(float(amount))

    def repeat(self, echo: bool) -> None:
        """A repeated fill answered without a commit: an echo of our own order's, or a duplicate."""
        (self.metrics.fill_echoes if echo else self.metrics.duplicate_fills).inc()

    def committed(self, outcome: BatchOutcome) -> None:
        """One committed transaction: its duration, repeats, fills, positions and hedge fees."""
        metrics = self.metrics
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
        self.positions(outcome.positions)
        for venue, fee in outcome.hedge_fees.items():
            metrics.hedge_fees.labels(venue).inc(float(fee))
