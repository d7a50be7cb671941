"""Active/standby failover against the venue simulator and a real PostgreSQL (issue 23).

Small versions of tests/fault/ha_scenarios.py (bench/faults.py runs ten kills): kill -9 of the
leader, its lock connection terminated, the database server stopped for a moment, its ledger
sessions terminated, the leader frozen (SIGSTOP) until the other instance leads. Each checks
the takeover time, that the venue never saw orders of two instances interleaved, and, for the
kills, that no order was placed twice and no fill lost or doubled.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fault.ha_scenarios import TAKEOVER_GOAL, cutoff_scenario, failover_scenario
from tests.fault.harness import format_table
from tests.pgserver import PgServer

pytestmark = pytest.mark.e2e


def test_the_standby_takes_over_each_time_the_leader_is_killed(tmp_path: Path, pg_url: str) -> None:
    result = failover_scenario(tmp_path, pg_url, kills=2, seed=5)
    report = format_table(result.rows()) + "\n" + "\n".join(result.notes)
    assert result.failovers == 2, report
    assert all(0 < t <= TAKEOVER_GOAL for t in result.takeovers), report
    assert result.hedge_orders > 0 and result.duplicate_orders == 0, report
    assert all(c.exact for c in result.fills.values()) and len(result.fills) == 2, report
    assert result.audit.by_both == 0 and result.audit.sent_as_standby == 0, report
    assert result.audit.switches <= result.failovers, report
    assert result.final_gap == 0, report
    assert all(r.ok for r in result.rows()), report


def test_a_leader_cut_off_the_database_stops_sending_within_the_lease(tmp_path: Path, pg_url: str) -> None:
    result = cutoff_scenario(tmp_path, pg_url, how="terminate", lease=2.0)
    report = format_table(result.rows())
    assert result.exit_code == 75, report
    assert result.last_send_after_cut <= result.lease, report
    assert 0 < result.takeover <= TAKEOVER_GOAL, report
    assert result.audit.by_both == 0 and result.audit.sent_as_standby == 0 and result.audit.switches <= 1, report


def test_a_database_outage_makes_the_leader_step_down_and_one_instance_lead_after(tmp_path: Path) -> None:
    with PgServer() as server:  # its own server: the session's is shared with other tests

        def outage() -> None:
            server.stop()
            time.sleep(1.0)
            server.start()

        result = cutoff_scenario(tmp_path, server.create_database(), how="server", stop_server=outage, lease=2.0)
    report = format_table(result.rows())
    assert result.exit_code == 75, report
    assert result.last_send_after_cut <= result.lease, report
    assert result.audit.by_both == 0 and result.audit.sent_as_standby == 0 and result.audit.switches <= 1, report
    assert all(r.ok for r in result.rows()), report


def test_a_frozen_leader_is_replaced_and_sends_nothing_when_it_wakes(tmp_path: Path, pg_url: str) -> None:
    result = cutoff_scenario(tmp_path, pg_url, how="freeze", lease=2.0)
    report = format_table(result.rows())
    assert 0 < result.takeover <= TAKEOVER_GOAL, report  # the server ended its idle lock session
    assert result.exit_code == 75, report  # woken up, its lease long gone: it stepped down
    assert result.last_send_after_cut <= 0, report
    assert result.audit.by_both == 0 and result.audit.sent_as_standby == 0 and result.audit.switches <= 1, report


def test_a_leader_whose_ledger_fails_hands_over_to_the_standby(tmp_path: Path, pg_url: str) -> None:
    result = cutoff_scenario(tmp_path, pg_url, how="ledger", lease=2.0)
    report = format_table(result.rows())
    assert result.exit_code == 75, report  # halted by the ledger failure, then stepped down
    assert result.last_send_after_cut <= result.lease, report
    assert 0 < result.takeover <= TAKEOVER_GOAL, report
    assert result.audit.by_both == 0 and result.audit.sent_as_standby == 0 and result.audit.switches <= 1, report
