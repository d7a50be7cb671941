"""Bad input, operator, disk and security fault scenarios, each measuring issue 5's figures.

Every scenario returns a result whose ``rows()`` are :class:`~tests.fault.harness.Row` figures;
the tests in ``tests/fault/test_{prices,malformed,operator,disk,secrets}.py`` run them and
assert the goals, ``bench/faults_input.py`` runs them and hands the rows to ``bench/faults.py``.

* prices: :func:`stale_sim_venue`, :func:`wild_prices` (in process, embedded sim venues) and
  :func:`ccxt_prices` (daemon subprocess against the Binance-protocol simulator);
* malformed messages: :func:`malformed_messages` (daemon subprocess, ``VenueSim.send_raw``);
* operator mistakes: :data:`CONFIG_CASES` / :func:`config_case`, :func:`missing_ccxt_instrument`,
  :func:`sighup_reloads`;
* disk and ledger: :func:`ledger_fault_in_process`, :func:`ledger_fault_daemon`,
  :func:`corrupt_ledger`;
* security: :func:`canary_credentials`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from hedgerd.ledger import InventoryLedger
from hedgerd.models import Fill, HedgeIntent, OrderReport, PriceUpdate, Side, TradingState
from tests.daemon_proc import DaemonProcess, daemon_env, free_port, running_daemon
from tests.fault.harness import Row, row, zero_row
from tests.fault.sim_daemon import (
    PERP,
    PERP_VENUE,
    SPOT_VENUE,
    ccxt_daemon_config,
    engine_settings,
    log_events,
    run_cli,
    running_engine,
    sample,
    sim_credentials_env,
    sim_thread,
    toml_dumps,
    until,
    wait_until,
    write_config,
)

KEY = ("sim-perp", PERP)


def _status(d: DaemonProcess) -> dict[str, Any]:
    return json.loads(d.get("/status")[1])  # type: ignore[no-any-return]


def _send_raw(sim: Any, *, stream: str, kind: str, payload: Any) -> int:
    """``sim.send_raw`` for :meth:`SimThread.call` (runs on the simulator's loop)."""
    sent: int = sim.send_raw(stream, kind, payload)
    return sent


def _ratio(good: int, total: int) -> str:
    return f"{good}/{total}"


# =========================================================================== prices
@dataclass
class StaleResult:
    """:func:`stale_sim_venue`: the price stream of the hedge venue stops."""

    max_age: float
    stale_to_halt: float  # seconds from the last accepted price to HALTED
    reason: str
    source: str
    ready_problems: list[str]
    held_after_fresh_prices: bool  # still HALTED once prices flow again (leaving HALTED is deliberate)
    resumed: bool

    @property
    def in_time(self) -> bool:
        return self.max_age < self.stale_to_halt <= self.max_age + 1.0

    def rows(self) -> list[Row]:
        name = "stale price (sim venue, in process)"
        return [
            row(name, "s from last accepted price to HALTED", self.stale_to_halt,
                f"({self.max_age:g}, {self.max_age + 1:g}]", self.in_time),
            row(name, "HALTED held until a deliberate resume", "yes" if self.held_after_fresh_prices else "no",
                "yes", self.held_after_fresh_prices and self.resumed),
        ]


async def stale_sim_venue(workdir: Path, max_age: float = 1.0) -> StaleResult:
    """No client flow and safety tick = max age: only the risk loop's timing can notice."""
    settings = engine_settings(workdir, flow_rate=0.0, max_price_age=max_age, safety_tick=max_age)
    async with running_engine(settings) as engine:
        perp = engine.venues["sim-perp"]
        halted_at: list[float] = []
        engine.kill_switch.add_listener(
            lambda ks: halted_at.append(engine.clock.monotonic()) if ks.state is TradingState.HALTED else None)
        await until(lambda: KEY in engine.prices and engine.readiness()[0], 10, "first price, ready")
        assert engine.kill_switch.state is TradingState.ACTIVE
        perp.stall_prices()  # type: ignore[attr-defined]
        await until(lambda: bool(halted_at), max_age + 5, "HALTED after the price stream stopped")
        stale_to_halt = halted_at[0] - engine._price_seen_at[KEY]
        ks = engine.kill_switch
        reason, source, problems = ks.reason, ks.source, engine.readiness()[1]
        perp.stall_prices(False)  # type: ignore[attr-defined]
        await until(lambda: engine.price_age(*KEY) < 0.5, 5, "prices again")
        engine.evaluate_soon()
        await until(lambda: engine.readiness()[0], 5, "ready again")
        held = ks.state is TradingState.HALTED
        resumed = engine.resume("test")[0] and ks.state is TradingState.ACTIVE
    return StaleResult(max_age, stale_to_halt, reason, source, problems, held, resumed)


def bad_price_updates(mid: Decimal, last_ts: float) -> list[tuple[str, PriceUpdate]]:
    """(expected rejection kind, update) pairs for the hedge instrument, each bad on its own."""
    def update(bid: Decimal, ask: Decimal, ts: float = 0.0) -> PriceUpdate:
        return PriceUpdate(venue=KEY[0], symbol=KEY[1], bid=bid, ask=ask, ts=ts or time.time(),
                           received_at=time.monotonic())

    one = Decimal(1)
    return [
        ("wild_jump", update(mid * Decimal("1.5") - one, mid * Decimal("1.5") + one)),
        ("wild_jump", update(mid * Decimal("0.5") - one, mid * Decimal("0.5") + one)),
        ("nan", update(Decimal("NaN"), mid)),
        ("nan", update(mid, Decimal("sNaN"))),
        ("non_positive", update(Decimal(-5), mid)),
        ("non_positive", update(Decimal(0), Decimal(0))),
        ("infinite", update(mid, Decimal("Infinity"))),
        ("crossed", update(mid + 10, mid - 10)),
        ("out_of_order", update(mid - one, mid + one, ts=last_ts - 30.0)),
    ]


@dataclass
class WildResult:
    """:func:`wild_prices`: bad ticks pushed into the engine, each followed by a client fill."""

    expected: Counter[str]  # rejection kind -> pushed
    rejected: Counter[str]  # rejection kind -> hedgerd_rejected_prices_total
    venue_errors: float  # hedgerd_venue_errors_total{kind="bad_price"}
    stored: list[str]  # kinds whose price replaced the last sane one
    orders: list[tuple[str, Decimal | None, Decimal]]  # (client id, IOC limit, venue mid at send)
    state: TradingState

    @property
    def off_market(self) -> list[str]:
        """Orders whose limit is more than 1 % from the real market: sized on a rejected price."""
        return [cid for cid, limit, mid in self.orders if limit is None or abs(limit / mid - 1) > Decimal("0.01")]

    @property
    def all_counted(self) -> bool:
        total = sum(self.expected.values())
        return self.rejected == self.expected and self.venue_errors == total

    def rows(self) -> list[Row]:
        name = "wild / invalid prices (sim venue, in process)"
        total = sum(self.expected.values())
        counted = sum(min(self.rejected[k], n) for k, n in self.expected.items())
        return [
            row(name, "rejected and counted / pushed (" + ", ".join(sorted(self.expected)) + ")",
                _ratio(counted, total), "all", self.all_counted and not self.stored),
            row(name, "hedges placed right behind a bad tick", len(self.orders), f">= {total}",
                len(self.orders) >= total),
            zero_row(name, "hedges sized on a rejected price", len(self.off_market)),
        ]


async def wild_prices(workdir: Path) -> WildResult:
    settings = engine_settings(workdir, flow_rate=0.0, order_type="limit_ioc", threshold="0.02")
    async with running_engine(settings) as engine:
        perp = engine.venues["sim-perp"]
        orders: list[tuple[str, Decimal | None, Decimal]] = []
        original = perp.create_order

        async def recording(intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
            bid, ask = perp.quote()  # type: ignore[attr-defined]
            orders.append((intent.client_order_id, price, (bid + ask) / 2))
            return await original(intent, amount, price)

        perp.create_order = recording  # type: ignore[method-assign]
        await until(lambda: KEY in engine.prices and engine.readiness()[0], 10, "first price, ready")
        expected: Counter[str] = Counter()
        stored: list[str] = []
        for i in range(len(bad_price_updates(Decimal(1), 0.0))):
            sane = engine.prices[KEY]
            # built now: an update made earlier could be older than the stream's last tick
            kind, bad = bad_price_updates(sane.mid, sane.ts)[i]
            await engine.on_price(bad)
            now = engine.prices[KEY]
            if not (now.bid.is_finite() and now.ask.is_finite() and 0 < now.bid <= now.ask
                    and abs(now.mid / sane.mid - 1) < Decimal("0.01")):
                stored.append(kind)
            expected[kind] += 1
            sent = len(orders)
            await engine.on_fill(Fill(venue="sim-spot", trade_id=f"desk-{i}", symbol="BTC/USDT",
                                      side=Side.BUY if i % 2 == 0 else Side.SELL, amount=Decimal("0.1"),
                                      price=sane.mid, ts=time.time(), received_at=time.monotonic()))
            await until(lambda n=sent: len(orders) > n, 10,  # type: ignore[misc]
                        f"a hedge after the {kind} price")
        rejected = Counter({kind: int(sample(engine.metrics, "hedgerd_rejected_prices_total", symbol=PERP,
                                             reason=kind)) for kind in expected})
        errors = sample(engine.metrics, "hedgerd_venue_errors_total", venue="sim-perp", kind="bad_price")
        return WildResult(expected, rejected, errors, stored, orders, engine.kill_switch.state)


_STALE = re.compile(r"stale price: \S+ last accepted (?P<age>[0-9.]+)s ago")


def stale_age(reason: str) -> float:
    """The age the engine saw when the stale-price trigger fired (from the kill reason)."""
    match = _STALE.search(reason)
    if match is None:
        raise AssertionError(f"not a stale-price halt: {reason}")
    return float(match["age"])


def orders_sent_after_halt(events: list[dict[str, Any]]) -> int:
    """``order_send`` log events after the first HALTED ``trading_state`` event (by log order)."""
    halted = next((i for i, e in enumerate(events)
                   if e.get("event") == "trading_state" and e.get("state") == "HALTED"), None)
    if halted is None:
        return -1
    return sum(e.get("event") == "order_send" for e in events[halted + 1:])


@dataclass
class CcxtPriceResult:
    """:func:`ccxt_prices`: market data paused, then a 50 % jump, through the ccxt path."""

    max_age: float
    pause_stale_to_halt: float = -1.0
    pause_polled: float = -1.0  # seconds from the pause to HALTED seen on /metrics
    jump_stale_to_halt: float = -1.0
    wild_rejected: float = 0  # hedgerd_rejected_prices_total{reason="wild_jump"} after the jump
    bad_price_errors: float = 0
    orders_after_halt: int = -1
    decisions_after_jump: int = 0
    wild_decisions: int = -1  # hedge decisions whose mid is the jumped level
    other_rejections: int = 0
    bad_tickers_sent: int = 0  # NaN / negative / zero quotes on the market-data stream
    bad_tickers_counted: float = 0  # hedgerd_venue_errors_total{kind="malformed"} increase
    active_after_bad_tickers: bool = False

    def rows(self) -> list[Row]:
        name = "stale / wild price (ccxt, daemon)"
        limit = self.max_age + 1.0
        return [
            row(name, "market data paused: s from last price to HALTED", self.pause_stale_to_halt,
                f"<= {limit:g}", 0 <= self.pause_stale_to_halt <= limit),
            row(name, "NaN / negative / zero quotes rejected and counted / sent",
                _ratio(int(self.bad_tickers_counted), self.bad_tickers_sent), "all",
                self.bad_tickers_sent > 0 and self.bad_tickers_counted == self.bad_tickers_sent
                and self.active_after_bad_tickers),
            row(name, "50% jump: wild ticks rejected and counted", int(self.wild_rejected), ">= 2",
                self.wild_rejected >= 2 and self.bad_price_errors >= self.wild_rejected),
            row(name, "50% jump: s from last sane price to HALTED", self.jump_stale_to_halt, f"<= {limit:g}",
                0 <= self.jump_stale_to_halt <= limit),
            zero_row(name, "50% jump: hedge decisions on a wild mid", self.wild_decisions),
            zero_row(name, "orders after HALTED", self.orders_after_halt),
        ]


def ccxt_prices(workdir: Path, max_age: float = 2.0) -> CcxtPriceResult:
    result = CcxtPriceResult(max_age)
    with sim_thread() as sim:  # desk flow from the moment the daemon runs (a quiet start reconciles at once)
        config = write_config(workdir / "hedgerd.toml", ccxt_daemon_config(sim, max_price_age=max_age))
        with running_daemon(workdir, args=["--config", str(config)], env=sim_credentials_env(sim)) as d:
            d.wait_for(lambda: _status(d)["ready"] and len(sim.our_orders()) >= 1, 60, "ready and hedging")
            sim.call(lambda s: setattr(s.engine, "flow_rate", 2.0))
            # 1. market data stops (connections stay open)
            paused = time.monotonic()
            sim.admin("/_sim/faults", {"market_data_paused": True})
            d.wait_for(lambda: d.total("hedgerd_trading_state") == 2, max_age + 5, "HALTED on stale price")
            result.pause_polled = time.monotonic() - paused
            result.pause_stale_to_halt = stale_age(_status(d)["reason"])
            # 2. prices again, deliberate resume; a resume forgets the price anchor (a genuine move
            #    while halted is adopted), so let a sane tick become the anchor again
            sim.admin("/_sim/faults", {"market_data_paused": False})
            wait_until(lambda: _status(d)["ready"], 10, "fresh prices")
            assert d.post("/resume")[0] == 200
            time.sleep(0.3)
            wait_until(lambda: _status(d)["underlyings"]["BTC"]["price_age_seconds"] < 0.2, 5, "a sane anchor")
            # 3. NaN / negative / zero quotes on the market-data stream (ccxt path: the connector rejects them)
            pre_jump = Decimal(sim.call(lambda s: str(s.engine.mid("usdm", "BTCUSDT"))))
            malformed_before = d.total("hedgerd_venue_errors_total", kind="malformed")
            now_ms = int(time.time() * 1000)
            bad_tickers = [{"e": "bookTicker", "u": 1, "s": "BTCUSDT", "b": bid, "B": "1", "a": ask, "A": "1",
                            "E": now_ms, "T": now_ms}
                           for bid, ask in (("NaN", "60000"), ("-5", "60000"), ("0", "0"))]
            # ccxt keeps the latest quote per symbol: one sent before the previous was read replaces it
            # (never seen, never used). Send them one at a time while the simulator's own quotes pause.
            sim.admin("/_sim/faults", {"market_data_paused": True})
            for number, payload in enumerate(bad_tickers, start=1):
                assert sim.call(functools.partial(_send_raw, stream="market", kind="usdm", payload=payload)) >= 1
                result.bad_tickers_sent += 1
                with contextlib.suppress(AssertionError):
                    d.wait_for(lambda n=number: d.total("hedgerd_venue_errors_total", kind="malformed")  # type: ignore[misc]
                               - malformed_before >= n, 1.0, "the bad quote counted")
            sim.admin("/_sim/faults", {"market_data_paused": False})
            result.bad_tickers_counted = d.total("hedgerd_venue_errors_total", kind="malformed") - malformed_before
            result.active_after_bad_tickers = _status(d)["trading_state"] == "active"
            wait_until(lambda: _status(d)["underlyings"]["BTC"]["price_age_seconds"] < 0.2, 5, "sane quotes again")
            # 4. the price jumps 50 % in one tick and stays there
            rejected_before = d.total("hedgerd_rejected_prices_total", reason="wild_jump")
            errors_before = d.total("hedgerd_venue_errors_total", kind="bad_price")
            events_before = len(log_events(d.log_path))
            sim.admin("/_sim/price", {"symbol": "BTCUSDT", "price": str(pre_jump * Decimal("1.5"))})
            d.wait_for(lambda: d.total("hedgerd_trading_state") == 2, max_age + 5, "HALTED after the jump")
            result.jump_stale_to_halt = stale_age(_status(d)["reason"])
            result.wild_rejected = d.total("hedgerd_rejected_prices_total", reason="wild_jump") - rejected_before
            result.bad_price_errors = d.total("hedgerd_venue_errors_total", kind="bad_price") - errors_before
            time.sleep(1.0)  # flow continues: any order would be sent now
            after = log_events(d.log_path)[events_before:]
            result.orders_after_halt = orders_sent_after_halt(after)
            decisions = [e for e in after if e.get("event") == "hedge_decision"]
            result.decisions_after_jump = len(decisions)
            result.wild_decisions = sum(abs(Decimal(e["mid"]) / pre_jump - 1) >= Decimal("0.2") for e in decisions)
            result.other_rejections = sum(e.get("event") == "price_rejected" and not e["reason"].startswith("wild")
                                          for e in after)
    return result


# =========================================================================== malformed messages
def execution_report(trade_id: int, **changes: Any) -> dict[str, Any]:
    """A spot ``executionReport`` of a desk trade (as the simulator sends them), with changes."""
    now = int(time.time() * 1000)
    report: dict[str, Any] = {
        "e": "executionReport", "E": now, "s": "BTCUSDT", "c": f"desk-bad{trade_id}", "S": "BUY",
        "o": "LIMIT", "f": "GTC", "q": "0.01000000", "p": "60000.00", "P": "0", "F": "0", "g": -1,
        "C": "", "x": "TRADE", "X": "FILLED", "r": "NONE", "i": 90_000_000 + trade_id, "l": "0.01000000",
        "z": "0.01000000", "L": "60000.00", "n": "0.00001000", "N": "BTC", "T": now, "t": trade_id,
        "v": 0, "I": 1, "w": False, "m": True, "M": False, "O": now, "Z": "600", "Y": "600", "Q": "0",
        "W": now, "V": "EXPIRE_MAKER",
    }
    for key, value in changes.items():
        if value is ...:
            report.pop(key)
        else:
            report[key] = value
    return report


def order_trade_update(trade_id: int, **changes: Any) -> dict[str, Any]:
    """A USD-M ``ORDER_TRADE_UPDATE`` trade execution with changes to its order body."""
    now = int(time.time() * 1000)
    body: dict[str, Any] = {
        "s": "BTCUSDT", "c": f"other{trade_id}", "S": "SELL", "o": "MARKET", "f": "GTC", "q": "0.010",
        "p": "0", "ap": "60000", "sp": "0", "x": "TRADE", "X": "FILLED", "i": 80_000_000 + trade_id,
        "l": "0.010", "z": "0.010", "L": "60000", "T": now, "t": trade_id, "b": "0", "a": "0", "m": False,
        "R": False, "wt": "CONTRACT_PRICE", "ot": "MARKET", "ps": "BOTH", "cp": False, "rp": "0", "pP": False,
        "si": 0, "ss": 0, "N": "USDT", "n": "0.3",
    }
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return {"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": body}


def rejected_messages() -> list[tuple[str, str, Any]]:
    """(stream kind, text its one log line names, payload) of every message hedgerd must reject
    as malformed: bad trade executions (named by trade id) and frames ccxt's parser raises on."""
    spot = [
        execution_report(910_001, l=...),                # missing last quantity
        execution_report(910_002, L=...),                # missing price
        execution_report(910_003, S=...),                # missing side (ccxt would guess it)
        execution_report(910_004, l="abc"),              # wrong type
        execution_report(910_005, l=[0.01]),             # wrong type
        execution_report(910_006, L={"p": 1}),           # wrong type
        execution_report(910_007, l="-0.01"),            # negative size
        execution_report(910_008, l="0"),                # zero size
        execution_report(910_009, l="1e12"),             # absurd size
        execution_report(910_010, L="NaN"),              # NaN price
        execution_report(910_011, S="HOLD"),             # unknown side
        execution_report(910_012, T="yesterday"),        # wrong type timestamp
    ]
    perp = [
        order_trade_update(920_001, l=...),
        order_trade_update(920_002, l="-1"),
        order_trade_update(920_003, l="5000"),            # above the market's maximum order amount
        order_trade_update(920_004, L="0"),
    ]
    frames = [("usdm", "[4, 5]", [4, 5])]  # JSON, but not an object: ccxt's parser raises on it
    return [("spot", str(m["t"]), m) for m in spot] + [("usdm", str(m["o"]["t"]), m) for m in perp] + frames


def dropped_messages() -> list[tuple[str, Any]]:
    """Messages ccxt drops itself: they must leave no trace and not break the streams."""
    return [
        ("spot", execution_report(930_001, s="DOGEUSDT")),   # unknown symbol
        ("usdm", order_trade_update(930_002, s="DOGEUSDT")),
        ("spot", "this is not json"),
        ("spot", [1, 2, 3]),  # arrives wrapped in a ws-api user-data event, which ccxt ignores
    ]


def ledger_trade_ids(path: Path) -> dict[str, list[str]]:
    """venue -> journaled trade ids, read from the ledger file (read-only, concurrent with the daemon)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute("SELECT venue, trade_id FROM fills").fetchall()
    finally:
        conn.close()
    out: dict[str, list[str]] = {}
    for venue, trade_id in rows:
        out.setdefault(venue, []).append(trade_id)
    return out


@dataclass
class MalformedResult:
    """:func:`malformed_messages`: raw bad messages on the user-data streams of a live daemon."""

    sent: int = 0
    counted: float = 0  # hedgerd_venue_errors_total{kind="malformed"} increase
    log_lines: dict[str, int] = field(default_factory=dict)  # message -> malformed log lines naming it
    malformed_logs: int = 0
    duplicated_messages: int = 0
    reordered_messages: int = 0
    differences: dict[str, tuple[set[str], set[str]]] = field(default_factory=dict)  # ledger only, venue only
    bad_in_ledger: int = -1
    doubled_in_ledger: int = -1
    ready_after: bool = False
    active_after: bool = False
    hedged_after: bool = False
    tracebacks: int = -1

    @property
    def logged_once(self) -> bool:
        return bool(self.log_lines) and set(self.log_lines.values()) == {1} and self.malformed_logs == self.sent

    @property
    def ledger_mismatches(self) -> int:
        return sum(len(a) + len(b) for a, b in self.differences.values())

    def rows(self) -> list[Row]:
        name = "malformed venue messages (ccxt, daemon)"
        return [
            row(name, "rejected and counted in hedgerd_venue_errors_total / sent", _ratio(int(self.counted), self.sent),
                "all", self.sent > 0 and self.counted == self.sent),
            row(name, "log lines per rejected message", "1" if self.logged_once else str(self.log_lines), "1",
                self.logged_once),
            row(name, "duplicated + reordered trade messages deduped",
                self.duplicated_messages + self.reordered_messages, ">= 5",
                self.duplicated_messages >= 3 and self.reordered_messages >= 2),
            zero_row(name, "bad fills in the ledger", self.bad_in_ledger),
            zero_row(name, "fills doubled in the ledger", self.doubled_in_ledger),
            zero_row(name, "trade ids differing ledger vs venue", self.ledger_mismatches),
            row(name, "daemon ready, ACTIVE and hedging afterwards", "yes" if self.hedged_after else "no", "yes",
                self.ready_after and self.active_after and self.hedged_after),
            zero_row(name, "tracebacks in the log", self.tracebacks),
        ]


def malformed_messages(workdir: Path) -> MalformedResult:
    result = MalformedResult()
    with sim_thread(flow_rate=0.0) as sim:  # desk flow starts once the daemon runs: the ledger sees all of it
        config = write_config(workdir / "hedgerd.toml", ccxt_daemon_config(sim))
        with running_daemon(workdir, args=["--config", str(config)], env=sim_credentials_env(sim)) as d:
            d.wait_for(lambda: _status(d)["ready"] and len(sim.our_orders()) >= 1, 60, "ready and hedging")
            sim.call(lambda s: setattr(s.engine, "flow_rate", 3.0))
            malformed_before = d.total("hedgerd_venue_errors_total", kind="malformed")
            events_before = len(log_events(d.log_path))
            # real trades delivered twice and out of order by the venue's user-data streams
            sim.call(lambda s: s.faults.update({"duplicate_trade_next": 3, "reorder_trade_next": 2}))
            rejected = rejected_messages()
            result.sent = len(rejected)
            for kind, _, payload in rejected:
                assert sim.call(functools.partial(_send_raw, stream="user", kind=kind, payload=payload)) >= 1
            for kind, payload in dropped_messages():
                assert sim.call(functools.partial(_send_raw, stream="user", kind=kind, payload=payload)) >= 1
            wait_until(lambda: sim.call(lambda s: s.stats_json()["duplicated_trade_messages"] >= 3
                                        and s.stats_json()["reordered_trade_messages"] >= 2), 20,
                       "the simulator duplicated and reordered trade messages")
            stats = sim.call(lambda s: s.stats_json())
            result.duplicated_messages = stats["duplicated_trade_messages"]
            result.reordered_messages = stats["reordered_trade_messages"]
            with contextlib.suppress(AssertionError):
                d.wait_for(lambda: d.total("hedgerd_venue_errors_total", kind="malformed") - malformed_before
                           >= len(rejected), 10, "every malformed message counted")
            orders_before = len(sim.our_orders())
            time.sleep(1.5)  # anything late would show up now
            result.counted = d.total("hedgerd_venue_errors_total", kind="malformed") - malformed_before
            after = log_events(d.log_path)[events_before:]
            logs = [e for e in after if e.get("event") == "venue_error" and e.get("kind") == "malformed"]
            result.malformed_logs = len(logs)
            result.log_lines = {marker: sum(marker in e["detail"] for e in logs) for _, marker, _ in rejected}
            result.tracebacks = sum("Traceback" in json.dumps(e) for e in after)
            with contextlib.suppress(AssertionError):
                d.wait_for(lambda: _status(d)["ready"], 10, "ready after the bad input")
            status = _status(d)
            result.ready_after, result.active_after = status["ready"], status["trading_state"] == "active"
            with contextlib.suppress(AssertionError):
                d.wait_for(lambda: len(sim.our_orders()) > orders_before, 20, "hedging after the bad input")
            result.hedged_after = len(sim.our_orders()) > orders_before

            def differences() -> dict[str, tuple[set[str], set[str]]]:
                ledger = ledger_trade_ids(d.workdir / "ledger.sqlite")
                venue = {SPOT_VENUE: {f"BTC/USDT#{t.trade_id}" for t in sim.trades("spot")},
                         PERP_VENUE: {f"BTC/USDT:USDT#{t.trade_id}" for t in sim.trades("usdm")}}
                return {name: (set(ledger.get(name, [])) - ids, ids - set(ledger.get(name, [])))
                        for name, ids in venue.items()}

            sim.call(lambda s: setattr(s.engine, "flow_rate", 0.0))
            with contextlib.suppress(AssertionError):
                wait_until(lambda: not any(a or b for a, b in differences().values()), 15, "ledger == venue trades")
            result.differences = differences()
            ledger = ledger_trade_ids(d.workdir / "ledger.sqlite")
            bad_ids = {marker for _, marker, _ in rejected} | {"930001", "930002"}
            journaled = [tid for ids in ledger.values() for tid in ids]
            result.bad_in_ledger = sum(tid.rsplit("#", 1)[-1] in bad_ids for tid in journaled)
            result.doubled_in_ledger = len(journaled) - len(set(journaled))
    return result


# =========================================================================== operator mistakes
SIM_VENUES = [
    {"name": "sim-spot", "kind": "sim", "role": "inventory", "sim": {"seed": 1, "symbol": "BTC/USDT"}},
    {"name": "sim-perp", "kind": "sim", "role": "hedge",
     "sim": {"seed": 2, "symbol": "BTC/USDT:USDT", "flow_rate": 0.0}},
]


def hedge(**changes: Any) -> dict[str, Any]:
    """The baseline hedge of :func:`paper_config`, with changes."""
    data: dict[str, Any] = {"underlying": "BTC", "venue": "sim-perp", "symbol": "BTC/USDT:USDT",
                            "threshold": "0.05", "min_order": "0.001", "max_order": "1", "max_position": "10",
                            "inventory": [{"venue": "sim-spot", "asset": "BTC"}]}
    data.update(changes)
    return data


def paper_config(**changes: Any) -> dict[str, Any]:
    """A valid paper config on the embedded simulated venues, with top-level ``changes``."""
    data: dict[str, Any] = {"mode": "paper", "venues": SIM_VENUES, "hedges": [hedge()]}
    data.update(changes)
    return data


CCXT_VENUES = [
    {"name": "binance-spot", "kind": "ccxt", "exchange": "binance", "role": "inventory",
     "urls": {"api": {"public": "http://127.0.0.1:9/api/v3"}}},
    {"name": "binance-usdm", "kind": "ccxt", "exchange": "binanceusdm", "role": "hedge",
     "urls": {"api": {"fapiPublic": "http://127.0.0.1:9/fapi/v1"}}},
]
CCXT_HEDGE = {"underlying": "BTC", "venue": "binance-usdm", "symbol": "BTC/USDT:USDT",
              "inventory": [{"venue": "binance-spot", "asset": "BTC"}]}


@dataclass(frozen=True)
class ConfigCase:
    """One operator mistake: a config file (TOML data or raw text), environment, secrets files."""

    path: str  # the dotted path (or file) that must be named on stderr
    config: Mapping[str, Any] | str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


CONFIG_CASES: dict[str, ConfigCase] = {
    "file: wrong type": ConfigCase("hedges.0.threshold", paper_config(hedges=[hedge(threshold="lots")])),
    "file: wrong type in a section": ConfigCase("risk.safety_tick", paper_config(risk={"safety_tick": "soon"})),
    "env: wrong type": ConfigCase("admin.port", env={"HEDGERD_ADMIN__PORT": "ninety"}),
    "env: not a boolean": ConfigCase("kill_switch.engaged", env={"HEDGERD_KILL_SWITCH__ENGAGED": "maybe"}),
    "env: list that is not JSON": ConfigCase("hedges", env={"HEDGERD_HEDGES": "BTC"}),
    "secrets file: wrong type": ConfigCase("admin.port", secrets={"hedgerd_admin__port": "ninety"}),
    "file: unknown key": ConfigCase("admin.colour", paper_config(admin={"colour": "red"})),
    "file: unknown top-level key": ConfigCase("hedge", paper_config(hedge={"underlying": "BTC"})),
    "file: unknown key in a hedge": ConfigCase("hedges.0.treshold", paper_config(hedges=[hedge(treshold="0.1")])),
    "env: unknown key": ConfigCase("HEDGERD_ADMN__PORT", env={"HEDGERD_ADMN__PORT": "9000"}),
    "env: single underscore": ConfigCase("HEDGERD_ADMIN_PORT", env={"HEDGERD_ADMIN_PORT": "9000"}),
    "secrets file: unknown key": ConfigCase("admin.tokn", secrets={"hedgerd_admin__tokn": "x"}),
    "file: negative limit": ConfigCase("hedges.0.max_order", paper_config(hedges=[hedge(max_order="-1")])),
    "file: negative position limit": ConfigCase("hedges.0.max_position",
                                                paper_config(hedges=[hedge(max_position=-5)])),
    "file: negative rate limit": ConfigCase(
        "executor.default_rate_limit.requests_per_second",
        paper_config(executor={"default_rate_limit": {"requests_per_second": -5}})),
    "env: negative limit": ConfigCase("kill_switch.max_consecutive_errors",
                                      env={"HEDGERD_KILL_SWITCH__MAX_CONSECUTIVE_ERRORS": "-1"}),
    "file: min above max": ConfigCase("hedges.0.min_order", paper_config(hedges=[hedge(min_order="2")])),
    "sim: hedge instrument not on the venue": ConfigCase(
        "hedges.0.symbol", paper_config(hedges=[hedge(symbol="ETH/USDT:USDT")])),
    "file: hedge venue does not exist": ConfigCase("hedges.0.venue", paper_config(hedges=[hedge(venue="sim-prep")])),
    "two underlyings hedging into one instrument": ConfigCase("hedges.1.symbol", paper_config(
        venues=[*SIM_VENUES, {"name": "sim-eth", "kind": "sim", "role": "inventory",
                              "sim": {"seed": 3, "symbol": "ETH/USDT", "initial_price": 3000}}],
        hedges=[hedge(), hedge(underlying="ETH", inventory=[{"venue": "sim-eth", "asset": "ETH"}])])),
    "live mode without credentials": ConfigCase("venues.0.api_key", {"mode": "live", "venues": CCXT_VENUES,
                                                                      "hedges": [CCXT_HEDGE]}),
    "env: live mode switched on without credentials": ConfigCase(
        "venues.0.api_key", {"mode": "paper", "venues": CCXT_VENUES, "hedges": [CCXT_HEDGE]},
        env={"HEDGERD_MODE": "live"}),
    "live mode with a secret but no key": ConfigCase(
        "venues.1.api_key", {"mode": "live", "venues": CCXT_VENUES, "hedges": [CCXT_HEDGE]},
        env={"HEDGERD_CREDENTIALS__BINANCE_SPOT__API_KEY": "k-1234",
             "HEDGERD_CREDENTIALS__BINANCE_SPOT__SECRET": "s-1234",
             "HEDGERD_CREDENTIALS__BINANCE_USDM__SECRET": "s-5678"}),
    "live mode hedging on a sim venue": ConfigCase("hedges.0.venue", paper_config(mode="live")),
    "credentials for a venue that does not exist": ConfigCase(
        "credentials.binance_perp", env={"HEDGERD_CREDENTIALS__BINANCE_PERP__API_KEY": "k-1234"}),
    "file: not TOML": ConfigCase("hedgerd.toml", "mode = paper\n[admin\n"),
    "file: missing": ConfigCase("missing.toml"),
}


@dataclass
class CommandOutcome:
    """One CLI run of a config case."""

    command: str
    returncode: int
    error_lines: list[str]
    output: str

    def names(self, field_path: str) -> bool:
        return any(field_path in line for line in self.error_lines)

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.output

    @property
    def started(self) -> bool:
        return '"event": "engine_started"' in self.output


def config_case(workdir: Path, case: ConfigCase) -> list[CommandOutcome]:
    """``hedgerd check-config`` and ``hedgerd run`` with the case's file/env/secrets, concurrently."""
    workdir.mkdir(parents=True, exist_ok=True)
    secrets_dir = workdir / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    for name, value in case.secrets.items():
        (secrets_dir / name).write_text(value)
    missing = case.config is None and case.path == "missing.toml"
    config = workdir / ("missing.toml" if missing else "hedgerd.toml")
    if case.config is not None:
        config.write_text(case.config if isinstance(case.config, str) else toml_dumps(case.config))
    args = ["--config", str(config)] if case.config is not None or missing else []
    procs = []
    for command in ("check-config", "run"):
        env = daemon_env(workdir, free_port(), dict(case.env))
        procs.append((command, subprocess.Popen([sys.executable, "-m", "hedgerd.cli", command, *args], env=env,
                                                cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                text=True)))
    outcomes = []
    for command, proc in procs:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        errors = [line for line in err.splitlines() if line.startswith("hedgerd: config error at ")]
        outcomes.append(CommandOutcome(command, proc.returncode, errors, out + err))
    return outcomes


@dataclass
class ConfigMatrixResult:
    """Every :data:`CONFIG_CASES` entry through both commands."""

    outcomes: dict[str, list[CommandOutcome]]

    def good(self, name: str) -> bool:
        case = CONFIG_CASES[name]
        return all(o.returncode == 2 and o.names(case.path) and not o.traceback and not o.started
                   for o in self.outcomes[name])

    def rows(self) -> list[Row]:
        name = "operator mistakes (check-config + run)"
        runs = sum(len(o) for o in self.outcomes.values())
        good = sum(len(self.outcomes[n]) for n in self.outcomes if self.good(n))
        tracebacks = sum(o.traceback for outs in self.outcomes.values() for o in outs)
        failed = sorted(n for n in self.outcomes if not self.good(n))
        return [
            row(name, f"exit 2 naming the field / runs ({len(self.outcomes)} cases)", _ratio(good, runs), "all",
                good == runs),
            zero_row(name, "tracebacks", tracebacks),
            *(row(name, f"FAILED: {n}", "see test", "exit 2 + field", False) for n in failed),
        ]


def config_matrix(workdir: Path, names: list[str] | None = None) -> ConfigMatrixResult:
    outcomes = {}
    for i, name in enumerate(names or sorted(CONFIG_CASES)):
        outcomes[name] = config_case(workdir / f"case{i}", CONFIG_CASES[name])
    return ConfigMatrixResult(outcomes)


@dataclass
class MissingInstrumentResult:
    """:func:`missing_ccxt_instrument`: a hedge instrument the ccxt venue does not list."""

    check_config_rc: int
    run_rc: int
    error_lines: list[str]
    traceback: bool
    orders: int

    @property
    def named(self) -> bool:
        return bool(self.error_lines) and self.error_lines[0].startswith("hedgerd: config error at hedges.0.symbol:")

    def rows(self) -> list[Row]:
        name = "hedge instrument not listed (ccxt, run)"
        return [row(name, "exit code, field named", f"{self.run_rc}, {'hedges.0.symbol' if self.named else '-'}",
                    "2, hedges.0.symbol", self.run_rc == 2 and self.named and not self.traceback and not self.orders)]


def missing_ccxt_instrument(workdir: Path) -> MissingInstrumentResult:
    with sim_thread() as sim:
        config = workdir / "hedgerd.toml"
        workdir.mkdir(parents=True, exist_ok=True)
        config.write_text(toml_dumps(ccxt_daemon_config(sim, hedge_symbol="DOGE/USDT:USDT")))
        checked = run_cli(workdir, ["check-config", "--config", str(config)], env=sim_credentials_env(sim))
        result = run_cli(workdir, ["run", "--config", str(config)], env=sim_credentials_env(sim))
        orders = len(sim.our_orders())
    errors = [line for line in result.stderr.splitlines() if line.startswith("hedgerd: config error at ")]
    return MissingInstrumentResult(checked.returncode, result.returncode, errors,
                                   "Traceback" in result.stdout + result.stderr, orders)


SIGHUP_ATTEMPTS: list[tuple[str, Mapping[str, Any] | str, str]] = [
    ("invalid value", paper_config(hedges=[hedge(threshold="-0.5")]), "hedges.0.threshold"),
    ("unknown key", paper_config(risk={"safety_tik": 1}), "risk.safety_tik"),
    ("not TOML", "hedges = [", "hedgerd.toml"),
    ("new venue (needs a restart)", paper_config(
        venues=[*SIM_VENUES, {"name": "sim-extra", "kind": "sim", "role": "inventory",
                              "sim": {"seed": 9, "symbol": "BTC/USDT"}}]), "venues.2"),
    ("client id prefix (needs a restart)", paper_config(executor={"client_id_prefix": "hgx"}),
     "executor.client_id_prefix"),
]


@dataclass
class SighupResult:
    """:func:`sighup_reloads`: refused reloads keep the old config; a safe change applies."""

    refused: list[tuple[str, bool, bool]] = field(default_factory=list)  # (what, rejection logged naming it, kept)
    applied_band: float = -1.0
    applied_threshold: str = ""
    applied_changed: list[str] = field(default_factory=list)
    alive: bool = False

    @property
    def all_kept(self) -> bool:
        return len(self.refused) == len(SIGHUP_ATTEMPTS) and all(logged and kept for _, logged, kept in self.refused)

    @property
    def applied(self) -> bool:
        return (self.applied_band == 0.08 and self.applied_threshold == "0.08"
                and self.applied_changed == ["hedges.0.threshold"])

    def rows(self) -> list[Row]:
        name = "SIGHUP reload (daemon)"
        kept = sum(logged and kept for _, logged, kept in self.refused)
        return [
            row(name, "invalid / restart-only files refused, old config kept, reason logged",
                _ratio(kept, len(SIGHUP_ATTEMPTS)), "all", self.all_kept),
            row(name, "valid threshold change applied (hedgerd_hedge_band)", self.applied_band, "0.08", self.applied),
        ]


def sighup_reloads(workdir: Path) -> SighupResult:
    result = SighupResult()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "hedgerd.toml"
    config.write_text(toml_dumps(paper_config()))
    with running_daemon(workdir, args=["--config", str(config)]) as d:
        def band() -> float:
            return d.total("hedgerd_hedge_band", underlying="BTC")

        def threshold() -> str:
            return str(_status(d)["underlyings"]["BTC"]["threshold"])

        def events(name: str) -> list[dict[str, Any]]:
            return [e for e in log_events(d.log_path) if e.get("event") == name]

        d.wait_for(lambda: _status(d)["ready"], 20, "ready")
        assert band() == 0.05 and threshold() == "0.05", "baseline"
        for number, (what, content, named) in enumerate(SIGHUP_ATTEMPTS, start=1):
            config.write_text(content if isinstance(content, str) else toml_dumps(content))
            d.signal(signal.SIGHUP)
            d.wait_for(lambda n=number: len(events("reload_rejected")) + len(events("config_reloaded")) >= n,  # type: ignore[misc]
                       10, f"reload handled: {what}")
            rejected = events("reload_rejected")
            logged = len(rejected) >= number and named in json.dumps(rejected[number - 1])
            result.refused.append((what, logged, band() == 0.05 and threshold() == "0.05"))
        config.write_text(toml_dumps(paper_config(hedges=[hedge(threshold="0.08")])))
        d.signal(signal.SIGHUP)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: band() == 0.08, 10, "the new threshold applied")
        result.applied_band, result.applied_threshold = band(), threshold()
        reloaded = events("config_reloaded")
        result.applied_changed = list(reloaded[-1]["changed"]) if reloaded else []
        result.alive = d.get("/healthz")[0] == 200
    return result


# =========================================================================== disk and ledger
def freeze_size(conn: sqlite3.Connection) -> None:
    """The database may not grow any more: the next page it needs is "disk full"."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    conn.execute(f"PRAGMA max_page_count = {pages}")


def read_only(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only = ON")


LEDGER_FAULTS: dict[str, tuple[Callable[[sqlite3.Connection], None], str]] = {
    "read_only": (read_only, "readonly"),
    "disk_full": (freeze_size, "full"),
}


@dataclass
class LedgerFaultResult:
    """A ledger that stops accepting writes under a running engine/daemon."""

    fault: str
    where: str
    detected_after: float = -1.0  # seconds from the fault to the ledger failure being noticed
    state: str = ""
    reason: str = ""
    orders_after_failure: int = -1
    resume_refused: bool = False
    not_ready: bool = False
    skipped: str | None = None  # why the real fault could not be produced here

    @property
    def halted_with_reason(self) -> bool:
        words = LEDGER_FAULTS[self.fault][1] if self.where == "in process" else ""
        return (self.state == "halted" and self.reason.startswith("ledger failure:")
                and (not words or words in self.reason))

    def rows(self) -> list[Row]:
        name = f"ledger {self.fault.replace('_', ' ')} ({self.where})"
        if self.skipped:
            return [row(name, "not measured", self.skipped, "root", True)]
        return [
            row(name, "HALTED with the ledger failure as reason", self.reason[:60] or "-", "halted",
                self.halted_with_reason and self.resume_refused and self.not_ready),
            zero_row(name, "orders sent after the ledger failed", self.orders_after_failure),
        ]


async def ledger_fault_in_process(workdir: Path, fault: str) -> LedgerFaultResult:
    inject, _ = LEDGER_FAULTS[fault]
    result = LedgerFaultResult(fault, "in process")
    settings = engine_settings(workdir, flow_rate=25.0, threshold="0.02")
    async with running_engine(settings) as engine:
        perp = engine.venues["sim-perp"]
        sent_at: list[float] = []
        original = perp.create_order

        async def recording(intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
            sent_at.append(time.monotonic())
            return await original(intent, amount, price)

        perp.create_order = recording  # type: ignore[method-assign]
        halted_at: list[float] = []
        engine.kill_switch.add_listener(
            lambda ks: halted_at.append(time.monotonic()) if ks.state is TradingState.HALTED else None)
        await until(lambda: len(sent_at) >= 1 and engine.ledger.fill_count >= 10, 20, "fills and a hedge")
        fills_at_fault = engine.ledger.fill_count
        await engine.ledger._writer_call(inject)
        try:
            result.detected_after = await until(lambda: engine.control.ledger_failed is not None, 10,
                                                f"ledger failure ({fault})")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; fills journaled since the fault: "
                                 f"{engine.ledger.fill_count - fills_at_fault}") from None
        ks = engine.kill_switch
        result.state, result.reason = ks.state.name.lower(), ks.reason
        await asyncio.sleep(1.0)  # flow keeps arriving; none of it may be hedged
        result.orders_after_failure = len([t for t in sent_at if halted_at and t > halted_at[0]])
        ok, detail = engine.resume("test")
        result.resume_refused = not ok and "ledger failed" in detail
        ready, problems = engine.readiness()
        result.not_ready = not ready and any("ledger failed" in p for p in problems)
    return result


def chattr_unavailable(probe_dir: Path) -> str | None:
    """None if ``chattr +i`` works here (root on a filesystem with the flag), else why not."""
    if os.geteuid() != 0:
        return "needs root (chattr +i)"
    if shutil.which("chattr") is None:
        return "chattr not installed"
    probe_dir.mkdir(parents=True, exist_ok=True)
    probe = probe_dir / "chattr-probe"
    probe.write_text("x")
    result = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, text=True)
    subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
    probe.unlink()
    return None if result.returncode == 0 else f"chattr +i unsupported here: {result.stderr.strip()}"


@contextlib.contextmanager
def immutable(paths: list[Path]) -> Iterator[None]:
    """``chattr +i`` (even root cannot write) for the block."""
    existing = [p for p in paths if p.exists()]
    subprocess.run(["chattr", "+i", *map(str, existing)], check=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, existing)], check=False)


def mount_tmpfs(where: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``where``; None on success, else why not."""
    if os.geteuid() != 0:
        return "needs root (mount -t tmpfs)"
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True, text=True)
    return None if result.returncode == 0 else f"mount failed: {result.stderr.strip()}"


