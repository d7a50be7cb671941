"""HA leadership: the pure lease, the config section, and Leadership on a real PostgreSQL server
(tests/pgserver.py): one holder at a time, takeover after the holder goes, fencing in time when
the lock's connection is terminated or stops answering."""

from __future__ import annotations

import asyncio
import math
import os
import signal
import time
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from hedgerd.clock import RealClock
from hedgerd.config import HaConfig, load_settings, render_settings, secret_values, settings_notes
from hedgerd.errors import ConfigError
from hedgerd.ha import Leadership, LeadershipLost, Lease, Role, derive_lock_key, lock_key_parts, send_refusal
from hedgerd.ha.postgres import PostgresLock
from hedgerd.metrics import Metrics
from tests.pgserver import PgServer

LEASE, BEAT = 1.0, 0.1


# ------------------------------------------------------------------------- pure parts
def test_only_an_active_leader_inside_its_lease_may_send() -> None:
    lease = Lease(2.0)
    assert send_refusal(Role.ACTIVE, lease, 0.0, "") is not None  # never renewed
    lease.renew(10.0)
    assert send_refusal(Role.ACTIVE, lease, 11.9, "") is None
    assert "expired" in (send_refusal(Role.ACTIVE, lease, 12.0, "") or "")
    assert "standby" in (send_refusal(Role.STANDBY, lease, 11.0, "") or "")
    assert "taking_over" in (send_refusal(Role.TAKING_OVER, lease, 11.0, "") or "")
    assert "cut off" in (send_refusal(Role.STEPPED_DOWN, lease, 11.0, "cut off") or "")
    lease.renew(9.0)  # a late answer to an older heartbeat never shortens the lease
    assert lease.valid_until == 12.0
    assert lease.remaining(13.0) == 0.0


def test_lock_key_is_stable_per_prefix_and_ledger_and_lists_as_two_oids() -> None:
    key = derive_lock_key("hd", "postgresql://u:pw@db/hedgerd")
    assert key == derive_lock_key("hd", "postgresql://u:pw@db/hedgerd")
    assert key != derive_lock_key("deskb", "postgresql://u:pw@db/hedgerd")
    assert key != derive_lock_key("hd", "var/hedgerd.sqlite")
    assert -(2 ** 63) <= key < 2 ** 63
    assert lock_key_parts(-1) == (0xFFFF_FFFF, 0xFFFF_FFFF)
    assert lock_key_parts(5 << 32 | 7) == (5, 7)


# ------------------------------------------------------------------------- config
def test_ha_config_refuses_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env={"HEDGERD_HA__ENABLED": "true"})
    assert exc.value.path in ("ha.url", "ha.enabled")
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env={"HEDGERD_HA__URL": "mysql://x@h/db"})
    assert exc.value.path == "ha.url"
    with pytest.raises(ConfigError, match="half the lease"):
        load_settings(None, env={"HEDGERD_HA__LEASE": "1", "HEDGERD_HA__HEARTBEAT": "0.6"})
    # the embedded default trades on in-process sim venues: a standby could not take them over
    with pytest.raises(ConfigError, match="sim venues") as exc:
        load_settings(None, env={"HEDGERD_HA__ENABLED": "true", "HEDGERD_HA__URL": "postgresql://h/db"})
    assert exc.value.path == "ha.enabled"
    # without ha.url the lock lives in the ledger's database
    venues = {"HEDGERD_VENUES": '[{"name": "perp", "kind": "ccxt", "exchange": "binanceusdm", "role": "hedge"}]',
              "HEDGERD_HEDGES": "[]", "HEDGERD_HA__ENABLED": "true"}
    with pytest.raises(ConfigError) as exc:
        load_settings(None, env=venues)
    assert exc.value.path == "ha.url"
    settings = load_settings(None, env={**venues, "HEDGERD_LEDGER__URL": "postgresql://u:pw@db/hedgerd"})
    assert settings.ha.enabled and settings.ha.url is None
    [note] = [n for n in settings_notes(settings) if n.startswith("ha.enabled")]
    assert "db:5432/hedgerd" in note and "pw" not in note and "6 s" in note  # check-config names the database


