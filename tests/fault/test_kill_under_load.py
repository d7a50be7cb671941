"""Kill switch under load: SIGUSR1 and POST /kill stop a hedge storm within one tick (issue 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.harness import format_table
from tests.fault.scenarios import kill_under_load_scenario


@pytest.mark.e2e
def test_halt_stops_new_orders_of_a_saturated_executor(tmp_path: Path) -> None:
    result = kill_under_load_scenario(tmp_path, rate=2.0, storm_btc="1.0", observe=3.0)
    report = format_table(result.rows())
    assert result.storm_rate >= 0.5 * result.rate, report  # the rate limiter was the bottleneck
    assert [h.how for h in result.halts] == ["SIGUSR1", "POST /kill"]
    for halt in result.halts:
        assert halt.orders_before >= 5, report
        assert halt.sends_after == 0, report
        assert halt.venue_orders_after == 0, report
        assert halt.in_transit <= 1, report
    assert all(r.ok for r in result.rows()), report