def fill_disk(directory: Path) -> int:
    """Write a filler file until the filesystem is full; returns the bytes written."""
    written = 0
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                written += os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    return written


def _hedge_orders(d: DaemonProcess) -> float:
    return d.total("hedgerd_hedge_orders_total")


def _observe_ledger_failure(d: DaemonProcess, result: LedgerFaultResult) -> None:
    started = time.monotonic()
    d.wait_for(lambda: d.total("hedgerd_trading_state") == 2, 15, "HALTED after the ledger failure")
    result.detected_after = time.monotonic() - started
    status = _status(d)
    result.state, result.reason = status["trading_state"], status["reason"]
    time.sleep(0.5)  # an order already past the gate may still finish
    orders = _hedge_orders(d)
    time.sleep(1.5)
    result.orders_after_failure = int(_hedge_orders(d) - orders)
    code, body = d.get("/readyz")
    result.not_ready = code == 503 and "ledger failed" in body.decode()
    code, answer = d.post("/resume")
    result.resume_refused = code == 409 and answer["resumed"] is False


@dataclass
class ReadOnlyRestart:
    """A daemon started on a read-only ledger."""

    returncode: int
    stderr: str
    traceback: bool


def ledger_fault_daemon(workdir: Path, fault: str) -> tuple[LedgerFaultResult, ReadOnlyRestart | None]:
    """The real fault under a paper daemon: ``chattr +i`` on the ledger files, or a full tmpfs.

    For ``read_only`` the daemon is then restarted on the immutable file (must exit 1).
    """
    result = LedgerFaultResult(fault, "daemon")
    workdir.mkdir(parents=True, exist_ok=True)
    if fault == "read_only":
        why = chattr_unavailable(workdir)
        if why is not None:
            result.skipped = why
            return result, None
        ledger = workdir / "ledger.sqlite"
        # The database and its write-ahead log; not the -shm index, which SQLite has mmap'ed: a
        # write into a mapping of an immutable file is SIGBUS (an artifact of chattr, not of a
        # read-only disk, where SQLite reports the failed write).
        files = [ledger, ledger.with_name("ledger.sqlite-wal")]
        with running_daemon(workdir) as d:
            d.wait_for(lambda: d.total("hedgerd_fills_total") >= 5 and _hedge_orders(d) >= 1, 30, "fills and hedges")
            with immutable(files):
                _observe_ledger_failure(d, result)
                d.signal(signal.SIGTERM)
                d.proc.wait(timeout=15)
                restarted = run_cli(workdir, ["run"])
        restart = ReadOnlyRestart(restarted.returncode, restarted.stderr,
                                  "Traceback" in restarted.stdout + restarted.stderr)
        return result, restart
    disk = workdir / "small-disk"
    why = mount_tmpfs(disk, "8m")
    if why is not None:
        result.skipped = why
        return result, None
    try:
        with running_daemon(workdir, env={"HEDGERD_LEDGER__PATH": str(disk / "ledger.sqlite")}) as d:
            d.wait_for(lambda: d.total("hedgerd_fills_total") >= 5 and _hedge_orders(d) >= 1, 30, "fills and hedges")
            fill_disk(disk)
            _observe_ledger_failure(d, result)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    return result, None


