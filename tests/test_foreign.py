"""Another hedger on our account: the pure detector, its watch, and the engine halting on it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from hedgerd.config import load_settings
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.errors import ConfigError
from hedgerd.foreign import ForeignOrderWatch, Origin, classify, foreign_reason, own_form
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, MarketInfo, OrderReport, OrderStatus, Side, TradingState
from tests.fakes import FakeClock
from tests.test_deploy import PROM_DIR, load_yaml, tool
from tests.test_engine import PERP, SPOT, eventually, make_settings, running_engine

OURS = "hgd0badc0dex7"  # issued by our ledger (id 0badc0de)
TWIN = "hgd1234abcdx7"  # our prefix and id form, another ledger: a second daemon on the account
FORM = own_form("hgd")
ALERTS = PROM_DIR / "alerts.yml"


def issued_by_us(cid: str) -> bool:
    return cid == OURS


def fill(venue: str = "perp", symbol: str = PERP, cid: str | None = None, trade_id: str = "T1") -> Fill:
    return Fill(venue=venue, trade_id=trade_id, symbol=symbol, side=Side.SELL, amount=Decimal("0.1"),
                price=Decimal(60000), client_order_id=cid)


# ------------------------------------------------------------------------------ pure detector
def test_an_id_of_our_form_the_ledger_issued_is_own_and_one_it_did_not_is_foreign() -> None:
    assert classify(OURS, FORM, issued_by_us) is Origin.OWN
    assert classify(TWIN, FORM, issued_by_us) is Origin.FOREIGN
    assert classify("hgd0badc0dex8", FORM, issued_by_us) is Origin.FOREIGN  # our ledger id, no such intent


def test_ids_without_our_prefix_or_form_are_other_never_foreign() -> None:
    never_issued = lambda cid: False  # noqa: E731
    for cid in (None, "", "web_9f2c1", "desk-manual-1", "x1234abcdx7",
                "hgd21234abcdx7",  # a deployment with prefix "hgd2" next to ours
                "HGD1234abcdx7", "hgd1234abcdx", "hgd1234abcx7", "hgd1234abcdx7-1", "hgdmanual"):
        assert classify(cid, FORM, never_issued) is Origin.OTHER, cid


def test_the_form_follows_the_configured_prefix() -> None:
    form = own_form("deskB")
    assert classify("deskB1234abcdx3", form, lambda cid: False) is Origin.FOREIGN
    assert classify(TWIN, form, lambda cid: False) is Origin.OTHER


def test_the_reason_names_the_order_the_venue_and_what_to_do() -> None:
    reason = foreign_reason("perp", TWIN, "hgd", trade_id="T9")
    assert reason.startswith(f"foreign trade T9 of order {TWIN} on perp: another hedger is trading on this "
                             "account with our client-id prefix 'hgd'")
    assert "executor.client_id_prefix" in reason
    assert foreign_reason("perp", TWIN, "hgd").startswith(f"foreign order {TWIN} on perp")


# ------------------------------------------------------------------------------ the watch
def make_watch(metrics: Metrics, halts: list[str]) -> ForeignOrderWatch:
    return ForeignOrderWatch(prefix="hgd", issued=issued_by_us, hedged=[("perp", PERP)], metrics=metrics,
                             clock=FakeClock(), halt=halts.append)


def test_the_watch_halts_once_per_foreign_order_and_counts_it() -> None:
    metrics, halts = Metrics(), []
    watch = make_watch(metrics, halts)
    assert watch.on_order("perp", OURS) is Origin.OWN
    assert halts == [] and watch.detected is None
    assert watch.on_order("perp", TWIN) is Origin.FOREIGN
    watch.on_fills([fill(cid=TWIN)])  # the same order's trade, then more updates of it
    watch.on_order("perp", TWIN)
    assert halts == [foreign_reason("perp", TWIN, "hgd")]
    assert watch.detected == halts[0]
    assert metrics.registry.get_sample_value("hedgerd_foreign_orders_total", {"venue": "perp"}) == 1
    watch.detected = None  # an operator resumed; the other hedger's next order halts again
    watch.on_fills([fill(cid="hgd1234abcdx8", trade_id="T2")])
    assert halts[1] == foreign_reason("perp", "hgd1234abcdx8", "hgd", trade_id="T2")
    assert watch.detected == halts[1]
    assert metrics.registry.get_sample_value("hedgerd_foreign_orders_total", {"venue": "perp"}) == 2


def test_unowned_trades_on_a_hedged_instrument_are_counted_and_logged_without_halting() -> None:
    metrics, halts = Metrics(), []
    watch = make_watch(metrics, halts)
    with structlog.testing.capture_logs() as logs:
        watch.on_fills([fill(cid=None, trade_id="M1"), fill(cid="desk-1", trade_id="M2"),
                        fill(cid=OURS, trade_id="H1"),
                        fill(venue="spot", symbol=SPOT, cid=None, trade_id="C1")])  # client flow
    assert halts == [] and watch.detected is None
    assert metrics.registry.get_sample_value("hedgerd_unowned_hedge_trades_total",
                                             {"venue": "perp", "symbol": PERP}) == 2
    assert metrics.registry.get_sample_value("hedgerd_unowned_hedge_trades_total",
                                             {"venue": "spot", "symbol": SPOT}) is None
    assert [e["trade_id"] for e in logs if e["event"] == "unowned_hedge_trade"] == ["M1"]  # then once a minute


async def test_an_intent_is_own_from_the_moment_it_is_allocated_before_its_commit(tmp_path: Path) -> None:
    """The venue's echo of an order may arrive before the intent's commit has completed."""
    ledger = InventoryLedger(tmp_path / "ledger.sqlite", commit_on="thread")
    await ledger.open()
    try:
        halts: list[str] = []
        watch = ForeignOrderWatch(prefix="hgd", issued=lambda cid: ledger.order_state(cid) is not None,
                                  hedged=[("perp", PERP)], metrics=Metrics(), clock=FakeClock(),
                                  halt=halts.append)
        intent, durable = ledger.submit_intent(underlying="BTC", venue="perp", symbol=PERP, side=Side.SELL,
                                               amount=Decimal("0.1"), created_at=time.time())
        assert not durable.done()
        assert watch.on_order("perp", intent.client_order_id) is Origin.OWN
        await durable
        await ledger.record_order_state(intent.client_order_id, OrderStatus.FILLED, Decimal("0.1"))
        assert watch.on_order("perp", intent.client_order_id) is Origin.OWN  # closed, still ours
        other = f"hgd{'0' if ledger.ledger_id[0] != '0' else '1'}{ledger.ledger_id[1:]}x{intent.intent_id}"
        assert watch.on_order("perp", other) is Origin.FOREIGN
        assert len(halts) == 1
    finally:
        await ledger.close()


# ------------------------------------------------------------------------------ the engine
def twin_id(our_cid: str) -> str:
    """A client id another daemon with our prefix (and another ledger) would send."""
    ledger_id = our_cid[3:11]
    return f"hgd{'f' if ledger_id[0] != 'f' else 'e'}{ledger_id[1:]}x1"


async def test_an_order_update_of_another_hedger_with_our_prefix_halts_and_nothing_more_is_sent(
        tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path)) as h:
        foreign = twin_id(f"hgd{h.ledger.ledger_id}x1")
        await h.engine.on_order_update("sim-perp", OrderReport(foreign, PERP, OrderStatus.FILLED, Decimal("0.3")))
        ks = h.engine.kill_switch
        assert ks.state is TradingState.HALTED
        assert ks.source == "auto:foreign_order"
        assert ks.reason.startswith(f"foreign order {foreign} on sim-perp: another hedger is trading on this "
                                    "account with our client-id prefix 'hgd'")
        assert h.sample("hedgerd_foreign_orders_total", venue="sim-perp") == 1
        ready, problems = h.engine.readiness()
        assert not ready and ks.reason in problems
        await h.client_fill(Side.BUY, "0.5")
        await asyncio.sleep(0.3)
        assert h.attempts == [], "hedged while another hedger trades as us"
        ok, _ = h.engine.resume("test")
        assert ok and h.engine.foreign_orders.detected is None
        await eventually(h.in_band, "hedging again after the operator resumed")


async def test_a_trade_of_another_hedger_halts_before_the_risk_pass_on_it_hedges(tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path)) as h:
        foreign = twin_id(f"hgd{h.ledger.ledger_id}x1")
        bid, _ = h.spot.quote()
        # The other hedger's fill arrives with a desk fill that would call for a hedge.
        await h.engine.on_fills([
            Fill(venue="sim-spot", trade_id="client-1", symbol=SPOT, side=Side.BUY, amount=Decimal("0.5"),
                 price=bid, ts=time.time(), received_at=time.monotonic()),
            Fill(venue="sim-perp", trade_id="twin-1", symbol=PERP, side=Side.SELL, amount=Decimal("0.2"),
                 price=bid, ts=time.time(), received_at=time.monotonic(), client_order_id=foreign)])
        assert h.trading_state() is TradingState.HALTED
        assert h.engine.kill_switch.reason.startswith(f"foreign trade twin-1 of order {foreign} on sim-perp")
        assert h.ledger.position("sim-perp", PERP) == Decimal("-0.2"), "the trade still moves the position"
        await asyncio.sleep(0.3)
        assert h.attempts == []


async def test_echoes_of_our_own_orders_in_flight_and_unowned_trades_never_halt(tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path, perp={"latency_ms": 300.0})) as h:
        await h.client_fill(Side.BUY, "0.5")
        await eventually(lambda: len(h.attempts) == 1, "the hedge order on its way")
        intent = h.attempts[0].intent
        assert h.attempts[0].outcome == "pending"
        # The venue's stream reports the order and its trade before the answer to the send.
        await h.engine.on_order_update("sim-perp", OrderReport(intent.client_order_id, PERP,
                                                               OrderStatus.SUBMITTED))
        bid, _ = h.spot.quote()
        await h.engine.on_fills([Fill(venue="sim-perp", trade_id="echo-1", symbol=PERP, side=Side.SELL,
                                      amount=Decimal("0.5"), price=bid, ts=time.time(),
                                      received_at=time.monotonic(), client_order_id=intent.client_order_id)])
        # A manual trade on the hedge instrument, and one by a bot with another prefix.
        await h.engine.on_fills([
            Fill(venue="sim-perp", trade_id=f"manual-{i}", symbol=PERP, side=Side.BUY, amount=Decimal("0.01"),
                 price=bid, ts=time.time(), received_at=time.monotonic(), client_order_id=cid)
            for i, cid in enumerate((None, "bot1234abcdx1"))])
        assert h.trading_state() is TradingState.ACTIVE
        assert h.sample("hedgerd_foreign_orders_total", venue="sim-perp") is None
        assert h.sample("hedgerd_unowned_hedge_trades_total", venue="sim-perp", symbol=PERP) == 2
        await eventually(lambda: h.attempts[0].outcome == "ok", "the order's answer")
        assert h.trading_state() is TradingState.ACTIVE


def before_start(monkeypatch: pytest.MonkeyPatch, prepare: Callable[[SimPerpVenue], None]) -> None:
    """Run ``prepare(perp)`` on the sim perp venue as the engine starts (before reconciliation)."""
    load_markets = SimPerpVenue.load_markets

    async def prepared(self: SimPerpVenue) -> dict[str, MarketInfo]:
        prepare(self)
        return await load_markets(self)

    monkeypatch.setattr(SimPerpVenue, "load_markets", prepared)


async def test_an_open_order_of_another_hedger_at_startup_starts_halted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = "hgdfeedbeefx3"

    def open_order(perp: SimPerpVenue) -> None:
        perp._orders[foreign] = OrderReport(foreign, PERP, OrderStatus.SUBMITTED, venue_order_id="V-other")

    before_start(monkeypatch, open_order)
    async with running_engine(make_settings(tmp_path)) as h:
        ks = h.engine.kill_switch
        assert ks.state is TradingState.HALTED and ks.source == "auto:foreign_order"
        assert ks.reason.startswith(f"foreign order {foreign} on sim-perp: another hedger")
        assert h.cancels == [foreign]  # reconcile.unknown_open_orders = "cancel", as before
        await h.client_fill(Side.BUY, "0.5")
        await asyncio.sleep(0.3)
        assert h.attempts == []


async def test_a_recent_trade_of_another_hedger_seen_by_startup_reconciliation_starts_halted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    foreign = "hgdfeedbeefx4"

    def recent_trade(perp: SimPerpVenue) -> None:
        perp._book_fill(Fill(venue=perp.name, trade_id="twin-9", symbol=PERP, side=Side.SELL,
                             amount=Decimal("0.2"), price=Decimal(60000), ts=time.time(), client_order_id=foreign))

    before_start(monkeypatch, recent_trade)
    async with running_engine(make_settings(tmp_path)) as h:
        ks = h.engine.kill_switch
        assert ks.state is TradingState.HALTED and ks.source == "auto:foreign_order"
        assert ks.reason.startswith(f"foreign trade twin-9 of order {foreign} on sim-perp")
        assert h.ledger.position("sim-perp", PERP) == Decimal("-0.2")



# ------------------------------------------------------------------------------ one prefix per deployment
def test_each_deployment_sets_its_prefix_in_its_config_or_environment(tmp_path: Path) -> None:
    config = tmp_path / "b.toml"
    config.write_text('[executor]\nclient_id_prefix = "deskb"\n')
    assert load_settings(config, env={}, secrets_dir=tmp_path).executor.client_id_prefix == "deskb"
    env = {"HEDGERD_EXECUTOR__CLIENT_ID_PREFIX": "deskc"}
    assert load_settings(config, env=env, secrets_dir=tmp_path).executor.client_id_prefix == "deskc"


@pytest.mark.parametrize("prefix", ["", "desk-b", "desk b", "deskbdeskb", "hgd_", "h\u00e9d"])
def test_a_prefix_that_cannot_start_our_client_ids_is_refused_naming_the_field(tmp_path: Path, prefix: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(None, env={"HEDGERD_EXECUTOR__CLIENT_ID_PREFIX": prefix}, secrets_dir=tmp_path)
    assert excinfo.value.path == "executor.client_id_prefix"


async def test_the_engine_watches_for_its_own_configured_prefix(tmp_path: Path) -> None:
    async with running_engine(make_settings(tmp_path, executor={"client_id_prefix": "deskb"})) as h:
        bid, _ = h.spot.quote()
        # Another deployment on the account with the default prefix: not foreign to this one.
        await h.engine.on_fills([Fill(venue="sim-perp", trade_id="hgd-1", symbol=PERP, side=Side.SELL,
                                      amount=Decimal("0.2"), price=bid, ts=time.time(),
                                      client_order_id="hgd1234abcdx1")])
        assert h.trading_state() is TradingState.ACTIVE
        assert h.sample("hedgerd_unowned_hedge_trades_total", venue="sim-perp", symbol=PERP) == 1
        await h.client_fill(Side.BUY, "0.5")
        await eventually(lambda: bool(h.attempts), "a hedge")
        assert h.attempts[0].intent.client_order_id.startswith(f"deskb{h.ledger.ledger_id}x")
        await h.engine.on_order_update("sim-perp", OrderReport("deskb1234abcdx1", PERP, OrderStatus.SUBMITTED))
        assert h.trading_state() is TradingState.HALTED
        assert "our client-id prefix 'deskb'" in h.engine.kill_switch.reason


# ------------------------------------------------------------------------------ alert rules
@pytest.mark.tools
def test_the_alert_rules_fire_on_a_foreign_order_and_on_unowned_hedge_trades_only(tmp_path: Path) -> None:
    """promtool evaluates the shipped expressions (annotations stripped: promtool compares them
    verbatim; `promtool check rules` in test_deploy lints them)."""
    shipped = {r["alert"]: r for g in load_yaml(ALERTS)["groups"] for r in g["rules"] if "alert" in r}
    rules = [{k: v for k, v in shipped[name].items() if k != "annotations"}
             for name in ("ForeignHedgeOrders", "UnownedHedgeTrades")]
    (tmp_path / "rules.yml").write_text(json.dumps({"groups": [{"name": "foreign", "rules": rules}]}))
    target = {"job": "hedgerd", "instance": "h:9108"}

    def case(alert: str, series: str, values: str, labels: dict[str, str], severity: str) -> dict[str, Any]:
        return {"interval": "1m", "input_series": [{"series": series, "values": values}],
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": alert, "exp_alerts": []},  # not counting: quiet
                    {"eval_time": "3m", "alertname": alert,
                     "exp_alerts": [{"exp_labels": {**target, **labels, "severity": severity}}]}]}

    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [
        case("ForeignHedgeOrders", 'hedgerd_foreign_orders_total{job="hedgerd",instance="h:9108",venue="perp"}',
             "0 0 1 1 1", {"venue": "perp"}, "critical"),
        case("UnownedHedgeTrades",
             'hedgerd_unowned_hedge_trades_total{job="hedgerd",instance="h:9108",venue="perp",symbol="BTC/USDT:USDT"}',
             "0 0 2 2 2", {"venue": "perp", "symbol": "BTC/USDT:USDT"}, "warning")]}
    (tmp_path / "tests.yml").write_text(json.dumps(tests))
    result = subprocess.run([tool("promtool"), "test", "rules", "tests.yml"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
