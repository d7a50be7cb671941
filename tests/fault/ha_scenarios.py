"""Active/standby failover scenarios (issue 23): two ``hedgerd run`` on one ledger and one lock
database, against the venue simulator, under client flow.

* :func:`failover_scenario` -- ``kill -9`` of the leader, again and again; the test plays the
  supervisor and restarts each killed instance, which comes back as the standby.
* :func:`cutoff_scenario` -- the leader cut off the lock database (its lock connection
  terminated with ``pg_terminate_backend``, or the server stopped for a moment) or frozen
  (SIGSTOP): it must stop sending within the lease and exit 75 while the other takes over.

Who sent what is read from the daemons' own logs (``order_send`` carries the client id, the HA
events ``ha_standby`` / ``ha_active`` mark each process's role), and checked against the venue's
order log: every hedge order at the venue was sent by exactly one instance, and the instances'
orders follow each other in blocks, one block per leadership term (no interleaving).
Used small by tests/fault/test_ha_failover.py and at full size by bench/faults.py.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from tests.daemon_proc import DaemonProcess
from tests.fault.harness import (
    PERP_VENUE,
    SPOT_VENUE,
    FillComparison,
    Row,
    SimProcess,
    compare_fills,
    daemon_status,
    duplicate_client_ids,
    iso_to_epoch,
    live_config,
    live_daemon,
    log_events,
    position_gaps,
    read_ledger,
    row,
    running_sim,
    sim_config_json,
    wait_until,
    write_config,
    zero_row,
)

Say = Callable[[str], None]
EXIT_STEPPED_DOWN = 75  # hedgerd.daemon.EXIT_STEPPED_DOWN (the suite reads, never imports, the daemon)
# Seconds from the leader's death to the other instance leading and ready, at lease 2 s and
# heartbeat 0.5 s: up to 0.5 s to notice, the 2.5 s takeover wait, the engine's start (2-3 s against
# the simulator, measured 5.2-8.1 s in all; docs/performance.md), with room for a loaded CI box.
TAKEOVER_GOAL = 15.0


def _quiet(_: str) -> None:
    return None


# --------------------------------------------------------------------------- the pair
class Pair:
    """Two instances ``a`` and ``b`` of one config on one lock database and one shared ledger:
    PostgreSQL (``ledger="postgres"``: the lock's database) or one SQLite file (``"sqlite"``: one host)."""

    def __init__(self, workdir: Path, sim: SimProcess, lock_url: str, *, lease: float, heartbeat: float,
                 ledger: str = "postgres") -> None:
        self.workdir = workdir
        self.ledger_path = workdir / "shared" / "ledger.sqlite"
        self.ledger_path.parent.mkdir(parents=True, exist_ok=True)
        self.ledger_url = lock_url if ledger == "postgres" else None
        self.config = write_config(workdir / "hedgerd.toml", live_config(sim.base_url, sim.ws_url, overrides={
            "executor": {"order_timeout": 3.0},
            "ha": {"enabled": True, "lease": lease, "heartbeat": heartbeat, "connect_timeout": 2.0}}))
        self.env = {"HEDGERD_LEDGER__PATH": str(self.ledger_path)}
        if self.ledger_url is not None:  # ha.url left unset: the lock lives in the ledger's database
            self.env["HEDGERD_LEDGER__URL"] = self.ledger_url
        else:
            self.env["HEDGERD_HA__URL"] = lock_url
        self.lease = lease
        self.daemons: dict[str, DaemonProcess] = {}
        self._contexts: dict[str, contextlib.AbstractContextManager[DaemonProcess]] = {}

    def start(self, name: str) -> DaemonProcess:
        context = live_daemon(self.workdir / name, self.config, env=self.env)
        self.daemons[name] = context.__enter__()
        self._contexts[name] = context
        return self.daemons[name]

    def finish(self, name: str) -> None:
        """Stop ``name`` (SIGTERM) if it still runs and forget it."""
        context = self._contexts.pop(name, None)
        self.daemons.pop(name, None)
        if context is not None:
            context.__exit__(None, None, None)

    def close(self) -> None:
        for name in list(self._contexts):
            self.finish(name)

    def role(self, name: str) -> str | None:
        daemon = self.daemons.get(name)
        if daemon is None or daemon.proc.poll() is not None:
            return None
        try:
            return str(daemon_status(daemon).get("role"))
        except (OSError, AssertionError):
            return None

    def leading(self, name: str) -> bool:
        """``name`` is the active leader, its engine started and ready."""
        if self.role(name) != "active":
            return False
        return self.daemons[name].get("/readyz")[0] == 200

    def leader(self) -> str:
        actives = [name for name in self.daemons if self.role(name) == "active"]
        if len(actives) != 1:
            raise AssertionError(f"expected one active instance, found {actives}")
        return actives[0]

    def log(self, name: str) -> Path:
        return self.workdir / name / "daemon.log"

    def ledger_fills(self) -> list[dict[str, Any]]:
        """The shared ledger's fills, read with plain SQL."""
        return read_ledger(self.ledger_url if self.ledger_url is not None else self.ledger_path).fills


@contextlib.contextmanager
def _pair(workdir: Path, sim: SimProcess, lock_url: str, **kwargs: Any) -> Iterator[Pair]:
    pair = Pair(workdir, sim, lock_url, **kwargs)
    try:
        yield pair
    finally:
        pair.close()


def start_pair(pair: Pair, say: Say) -> str:
    """Start ``a``, wait until it leads, then ``b`` as its standby; returns "a"."""
    pair.start("a")
    wait_until(lambda: pair.leading("a"), 90, "a leading", on_timeout=pair.daemons["a"].log_tail)
    pair.start("b")
    wait_until(lambda: pair.role("b") == "standby", 30, "b standing by", on_timeout=pair.daemons["b"].log_tail)
    code, body = pair.daemons["b"].get("/readyz")
    if code != 200 or json.loads(body).get("role") != "standby":
        raise AssertionError(f"a healthy standby answers /readyz {code} {body!r}")
    leaders = {name: pair.daemons[name].total("hedgerd_leader") for name in ("a", "b")}
    if leaders != {"a": 1.0, "b": 0.0}:
        raise AssertionError(f"hedgerd_leader should be 1 on the leader only: {leaders}")
    say("a leads, b stands by")
    return "a"


# --------------------------------------------------------------------------- who sent what
@dataclass
class SendAudit:
    """The venue's hedge orders attributed to the instance that logged their send."""

    orders: int = 0
    unattributed: int = 0  # at the venue, in no instance's log (a kill -9 before the log line)
    by_both: int = 0  # one client id sent by both instances
    switches: int = 0  # changes of sender along the venue's order sequence
    sent_as_standby: int = 0  # order_send logged by a process that was not the leader


def audit_sends(pair: Pair, orders: list[dict[str, Any]]) -> SendAudit:
    """Attribute ``orders`` (``/_sim/orders``) to instances through their logs."""
    sender: dict[str, set[str]] = {}
    audit = SendAudit()
    for name in ("a", "b"):
        role = "standby"
        for event in log_events(pair.log(name)):
            kind = event.get("event")
            if kind == "ha_standby":  # a (re)started process: standby until it says otherwise
                role = "standby"
            elif kind == "ha_active":
                role = "active"
            elif kind == "order_send":
                sender.setdefault(str(event["client_order_id"]), set()).add(name)
                audit.sent_as_standby += role != "active"
    ours = sorted((o for o in orders if not o.get("clientFlow")), key=lambda o: (int(o["time"]), int(o["orderId"])))
    previous = ""
    for order in ours:
        audit.orders += 1
        names = sender.get(str(order["clientOrderId"]), set())
        if not names:
            audit.unattributed += 1
            continue
        if len(names) > 1:
            audit.by_both += 1
        name = min(names)
        audit.switches += bool(previous) and name != previous
        previous = name
    return audit


# --------------------------------------------------------------------------- kill -9 of the leader
@dataclass
class FailoverResult:
    """Figures of :func:`failover_scenario`."""

    failovers: int = 0
    takeovers: list[float] = field(default_factory=list)  # kill -9 -> the other instance leading, ready
    hedge_orders: int = 0
    duplicate_orders: int = 0
    fills: dict[str, FillComparison] = field(default_factory=dict)
    audit: SendAudit = field(default_factory=SendAudit)
    final_gap: Decimal = Decimal(0)
    notes: list[str] = field(default_factory=list)

    def rows(self, name: str = "HA failover (kill -9 leader)") -> list[Row]:
        missing = sum(c.missing + c.amount_mismatch for c in self.fills.values())
        doubled = sum(c.doubled for c in self.fills.values())
        worst = max(self.takeovers, default=0.0)
        return [
            row(name, "leader kill -9 + takeover cycles", self.failovers, ">= 1", self.failovers >= 1),
            row(name, "takeover s (kill -> other ready), median", round(statistics.median(self.takeovers), 2)
                if self.takeovers else "-", "info", True),
            row(name, "takeover s, max", round(worst, 2), f"<= {TAKEOVER_GOAL:g}", 0 < worst <= TAKEOVER_GOAL),
            row(name, "hedge orders at the venue", self.hedge_orders, "> 0", self.hedge_orders > 0),
            zero_row(name, "duplicate orders (by client order id)", self.duplicate_orders),
            zero_row(name, "fills missing from the ledger", missing),
            zero_row(name, "fills doubled in the ledger", doubled),
            zero_row(name, "orders sent by both instances", self.audit.by_both),
            zero_row(name, "orders sent by a standby", self.audit.sent_as_standby),
            row(name, "sender changes along the venue's orders", self.audit.switches,
                f"<= {self.failovers} (one per takeover)", self.audit.switches <= self.failovers),
            row(name, "venue orders with no logged send (kill -9 first)", self.audit.unattributed, "info", True),
            zero_row(name, "max |ledger - venue| after the last run", self.final_gap),
        ]


def failover_scenario(workdir: Path, lock_url: str, *, kills: int = 3, seed: int = 1, flow_rate: float = 2.0,
                      lease: float = 2.0, heartbeat: float = 0.5, ledger: str = "postgres",
                      say: Say = _quiet) -> FailoverResult:
    """Kill -9 the leader ``kills`` times under client flow; the standby must take over each time.
    ``ledger``: "postgres" (the lock's database) or "sqlite" (one file both instances open)."""
    rng = random.Random(seed)
    result = FailoverResult()
    with running_sim(workdir / "sim", sim_config_json(seed=seed, flow_rate=0.0, btc="0.3")) as sim, \
            _pair(workdir, sim, lock_url, lease=lease, heartbeat=heartbeat, ledger=ledger) as pair:
        leader = start_pair(pair, say)
        sim.set_flow(flow_rate)
        first_ms = int(time.time() * 1000)
        for cycle in range(kills):
            other = "b" if leader == "a" else "a"
            _hedge_a_while(pair, leader, sim, rng)
            daemon = pair.daemons[leader]
            daemon.proc.kill()
            killed = time.monotonic()
            daemon.proc.wait()
            pair.finish(leader)
            wait_until(lambda o=other: pair.leading(o), TAKEOVER_GOAL * 3, f"{other} taking over",  # type: ignore[misc]
                       on_timeout=pair.daemons[other].log_tail, interval=0.05)
            result.takeovers.append(time.monotonic() - killed)
            result.failovers += 1
            say(f"cycle {cycle}: {leader} killed, {other} led after {result.takeovers[-1]:.2f} s")
            pair.start(leader)  # the supervisor's restart: back as the standby
            wait_until(lambda n=leader: pair.role(n) == "standby", 30, f"{leader} standing by")  # type: ignore[misc]
            leader = other
        _settle(pair, leader, sim, result, say)
        orders = sim.orders("usdm")
        result.hedge_orders = sum(1 for o in orders if not o.get("clientFlow"))
        result.duplicate_orders = sum(n - 1 for n in duplicate_client_ids(orders).values())
        result.audit = audit_sends(pair, orders)
        fills = pair.ledger_fills()
        result.fills = {
            SPOT_VENUE: compare_fills(sim.trades("spot"), fills, SPOT_VENUE, since_ms=first_ms),
            PERP_VENUE: compare_fills(sim.trades("usdm"), fills, PERP_VENUE)}
    return result


def _hedge_a_while(pair: Pair, leader: str, sim: SimProcess, rng: random.Random) -> None:
    """Let the leader hedge (at least one more order), then wait a random moment, sometimes
    right after a send so the kill catches an order in flight."""
    before = _sent(pair, leader)
    wait_until(lambda: _sent(pair, leader) > before, 30, f"{leader} hedging", on_timeout=pair.daemons[leader].log_tail)
    time.sleep(rng.uniform(0.0, 1.5) if rng.random() < 0.5 else rng.uniform(0.0, 0.05))


def _sent(pair: Pair, name: str) -> int:
    return len(log_events(pair.log(name), "order_send"))


def _settle(pair: Pair, leader: str, sim: SimProcess, result: FailoverResult, say: Say) -> None:
    """Stop the flow, wait until the leader's ledger and the venue agree, stop the pair."""
    time.sleep(1.0)
    sim.set_flow(0.0)

    def settled() -> bool:
        status = daemon_status(pair.daemons[leader])
        gaps = position_gaps(status["positions"], sim.positions())
        result.final_gap = max(gaps.values(), default=Decimal(0))
        in_flight = Decimal(status["underlyings"]["BTC"]["in_flight"])
        return not status["open_orders"] and in_flight == 0 and not any(gaps.values())

    try:
        wait_until(settled, 60, "ledger and venue to agree", interval=0.25)
    except AssertionError as exc:
        result.notes.append(str(exc).splitlines()[0])
    say(f"settled: max gap {result.final_gap}")
    pair.close()


# --------------------------------------------------------------------------- cut off the database
@dataclass
class CutoffResult:
    """Figures of :func:`cutoff_scenario`, one per way of cutting."""

    how: str
    last_send_after_cut: float = 0.0  # s from the cut to the old leader's last logged send (<= 0: none after)
    exit_code: int | None = None
    takeover: float = 0.0  # cut -> the other instance leading, ready
    audit: SendAudit = field(default_factory=SendAudit)
    lease: float = 0.0

    def rows(self) -> list[Row]:
        name = f"HA cut-off ({self.how})"
        return [
            row(name, "s from the cut to the old leader's last send", round(self.last_send_after_cut, 3),
                f"<= lease {self.lease:g}", self.last_send_after_cut <= self.lease),
            row(name, "old leader's exit code", self.exit_code, f"{EXIT_STEPPED_DOWN} (stepped down)",
                self.exit_code == EXIT_STEPPED_DOWN),
            row(name, "takeover s (cut -> other ready)", round(self.takeover, 2), f"<= {TAKEOVER_GOAL:g}",
                0 < self.takeover <= TAKEOVER_GOAL),
            zero_row(name, "orders sent by both instances", self.audit.by_both),
            zero_row(name, "orders sent by a standby", self.audit.sent_as_standby),
            row(name, "sender changes along the venue's orders", self.audit.switches, "<= 1",
                self.audit.switches <= 1),
        ]


def cutoff_scenario(workdir: Path, lock_url: str, *, how: str, stop_server: Callable[[], None] | None = None,
                    seed: int = 3, flow_rate: float = 2.0, lease: float = 2.0, heartbeat: float = 0.5,
                    say: Say = _quiet) -> CutoffResult:
    """Cut the leader off the lock database under flow: ``how`` = "terminate" (its lock
    connection ended by ``pg_terminate_backend``), "server" (``stop_server`` stops the
    PostgreSQL server for a moment and starts it again), "ledger" (the leader's ledger sessions
    terminated: its ledger fails, so it steps down) or "freeze" (the leader process SIGSTOPped
    until the other leads, then SIGCONTinued: it must send nothing and step down)."""
    result = CutoffResult(how=how, lease=lease)
    with running_sim(workdir / "sim", sim_config_json(seed=seed, flow_rate=0.0, btc="0.3")) as sim, \
            _pair(workdir, sim, lock_url, lease=lease, heartbeat=heartbeat) as pair:
        leader = start_pair(pair, say)
        other = "b"
        sim.set_flow(flow_rate)
        _hedge_a_while(pair, leader, sim, random.Random(seed))
        old = pair.daemons[leader]
        cut_wall, cut = time.time(), time.monotonic()
        if how == "freeze":
            old.proc.send_signal(signal.SIGSTOP)
            try:
                wait_until(lambda: pair.leading(other), TAKEOVER_GOAL * 3, f"{other} taking over",
                           on_timeout=pair.daemons[other].log_tail, interval=0.05)
                result.takeover = time.monotonic() - cut
            finally:
                old.proc.send_signal(signal.SIGCONT)
        elif how == "terminate":
            terminate_lock_holder(lock_url)
        elif how == "ledger":  # the leader's ledger sessions only: its lock is fine
            terminate_sessions(lock_url, "hedgerd-ledger%")
        elif stop_server is not None:
            stop_server()
        else:
            raise ValueError(f"unknown cut {how!r}")
        wait_until(lambda: old.proc.poll() is not None, lease + 15, "the old leader stepping down",
                   on_timeout=old.log_tail)
        result.exit_code = old.proc.returncode
        sends = [iso_to_epoch(e["timestamp"]) for e in log_events(pair.log(leader), "order_send")]
        result.last_send_after_cut = max(sends, default=cut_wall) - cut_wall
        pair.finish(leader)
        if how != "freeze":
            wait_until(lambda: pair.leading(other), TAKEOVER_GOAL * 3, f"{other} taking over",
                       on_timeout=pair.daemons[other].log_tail, interval=0.05)
            result.takeover = time.monotonic() - cut
        say(f"{how}: old leader exit {result.exit_code}, last send {result.last_send_after_cut:+.3f} s after "
            f"the cut, {other} led after {result.takeover:.2f} s")
        pair.start(leader)
        wait_until(lambda: pair.role(leader) == "standby", 30, f"{leader} back as the standby")
        before = _sent(pair, other)
        wait_until(lambda: _sent(pair, other) > before, 30, f"{other} hedging")
        sim.set_flow(0.0)
        time.sleep(1.0)
        result.audit = audit_sends(pair, sim.orders("usdm"))
    return result


def terminate_sessions(url: str, application_name: str) -> int:
    """``pg_terminate_backend`` every session on ``url``'s database whose application_name is
    LIKE ``application_name``; how many."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE %s AND pid <> pg_backend_pid()", (application_name,)).fetchall()
    if not rows:
        raise AssertionError(f"no session {application_name!r} to terminate")
    return len(rows)


def terminate_lock_holder(url: str) -> int:
    """``pg_terminate_backend`` the session holding a hedgerd HA lock on ``url``'s database; its pid."""
    with psycopg.connect(url, autocommit=True) as conn:
        row_ = conn.execute(
            "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
            "AND l.granted AND a.application_name = 'hedgerd-ha' AND a.datname = current_database()").fetchone()
        if row_ is None:
            raise AssertionError("no session holds a hedgerd HA lock")
        conn.execute("SELECT pg_terminate_backend(%s)", (row_[0],))
    return int(row_[0])
