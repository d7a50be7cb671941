"""Venue and process fault scenarios, each measuring the figures issue 5 asks for.

Every scenario is a function taking its size (restarts, seconds, ...) and returning a result
whose ``rows()`` are the :class:`~tests.fault.harness.Row` figures; the tests in this
package run them small and assert the goals, ``bench/faults.py`` runs them long and prints
the table.

* :func:`crash_scenario` -- ``kill -9`` of a live daemon (subprocess) at random points of its
  hedging cycle against a simulator (subprocess), restarted on the same ledger.
* :func:`ws_drop_scenario` -- user-data and market-data streams closed every few seconds while
  client fills flow (daemon engine in-process, real ccxt against an in-process simulator).
* :func:`unknown_outcome_scenario` -- accept-then-timeout (hang, drop), 5xx (executed or not),
  429 with Retry-After (418 if ignored), through the same in-process stack.
* :func:`kill_under_load_scenario` -- SIGUSR1 and ``POST /kill`` while the executor is saturated
  by a hedge storm (daemon subprocess).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.fault.deribit_stack import (
    deribit_settings_data,
    deribit_sim_config,
    deribit_stack,
    running_deribit_sim,
)
from tests.fault.harness import (
    PERP_VENUE,
    FillComparison,
    LogFollower,
    Row,
    async_wait_until,
    daemon_status,
    duplicate_client_ids,
    in_process_stack,
    iso_to_epoch,
    live_config,
    live_daemon,
    position_gaps,
    read_ledger,
    row,
    running_sim,
    sim_config_json,
    sim_server_config,
    wait_until,
    write_config,
    zero_row,
)

Say = Callable[[str], None]
#: the simulator's wire protocols the in-process scenarios run on
PROTOCOLS = ("binance", "deribit")


def _quiet(_: str) -> None:
    return None


# =========================================================================== crash mid-hedge
CRASH_MODES = ("answer_pending", "after_decision", "after_send", "random")


@dataclass
class CrashResult:
    """Figures of :func:`crash_scenario`."""

    protocol: str = "binance"
    restarts: int = 0
    kill_modes: list[str] = field(default_factory=list)
    recovered_orders: int = 0  # intents left open by a kill and resolved at restart
    recovered_filled: int = 0  # ... of which the venue had executed while the daemon was down
    hedge_orders: int = 0  # orders the venue accepted from the daemon
    duplicate_orders: int = 0  # extra venue orders under an already used client order id
    fills: dict[str, FillComparison] = field(default_factory=dict)
    reconcile_gaps: list[Decimal] = field(default_factory=list)  # max |ledger - venue| per restart
    reconcile_mismatches: int = 0  # restarts where the daemon itself found a disagreement
    final_gap: Decimal = Decimal(0)  # max |ledger - venue| once the last run settled and stopped
    notes: list[str] = field(default_factory=list)

    @property
    def missing_fills(self) -> int:
        return sum(c.missing + c.amount_mismatch for c in self.fills.values())

    @property
    def doubled_fills(self) -> int:
        return sum(c.doubled for c in self.fills.values())

    @property
    def max_gap(self) -> Decimal:
        return max(self.reconcile_gaps, default=Decimal(0))

    def rows(self) -> list[Row]:
        name = f"crash mid-hedge ({self.protocol})"
        venue_fills = sum(c.venue_fills for c in self.fills.values())
        return [
            row(name, "kill -9 + restart cycles", self.restarts, ">= 1", self.restarts >= 1),
            row(name, "orders in flight at a kill, resolved after restart", self.recovered_orders, "> 0",
                self.recovered_orders > 0),
            row(name, "... of them executed at the venue while the daemon was down", self.recovered_filled,
                "info", True),
            row(name, "hedge orders at the venue", self.hedge_orders, "> 0", self.hedge_orders > 0),
            zero_row(name, "duplicate orders (by client order id)", self.duplicate_orders),
            row(name, "fills at the venue (inventory + perp)", venue_fills, "> 0", venue_fills > 0),
            zero_row(name, "fills missing from the ledger", self.missing_fills),
            zero_row(name, "fills doubled in the ledger", self.doubled_fills),
            zero_row(name, "max |ledger - venue| after restart reconciliation", self.max_gap),
            zero_row(name, "restarts with a reconciliation mismatch", self.reconcile_mismatches),
            zero_row(name, "max |ledger - venue| after the last run", self.final_gap),
        ]


@contextlib.contextmanager
def _crash_sim(protocol: str, workdir: Path, *, seed: int, flow_rate: float) -> Iterator[Any]:
    """Binance: the simulator in its own process; Deribit: in a thread of this one. Either way a
    ``kill -9`` of the daemon leaves it and its books running."""
    if protocol == "binance":
        with running_sim(workdir, sim_config_json(seed=seed, flow_rate=flow_rate, btc="0.3")) as sim:
            yield sim
    else:
        with running_deribit_sim(seed=seed, flow_rate=flow_rate) as dsim:
            yield dsim


def _crash_config(protocol: str, sim: Any, daemon_dir: Path) -> dict[str, Any]:
    overrides = {"executor": {"order_timeout": 5.0}}
    if protocol == "binance":
        return live_config(sim.base_url, sim.ws_url, overrides=overrides)
    data = deribit_settings_data(sim.base_url, daemon_dir / "ledger.sqlite", "", "", overrides)
    for venue in data["venues"]:  # the daemon reads them from its environment
        del venue["api_key"], venue["secret"]
    data["kill_switch"]["kill_file"] = str(daemon_dir / "KILL")
    return data


def crash_scenario(workdir: Path, *, restarts: int = 5, seed: int = 1, flow_rate: float = 2.0,
                   latency_ms: float = 20.0, protocol: str = "binance", say: Say = _quiet,
                   ledger_url: str | None = None) -> CrashResult:
    """Kill -9 a live daemon ``restarts`` times at random points of its hedging cycle.

    ``protocol``: Binance (spot inventory hedged on the USD-M perpetual, simulator in a child
    process) or Deribit (config/deribit-sim.toml: options inventory hedged on BTC-PERPETUAL,
    simulator in a thread of this process; client flow on options).
    Each cycle: the daemon hedges client flow; it is killed right after it sends an order,
    right after it decides a hedge, or at a random moment; flow continues for a moment while it
    is down, then pauses; it restarts on the same ledger HALTED by the kill file, and once it
    has reconciled the test compares the ledger's positions with the venue's before lifting
    the halt. At the end flow stops, the daemon settles and stops, and the ledger file is
    compared with the venue's order and trade history. With ``ledger_url`` the ledger is that
    PostgreSQL database instead of the file.
    """
    rng = random.Random(seed)
    result = CrashResult(protocol=protocol)
    ledger_env = {"HEDGERD_LEDGER__URL": ledger_url} if ledger_url else {}
    sim_dir, daemon_dir = workdir / "sim", workdir / "daemon"
    daemon_dir.mkdir(parents=True, exist_ok=True)
    kill_file = daemon_dir / "KILL"
    with _crash_sim(protocol, sim_dir, seed=seed, flow_rate=flow_rate) as sim:
        sim.set_faults(latency_ms=latency_ms, latency_jitter_ms=2 * latency_ms)
        config = write_config(workdir / "hedgerd.toml", _crash_config(protocol, sim, daemon_dir))
        follower = LogFollower(daemon_dir / "daemon.log")
        first_reconciled_ms = 0
        time.sleep(1.0)  # client fills before the first start: inside the balance it adopts
        for cycle in range(restarts + 1):
            last = cycle == restarts
            if cycle > 0:
                kill_file.write_text("fault suite: restarted after kill -9\n")
            with live_daemon(daemon_dir, config, env=ledger_env, credentials=sim.credentials_env()) as daemon:
                reconciled = follower.wait_for(lambda e: e.get("event") == "reconciled", 90, "reconciled",
                                               daemon.proc)
                if reconciled is None:
                    raise AssertionError(f"no reconciliation after start {cycle}:\n{daemon.log_tail()}")
                if cycle == 0:
                    first_reconciled_ms = int(iso_to_epoch(reconciled["timestamp"]) * 1000)
                else:
                    _check_reconciliation(daemon, sim, reconciled, result, say)
                    kill_file.unlink()
                    code, body = daemon.post("/resume")
                    if code != 200:
                        raise AssertionError(f"resume refused after restart {cycle}: {body}")
                    result.restarts += 1
                    sim.set_flow(flow_rate)
                if last:
                    if not _settle_and_stop(daemon, sim, rng, say):
                        result.notes.append("the last run did not settle within 60 s")
                    continue
                mode = CRASH_MODES[cycle % len(CRASH_MODES)]
                _kill_at(mode, daemon, sim, follower, rng)
                result.kill_modes.append(mode)
                say(f"cycle {cycle}: killed ({mode})")
            time.sleep(rng.uniform(0.2, 1.0))  # client flow goes on while the daemon is down
            sim.set_flow(0.0)  # ... and pauses for the restart, so ledger and venue can be compared
        follower.poll()
        recovering = {e["client_order_id"] for e in follower.events if e.get("event") == "order_recovering"}
        result.recovered_orders = len(recovering)
        result.recovered_filled = len({e["client_order_id"] for e in follower.events
                                       if e.get("event") == "order_lookup" and e.get("found")
                                       and e["client_order_id"] in recovering})
        orders = sim.hedge_orders()
        result.hedge_orders = sum(1 for o in orders if not o.get("clientFlow"))
        result.duplicate_orders = sum(n - 1 for n in duplicate_client_ids(orders).values())
        ledger = read_ledger(ledger_url or daemon_dir / "ledger.sqlite")
        result.fills = sim.fill_comparisons(ledger.fills, first_reconciled_ms)
        final_gaps = position_gaps(ledger.positions, sim.positions())
        result.final_gap = max(final_gaps.values(), default=Decimal(0))
    return result


def _kill_at(mode: str, daemon: Any, sim: Any, follower: LogFollower, rng: random.Random) -> None:
    """SIGKILL the daemon at a point of its hedging cycle chosen by ``mode``, after it hedged a while.

    ``answer_pending``: the venue executes the next order, holds its answer and loses its
    user-data events, the kill comes meanwhile; ``after_send``: within 0.3 s after an order left (before or after the
    venue got it); ``after_decision``: right after a hedge intent was journaled, before it is
    sent; ``random``: anywhere.
    """
    time.sleep(rng.uniform(0.5, 2.0))
    follower.poll()
    if mode == "answer_pending":  # and the user-data streams lose its execution reports
        held = sim.faults_timeout()
        sim.set_faults(order_timeout_next=1, order_timeout_mode="hang", hang_seconds=3.0, user_data_paused=True)
        wait_until(lambda: sim.faults_timeout() > held, 30, "an executed order's answer held",
                   on_timeout=daemon.log_tail)
        time.sleep(rng.uniform(0.0, 1.0))
    elif mode == "after_send":
        follower.wait_for(lambda e: e.get("event") == "order_send", 20, "order_send", daemon.proc)
        time.sleep(rng.uniform(0.0, 0.3))
    elif mode == "after_decision":
        follower.wait_for(lambda e: e.get("event") == "hedge_decision", 20, "hedge_decision", daemon.proc)
        time.sleep(rng.uniform(0.0, 0.02))
    else:
        time.sleep(rng.uniform(0.0, 1.0))
    if daemon.proc.poll() is not None:
        raise AssertionError(f"daemon died before the kill:\n{daemon.log_tail()}")
    daemon.proc.kill()
    daemon.proc.wait()
    sim.set_faults(user_data_paused=False)


def _check_reconciliation(daemon: Any, sim: Any, reconciled: dict[str, Any], result: CrashResult,
                          say: Say) -> None:
    """Ledger vs venue right after a restart's reconciliation, before any new hedge (HALTED)."""
    status = daemon_status(daemon)
    if status["trading_state"] != "halted":
        raise AssertionError(f"restart not halted by the kill file: {status['trading_state']}")
    gaps = position_gaps(status["positions"], sim.positions())
    gap = max(gaps.values(), default=Decimal(0))
    result.reconcile_gaps.append(gap)
    if reconciled.get("mismatches"):
        result.reconcile_mismatches += 1
        result.notes.append(f"restart {len(result.reconcile_gaps)}: {reconciled['mismatches']}")
    if gap:
        comparison = sim.fill_comparisons(read_ledger(daemon.workdir / "ledger.sqlite").fills)
        result.notes.append(f"restart {len(result.reconcile_gaps)}: gaps {gaps}; {comparison}")
    say(f"restart {len(result.reconcile_gaps)}: max gap {gap}, mismatches {reconciled.get('mismatches')}")


