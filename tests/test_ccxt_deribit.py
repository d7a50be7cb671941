"""The ccxt connector on Deribit: client order ids are labels, which ccxt does not parse back and
Deribit does not keep unique. Driven through the real, unmodified ``ccxt.deribit`` against the
Deribit-protocol simulator on 127.0.0.1 (nothing leaves the machine)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from hedgerd import errors as herr
from hedgerd.clock import RealClock
from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.connectors.ccxt.convert import client_order_id_of, order_to_report, trade_to_fill
from hedgerd.connectors.ccxt.venue import CcxtVenue
from hedgerd.exchange_sim.deribit import DeribitConfig, DeribitSim, DeribitSimConfig, start_deribit_sim
from hedgerd.exchange_sim.model import EngineConfig
from hedgerd.instruments import Instrument, InstrumentKind
from hedgerd.ledger import InventoryLedger
from hedgerd.models import (
    Fill,
    HedgeIntent,
    MarketInfo,
    OptionQuote,
    OrderReport,
    OrderStatus,
    OrderType,
    PriceUpdate,
    Side,
)
from hedgerd.risk.cost import HedgeCost, add_funding
from tests.test_engine import eventually

PERP = "BTC/USD:BTC"
#: As the connector loads it: ccxt's USD amounts (step and minimum 10) counted in 10-USD contracts.
PERP_MARKET = MarketInfo(symbol=PERP, base="BTC", quote="USD", amount_step=Decimal(1), price_step=Decimal("0.5"),
                         min_amount=Decimal(1), contract_size=Decimal(10),
                         instrument=Instrument(symbol=PERP, kind=InstrumentKind.INVERSE, underlying="BTC", quote="USD",
                                               settle="BTC", contract_size=Decimal(10)))

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
    # 30 USD of the perpetual are 3 contracts of 10 USD
    report = order_to_report("deribit", DERIBIT_ORDER, PERP_MARKET, 0.0, amount_unit="contract_size")
    assert (report.client_order_id, report.status, report.filled) == ("hgd12x1", OrderStatus.FILLED, Decimal(3))
    fill = trade_to_fill("deribit", DERIBIT_TRADE, {PERP: PERP_MARKET}, 0.0, amount_unit="contract_size")
    assert (fill.client_order_id, fill.trade_id, fill.amount) == ("hgd12x1", f"{PERP}#77", Decimal(3))


def intent(cid: str) -> HedgeIntent:
    return HedgeIntent(intent_id=1, client_order_id=cid, underlying="BTC", venue="deribit-sim", symbol=PERP,
                       side=Side.BUY, amount=Decimal("0.005"), created_at=0.0)


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
    placed = await venue.create_order(buy, Decimal(3), None)  # contracts
    assert placed.client_order_id == "hgd21x1"
    assert [o.label for o in sim.venue.orders.values()] == ["hgd21x1"]  # ccxt sent it as the label
    assert [o.amount for o in sim.venue.orders.values()] == [Decimal(30)]  # 3 contracts are 30 USD
    found = await venue.fetch_order(PERP, "hgd21x1")
    assert found is not None
    assert (found.client_order_id, found.status, found.filled) == ("hgd21x1", OrderStatus.FILLED, Decimal(3))
    assert found.venue_order_id == placed.venue_order_id
    assert found.fills and {f.client_order_id for f in found.fills} == {"hgd21x1"}
    assert sum(f.amount for f in found.fills) == Decimal(3)
    listed = await venue.fetch_fills_since(None)  # the account's trades carry the label too
    assert [f.client_order_id for f in listed] == [f.client_order_id for f in found.fills]
    assert await venue.fetch_order(PERP, "hgd21x2") is None


async def test_two_orders_under_one_label_are_reported_as_a_duplicate(sim: DeribitSim, venue: CcxtVenue) -> None:
    await venue.load_markets()
    buy = intent("hgd21x3")
    await venue.create_order(buy, Decimal(3), None)
    with pytest.raises(herr.DuplicateOrder):  # the send's own check sees the second order
        await venue.create_order(buy, Decimal(3), None)  # as aiohttp's re-send of a dropped GET does
    with pytest.raises(herr.DuplicateOrder) as info:
        await venue.fetch_order(PERP, "hgd21x3")
    assert info.value.client_order_id == "hgd21x3"
    assert len(info.value.venue_order_ids) == 2
    assert "hgd21x3" in str(info.value)
    with pytest.raises(herr.DuplicateOrder):  # a cancel by client id must not pick one of them
        await venue.cancel_order(PERP, "hgd21x3")


async def test_an_order_whose_connection_is_dropped_unanswered_is_placed_once_and_found_by_its_label(
        sim: DeribitSim, venue: CcxtVenue) -> None:
    """The venue executes the GET order request and drops the keep-alive connection unanswered;
    aiohttp would re-send it once by itself (two orders under our label), the connector's
    session does not: the outcome is unknown, and the look-up by label finds the one order."""
    await venue.load_markets()  # leaves a keep-alive connection in the pool
    sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
    with pytest.raises(herr.OrderOutcomeUnknown):
        await venue.create_order(intent("hgd21x4"), Decimal(3), None)
    assert sim.venue.positions["BTC-PERPETUAL"].size == 30
    found = await venue.fetch_order(PERP, "hgd21x4")
    assert found is not None and found.filled == 3


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
        await venue.create_order(intent("hgd21x5"), Decimal(3), None)
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


# --------------------------------------------------------------------------- options inventory ('*')
class QuoteSink:
    """Records what the connector streams."""

    def __init__(self) -> None:
        self.fills: list[Fill] = []
        self.prices: list[PriceUpdate] = []
        self.quotes: list[OptionQuote] = []
        self.errors: list[tuple[str, str]] = []

    async def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        self.fills.extend(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        self.prices.append(price)

    async def on_option_quote(self, quote: OptionQuote) -> None:
        self.quotes.append(quote)

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        return None

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        self.errors.append((kind, detail))


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_markets_carry_their_instrument_and_count_in_contracts(venue: CcxtVenue) -> None:
    markets = await venue.load_markets()
    perp = markets[PERP]
    assert perp.instrument is not None and perp.instrument.kind is InstrumentKind.INVERSE
    assert (perp.contract_size, perp.amount_step, perp.min_amount) == (Decimal(10), Decimal(1), Decimal(1))
    option = next(m for m in markets.values() if m.instrument is not None
                  and m.instrument.kind is InstrumentKind.OPTION and m.base == "BTC")
    assert option.instrument is not None and option.instrument.coin_settled
    assert (option.contract_size, option.amount_step, option.min_amount) == (Decimal(1), Decimal("0.1"), Decimal("0.1"))


async def test_inventory_of_every_instrument_streams_option_fills_in_contracts_and_quotes(sim: DeribitSim) -> None:
    cfg = VenueConfig(name="deribit-options", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="deribit",
                      api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                      sim_base_url=sim.base_url)
    inventory = CcxtVenue("deribit-options", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[],
                          underlyings=["BTC"], exclude_symbols=[PERP], own_client_id_prefix="hgd",
                          stream_orders=False, stream_positions=False,
                          resubscribe_delay=0.1)
    sink = QuoteSink()
    try:
        await inventory.start(sink)
        served = set(inventory.symbols)
        btc_options = {i.name for i in sim.venue.instruments.values() if i.is_option and i.currency == "BTC"}
        assert len(served) == len(btc_options) + 2  # every BTC option and dated future, not the hedged perpetual
        assert PERP not in served and not any(s.startswith("ETH/") for s in served)
        option = next(s for s in sorted(served) if s.endswith("-C"))
        name = inventory.exchange.market(option)["id"]
        await until(lambda: any(q.symbol == option for q in sink.quotes))
        quote = next(q for q in sink.quotes if q.symbol == option)
        ticker = sim.venue.option(sim.venue.instruments[name])
        assert 0 < quote.mark_iv < 2 and abs(quote.mark_iv - ticker.iv) < 0.01  # a fraction, not percent
        assert quote.underlying_price > 0 and quote.greeks is not None
        assert abs(quote.greeks.delta - ticker.coin_delta) < 0.01  # premium-adjusted, as the account's delta
        assert not any(p.symbol == option for p in sink.prices)  # an option's quote is not a bid/ask

        trade = sim.venue.client_fill(name, "sell", Decimal("1.3"))  # the desk sells 1.3 BTC of calls
        assert trade is not None
        await until(lambda: any(f.symbol == option for f in sink.fills))
        [fill] = [f for f in sink.fills if f.symbol == option]
        assert (fill.side, fill.amount, fill.client_order_id) == (Side.SELL, Decimal("1.3"), None)
        positions = await inventory.fetch_positions()
        assert positions[option] == Decimal("-1.3")  # contracts of 1 BTC
        equity = await inventory.fetch_collateral()
        summary = sim.venue.summary("BTC")
        assert abs(equity["BTC"] - summary["equity"]) < Decimal("0.001")
        assert not [e for e in sink.errors if e[0] == "malformed"], sink.errors
    finally:
        await inventory.close()


async def test_perpetual_positions_and_fills_count_contracts_of_10_usd(sim: DeribitSim, venue: CcxtVenue) -> None:
    await venue.load_markets()
    await venue.create_order(intent("hgd21x7"), Decimal(7), None)
    assert sim.venue.positions["BTC-PERPETUAL"].size == Decimal(70)  # USD at the venue
    assert (await venue.fetch_positions())[PERP] == Decimal(7)
    [fill] = await venue.fetch_fills_since(0.0)
    assert fill.amount == Decimal(7)


async def test_an_options_book_is_listed_by_currency_in_one_request(sim: DeribitSim,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = VenueConfig(name="deribit-options", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="deribit",
                      api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                      sim_base_url=sim.base_url)
    inventory = CcxtVenue("deribit-options", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[],
                          underlyings=["BTC"], exclude_symbols=[PERP], own_client_id_prefix="hgd")
    try:
        await inventory.load_markets()
        options = [i.name for i in sim.venue.instruments.values() if i.is_option and i.currency == "BTC"][:2]
        for name in options:
            assert sim.venue.client_fill(name, "buy", Decimal("0.5")) is not None
        sim.venue.place("buy", "BTC-PERPETUAL", Decimal(100), "market", None, label="hgd9x1")  # the hedge's
        calls: list[str] = []
        call = inventory.client.call

        async def counted(operation: Any, method: str, *args: Any) -> Any:
            calls.append(method)
            return await call(operation, method, *args)

        monkeypatch.setattr(inventory.client, "call", counted)
        fills = await inventory.fetch_fills_since(0.0)
        assert sorted(inventory.exchange.market(f.symbol)["id"] for f in fills) == sorted(options)
        assert all(f.amount == Decimal("0.5") and f.side is Side.BUY for f in fills)
        assert calls == ["fetch_my_trades"]  # one listing for the BTC book, not one per instrument
    finally:
        await inventory.close()


async def test_a_trade_on_one_instrument_catches_up_that_instrument_only(sim: DeribitSim,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Deribit's user.trades channel carries every instrument's trades, so each symbol's watch wakes on
    each trade, most of them with nothing of theirs: only the one with a trade backfills after it."""
    cfg = VenueConfig(name="deribit-options", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="deribit",
                      api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                      sim_base_url=sim.base_url)
    inventory = CcxtVenue("deribit-options", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[],
                          underlyings=["BTC"], exclude_symbols=[PERP], own_client_id_prefix="hgd",
                          stream_orders=False, stream_positions=False, resubscribe_delay=0.1,
                          catch_up_delay=0.3, backfill_when_live=True)
    sink = QuoteSink()
    listed: list[str | None] = []
    call = inventory.client.call

    async def counted(operation: Any, method: str, *args: Any) -> Any:
        if method == "fetch_my_trades":
            listed.append(args[0])
        return await call(operation, method, *args)

    monkeypatch.setattr(inventory.client, "call", counted)
    try:
        await inventory.start(sink)
        name = next(i.name for i in sim.venue.instruments.values() if i.is_option and i.currency == "BTC")
        symbol = next(s for s in inventory.symbols if inventory.exchange.market(s)["id"] == name)
        for fills in (1, 2):  # a first message proves each subscription live: one confirming backfill each
            sim.venue.client_fill(name, "buy", Decimal("0.2"))
            await until(lambda: len(sink.fills) == fills)  # noqa: B023 (awaited in the same iteration)
            seen = -1
            while seen != len(listed):  # the resync and confirm backfills, rate-limited by ccxt, done
                seen = len(listed)
                await asyncio.sleep(1.5)
        listed.clear()
        sim.venue.client_fill(name, "sell", Decimal("0.3"))
        await until(lambda: len(sink.fills) == 3)
        await asyncio.sleep(1.0)  # past the catch-up delay of every symbol's stream
        assert listed and set(listed) == {symbol}, listed
    finally:
        await inventory.close()


