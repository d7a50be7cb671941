"""Fault suite, operator mistakes: invalid config files, environment values and secrets files.

Every case of :data:`~tests.fault.input_scenarios.CONFIG_CASES` runs the real CLI twice,
``hedgerd check-config`` and ``hedgerd run``, as subprocesses: both must exit 2 with the
offending field's dotted path on stderr and never a traceback. A hedge instrument that the ccxt
venue does not list can only be found at start (against the Binance-protocol simulator): ``run``
exits 2 naming ``hedges.0.symbol``.

A running daemon keeps its config when SIGHUP brings an invalid file or a change that needs a
restart (a new venue, another client id prefix), logs why, and applies a valid safe change (a
threshold); checked on ``hedgerd_hedge_band`` and ``/status``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.input_scenarios import (
    CCXT_HEDGE,
    CCXT_VENUES,
    CONFIG_CASES,
    SIGHUP_ATTEMPTS,
    config_case,
    missing_ccxt_instrument,
    paper_config,
    sighup_reloads,
)
from tests.fault.sim_daemon import run_cli, toml_dumps

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_operator_mistake_exits_2_naming_the_field(tmp_path: Path, name: str) -> None:
    case = CONFIG_CASES[name]
    for outcome in config_case(tmp_path, case):
        shown = f"{outcome.command}: exit {outcome.returncode}\n{outcome.output[-3000:]}"
        assert outcome.returncode == 2, shown
        assert outcome.error_lines, shown
        assert outcome.names(case.path), f"{case.path} not named: {shown}"
        assert not outcome.traceback, shown
        assert not outcome.started, shown


def test_the_baseline_configs_are_valid(tmp_path: Path) -> None:
    """The matrix mutates valid configs, so each case fails for its own mistake only."""
    config = tmp_path / "hedgerd.toml"
    config.write_text(toml_dumps(paper_config()))
    result = run_cli(tmp_path, ["check-config", "--config", str(config)])
    assert result.returncode == 0, result.stderr
    live = tmp_path / "live.toml"
    live.write_text(toml_dumps({"mode": "live", "venues": CCXT_VENUES, "hedges": [CCXT_HEDGE]}))
    creds = {f"HEDGERD_CREDENTIALS__{v}__{f}": "x-1234" for v in ("BINANCE_SPOT", "BINANCE_USDM")
             for f in ("API_KEY", "SECRET")}
    result = run_cli(tmp_path, ["check-config", "--config", str(live)], env=creds)
    assert result.returncode == 0, result.stderr


def test_ccxt_hedge_instrument_missing_at_the_venue_exits_2_at_start(tmp_path: Path) -> None:
    result = missing_ccxt_instrument(tmp_path)
    assert result.check_config_rc == 0, "the venue's instruments are only known at start"
    assert result.run_rc == 2, result.error_lines
    assert result.named, result.error_lines
    assert "DOGE/USDT:USDT" in result.error_lines[0] and "sim-usdm" in result.error_lines[0]
    assert not result.traceback
    assert result.orders == 0


def test_sighup_keeps_the_old_config_unless_the_change_is_valid_and_safe(tmp_path: Path) -> None:
    result = sighup_reloads(tmp_path)
    assert [what for what, _, _ in result.refused] == [what for what, _, _ in SIGHUP_ATTEMPTS]
    for what, logged, kept in result.refused:
        assert logged, f"{what}: no reload_rejected event naming the field"
        assert kept, f"{what}: the running config changed"
    assert result.applied, (result.applied_band, result.applied_threshold, result.applied_changed)
    assert result.alive