async def write_ledger(path: Path, fills: int) -> None:
    """A valid ledger with ``fills`` journaled fills."""
    ledger = InventoryLedger(path)
    await ledger.open()
    try:
        for i in range(fills):
            await ledger.record_fill(Fill(venue="sim-spot", trade_id=f"t{i}", symbol="BTC/USDT", side=Side.BUY,
                                          amount=Decimal("0.01"), price=Decimal(60000), ts=1.0 + i))
    finally:
        await ledger.close()


def _scramble_middle(data: bytes) -> bytes:
    start, length = 8192, len(data) // 3
    return data[:start] + bytes((i * 37 + 11) % 256 for i in range(length)) + data[start + length:]


CORRUPTIONS: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "pages_overwritten": (_scramble_middle, "ledger corrupt"),
    "truncated": (lambda data: data[: len(data) // 2], "ledger corrupt"),
    "header_garbage": (lambda data: b"not a sqlite file" * 8 + data[136:], "not a SQLite database"),
}


@dataclass
class CorruptResult:
    """``hedgerd run`` on a corrupted ledger file."""

    corruption: str
    returncode: int
    message: list[str]  # the "hedgerd: ..." lines on stderr
    traceback: bool
    logged: bool  # a ledger_unusable event in the JSON log
    started: bool
    unchanged: bool  # the file is left as found

    @property
    def refused_clearly(self) -> bool:
        words = CORRUPTIONS[self.corruption][1]
        return (self.returncode == 1 and len(self.message) == 1 and words in self.message[0]
                and len(self.message[0]) < 400 and not self.traceback and self.logged and not self.started
                and self.unchanged)


def corrupt_ledger(workdir: Path, corruption: str, good: bytes) -> CorruptResult:
    mutate, _ = CORRUPTIONS[corruption]
    workdir.mkdir(parents=True, exist_ok=True)
    ledger = workdir / "ledger.sqlite"
    ledger.write_bytes(mutate(good))
    before = ledger.read_bytes()
    result = run_cli(workdir, ["run"])
    message = [line for line in result.stderr.splitlines() if line.startswith("hedgerd:")]
    message = [line for line in message if str(ledger) in line] or message
    return CorruptResult(corruption, result.returncode, message, "Traceback" in result.stdout + result.stderr,
                         '"event": "ledger_unusable"' in result.stdout, '"event": "engine_started"' in result.stdout,
                         ledger.read_bytes() == before)


def corrupt_rows(results: list[CorruptResult]) -> list[Row]:
    name = "corrupt ledger at start"
    good = sum(r.refused_clearly for r in results)
    return [row(name, "refused: exit 1, one clear line, no traceback, file untouched",
                _ratio(good, len(results)), "all", good == len(results))]


# =========================================================================== security
@dataclass
class CanaryResult:
    """:func:`canary_credentials`: where the canary credentials were looked for and found."""

    places: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)
    hedged_with_canaries: bool = False
    auth_errors_logged: bool = False
    debug_logged: bool = False
    refused_rc: int = -1
    bind_address: str = ""
    control: dict[str, int] = field(default_factory=dict)  # request -> HTTP status
    kill_reason: str = ""

    CONTROL_GOALS = {
        "no token": 401, "wrong token": 401, "token prefix": 401, "token plus a char": 401,
        "basic scheme": 401, "resume without token": 401, "oversized body, no token": 401,
        "oversized body, token": 413, "kill with token": 200, "resume with token": 200,
    }

    @property
    def control_ok(self) -> bool:
        return self.control == self.CONTROL_GOALS and self.kill_reason == "security test"

    def rows(self) -> list[Row]:
        name = "canary credentials (env + secrets dir, live, debug log)"
        control = "control endpoints (daemon)"
        return [
            row(name, "places leaking a canary / places checked", _ratio(len(self.leaks), len(self.places)),
                f"0/{len(self.places)}", not self.leaks and len(self.places) >= 10),
            row(name, "canaries in use (hedged), auth errors and debug lines logged",
                "yes" if self.hedged_with_canaries and self.auth_errors_logged and self.debug_logged else "no",
                "yes", self.hedged_with_canaries and self.auth_errors_logged and self.debug_logged),
            row(control, "admin bind address", self.bind_address, "127.0.0.1", self.bind_address == "127.0.0.1"),
            row(control, "401 without/wrong token, 413 oversized body, 200 with token",
                "as expected" if self.control_ok else str(self.control), "as expected", self.control_ok),
        ]


