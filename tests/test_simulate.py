"""``hedgerd simulate``: virtual time, scenario handling, determinism and the CLI."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from hedgerd import cli
from hedgerd.config import Settings
from hedgerd.errors import ConfigError
from hedgerd.models import OrderStatus, Side
from hedgerd.sim.clock import SimulatedClock, VirtualTimeLoop
from hedgerd.sim.day import _drive_scenario, run_simulation, simulation_settings
from hedgerd.sim.ledger import SimulationLedger
from hedgerd.sim.market import SimMarketData
from hedgerd.sim.scenario import DEFAULT_SCENARIO, Burst, FlowScenario, Regime, Scenario, load_scenario, parse_duration
from hedgerd.sim.venues import ScenarioSpotVenue

ROOT = Path(__file__).resolve().parent.parent
SHORT = Scenario(
    name="short",
    regimes=(Regime(at=0.5, volatility=1.2, flow_rate=2.0),),
    bursts=(Burst(at=0.2, duration=0.1, rate=3.0, buy_probability=1.0),),
)


def run_in_virtual_time(coro_factory):  # type: ignore[no-untyped-def]
    loop = VirtualTimeLoop(start=100.0)
    with asyncio.Runner(loop_factory=lambda: loop) as runner:
        return runner.run(coro_factory(loop))


# ------------------------------------------------------------------------------ virtual time

def test_sleep_and_timeouts_run_on_virtual_time() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[float, float, bool]:
        started = loop.time()
        await asyncio.sleep(86_400)
        slept = loop.time() - started
        timed_out = False
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
        except TimeoutError:
            timed_out = True
        return slept, loop.time() - started, timed_out

    real_start = time.monotonic()
    slept, total, timed_out = run_in_virtual_time(scenario)
    assert slept == pytest.approx(86_400)
    assert total == pytest.approx(86_430)
    assert timed_out
    assert time.monotonic() - real_start < 60  # a virtual day does not take a real one


def test_virtual_time_stands_still_while_a_thread_answer_is_awaited() -> None:
    async def scenario(loop: VirtualTimeLoop) -> tuple[float, list[str]]:
        order: list[str] = []
        answer: asyncio.Future[float] = loop.create_future()

        def worker() -> None:
            time.sleep(0.05)  # real work in a thread
            loop.call_soon_threadsafe(answer.set_result, 0.0)

        async def ticker() -> None:
            await asyncio.sleep(1.0)
            order.append("timer")

        tick = asyncio.create_task(ticker())
        started = loop.time()
        with loop.external_work():
            threading.Thread(target=worker).start()
            await answer
        order.append("answer")
        elapsed = loop.time() - started
        await tick
        return elapsed, order

    elapsed, order = run_in_virtual_time(scenario)
    assert elapsed == 0.0
    assert order == ["answer", "timer"]


def test_simulated_clock_follows_the_loop() -> None:
    async def scenario(loop: asyncio.AbstractEventLoop) -> tuple[float, float]:
        clock = SimulatedClock(loop, epoch=1_000_000.0)
        assert clock.time() == pytest.approx(1_000_000.0)
        await clock.sleep(60)
        return clock.time(), clock.monotonic()

    wall, monotonic = run_in_virtual_time(scenario)
    assert wall == pytest.approx(1_000_060.0)
    assert monotonic == pytest.approx(160.0)


# ------------------------------------------------------------------------------ scenario

def test_parse_duration() -> None:
    assert parse_duration("24h") == 86_400
    assert parse_duration("90m") == 5_400
    assert parse_duration("1.5h") == 5_400
    assert parse_duration("45") == 45
    assert parse_duration("1d") == 86_400
    for bad in ("", "0s", "-1h", "3 weeks"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_scenario_file(tmp_path: Path) -> None:
    assert load_scenario(None) is DEFAULT_SCENARIO
    path = tmp_path / "day.toml"
    path.write_text('name = "test"\n[market]\nvolatility = 0.9\n[costs]\norder_cost = 2.5\n'
                    '[[regimes]]\nat = 0.5\nflow_rate = 3.0\n'
                    '[[bursts]]\nat = 0.1\nduration = 0.05\nrate = 4.0\nbuy_probability = 0.0\n')
    scenario = load_scenario(path)
    assert scenario.name == "test" and scenario.market.volatility == 0.9
    assert scenario.costs.order_cost == Decimal("2.5")
    assert scenario.regimes[0].flow_rate == 3.0 and scenario.bursts[0].buy_probability == 0.0
    path.write_text("[flow]\nrate = 1\nspeed = 3\n")
    with pytest.raises(ConfigError) as excinfo:
        load_scenario(path)
    assert excinfo.value.path == "scenario.flow.speed"
    path.write_text("[[bursts]]\nat = 0.1\nduration = 0.2\nrate = 1\nbuy_probability = 1\n"
                    "[[bursts]]\nat = 0.2\nduration = 0.1\nrate = 1\nbuy_probability = 0\n")
    with pytest.raises(ConfigError):
        load_scenario(path)


def test_regimes_and_bursts_are_applied_at_their_times() -> None:
    scenario = Scenario(flow=FlowScenario(rate=1.0, buy_probability=0.5),
                        regimes=(Regime(at=0.5, volatility=1.5, flow_rate=2.5, mean_size=Decimal("0.1")),),
                        bursts=(Burst(at=0.2, duration=0.1, rate=6.0, buy_probability=0.9),))
    spot_config = Settings().venues[0]
    spot_config = spot_config.model_copy(update={"sim": spot_config.sim.model_copy(update={"flow_rate": 1.0})})

    async def drive(loop: asyncio.AbstractEventLoop) -> list[tuple[float, float, float, float]]:
        clock = SimulatedClock(loop)
        market = SimMarketData("BTC", spot_config.sim, clock)
        spot = ScenarioSpotVenue("spot", spot_config.sim, market, clock, scenario.flow)
        start = clock.monotonic()
        task = asyncio.create_task(_drive_scenario(scenario, 1_000.0, market, spot, clock, start))
        seen = []
        for at in (100, 250, 400, 600):
            await clock.sleep(start + at - clock.monotonic())
            seen.append((market.volatility, spot.flow.rate, spot.flow.buy_probability, float(spot.flow.mean_size)))
        await task
        return seen

    seen = run_in_virtual_time(drive)
    base_vol = spot_config.sim.volatility
    assert seen[0] == (base_vol, 1.0, 0.5, 0.02)      # before anything
    assert seen[1] == (base_vol, 6.0, 0.9, 0.02)      # inside the burst
    assert seen[2] == (base_vol, 1.0, 0.5, 0.02)      # burst over
    assert seen[3] == (1.5, 2.5, 0.5, 0.1)            # new regime


def test_simulation_settings_apply_the_scenario(tmp_path: Path) -> None:
    settings = simulation_settings(Settings(), DEFAULT_SCENARIO, seed=7, ledger_path=tmp_path / "l.sqlite",
                                   policy="adaptive")
    spot, perp = settings.venues
    assert spot.sim.seed == perp.sim.seed == 7
    assert spot.sim.flow_rate == DEFAULT_SCENARIO.flow.rate and perp.sim.flow_rate == 0
    assert perp.sim.taker_fee_bps == DEFAULT_SCENARIO.costs.taker_fee_bps
    assert settings.ledger.commit_on == "loop" and settings.kill_switch.kill_file is None
    assert settings.policy.name == "adaptive"
    assert settings.policy.adaptive.order_cost == DEFAULT_SCENARIO.costs.order_cost
    assert settings.policy.adaptive.cost_bps == (DEFAULT_SCENARIO.costs.taker_fee_bps
                                                 + DEFAULT_SCENARIO.market.spread_bps / 2)
    assert settings.hedges[0].max_position == DEFAULT_SCENARIO.limits.max_position


# ------------------------------------------------------------------------------ runs

@pytest.fixture(scope="module")
def short_runs() -> dict[str, object]:
    return {
        "a": run_simulation(Settings(), SHORT, seed=11, duration=900.0, policy="fixed"),
        "b": run_simulation(Settings(), SHORT, seed=11, duration=900.0, policy="fixed"),
        "c": run_simulation(Settings(), SHORT, seed=12, duration=900.0, policy="fixed"),
    }


def test_same_seed_same_figures(short_runs: dict[str, object]) -> None:
    a, b, c = (short_runs[k].figures() for k in "abc")  # type: ignore[attr-defined]
    for figures in (a, b, c):
        figures.pop("wall_seconds")
    assert a == b
    assert a != c


def test_short_run_has_plausible_figures(short_runs: dict[str, object]) -> None:
    result = short_runs["a"]
    figures = result.figures()  # type: ignore[attr-defined]
    assert figures["duration_s"] == 900.0
    assert figures["wall_seconds"] < figures["duration_s"] / 10
    assert figures["trading_state"] == "active"
    assert figures["client_fills"] > 300          # ~1/s, 3/s in the burst, 2/s after the regime change
    assert figures["hedge_orders"] > 10
    assert figures["hedging_cost"] == pytest.approx(
        figures["fees"] + figures["spread_paid"] + figures["order_costs"])
    assert figures["order_costs"] == pytest.approx(figures["hedge_orders"] * float(SHORT.costs.order_cost))
    # taker fee on the hedged volume at ~60000
    assert figures["fees"] == pytest.approx(figures["hedged_volume"] * 60_000 * 4e-4, rel=0.2)
    assert 0 < figures["hedged_pnl_std"] < figures["unhedged_pnl_std"] / 3
    assert 0 < figures["max_abs_net_delta"] < 2
    assert figures["avg_abs_net_delta_notional"] < figures["max_abs_net_delta"] * 70_000


def test_the_daemons_cost_decomposition_agrees_with_the_simulators_own_figures(
        short_runs: dict[str, object]) -> None:
    figures = short_runs["a"].figures()  # type: ignore[attr-defined]
    parts = figures["cost_decomposition"]
    assert parts["total"] == pytest.approx(parts["fee"] + parts["spread"] + parts["slippage"] + parts["funding"])
    assert parts["fee"] == pytest.approx(figures["fees"])  # fees in the settle currency: taken as charged
    assert parts["funding"] == 0  # the simulated venues charge no funding yet
    # fills at the touch: what the taker paid against the decision mid is the half spread, plus
    # the mid's move between decision and fill (slippage, small: the order latency is short)
    assert parts["spread"] > 0
    assert abs(parts["slippage"]) < parts["spread"]
    assert parts["spread"] + parts["slippage"] == pytest.approx(figures["spread_paid"], rel=0.05)


def test_adaptive_run_feeds_the_policy_through_the_engine() -> None:
    result = run_simulation(Settings(), SHORT, seed=5, duration=600.0, policy="adaptive")
    assert result.policy == "adaptive" and result.trading_state == "active"
    bands = [b for b in result.series["band"] if b == b]  # NaN-free
    assert bands and len(set(bands)) > 5  # the band moved with the estimates


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["simulate", "--seed", "3", "--duration", "5m", "--policy", "adaptive", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    figures = json.loads(out)
    assert figures["policy"] == "adaptive" and figures["seed"] == 3 and figures["duration_s"] == 300.0
    for key in ("hedging_cost", "fees", "spread_paid", "order_costs", "avg_abs_net_delta_notional",
                "hedged_pnl_std", "hedge_orders", "max_abs_net_delta"):
        assert isinstance(figures[key], int | float)


def test_cli_table_and_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["simulate", "--seed", "1", "--duration", "2m", "--policy", "fixed"]) == 0
    out = capsys.readouterr().out
    assert "hedging cost" in out and "hedge orders" in out and "max |net delta|" in out
    assert "cost as the daemon sees it" in out and "slippage" in out
    assert cli.main(["simulate", "--seed", "1", "--duration", "soon"]) == 2
    assert "invalid duration" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[market]\nvolatility = -1\n")
    assert cli.main(["simulate", "--seed", "1", "--scenario", str(bad)]) == 2
    assert "scenario.market.volatility" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage_error:
        cli.main(["simulate", "--duration", "1m", "--policy", "fixed,adaptiv"])
    assert usage_error.value.code == 2
    assert "unknown policy adaptiv" in capsys.readouterr().err


def test_cli_table_has_units_from_the_config_and_the_std_horizon(capsys: pytest.CaptureFixture[str],
                                                                  tmp_path: Path) -> None:
    """Issue 18.14: sizes in the hedge's base currency, money in its settlement currency, and the
    PnL standard deviation says over which horizon."""
    assert cli.main(["simulate", "--seed", "1", "--duration", "2m", "--policy", "fixed"]) == 0
    lines = {line.split("  ")[0]: line for line in capsys.readouterr().out.splitlines()}
    assert lines["hedging cost"].split("  ", 1)[1].lstrip().split(" ")[1] == "USDT"
    assert "hedged PnL std over 2 min" in lines and lines["hedged PnL std over 2 min"].count("USDT") == 2
    assert lines["max |net delta|"].endswith(" BTC") and "BTC)" in lines["hedge orders"]
    assert lines["avg |net delta notional|"].endswith(" USDT")
    config = tmp_path / "eth.toml"  # another underlying and quote: the units follow the config
    config.write_text((ROOT / "config" / "paper.toml").read_text().replace("BTC", "ETH").replace("USDT", "USDC"))
    assert cli.main(["simulate", "--config", str(config), "--duration", "90m", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert (figures["base_currency"], figures["quote_currency"], figures["duration_s"]) == ("ETH", "USDC", 5400.0)
    assert cli.main(["simulate", "--config", str(config), "--duration", "90m"]) == 0
    out = capsys.readouterr().out
    assert "hedged PnL std over 1.5 h" in out and "USDC" in out and "ETH" in out
    assert "BTC" not in out and "USDT" not in out


def test_cli_compares_policies_side_by_side_on_one_price_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["simulate", "--seed", "2", "--duration", "3m", "--compare", "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in runs] == ["fixed", "adaptive", "gamma"]
    assert runs[0]["client_fills"] == runs[1]["client_fills"] and runs[0]["unhedged_pnl_std"] == \
        runs[1]["unhedged_pnl_std"]  # the same market and flow for both
    assert cli.main(["simulate", "--seed", "2", "--duration", "3m", "--policy", "adaptive,fixed"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["adaptive", "fixed"]
    row = next(line for line in lines if line.startswith("hedged PnL std over 3 min (USDT)"))
    assert len(row.split("(USDT)")[1].split()) == 2


def needs_matplotlib() -> None:
    """The plot tests need the test extra's matplotlib: fail under CI, skip elsewhere."""
    if importlib.util.find_spec("matplotlib") is None:
        message = "matplotlib missing: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def test_plot_draws_the_price_and_every_policy_on_shared_scales(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    needs_matplotlib()
    import matplotlib.pyplot as plt

    figures: list[Any] = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: (figures.append(fig), close(fig)))
    path = tmp_path / "day.png"
    assert cli.main(["simulate", "--seed", "4", "--duration", "10m", "--policy", "fixed,adaptive",
                     "--plot", str(path)]) == 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (fig,) = figures
    price, fixed, adaptive, cost = fig.axes
    assert price.get_ylabel() == "mid (USDT)" and len(price.lines[0].get_ydata()) > 100
    assert fixed.get_ylabel() == adaptive.get_ylabel() == "net delta (BTC)"
    assert fixed.get_ylim() == adaptive.get_ylim()  # one scale for every policy
    assert [line.get_label().split(",")[0] for line in (fixed.lines[0], adaptive.lines[0])] == ["net delta"] * 2
    assert "fixed" in fixed.lines[0].get_label() and "adaptive" in adaptive.lines[0].get_label()
    assert [line.get_label().split(":")[0] for line in cost.lines] == ["fixed", "adaptive"]
    assert "USDT" in cost.get_ylabel() and cost.get_xlabel() == "simulated hours"
    assert {ax.get_xlim() for ax in fig.axes} == {price.get_xlim()}  # one time axis


