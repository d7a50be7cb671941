"""The engine's readiness and gauges, in pieces (hedgerd.status)."""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry

from hedgerd.killswitch import KillSwitch
from hedgerd.metrics import Metrics
from hedgerd.status import EngineGauges, readiness_problems


def test_readiness_lists_every_problem_in_order_and_none_when_ready() -> None:
    ready = readiness_problems(reconciled=True, reconcile_mismatch=None, foreign_order=None, ledger_failed=None,
                               disconnected=[], prices=[("BTC/USDT:USDT", 0.5, 5.0)])
    assert ready == []
    problems = readiness_problems(
        reconciled=True, reconcile_mismatch="reconciliation mismatch: x", foreign_order="foreign order abc",
        ledger_failed="disk full", disconnected=["perp"],
        prices=[("BTC/USDT:USDT", None, 5.0), ("ETH/USDT:USDT", 5.5, 5.0), ("SOL/USDT:USDT", 5.0, 5.0)])
    assert problems == ["reconciliation mismatch: x", "foreign order abc", "ledger failed: disk full",
                        "venue perp not connected", "no price yet for BTC/USDT:USDT",
                        "price for ETH/USDT:USDT is stale"]
    # before reconciliation, a mismatch left from an earlier one is not what is wrong
    assert readiness_problems(reconciled=False, reconcile_mismatch="old", foreign_order=None, ledger_failed=None,
                              disconnected=[], prices=[]) == ["startup reconciliation not done"]


def test_gauges_are_set_once_per_change_and_refreshed_before_a_scrape() -> None:
    registry = CollectorRegistry()
    gauges = EngineGauges(Metrics(registry))
    btc = gauges.underlying("BTC")
    assert gauges.underlying("BTC") is btc  # looked up once
    btc.net_delta.set(Decimal("0.25"))
    assert registry.get_sample_value("hedgerd_net_delta", {"underlying": "BTC"}) == 0.25
    gauges.set_inventory({("spot", "BTC"): Decimal(3)})
    assert registry.get_sample_value("hedgerd_inventory", {"venue": "spot", "asset": "BTC"}) == 3.0
    gauges.refresh([("BTC/USDT:USDT", 1.5)], ready=False)
    assert registry.get_sample_value("hedgerd_price_age_seconds", {"symbol": "BTC/USDT:USDT"}) == 1.5
    assert registry.get_sample_value("hedgerd_ready") == 0.0
    ks = KillSwitch()
    ks.engage("test", "operator", 1.0)
    gauges.publish_trading_state(ks)
    assert registry.get_sample_value("hedgerd_kill_reason", {"state": "halted", "reason": "test",
                                                             "source": "operator"}) == 1.0