def test_ha_url_is_a_secret_from_the_secrets_dir_and_masked(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "hedgerd_ha__url").write_text("postgresql://hedgerd:s3cret-pw@db:5432/hedgerd\n")
    settings = load_settings(None, env={}, secrets_dir=secrets)
    assert settings.ha.url is not None
    assert settings.ha.url.get_secret_value() == "postgresql://hedgerd:s3cret-pw@db:5432/hedgerd"
    rendered = render_settings(settings, "toml")
    assert "s3cret-pw" not in rendered and "[ha]" in rendered
    assert "s3cret-pw" in secret_values(settings)  # the log redactor hides the password quoted alone too
    assert HaConfig(lease=5, heartbeat=1).takeover_wait == 6


# ------------------------------------------------------------------------- on a real server
def _leadership(url: str, key: int, *, lease: float = LEASE, beat: float = BEAT) -> Leadership:
    config = HaConfig(enabled=True, lease=lease, heartbeat=beat, connect_timeout=2)

    async def connect() -> PostgresLock:
        return await PostgresLock.connect(url, key, connect_timeout=2, lease=lease)

    return Leadership(config, key, RealClock(), Metrics(), connect)


def _holder_pid(url: str, key: int) -> int | None:
    classid, objid = lock_key_parts(key)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                           "AND classid = %s::bigint::oid AND objid = %s::bigint::oid", (classid, objid)).fetchone()
    return None if row is None else int(row[0])


async def _wait(predicate: object, seconds: float, what: str) -> float:
    start = time.monotonic()
    while not predicate():  # type: ignore[operator]
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_one_leader_at_a_time_and_the_standby_takes_over_when_it_goes(pg_url: str) -> None:
    key = derive_lock_key("t", pg_url)
    first, second = _leadership(pg_url, key), _leadership(pg_url, key)
    started = time.monotonic()
    await first.acquire()
    assert first.role is Role.ACTIVE and first.fence() is None
    assert time.monotonic() - started >= first.config.takeover_wait  # it waited out a possible predecessor
    assert first.metrics.leader.labels(str(key))._value.get() == 1
    contender = asyncio.create_task(second.acquire())
    await asyncio.sleep(5 * BEAT)  # several attempts, every one refused
    assert second.role is Role.STANDBY and not contender.done()
    assert second.fence() is not None and second.metrics.leader.labels(str(key))._value.get() == 0
    await asyncio.sleep(LEASE)  # heartbeats keep the lease of the leader
    assert first.fence() is None
    await first.close()  # the session ends: the lock is free
    await asyncio.wait_for(contender, timeout=BEAT * 3 + second.config.takeover_wait + 2)
    assert second.role is Role.ACTIVE and second.fence() is None
    await second.close()


async def test_terminated_lock_connection_fences_at_once_and_the_other_takes_over(pg_url: str) -> None:
    key = derive_lock_key("t", pg_url)
    leader, standby = _leadership(pg_url, key), _leadership(pg_url, key)
    await leader.acquire()
    contender = asyncio.create_task(standby.acquire())
    pid = _holder_pid(pg_url, key)
    assert pid is not None
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    cut = time.monotonic()
    fenced_after = await _wait(lambda: leader.fence() is not None, LEASE, "the leader refuses sends")
    assert leader.lost.is_set() and leader.role is Role.STEPPED_DOWN
    assert "lock connection failed" in leader.lost_reason
    assert fenced_after < LEASE / 2  # the next heartbeat found the session gone, long before the lease ran out
    await asyncio.wait_for(contender, timeout=BEAT * 3 + standby.config.takeover_wait + 2)
    # the new leader's first send comes more than a lease after the old one's last possible one
    assert time.monotonic() - cut > LEASE
    assert standby.fence() is None and leader.fence() is not None
    await leader.close()
    await standby.close()