def _settle_and_stop(daemon: Any, sim: Any, rng: random.Random, say: Say) -> bool:
    """Let the last run hedge a while, stop the flow, wait until ledger and venue agree, stop."""
    time.sleep(rng.uniform(1.5, 3.0))
    sim.set_flow(0.0)

    def settled() -> bool:
        status = daemon_status(daemon)
        gaps = position_gaps(status["positions"], sim.positions())
        in_flight = Decimal(status["underlyings"]["BTC"]["in_flight"])
        return not status["open_orders"] and in_flight == 0 and not any(gaps.values())

    try:
        wait_until(settled, 60, "ledger and venue to agree after the last run", interval=0.25)
    except AssertionError as exc:  # the figures below show what disagrees
        say(str(exc).splitlines()[0])
        return False
    say("settled")
    return True


# =========================================================================== websocket drops
@dataclass
class WsDropResult:
    """Figures of :func:`ws_drop_scenario`."""

    protocol: str = "binance"
    seconds: float = 0.0
    streams_dropped: int = 0  # websocket connections the simulator closed
    reconnects: int = 0  # stream failures the daemon reported (and recovered from)
    hedge_orders: int = 0
    duplicate_orders: int = 0
    fills: dict[str, FillComparison] = field(default_factory=dict)
    final_gap: Decimal = Decimal(0)
    settle_seconds: float = 0.0  # after the drops stop, until the ledger has every venue fill

    def rows(self) -> list[Row]:
        name = f"websocket drops ({self.protocol})"
        venue_fills = sum(c.venue_fills for c in self.fills.values())
        ledger_fills = sum(c.ledger_fills for c in self.fills.values())
        missing = sum(c.missing + c.amount_mismatch for c in self.fills.values())
        doubled = sum(c.doubled for c in self.fills.values())
        return [
            row(name, "seconds of drops (user + market streams)", self.seconds, "info", True),
            row(name, "streams closed by the venue", self.streams_dropped, "> 0", self.streams_dropped > 0),
            row(name, "stream failures seen by the daemon", self.reconnects, "> 0", self.reconnects > 0),
            row(name, "fills at the venue (inventory + perp)", venue_fills, "> 0", venue_fills > 0),
            row(name, "fills in the ledger", ledger_fills, f"= {venue_fills}", ledger_fills == venue_fills),
            zero_row(name, "fills missing from the ledger", missing),
            zero_row(name, "fills doubled in the ledger", doubled),
            zero_row(name, "duplicate orders (by client order id)", self.duplicate_orders),
            zero_row(name, "|ledger - venue| after the drops", self.final_gap),
            row(name, "seconds until the ledger caught up", self.settle_seconds, "info", True),
        ]


