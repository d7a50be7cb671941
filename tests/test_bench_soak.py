"""bench/soak.py runs the daemon under flow, samples it and fits its figures.

A short smoke run of both modes checks the bookkeeping (samples, fills counted, /proc readings,
the fits and the report), not the goal figures; the fitting and the CPU split by stage are
checked on made-up data.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "bench"))  # bench/ is scripts, not a package

from soak import Result, Sample, classify, cpu_split, fit, parse_args, report, run_mode, slope


def sample(t: float, fills: float, rss: float, cpu: float) -> Sample:
    return Sample(t=t, fills=fills, rss_mib=rss, anon_mib=rss - 20, cpu_s=cpu, open_files=20, threads=8,
                  ledger_mib=1.0, wal_mib=0.1)


def test_fit_leaves_the_warm_up_out_and_scales_per_100k_fills() -> None:
    result = Result(mode="live", rate=50, duration=100, warmup=20)
    # warm-up: RSS jumps; after it: +1 MiB per 1,000 fills, 2 ms of CPU per fill
    result.samples = [sample(0, 0, 100, 0), sample(10, 500, 150, 1)]
    result.samples += [sample(20 + 10 * i, 1_000 + 1_000 * i, 160 + i, 5 + 2 * i) for i in range(9)]
    fit(result)
    assert result.error is None
    assert result.fills_after_warmup == 8_000 and result.fills_per_s == pytest.approx(100)
    assert result.rss_mib_per_100k_fills == pytest.approx(100)
    assert result.anon_mib_per_100k_fills == pytest.approx(100)
    assert result.rss_mib_per_hour == pytest.approx(360)
    assert result.cpu_ms_per_fill == pytest.approx(2)
    assert result.cpu_share == pytest.approx(0.2)
    assert slope([1, 2], [1, 2]) is None and slope([1, 1, 1], [1, 2, 3]) is None


def test_fit_reports_too_few_samples() -> None:
    result = Result(mode="paper", rate=0, duration=10, warmup=5, samples=[sample(0, 0, 60, 0)])
    fit(result)
    assert result.error == "too few samples after the warm-up"


def test_stacks_go_to_the_first_stage_with_a_marker_and_to_the_innermost_owner() -> None:
    ws = ("run (asyncio/runners.py:118);_run (hedgerd/connectors/ccxt/streams.py:191);"
          "handle_message (ccxt/pro/binance.py:5355);parse_trade (ccxt/base/exchange.py:100);"
          "loads (json/__init__.py:1)")
    assert classify(ws) == ("websocket parsing", "ccxt")
    ledger = ("_run (hedgerd/connectors/ccxt/streams.py:191);on_fills (hedgerd/engine.py:370);"
              "flush_now (hedgerd/ledger/ledger.py:840);execute (sqlite3:0)")
    assert classify(ledger) == ("ledger", "hedgerd")
    backfill = ("safety_backfills (hedgerd/connectors/ccxt/fills.py:112);on_fills (hedgerd/engine.py:370);"
                "flush_now (hedgerd/ledger/ledger.py:840)")
    assert classify(backfill) == ("backfill polling", "hedgerd")
    order = ("_execute (hedgerd/executor/executor.py:500);create_order (ccxt/async_support/binance.py:10)")
    assert classify(order) == ("order path", "ccxt")
    assert classify("_run_once (asyncio/base_events.py:1900);select (selectors.py:1)") == ("other", "other")
    main, other = "thread (42): MainThread;", "thread (43): ledger-checkpoint;"
    idle = "_run (hedgerd/cli.py:121);run (uvloop/__init__.py:92)"
    raw = (f"{main}{ws} 30\n{main}{ledger} 10\n{main}{backfill} 40\n{main}{idle} 500\n{other}{ledger} 70\n"
           "not a stack line\n")
    # 100 Hz, 40 fills: each sample is 0.25 ms per fill; the main thread used 25 ms per fill
    split, samples = cpu_split(raw, main_tid=42, rate_hz=100, fills=40, main_cpu_ms_per_fill=25.0,
                               other_threads_ms_per_fill=0.5)
    assert samples == 80  # the main thread's, without the idle loop's
    assert split["websocket parsing"]["ccxt"] == pytest.approx(7.5)
    assert split["ledger"]["hedgerd"] == pytest.approx(2.5)
    assert split["backfill polling"]["hedgerd"] == pytest.approx(10.0)
    assert split["event loop (native)"] == {"hedgerd": 0.0, "ccxt": 0.0, "other": pytest.approx(5.0)}
    assert split["other threads"] == {"hedgerd": 0.0, "ccxt": 0.0, "other": 0.5}
    assert sum(v for owners in split.values() for v in owners.values()) == pytest.approx(25.5)


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--modes", "live,bogus"], ["--warmup", "60", "--duration", "30"], ["--rate", "-1"],
                 ["--profile", "100", "--duration", "120", "--warmup", "60"]):
        with pytest.raises(SystemExit):
            parse_args(argv)
    assert "--modes" in capsys.readouterr().err


def test_short_soak_of_both_modes_samples_and_fits(tmp_path: Path) -> None:
    args = parse_args(["--rate", "30", "--duration", "9", "--interval", "1.5", "--warmup", "3", "--json"])
    results = [run_mode(mode, args, tmp_path / mode) for mode in args.modes]
    for result in results:
        log = (tmp_path / result.mode / "daemon.log").read_text()[-2000:]
        assert result.error is None, (result.mode, result.error, log)
        assert len(result.samples) >= 5
        assert [s.t for s in result.samples] == sorted(s.t for s in result.samples)
        assert result.samples[-1].t >= 9
        fills = [s.fills for s in result.samples]
        assert fills == sorted(fills) and fills[-1] > fills[0]
        assert all(s.rss_mib > 10 and s.anon_mib > 0 and s.threads >= 1 and s.open_files > 3 for s in result.samples)
        assert result.samples[-1].ledger_mib > 0
        assert result.fills_after_warmup > 0 and result.cpu_ms_per_fill is not None
        assert result.rss_mib_per_100k_fills is not None
    live, paper = results
    assert all(s.sim_rss_mib is not None and s.sim_cpu_s is not None for s in live.samples)
    assert all(s.sim_rss_mib is None for s in paper.samples)
    assert live.fills_per_s > paper.fills_per_s  # 30/s offered against the paper default's own flow
    text = report(results)
    assert "live:" in text and "paper:" in text and "per 100k fills" in text