async def test_a_leader_whose_heartbeat_gets_no_answer_stops_sending_at_its_lease() -> None:
    """The lock's backend frozen (SIGSTOP: a network partition as the client sees it): no answer,
    no error. Sends stop when the lease runs out, measured at the send, not by the heartbeat."""
    with PgServer() as server:  # its own server: a frozen backend must not hold up other tests
        url = server.create_database()
        key = derive_lock_key("t", url)
        leader = _leadership(url, key)
        await leader.acquire()
        pid = _holder_pid(url, key)
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)  # as root too: the server runs as postgres, root may signal it
        frozen = time.monotonic()
        try:
            await asyncio.sleep(2 * BEAT)  # a heartbeat answered just before the freeze is in by now
            deadline = leader.lease.valid_until
            assert deadline <= frozen + LEASE  # nothing renewed the lease after the freeze
            await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.01)
            assert leader.fence() is not None  # refused at the send itself, whatever the heartbeat does
            await _wait(leader.lost.is_set, 1.0, "the heartbeat gives up")
            assert "no heartbeat answer" in leader.lost_reason
        finally:
            os.kill(pid, signal.SIGCONT)
        await leader.close()


async def test_a_standby_keeps_competing_through_a_database_outage_and_reports_it() -> None:
    with PgServer() as server:
        url = server.create_database()
        key = derive_lock_key("t", url)
        leader, standby = _leadership(url, key), _leadership(url, key)
        await leader.acquire()
        contender = asyncio.create_task(standby.acquire())
        await asyncio.sleep(3 * BEAT)
        await asyncio.to_thread(server.stop)  # ends every session: the leader's lock goes with it
        await _wait(leader.lost.is_set, LEASE + 0.5, "the leader steps down")
        await _wait(lambda: standby.db_error is not None, 5, "the standby notices the outage")
        assert standby.role is Role.STANDBY
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(contender, timeout=10 + standby.config.takeover_wait)
        assert standby.role is Role.ACTIVE and standby.db_error is None
        await leader.close()
        await standby.close()


async def test_the_lock_lost_while_taking_over_means_no_first_send(pg_url: str) -> None:
    key = derive_lock_key("t", pg_url)
    taker = _leadership(pg_url, key, lease=1.0, beat=0.1)
    acquiring = asyncio.create_task(taker.acquire())
    await _wait(lambda: taker.role is Role.TAKING_OVER, 3, "lock taken")
    pid = _holder_pid(pg_url, key)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(LeadershipLost):
        await acquiring
    assert taker.fence() is not None and not math.isinf(taker.lease.valid_until)
    await taker.close()


# ------------------------------------------------------------------------- hedgerd status
def test_status_summary_names_the_role_and_why_a_leader_stepped_down() -> None:
    from hedgerd.admin.status_view import describe_status

    now = 1_800_000_000.0
    standby = {"mode": "live", "trading_state": "active", "ready": True, "not_ready": [], "underlyings": {},
               "open_orders": [], "role": "standby", "ha": {"role": "standby", "since": now - 65, "lease": 5.0}}
    lines = describe_status(standby, now).splitlines()
    assert lines[1].startswith("role: STANDBY (sends nothing; takes over when the leader's lock is released)")
    assert lines[1].endswith("(1 min 5 s ago)") and lines[2] == "ready"
    down = {**standby, "ready": False, "not_ready": ["stepped down: lock connection failed"],
            "ha": {"role": "stepped_down", "since": now - 2, "stepped_down": "lock connection failed"}}
    role_line = describe_status(down, now).splitlines()[1]
    assert role_line.startswith("role: STEPPED DOWN") and role_line.endswith(": lock connection failed")
    unreachable = {**standby, "ha": {"role": "standby", "database_error": "OperationalError: refused"}}
    assert "lock database unreachable: OperationalError: refused" in describe_status(unreachable, now)
    plain = {k: v for k, v in standby.items() if k not in ("role", "ha")}
    assert "role:" not in describe_status(plain, now)  # a daemon without ha says nothing about roles