@contextlib.asynccontextmanager
async def protocol_stack(protocol: str, workdir: Path, *, seed: int, overrides: dict[str, Any] | None = None,
                         flow_rate: float = 0.0, **binance_server: Any) -> AsyncIterator[Any]:
    """The in-process simulator of ``protocol`` ("binance" or "deribit") with a live engine on it.

    Binance: spot inventory hedged on the USD-M perpetual (``binance_server``: SimConfig fields);
    Deribit: config/deribit-sim.toml, options inventory hedged on BTC-PERPETUAL.
    """
    if protocol == "binance":
        async with in_process_stack(workdir, sim_server_config(seed=seed, flow_rate=flow_rate, **binance_server),
                                    overrides) as stack:
            yield stack
    elif protocol == "deribit":
        async with deribit_stack(workdir, deribit_sim_config(seed=seed, flow_rate=flow_rate), overrides) as dstack:
            yield dstack
    else:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")


async def ws_drop_scenario(workdir: Path, *, seconds: float = 15.0, drop_interval: float = 3.0,
                           flow_rate: float = 4.0, seed: int = 2, protocol: str = "binance",
                           say: Say = _quiet) -> WsDropResult:
    """Close the user-data and market-data streams every ``drop_interval`` s for ``seconds`` s.

    Client fills flow (Binance: on the spot account; Deribit: on BTC options) and the daemon
    hedges them on the perpetual; the daemon runs in-process (real ccxt) against an in-process
    simulator. Afterwards the flow stops and the ledger must hold exactly the venue's fills
    (inventory and perp): streamed, or backfilled over REST after each reconnect, deduplicated
    by trade id.
    """
    result = WsDropResult(protocol=protocol, seconds=seconds)
    async with protocol_stack(protocol, workdir, seed=seed) as stack:
        await async_wait_until(lambda: stack.engine.readiness()[0], 60, "the engine to be ready")
        first_ms = stack.now_ms()
        stack.set_flow(flow_rate)
        stack.sim.faults.update({"ws_drop_interval": drop_interval, "ws_drop_scope": "all"})
        await asyncio.sleep(seconds)
        stack.sim.faults.update({"ws_drop_interval": 0.0})
        stack.set_flow(0.0)
        stopped = time.monotonic()
        say(f"drops over: {stack.ws_dropped()} streams closed")

        def caught_up() -> bool:
            comparisons = stack.fill_comparisons(read_ledger(stack.ledger_path).fills, first_ms)
            return all(c.missing == 0 for c in comparisons.values()) and bool(stack.settled())

        with contextlib.suppress(AssertionError):  # the figures show what is missing
            await async_wait_until(caught_up, 60, "the ledger to hold every venue fill", interval=0.25)
        result.settle_seconds = time.monotonic() - stopped
        result.fills = stack.fill_comparisons(read_ledger(stack.ledger_path).fills, first_ms)
        orders = stack.hedge_orders()
        result.hedge_orders = sum(1 for o in orders if not o.get("clientFlow"))
        result.duplicate_orders = sum(n - 1 for n in duplicate_client_ids(orders).values())
        result.streams_dropped = stack.ws_dropped()
        result.reconnects = int(_metric_total(stack.engine.metrics, "hedgerd_venue_errors_total", kind="stream"))
        result.final_gap = max(stack.gaps().values(), default=Decimal(0))
    return result


