"""The ccxt connector on Deribit: client order ids are labels, which ccxt does not parse back and
Deribit does not keep unique. Driven through the real, unmodified ``ccxt.deribit`` against the
Deribit-protocol simulator on 127.0.0.1 (nothing leaves the machine)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from pydantic import SecretStr

from hedgerd import errors as herr
from hedgerd.clock import RealClock
from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.connectors.ccxt.convert import client_order_id_of, order_to_report, trade_to_fill
from hedgerd.connectors.ccxt.venue import CcxtVenue
from hedgerd.exchange_sim.deribit import DeribitSim, start_deribit_sim
from hedgerd.models import HedgeIntent, MarketInfo, OrderStatus, OrderType, Side

PERP = "BTC/USD:BTC"
PERP_MARKET = MarketInfo(symbol=PERP, base="BTC", quote="USD", amount_step=Decimal(10), price_step=Decimal("0.5"),
                         min_amount=Decimal(10), contract_size=Decimal(10))

#: What ccxt.deribit's parse_order returned for a filled market order labelled by us (trimmed):
#: no clientOrderId, the label only in ``info``.
DERIBIT_ORDER: dict[str, Any] = {
    "id": "4711", "clientOrderId": None, "symbol": PERP, "type": "market", "side": "buy", "status": "closed",
    "amount": 30.0, "filled": 30.0, "remaining": 0.0, "price": 100010.5, "average": 100010.5,
    "timestamp": 1796000000000, "lastTradeTimestamp": 1796000000000, "trades": [], "fee": None,
    "info": {"order_id": "4711", "label": "hgd12x1", "instrument_name": "BTC-PERPETUAL", "direction": "buy",
             "amount": 30.0, "filled_amount": 30.0, "order_state": "filled", "average_price": 100010.5},
}
#: ccxt.deribit's parse_trade of a ``private/get_user_trades_*`` entry of that order.
DERIBIT_TRADE: dict[str, Any] = {
    "id": "77", "order": "4711", "symbol": PERP, "side": "buy", "amount": 30.0, "price": 100010.5,
    "timestamp": 1796000000000, "fee": {"cost": 0.0000015, "currency": "BTC"}, "clientOrderId": None,
    "info": {"trade_id": "77", "order_id": "4711", "label": "hgd12x1", "instrument_name": "BTC-PERPETUAL",
             "direction": "buy", "amount": 30.0, "price": 100010.5},
}


def test_the_label_in_info_is_the_client_order_id_of_orders_and_trades() -> None:
    assert client_order_id_of(DERIBIT_ORDER) == "hgd12x1"
    assert client_order_id_of(DERIBIT_TRADE) == "hgd12x1"
    assert client_order_id_of({**DERIBIT_ORDER, "info": {**DERIBIT_ORDER["info"], "label": ""}}) is None
    report = order_to_report("deribit", DERIBIT_ORDER, PERP_MARKET, 0.0)
    assert (report.client_order_id, report.status, report.filled) == ("hgd12x1", OrderStatus.FILLED, Decimal(300))
    fill = trade_to_fill("deribit", DERIBIT_TRADE, {PERP: PERP_MARKET}, 0.0)
    assert (fill.client_order_id, fill.trade_id, fill.amount) == ("hgd12x1", f"{PERP}#77", Decimal(300))


def intent(cid: str) -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id=cid, underlying="BTC", venue="deribit-sim", symbol=PERP,
                       side=Side.BUY, amount=Decimal(300), created_at=0.0)


@pytest.fixture
async def sim() -> AsyncIterator[DeribitSim]:
    async with start_deribit_sim(port=0, seed=5) as running:
        yield running


@pytest.fixture
async def venue(sim: DeribitSim) -> AsyncIterator[CcxtVenue]:
    cfg = VenueConfig(name="deribit-sim", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                      api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                      sim_base_url=sim.base_url)
    connector = CcxtVenue("deribit-sim", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[PERP])
    try:
        yield connector
    finally:
        await connector.close()


async def test_an_order_is_placed_under_our_label_and_found_by_it_with_its_fills(
        sim: DeribitSim, venue: CcxtVenue) -> None:
    await venue.load_markets()
    buy = intent("hgd21x1")
    placed = await venue.create_order(buy, Decimal(30), None)
    assert placed.client_order_id == "hgd21x1"
    assert [o.label for o in sim.venue.orders.values()] == ["hgd21x1"]  # ccxt sent it as the label
    found = await venue.fetch_order(PERP, "hgd21x1")
    assert found is not None
    assert (found.client_order_id, found.status, found.filled) == ("hgd21x1", OrderStatus.FILLED, Decimal(300))
    assert found.venue_order_id == placed.venue_order_id
    assert found.fills and {f.client_order_id for f in found.fills} == {"hgd21x1"}
    assert sum(f.amount for f in found.fills) == Decimal(300)
    listed = await venue.fetch_fills_since(None)  # the account's trades carry the label too
    assert [f.client_order_id for f in listed] == [f.client_order_id for f in found.fills]
    assert await venue.fetch_order(PERP, "hgd21x2") is None


async def test_two_orders_under_one_label_are_reported_as_a_duplicate(sim: DeribitSim, venue: CcxtVenue) -> None:
    await venue.load_markets()
    buy = intent("hgd21x3")
    await venue.create_order(buy, Decimal(30), None)
    with pytest.raises(herr.DuplicateOrder):  # the send's own check sees the second order
        await venue.create_order(buy, Decimal(30), None)  # as aiohttp's re-send of a dropped GET does
    with pytest.raises(herr.DuplicateOrder) as info:
        await venue.fetch_order(PERP, "hgd21x3")
    assert info.value.client_order_id == "hgd21x3"
    assert len(info.value.venue_order_ids) == 2
    assert "hgd21x3" in str(info.value)
    with pytest.raises(herr.DuplicateOrder):  # a cancel by client id must not pick one of them
        await venue.cancel_order(PERP, "hgd21x3")


async def test_an_order_aiohttp_resent_on_a_dropped_connection_is_seen_as_a_duplicate(
        sim: DeribitSim, venue: CcxtVenue) -> None:
    """The venue executes the GET order request and drops the keep-alive connection unanswered;
    aiohttp re-sends it once, so one create_order places two orders under our label."""
    await venue.load_markets()  # leaves a keep-alive connection in the pool
    sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
    # ccxt's answer is one filled order; the connector's check after the send finds the second
    with pytest.raises(herr.DuplicateOrder, match="hgd21x4"):
        await venue.create_order(intent("hgd21x4"), Decimal(30), None)
    assert sim.venue.positions["BTC-PERPETUAL"].size == 60
    with pytest.raises(herr.DuplicateOrder, match="hgd21x4"):
        await venue.fetch_order(PERP, "hgd21x4")


async def test_a_failed_check_after_the_send_leaves_the_outcome_to_the_look_up(
        sim: DeribitSim, venue: CcxtVenue, monkeypatch: pytest.MonkeyPatch) -> None:
    await venue.load_markets()
    call = venue.client.call

    async def label_lookup_fails(operation: Any, method: str, *args: Any) -> Any:
        if method == "privateGetGetOrderStateByLabel":
            raise herr.TransientVenueError("502 on the look-up")
        return await call(operation, method, *args)

    monkeypatch.setattr(venue.client, "call", label_lookup_fails)
    with pytest.raises(herr.OrderOutcomeUnknown, match="hgd21x5"):
        await venue.create_order(intent("hgd21x5"), Decimal(30), None)
    assert [o.label for o in sim.venue.orders.values()] == ["hgd21x5"]  # it was placed once


async def test_a_resting_order_is_cancelled_by_its_label(sim: DeribitSim, venue: CcxtVenue) -> None:
    await venue.load_markets()
    low = float(sim.venue.index("BTC")) // 2
    await venue.exchange.create_order(PERP, "limit", "buy", 50, low, {"label": "hgd21x6"})
    [listed] = await venue.fetch_open_orders(PERP)
    assert listed.client_order_id == "hgd21x6"
    cancelled = await venue.cancel_order(PERP, "hgd21x6")
    assert cancelled is not None
    assert (cancelled.client_order_id, cancelled.status) == ("hgd21x6", OrderStatus.CANCELED)
    assert await venue.fetch_open_orders(PERP) == []


async def test_a_post_only_child_rests_as_such_and_a_crossing_one_is_refused(sim: DeribitSim,
                                                                             venue: CcxtVenue) -> None:
    await venue.load_markets()
    bids, asks = sim.venue.book(sim.venue.instrument("BTC-PERPETUAL"))
    post_only = replace(intent("hgd21x7c1"), order_type=OrderType.POST_ONLY)
    with pytest.raises(herr.PostOnlyRejected):  # sent with reject_post_only: 11054, not repriced by Deribit
        await venue.create_order(post_only, Decimal(30), asks[0][0])
    assert [o for o in sim.venue.orders.values() if o.label == "hgd21x7c1"] == []
    resting = replace(post_only, client_order_id="hgd21x7c2")
    placed = await venue.create_order(resting, Decimal(30), bids[0][0])
    assert placed.status is OrderStatus.SUBMITTED
    [order] = [o for o in sim.venue.orders.values() if o.label == "hgd21x7c2"]
    assert order.post_only and order.reject_post_only