async def test_funding_is_read_from_deribits_session_settlements_and_valued_at_their_index(tmp_path: Path) -> None:
    config = DeribitSimConfig(engine=EngineConfig(seed=5), venue=DeribitConfig(settlement_interval=1.0))
    async with start_deribit_sim(config=config) as sim:
        cfg = VenueConfig(name="deribit-sim", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                          api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                          sim_base_url=sim.base_url)
        venue = CcxtVenue("deribit-sim", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[PERP])
        try:
            await venue.load_markets()
            await venue.create_order(intent("hgd31x1"), Decimal(300), None)  # long 300 contracts: 3 000 USD of the perp
            sim.venue.premium["BTC"] = 0.003  # beyond the dead zone: the long pays 0.25 % per 8 h
            await eventually(lambda: sum(1 for r in sim.settlements.records if r["funding"]) >= 2,
                             "two settlements with funding")
            payments = await venue.fetch_funding_since(None)
            records = [r for r in sim.settlements.records if r["funding"]]
            assert [(p.ts, p.amount, p.price) for p in payments][:2] == [
                (r["timestamp"] / 1000, Decimal(str(r["funding"])), Decimal(str(r["index_price"])))
                for r in records[:2]]
            assert all(p.amount < 0 and p.currency == "BTC" and p.symbol == PERP for p in payments)
            assert payments[0].payment_id == f"{PERP}@{records[0]['timestamp']}"  # Deribit gives no id
            later = await venue.fetch_funding_since(payments[1].ts)  # paged back to since, no further
            assert later[0] == payments[1]
            cost = HedgeCost()
            add_funding(cost, payments[0], lambda currency, quote: None, max_age=60)
            assert cost.funding == -payments[0].amount * payments[0].price > 0  # paid, valued at the index
            async with InventoryLedger(tmp_path / "ledger.sqlite") as ledger:
                assert await ledger.costs.record_funding(payments) == payments
                assert await ledger.costs.record_funding(later) == [p for p in later if p not in payments]
                assert ledger.costs.funding_payments()[0].price == payments[0].price
        finally:
            await venue.close()


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