def _metric_total(metrics: Any, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` in a :class:`hedgerd.metrics.Metrics` registry matching ``labels``."""
    total = 0.0
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# =========================================================================== unknown order outcome
_COMMON_OUTCOME_CASES = ("accept, then hang", "accept, then drop", "5xx, executed", "5xx, not executed",
                         "late execution (latency spike)")
UNKNOWN_OUTCOME_CASES = (*_COMMON_OUTCOME_CASES, "429 while resolving (weight)", "429 on the order (order count)")
#: Deribit's rate limit is the account's credits: 10028 too_many_requests, which also ends its websocket sessions
DERIBIT_OUTCOME_CASES = (*_COMMON_OUTCOME_CASES, "10028 while resolving (credits)",
                         "10028 on the order (matching credits)")
OUTCOME_CASES = {"binance": UNKNOWN_OUTCOME_CASES, "deribit": DERIBIT_OUTCOME_CASES}


def _rate_limit_case(name: str) -> bool:
    return name.startswith(("429", "10028"))


@dataclass
class OutcomeCase:
    """One hedge order sent into one fault."""

    name: str
    venue_orders: int = 0  # orders the venue accepted for the hedge(s) of this case
    client_ids: int = 0  # distinct client order ids among them
    settled: bool = False  # ledger and venue agreed afterwards, nothing left open
    rate_limited: int = 0  # 429 (Binance) or 10028 (Deribit) answers the venue gave during the case
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.venue_orders == 1 and self.settled and (self.rate_limited > 0 or not _rate_limit_case(self.name))


@dataclass
class UnknownOutcomeResult:
    """Figures of :func:`unknown_outcome_scenario`."""

    protocol: str = "binance"
    cases: list[OutcomeCase] = field(default_factory=list)
    duplicate_orders: int = 0
    rejected_429: int = 0  # Binance: 429 answers; Deribit: 10028 answers
    requests_during_backoff: int = 0  # Binance: sent after a 429 before its Retry-After elapsed
    rejected_418: int = 0
    bans: int = 0
    sessions_ended: int = 0  # Deribit: websocket sessions the venue ended on a 10028
    final_gap: Decimal = Decimal(0)

    def rows(self) -> list[Row]:
        name = f"unknown order outcome ({self.protocol})"
        limited = "429" if self.protocol == "binance" else "10028"
        by_case: dict[str, list[OutcomeCase]] = {}
        for case in self.cases:
            by_case.setdefault(case.name, []).append(case)
        rows = [row(name, "hedges sent into a fault", len(self.cases), "info", True)]
        for case_name, group in by_case.items():
            low, high = min(c.venue_orders for c in group), max(c.venue_orders for c in group)
            orders = str(low) if low == high else f"{low}-{high}"
            settled = sum(1 for c in group if c.settled)
            value = f"{orders}, {settled}/{len(group)}, {sum(c.rate_limited for c in group)}"
            goal = "1, all, >0" if _rate_limit_case(case_name) else "1, all, -"
            rows.append(row(name, f"{case_name}: venue orders per hedge, settled, {limited}s", value, goal,
                            all(c.ok for c in group)))
        rows += [
            zero_row(name, "duplicate orders (by client order id)", self.duplicate_orders),
            row(name, f"{limited} answers received", self.rejected_429, "> 0", self.rejected_429 > 0),
        ]
        if self.protocol == "binance":
            rows += [
                zero_row(name, "requests sent after a 429 before Retry-After", self.requests_during_backoff),
                zero_row(name, "418 answers (IP banned)", self.rejected_418),
            ]
        else:
            rows.append(row(name, "websocket sessions ended by 10028", self.sessions_ended, "> 0",
                            self.sessions_ended > 0))
        return [*rows, zero_row(name, "|ledger - venue| at the end", self.final_gap)]


async def unknown_outcome_scenario(workdir: Path, *, rounds: int = 1, order_timeout: float = 2.0,
                                   cases: tuple[str, ...] | None = None, seed: int = 3,
                                   protocol: str = "binance", say: Say = _quiet) -> UnknownOutcomeResult:
    """Send hedge orders into each unknown-outcome fault ``rounds`` times (daemon in-process, real ccxt).

    Each case: set the fault, make a client fill, wait until the hedge it triggers is settled
    (ledger = venue, nothing open) and count the venue's orders for it. Binance: the simulator's
    request-weight and order-count windows are short (4 s) so Retry-After stays short. Deribit:
    the rate-limit cases run the account's credits out (non-matching ones, or the matching
    engine's) until a 10028 was answered, which also ends the account's websocket sessions.
    """
    result = UnknownOutcomeResult(protocol=protocol)
    overrides: dict[str, Any] = {"executor": {"order_timeout": order_timeout, "max_retries": 4}}
    async with protocol_stack(protocol, workdir, seed=seed, overrides=overrides, weight_window_seconds=4.0,
                              usdm_order_window_seconds=4.0, spot_order_window_seconds=4.0) as stack:
        await async_wait_until(lambda: stack.engine.readiness()[0], 60, "the engine to be ready")
        await async_wait_until(lambda: stack.settled() and stack.hedged(), 60, "the adopted balance hedged")
        side = "BUY"
        for _ in range(rounds):
            for case in cases or OUTCOME_CASES[protocol]:
                outcome = await _hedge_into_fault(stack, case, side, order_timeout)
                result.cases.append(outcome)
                say(f"{case}: {outcome}")
                side = "SELL" if side == "BUY" else "BUY"
        orders = stack.hedge_orders()
        result.duplicate_orders = sum(n - 1 for n in duplicate_client_ids(orders).values())
        result.rejected_429 = stack.rate_limited()
        if protocol == "binance":
            limiters = [*stack.sim.limiters.values(), *stack.sim.order_limiters.values()]
            result.requests_during_backoff = sum(lim.stats.requests_during_backoff for lim in limiters)
            result.rejected_418 = sum(lim.stats.rejected_418 for lim in limiters)
            result.bans = sum(lim.stats.bans for lim in limiters)
        else:
            result.sessions_ended = stack.sim.stats.sessions_ended_10028
        result.final_gap = max(stack.gaps().values(), default=Decimal(0))
    return result


async def _hedge_into_fault(stack: Any, case: str, side: str, order_timeout: float) -> OutcomeCase:
    sim = stack.sim
    outcome = OutcomeCase(case)
    known = {o["orderId"] for o in stack.hedge_orders()}
    rejected_before = stack.rate_limited()
    if case == "accept, then hang":
        sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "hang",
                           "hang_seconds": order_timeout + 3.0})
    elif case == "accept, then drop":
        sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
    elif case == "5xx, executed":
        sim.faults.update({"error_5xx_next": 1, "error_5xx_executes": True})
    elif case == "5xx, not executed":
        sim.faults.update({"error_5xx_next": 1, "error_5xx_executes": False})
    elif case == "late execution (latency spike)":
        # every request waits 0.25-1.5 order timeouts: the order can execute after the daemon gave
        # up waiting, and after a look-up that overtook it found nothing
        sim.faults.update({"latency_ms": 250.0 * order_timeout, "latency_jitter_ms": 1250.0 * order_timeout})
    elif "while resolving" in case:
        # the order's answer is lost, and every look-up is over the limit
        sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
        stack.limit_for(case)
    elif "on the order" in case:
        stack.limit_for(case)
    started = time.monotonic()
    stack.client_fill(side)

    def new_hedge_order() -> bool:
        return any(o["orderId"] not in known and not o["clientFlow"] for o in stack.hedge_orders())

    try:
        if case.startswith("late"):  # the spike lasts while the first send and look-ups are out
            await async_wait_until(lambda: stack.open_orders() > 0, 30, "the hedge order to be sent")
            await asyncio.sleep(1.5 * order_timeout)
            sim.faults.update({"latency_ms": 0.0, "latency_jitter_ms": 0.0})
        if _rate_limit_case(case):
            await async_wait_until(lambda: stack.rate_limited() > rejected_before, 30, "a rate-limit answer")
            if stack.protocol == "deribit" and "while resolving" in case:
                # the daemon's other requests (polls) meet the empty pool first: keep it empty
                # until the order executed unanswered and its look-ups met it too
                await async_wait_until(new_hedge_order, 30, "the hedge order")
                await asyncio.sleep(order_timeout + 1.0)
            stack.unlimit()
        await async_wait_until(new_hedge_order, 30, "the hedge order")
        await async_wait_until(lambda: stack.settled() and stack.hedged(), 60, "the hedge to settle",
                               interval=0.1)
        outcome.settled = True
    except AssertionError:
        pass
    finally:
        sim.faults.reset()
        stack.unlimit()
    outcome.seconds = time.monotonic() - started
    outcome.rate_limited = stack.rate_limited() - rejected_before
    if outcome.rate_limited:  # let the connector's back-off end before the next case
        await asyncio.sleep(stack.backoff_seconds())
    new = [o for o in stack.hedge_orders() if o["orderId"] not in known and not o["clientFlow"]]
    outcome.venue_orders = len(new)
    outcome.client_ids = len({o["clientOrderId"] for o in new})
    return outcome


# =========================================================================== kill switch under load
@dataclass
class HaltMeasurement:
    """One halt during a hedge storm."""

    how: str  # "SIGUSR1" or "POST /kill"
    halt_latency: float = 0.0  # seconds from the request to the daemon's HALTED log line
    orders_before: int = 0  # venue orders of the storm before the halt
    sends_after: int = 0  # order_send log lines after the HALTED line (the gate let one through)
    venue_orders_after: int = 0  # orders the venue received later than one rate-limiter tick after the halt
    in_transit: int = 0  # orders that reached the venue within that tick (sent before the halt)
    gated: int = 0  # orders the gate refused while halted


@dataclass
class KillUnderLoadResult:
    """Figures of :func:`kill_under_load_scenario`."""

    rate: float = 0.0  # the daemon's request rate limit on the hedge venue
    storm_rate: float = 0.0  # venue orders per second while the storm ran
    halts: list[HaltMeasurement] = field(default_factory=list)

    def rows(self) -> list[Row]:
        name = "kill switch under load"
        rows = [row(name, "hedge storm: orders/s (rate limit)", f"{self.storm_rate:.2f} ({self.rate:g})",
                    "saturated", self.storm_rate >= 0.5 * self.rate)]
        for h in self.halts:
            rows += [
                row(name, f"{h.how}: seconds to HALTED", h.halt_latency, "< 1", h.halt_latency < 1.0),
                zero_row(name, f"{h.how}: orders sent after the halt (daemon log)", h.sends_after),
                zero_row(name, f"{h.how}: orders at the venue > 1 tick after the halt", h.venue_orders_after),
                row(name, f"{h.how}: orders in transit at the halt", h.in_transit, "<= 1", h.in_transit <= 1),
            ]
        return rows


def kill_under_load_scenario(workdir: Path, *, rate: float = 2.0, storm_btc: str = "1.0",
                             observe: float = 3.0, say: Say = _quiet) -> KillUnderLoadResult:
    """Halt a daemon saturated by a hedge storm, by SIGUSR1 and then by ``POST /kill``.

    A one-sided client fill of ``storm_btc`` makes the daemon work down its delta in
    ``max_order`` slices, each waiting for its rate limiter (``rate`` requests/s). The halt
    time is the daemon's HALTED log line; the venue's order timestamps (same host clock) show
    whether an order reached it later than one rate-limiter tick (1/rate s) after that.
    """
    result = KillUnderLoadResult(rate=rate)
    tick = 1.0 / rate
    sim_dir, daemon_dir = workdir / "sim", workdir / "daemon"
    with running_sim(sim_dir, sim_config_json(seed=5, flow_rate=0.0, btc="0")) as sim:
        config = write_config(workdir / "hedgerd.toml", live_config(sim.base_url, sim.ws_url, overrides={
            "hedge": {"max_order": "0.01", "max_position": "20", "threshold": "0.005"},
            # The dead-man switch's refresh (weight 10 in ccxt's own throttle) can hold two orders
            # back and release them together, which this scenario would read as two orders in
            # transit at the halt; the halt itself is what is measured here, so it is off.
            "executor": {"rate_limits": {PERP_VENUE: {"requests_per_second": rate, "burst": 1}},
                         "dead_man_switch": "off"}}))
        follower = LogFollower(daemon_dir / "daemon.log")
        with live_daemon(daemon_dir, config) as daemon:
            if follower.wait_for(lambda e: e.get("event") == "engine_started", 90, "start", daemon.proc) is None:
                raise AssertionError(f"daemon did not start:\n{daemon.log_tail()}")
            wait_until(lambda: daemon.get("/readyz")[0] == 200, 60, "the daemon to be ready",
                       on_timeout=daemon.log_tail)
            sim.client_fill("BUY", storm_btc)
            storm_started = time.time()
            wait_until(lambda: _our_orders(sim) >= 5, 60, "the hedge storm", on_timeout=daemon.log_tail)
            result.storm_rate = _our_orders(sim) / max(1e-9, time.time() - storm_started)
            for how in ("SIGUSR1", "POST /kill"):
                result.halts.append(_halt_and_measure(how, daemon, sim, follower, tick, observe))
                say(f"{how}: {result.halts[-1]}")
                if how == "SIGUSR1":  # resume, let the storm pick up again
                    daemon.signal(signal.SIGUSR2)
                    _wait_for_orders(sim, _our_orders(sim) + 3, daemon)
    return result


def _wait_for_orders(sim: Any, count: int, daemon: Any) -> None:
    wait_until(lambda: _our_orders(sim) >= count, 30, f"{count} hedge orders", on_timeout=daemon.log_tail)


def _our_orders(sim: Any) -> int:
    return sum(1 for o in sim.orders("usdm") if not o.get("clientFlow"))


def _halt_and_measure(how: str, daemon: Any, sim: Any, follower: LogFollower, tick: float,
                      observe: float) -> HaltMeasurement:
    measurement = HaltMeasurement(how=how, orders_before=_our_orders(sim))
    follower.poll()
    asked = time.time()
    if how == "SIGUSR1":
        daemon.signal(signal.SIGUSR1)
    else:
        code, body = daemon.post("/kill", {"reason": "fault suite: kill under load"})
        if code != 200:
            raise AssertionError(f"POST /kill answered {code}: {body}")
    halted = follower.wait_for(lambda e: e.get("event") == "trading_state" and e.get("state") == "HALTED",
                               10, "HALTED", daemon.proc)
    if halted is None:
        raise AssertionError(f"no HALTED after {how}:\n{daemon.log_tail()}")
    halt_at = iso_to_epoch(halted["timestamp"])
    measurement.halt_latency = max(0.0, halt_at - asked)
    time.sleep(observe)  # the storm would have sent observe * rate orders by now
    follower.poll()
    after = [e for e in follower.events if iso_to_epoch(e.get("timestamp", "1970-01-01T00:00:00Z")) > halt_at]
    measurement.sends_after = sum(1 for e in after if e.get("event") == "order_send")
    measurement.gated = sum(1 for e in after if e.get("event") == "order_gated")
    halt_ms = halt_at * 1000.0
    for order in sim.orders("usdm"):
        if order.get("clientFlow") or order["time"] <= halt_ms:
            continue
        if order["time"] > halt_ms + tick * 1000.0:
            measurement.venue_orders_after += 1
        else:
            measurement.in_transit += 1
    return measurement
