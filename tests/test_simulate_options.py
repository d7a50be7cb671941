"""``hedgerd simulate --scenario options-book``: an options book on the paper options venue, hedged
on the inverse perpetual (hedgerd/sim/options_book.py, hedgerd/sim/scenario.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hedgerd import cli
from hedgerd.config import Settings, load_settings
from hedgerd.errors import ConfigError
from hedgerd.sim.day import run_simulation
from hedgerd.sim.scenario import OPTIONS_BOOK_SCENARIO, load_scenario

ROOT = Path(__file__).resolve().parent.parent
OPTIONS_CONFIG = ROOT / "config" / "paper-options.toml"


def options_settings(tmp_path: Path) -> Settings:
    secrets = tmp_path / "secrets"
    secrets.mkdir(exist_ok=True)
    return load_settings(OPTIONS_CONFIG, env={}, secrets_dir=secrets)


def test_the_options_book_is_a_built_in_scenario_by_name() -> None:
    assert load_scenario(Path("options-book")) is OPTIONS_BOOK_SCENARIO
    assert OPTIONS_BOOK_SCENARIO.options is not None
    assert OPTIONS_BOOK_SCENARIO.options.client_buy_probability > 0.5  # the desk ends short gamma


def test_the_options_book_needs_an_options_inventory_venue() -> None:
    with pytest.raises(ConfigError, match=r"paper-options\.toml"):
        run_simulation(Settings(), OPTIONS_BOOK_SCENARIO, duration=60.0)


def test_an_options_book_run_is_hedged_and_measured_in_usd(tmp_path: Path) -> None:
    result = run_simulation(options_settings(tmp_path), OPTIONS_BOOK_SCENARIO, seed=3, duration=3600.0,
                            policy="fixed")
    assert result.scenario == "options-book"
    assert (result.base_currency, result.quote_currency) == ("BTC", "USD")
    assert 400 + 20 < result.client_fills < 400 + 60  # the initial book, then 0.01 trades/s for an hour
    assert result.hedge_orders > 0 and result.hedged_volume > 0  # hedged on the inverse perpetual
    assert result.max_abs_net_delta > 0 and result.unhedged_pnl_std > 0
    assert result.trading_state == "active"


def test_cli_runs_the_options_book_by_name(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", "--config", str(OPTIONS_CONFIG), "--scenario", "options-book", "--duration", "10m",
                     "--policy", "gamma", "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert code == 0
    assert figures["scenario"] == "options-book" and figures["policy"] == "gamma"
    assert figures["quote_currency"] == "USD" and figures["hedge_orders"] > 0
