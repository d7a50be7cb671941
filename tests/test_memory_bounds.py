"""Every per-fill, per-order and per-trade-id structure stays within its bound (by size, not by time).

Each test drives more fills or orders through a component than the structure may hold and checks
its size after every step (small bounds are patched in where the real ones would make the test
slow; the patched constant is the one the component reads).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from hedgerd import exchange_sim
from hedgerd.clock import RealClock
from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import CCXT_CACHE_LIMITS, CcxtVenue, create_exchange
from hedgerd.connectors.ccxt import client as ccxt_client
from hedgerd.connectors.ccxt import fills as ccxt_fills
from hedgerd.ledger import InventoryLedger
from hedgerd.models import Fill, OrderStatus, Side
from tests.test_ccxt_venue import PERP, SPOT, FakeExchange, RecordingSink, make_venue, trade, wait_for


async def test_connector_delivered_ids_and_client_ids_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_fills, "DELIVERED_IDS_KEPT", 50)
    monkeypatch.setattr(ccxt_client, "CLIENT_IDS_KEPT", 30)
    exchange = FakeExchange()
    venue = make_venue(exchange, resolve_client_ids=True)
    exchange.results["fetch_order"] = lambda order_id, symbol: {"clientOrderId": f"hgdabcx{order_id}"}
    sink = RecordingSink()
    venue.client.sink = sink
    await venue.load_markets()
    for i in range(400):
        assert await venue.fills.deliver_trades([trade(str(1_000 + i), order=str(5_000 + i))], symbol=PERP)
        assert len(venue.fills._delivered) <= 50
        assert len(venue.client.cid_by_order_id) <= 30
    assert len(sink.fills) == 400
    # the latest ids are the ones remembered: a repeat of one is not delivered again
    assert await venue.fills.deliver_trades([trade("1399", order="5399")], symbol=PERP)
    assert len(sink.fills) == 400


async def test_connector_malformed_reports_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_client, "MALFORMED_KEPT", 20)
    venue = make_venue(FakeExchange())
    venue.client.sink = RecordingSink()
    await venue.load_markets()
    for i in range(200):
        await venue.fills.deliver_trades([trade(str(i), amount="bad")], symbol=PERP)
        assert len(venue.client._malformed_reported) <= 20


async def test_ccxt_cache_limits_are_set_and_a_config_option_wins() -> None:
    cfg = VenueConfig(name="bn", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="binanceusdm",
                      options={"ordersLimit": 50})
    exchange = create_exchange(cfg)
    try:
        assert exchange.options["tradesLimit"] == CCXT_CACHE_LIMITS["tradesLimit"]
        assert exchange.options["OHLCVLimit"] == CCXT_CACHE_LIMITS["OHLCVLimit"]
        assert exchange.options["ordersLimit"] == 50
    finally:
        await exchange.close()


async def test_ccxt_trade_cache_stays_within_trades_limit_while_every_fill_is_delivered() -> None:
    async with exchange_sim.start_venue_sim(port=0, seed=4) as sim:
        cfg = VenueConfig(name="binance", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="binance",
                          api_key=SecretStr(sim.config.api_key), secret=SecretStr(sim.config.secret),
                          urls={"api": sim.ccxt_urls()}, options={**exchange_sim.ccxt_options(), "tradesLimit": 10})
        exchange = create_exchange(cfg, timeout=5.0)
        exchange.rateLimit = 5
        venue = CcxtVenue("binance", exchange, RealClock(), symbols=(SPOT,), own_client_id_prefix="hgd",
                          resolve_client_ids=False, stream_orders=False, stream_positions=False,
                          resubscribe_delay=0.1, backoff_initial=0.05, backoff_max=0.2, poll_interval=0.2)
        sink = RecordingSink()
        try:
            await venue.start(sink)
            await wait_for(lambda: venue.connected)
            await asyncio.sleep(0.3)  # user stream subscribed
            traded = []
            for i in range(60):
                fill = sim.engine.client_fill("BTCUSDT", "BUY" if i % 2 else "SELL", Decimal("0.01"))
                assert fill is not None
                traded.append(f"{SPOT}#{fill.trade_id}")
                await asyncio.sleep(0.01)
                cache = getattr(exchange, "myTrades", None)
                assert cache is None or len(cache) <= 10
            await wait_for(lambda: set(traded) <= {f.trade_id for f in sink.fills}, 10.0)
            assert exchange.myTrades is not None and len(exchange.myTrades) <= 10
        finally:
            await venue.close()


async def test_ledger_per_order_caches_stay_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hedgerd.ledger import caches
    from hedgerd.ledger import view as view_module

    bound = caches.CACHE_SIZE
    monkeypatch.setattr(view_module, "_RECENT_OWN_FILLS", 8)
    ledger = InventoryLedger(tmp_path / "ledger.sqlite")
    await ledger.open()
    try:
        first = ""
        for i in range(bound + 60):
            intent = await ledger.new_intent(underlying="BTC", venue="perp", symbol=PERP, side=Side.SELL,
                                             amount=Decimal("0.1"), created_at=float(i))
            first = first or intent.client_order_id
            fill = Fill(venue="perp", trade_id=f"h{i}", symbol=PERP, side=Side.SELL, amount=Decimal("0.1"),
                        price=Decimal(60_000), fee=Decimal(0), fee_currency="USDT", ts=float(i),
                        client_order_id=intent.client_order_id)
            assert await ledger.record_fill(fill) is True
            await ledger.record_order_state(intent.client_order_id, OrderStatus.FILLED, Decimal("0.1"))
            assert ledger.filled_for(intent.client_order_id) == Decimal("0.1")
            for cache in (ledger._view.filled_cache, ledger._view.state_cache, ledger._journal._w_order_fills):
                assert len(cache) <= bound
            assert len(ledger._view.recent_own_fills) <= 8
            assert len(ledger.open_intents()) <= 1
        assert ledger.fill_count == bound + 60
        # an order forgotten by the caches is read back from the journal
        assert ledger.filled_for(first) == Decimal("0.1")
        assert ledger.order_state(first) == (OrderStatus.FILLED, Decimal("0.1"))
    finally:
        await ledger.close()


async def test_paper_venues_keep_a_bounded_fill_history_and_order_book() -> None:
    from hedgerd.connectors import paper
    from tests.test_sim import FakeClock, build, intent, place

    clock = FakeClock()
    _, perp = build(clock, perp={"requests_per_second": 1_000_000.0})
    for i in range(paper.HISTORY_LIMIT + 50):
        report = await place(perp, intent(Side.BUY if i % 2 else Side.SELL, "0.01"))
        assert report.status is OrderStatus.FILLED
        assert len(perp._orders) <= paper.ORDER_LIMIT
        assert len(await perp.fetch_fills_since(None)) <= paper.HISTORY_LIMIT
        clock.skip(0.01)
    assert len(perp._orders) == paper.ORDER_LIMIT and len(perp._history) == paper.HISTORY_LIMIT
    assert (await perp.fetch_order(PERP, report.client_order_id)) == report  # the latest are the ones kept


async def test_ledger_page_cache_is_bounded_below_what_a_long_run_writes(tmp_path: Path) -> None:
    from hedgerd.ledger import schema

    ledger = InventoryLedger(tmp_path / "ledger.sqlite")
    await ledger.open()
    try:
        conn = ledger._journal.conn
        assert conn is not None
        (cache,) = conn.execute("PRAGMA cache_size").fetchone()
        assert cache == -schema.PAGE_CACHE_KIB <= -1_000  # KiB: at least 1 MiB for the hot pages
        # a day at 50 fills/s writes far more pages than the cache holds: its bound is what is kept
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        assert schema.PAGE_CACHE_KIB * 1024 // page_size < 50 * 86_400 // 10
    finally:
        await ledger.close()


def test_cost_book_keeps_a_bounded_number_of_decision_quotes() -> None:
    from hedgerd import cost_book
    from hedgerd.metrics import Metrics
    from hedgerd.models import HedgeIntent

    book = cost_book.CostBook(Metrics(), {})
    bound = cost_book._MAX_DECISIONS
    for i in range(bound + 50):
        intent = HedgeIntent(intent_id=i, client_order_id=f"hgd0000000ax{i}", underlying="BTC", venue="perp",
                             symbol=PERP, side=Side.SELL, amount=Decimal("0.1"), created_at=float(i),
                             decision_mid=Decimal(60_000), decision_half_spread=Decimal(1))
        book.decided([intent])
        assert len(book._decisions) <= bound
    assert len(book._decisions) == bound
    assert f"hgd0000000ax{bound + 49}" in book._decisions and "hgd0000000ax0" not in book._decisions  # newest kept