def test_plot_without_matplotlib_says_how_to_install_it(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert cli.main(["simulate", "--duration", "1m", "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'hedgerd[plot]'" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_a_simulation_ledger_with_a_writer_thread_lets_no_virtual_time_pass(tmp_path: Path) -> None:
    async def scenario(loop: VirtualTimeLoop) -> tuple[float, list[str]]:
        order: list[str] = []

        async def ticker() -> None:
            await asyncio.sleep(0.001)  # any wait on the writer that let time move would come after this
            order.append("timer")

        tick = asyncio.create_task(ticker())
        started = loop.time()
        ledger = SimulationLedger(tmp_path / "ledger.sqlite", commit_on="thread", batch_max=1)
        await ledger.open()
        intent = await ledger.new_intent(underlying="BTC", venue="perp", symbol="BTC/USDT:USDT", side=Side.SELL,
                                          amount=Decimal(1), created_at=1.0)
        await ledger.record_order_state(intent.client_order_id, OrderStatus.SUBMITTED)
        await ledger.record_adjustment("spot", "BTC", Decimal(1), "test", 1.0)
        await ledger.verify()
        await ledger.close()
        order.append("ledger")
        elapsed = loop.time() - started
        await tick
        return elapsed, order

    elapsed, order = run_in_virtual_time(scenario)
    assert elapsed == 0.0
    assert order == ["ledger", "timer"]