async def test_a_leader_that_stops_querying_loses_the_lock_to_the_standby(pg_url: str) -> None:
    """A frozen leader process keeps its connection (its kernel answers keepalives) but sends no
    heartbeat: the server ends the idle session after a lease and the standby takes over."""
    key = derive_lock_key("t", pg_url)
    leader, standby = _leadership(pg_url, key), _leadership(pg_url, key)
    await leader.acquire()
    contender = asyncio.create_task(standby.acquire())
    assert leader._heartbeat is not None
    leader._heartbeat.cancel()  # frozen: no more queries on the lock's connection
    frozen = time.monotonic()
    await asyncio.wait_for(contender, timeout=LEASE + 2 * BEAT + standby.config.takeover_wait + 2)
    # the server waited out the frozen leader's lease before releasing the lock, the standby its wait after
    assert time.monotonic() - leader.lease.valid_until >= standby.config.takeover_wait
    assert time.monotonic() - frozen < 2 * LEASE + standby.config.takeover_wait + 2  # not after the keepalives
    assert leader.fence() is not None and standby.fence() is None  # the frozen one's lease ran out first
    await leader.close()
    await standby.close()


# ------------------------------------------------------------------------- the engine's gate
async def test_the_engine_sends_nothing_outside_the_lease_though_its_kill_switch_is_active(tmp_path: Path) -> None:
    from hedgerd.models import Side, TradingState
    from tests.test_engine import QUIET, eventually, make_settings, running_engine

    lease = Lease(LEASE)
    role = [Role.ACTIVE]
    async with running_engine(make_settings(tmp_path)) as h:
        h.engine.control.send_fence = lambda: send_refusal(role[0], lease, time.monotonic(), "")  # never renewed yet
        await h.client_fill(Side.BUY, "0.5")
        await eventually(lambda: (h.sample("hedgerd_hedge_orders_total", venue="sim-perp", symbol="BTC/USDT:USDT",
                                           status="gated") or 0) >= 1, "an order refused at the gate")
        await asyncio.sleep(QUIET)
        assert h.attempts == [] and h.venue_orders() == {}
        assert h.trading_state() is TradingState.ACTIVE  # the fence alone held it back
        lease.renew(time.monotonic())
        await eventually(h.in_band, "hedged once the lease is valid")
        sent = len(h.attempts)
        role[0] = Role.STEPPED_DOWN
        await h.client_fill(Side.BUY, "0.5")
        await asyncio.sleep(QUIET)
        assert len(h.attempts) == sent


@pytest.mark.parametrize("then", ["reprice", "step_down"])
async def test_a_passive_intent_places_no_child_once_fenced_and_its_resting_one_is_cancelled(
        tmp_path: Path, then: str) -> None:
    from hedgerd.models import OrderStatus, OrderType, Side
    from tests.test_engine import QUIET, eventually, make_settings, running_engine

    lease = Lease(600)
    lease.renew(time.monotonic())
    role = [Role.ACTIVE]
    # the child rests long enough to be fenced: no timeout, no urgency escalation, reprices allowed
    # and the market trades too little to fill it, so only a cancel ends it
    settings = make_settings(tmp_path, perp={"market_volume": Decimal("0.000001"), "sweep_probability": 0.0},
                             executor={"order_type": OrderType.PASSIVE, "passive_timeout": 600,
                                       "passive_urgency": 100, "passive_check_interval": 0.05})
    async with running_engine(settings) as h:
        h.engine.control.send_fence = lambda: send_refusal(role[0], lease, time.monotonic(), "")
        await h.client_fill(Side.BUY, "0.5")

        def resting() -> list[str]:
            return [c for c, r in h.venue_orders().items() if not r.status.is_final]

        await eventually(lambda: bool(resting()), "a post-only child resting")
        [child] = resting()
        assert h.attempts[-1].intent.order_type is OrderType.POST_ONLY
        role[0] = Role.STEPPED_DOWN  # fenced: every send from here is refused at the gate
        sent = len(h.attempts)
        if then == "reprice":  # the book moves away: the child is cancelled, its successor refused
            h.perp.market.set_mid(h.perp.market.mid() * Decimal("0.9995"))  # the hedge sells: the ask falls below it
            await eventually(lambda: h.venue_orders()[child].status.is_final, "the child cancelled to reprice")
        else:
            await h.engine.control.cancel_all_open()  # what the daemon's step-down does
        await asyncio.sleep(QUIET)
        assert h.venue_orders()[child].status is OrderStatus.CANCELED and resting() == []
        assert len(h.attempts) == sent  # no new child, no escalation IOC