def _canary_values() -> dict[str, str]:
    # Dashes keep them out of the "long opaque token" rule of the error sanitizer: only a real
    # redaction of the registered secret values can hide them.
    return {"api key": f"canaryKEY-{secrets.token_hex(8)}", "secret": f"canarySECRET-{secrets.token_hex(8)}",
            "admin token": f"canaryTOKEN-{secrets.token_hex(12)}"}  # 36 characters: live mode needs 32


def _raw_post(base_url: str, path: str, body: bytes, headers: Mapping[str, str]) -> int:
    request = urllib.request.Request(base_url + path, data=body, method="POST", headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def listening_address(port: int) -> str:
    """The dotted IPv4 address a socket listens on for ``port`` (from /proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        address, hex_port = parts[1].split(":")
        if int(hex_port, 16) == port and parts[3] == "0A":
            return ".".join(str(b) for b in reversed(bytes.fromhex(address)))
    return "not listening (IPv4)"


def _control_requests(d: DaemonProcess, token: str, result: CanaryResult) -> None:
    json_type = {"Content-Type": "application/json"}
    body = json.dumps({"reason": "test"}).encode()
    huge = json.dumps({"reason": "x" * 100_000}).encode()
    base = d.base_url
    attempts: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("no token", "/kill", body, json_type),
        ("wrong token", "/kill", body, {**json_type, "Authorization": "Bearer wrong-token"}),
        ("token prefix", "/kill", body, {**json_type, "Authorization": f"Bearer {token[:-1]}"}),
        ("token plus a char", "/kill", body, {**json_type, "Authorization": f"Bearer {token}x"}),
        ("basic scheme", "/kill", body, {**json_type, "Authorization": f"Basic {token}"}),
        ("resume without token", "/resume", b"{}", json_type),
        ("oversized body, no token", "/kill", huge, json_type),
        ("oversized body, token", "/kill", huge, {**json_type, "Authorization": f"Bearer {token}"}),
    ]
    for what, path, data, headers in attempts:
        result.control[what] = _raw_post(base, path, data, headers)
    assert not _status(d)["source"].startswith("http:"), "a refused request changed the trading state"
    result.control["kill with token"] = d.post("/kill", {"reason": "security test"}, token=token)[0]
    result.kill_reason = _status(d)["reason"]
    result.control["resume with token"] = d.post("/resume", token=token)[0]


def canary_credentials(workdir: Path) -> CanaryResult:
    """A live daemon holding canary credentials from env and the secrets dir, run at debug level."""
    canaries = _canary_values()
    key, secret, token = canaries["api key"], canaries["secret"], canaries["admin token"]
    result = CanaryResult()

    def look(where: str, data: str | bytes) -> None:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        result.places.append(where)
        for name, value in canaries.items():
            if value in text or value.split("-", 1)[1] in text:
                result.leaks.append(f"{name} in {where}")

    def credentials(directory: Path) -> dict[str, str]:
        """Spot credentials in the environment; USD-M credentials and the admin token as secrets files."""
        secrets_dir = directory / "secrets"
        secrets_dir.mkdir(parents=True, exist_ok=True)
        usdm = PERP_VENUE.replace("-", "_")
        (secrets_dir / f"hedgerd_credentials__{usdm}__api_key").write_text(key + "\n")
        (secrets_dir / f"hedgerd_credentials__{usdm}__secret").write_text(secret)
        (secrets_dir / "hedgerd_admin__token").write_text(token)
        spot = SPOT_VENUE.replace("-", "_").upper()
        return {f"HEDGERD_CREDENTIALS__{spot}__API_KEY": key, f"HEDGERD_CREDENTIALS__{spot}__SECRET": secret}

    env = credentials(workdir)
    with sim_thread(api_key=key, secret=secret) as sim:
        config = write_config(workdir / "hedgerd.toml", ccxt_daemon_config(sim, log_level="debug"))
        with running_daemon(workdir, args=["--config", str(config)], env=env) as d:
            d.wait_for(lambda: _status(d)["ready"] and len(sim.our_orders()) >= 1, 60,
                       "hedging with the canary credentials")
            result.hedged_with_canaries = True
            result.bind_address = listening_address(d.port)
            _control_requests(d, token, result)
            # The venue stops accepting our signature: AuthenticationError on every signed call
            # (desk flow makes the daemon place orders).
            sim.call(lambda s: setattr(s.config, "secret", "rotated-at-the-venue"))
            sim.call(lambda s: setattr(s.engine, "flow_rate", 4.0))
            with contextlib.suppress(AssertionError):
                d.wait_for(lambda: "Signature for this request is not valid" in d.log_path.read_text()
                           and "AuthenticationError" in d.log_path.read_text(), 20, "authentication errors")
            result.auth_errors_logged = "AuthenticationError" in d.log_path.read_text()
            for path in ("/metrics", "/status", "/readyz", "/healthz"):
                look(path, d.get(path)[1])
            for fmt in ("toml", "json"):
                checked = run_cli(workdir, ["check-config", "--config", str(config), "--format", fmt], env=env)
                assert checked.returncode == 0 and "**********" in checked.stdout, checked.stderr
                look(f"check-config --format {fmt}", checked.stdout + checked.stderr)
            status = run_cli(workdir, ["status", "--config", str(config), "--url", d.base_url], env=env)
            look("hedgerd status", status.stdout + status.stderr)
            for file in sorted(workdir.glob("ledger.sqlite*")):
                look(f"{file.name} (running)", file.read_bytes())
        log_text = d.log_path.read_text()
        result.debug_logged = '"level": "debug"' in log_text
        look("daemon log (stdout + stderr)", log_text)
        for file in sorted(workdir.glob("ledger.sqlite*")):
            look(file.name, file.read_bytes())
        # Refused by the venue at start (wrong key): the fatal error path.
        sim.call(lambda s: setattr(s.config, "api_key", "another-key"))
        refused_dir = workdir / "refused"
        refused = run_cli(refused_dir, ["run", "--config", str(config)], env=credentials(refused_dir))
    result.refused_rc = refused.returncode
    look("output of the daemon refused at start", refused.stdout + refused.stderr)
    if "Invalid API-key" not in refused.stdout + refused.stderr:
        result.leaks.append("(the refused daemon did not report the venue's error)")
    return result
