"""bench/latency.py runs end to end: every fill out of the band is hedged and every stage of the path is seen.

A smoke test of the benchmark's bookkeeping (which fill an order covers, the stage marks), not
a timing: the figures themselves are only ever read from the script's output.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # bench/ is scripts, not a package

from latency import STAGES, measure


@pytest.mark.parametrize(("delivery", "fills_per_order"), [("stream", 1), ("concurrent", 3)])
async def test_fills_are_hedged_and_every_stage_is_measured(tmp_path: Path, delivery: str,
                                                                fills_per_order: int) -> None:
    result = await measure(100.0, 0.3, delivery, tmp_path, fills_per_order)
    offered = int(100.0 * (0.3 + 0.5))  # measured window + warm-up
    assert result["unhedged"] == offered % fills_per_order  # the last few are still inside the band
    assert result["fills"] > 0
    assert 0 < result["p50"] <= result["p99"] <= result["p999"]
    assert math.isfinite(result["achieved"]) and result["achieved"] > 0
    stages = result["stages"]
    assert list(stages) == list(STAGES)
    # one commit per delivery call at this rate, one intent per order
    assert len(stages["arrival -> delivered"]) == offered
    assert len(stages["intent asked -> hand-off"]) == offered // fills_per_order  # one intent per order
    for values in stages.values():
        assert values == sorted(values) and values[0] >= 0
