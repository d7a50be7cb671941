"""The Deribit-protocol simulator, driven by the real, unmodified ``ccxt.deribit`` (async).

Every test starts its own simulator on 127.0.0.1 with a free port; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest
from pydantic import SecretStr

from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import create_exchange
from hedgerd.connectors.ccxt.urls import deribit_ccxt_urls, sim_urls
from hedgerd.exchange_sim.binance.config import SimConfig
from hedgerd.exchange_sim.binance.server import run_server
from hedgerd.exchange_sim.deribit import DeribitError, DeribitSim, DeribitSimConfig, DeribitVenue, start_deribit_sim
from hedgerd.exchange_sim.deribit.flow import OptionFlow
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import EngineConfig

PERP = "BTC/USD:BTC"


@contextlib.asynccontextmanager
async def deribit(sim: DeribitSim, **overrides: Any) -> AsyncIterator[Any]:
    """A real ccxt.deribit pointed at ``sim``, closed afterwards."""
    ex = ccxt_async.deribit({**sim.ccxt_config(), **overrides})
    try:
        yield ex
    finally:
        await ex.close()


@pytest.fixture
async def sim() -> AsyncIterator[DeribitSim]:
    async with start_deribit_sim(port=0, seed=3) as running:
        yield running


def first_option(markets: dict[str, Any], option_type: str = "call") -> dict[str, Any]:
    return next(m for m in markets.values() if m["option"] and m["optionType"] == option_type)


async def test_urls_table_routes_rest_and_ws() -> None:
    urls = deribit_ccxt_urls("http://127.0.0.1:9/")
    assert urls == {"rest": "http://127.0.0.1:9", "ws": "ws://127.0.0.1:9/ws/api/v2"}


async def test_load_markets_lists_inverse_perpetual_futures_and_options(sim: DeribitSim) -> None:
    async with deribit(sim) as ex:
        markets = await ex.load_markets()
    perp = markets[PERP]
    assert perp["id"] == "BTC-PERPETUAL"
    assert perp["swap"] and perp["inverse"] and not perp["linear"]
    assert perp["contractSize"] == 10
    assert perp["settle"] == "BTC"
    assert perp["limits"]["amount"]["min"] == 10
    assert any(m["future"] and m["base"] == "BTC" for m in markets.values())
    option = first_option(markets)
    assert option["strike"] > 0
    assert option["expiry"] > sim.engine.now()
    assert option["optionType"] == "call"
    assert option["contractSize"] == 1
    assert option["id"].endswith("-C") and option["id"].startswith("BTC-")
    assert markets["ETH/USD:ETH"]["contractSize"] == 1


async def test_fetch_ticker_has_marks_iv_and_greeks(sim: DeribitSim) -> None:
    async with deribit(sim) as ex:
        markets = await ex.load_markets()
        option = first_option(markets)
        opt_ticker = await ex.fetch_ticker(option["symbol"])
        perp_ticker = await ex.fetch_ticker(PERP)
    info = opt_ticker["info"]
    assert 0 < opt_ticker["markPrice"] < 1  # coin-priced
    assert info["mark_iv"] > 0
    assert info["underlying_price"] > 0 and info["index_price"] > 0
    assert set(info["greeks"]) >= {"delta", "gamma", "vega", "theta"}
    assert 0 < info["greeks"]["delta"] < 1  # a call
    assert opt_ticker["bid"] < opt_ticker["markPrice"] < opt_ticker["ask"]
    assert perp_ticker["bid"] < perp_ticker["markPrice"] < perp_ticker["ask"]
    # the index is the shared engine's mid, which keeps moving (GBM) between the two reads
    assert perp_ticker["indexPrice"] == pytest.approx(float(sim.venue.index("BTC")), rel=1e-3)
    # the perp marks at the index plus a premium of a few hundredths of a percent
    assert perp_ticker["markPrice"] == pytest.approx(perp_ticker["indexPrice"], rel=0.01)
    assert perp_ticker["info"]["funding_8h"] == sim.venue.funding_rate("BTC")


async def test_order_lifecycle_by_label(sim: DeribitSim) -> None:
    async with deribit(sim) as ex:
        await ex.load_markets()
        low = float(sim.venue.index("BTC")) // 2
        order = await ex.create_order(PERP, "limit", "buy", 50, low, params={"label": "hedge-7"})
        assert order["status"] == "open"
        assert order["clientOrderId"] is None  # ccxt's Deribit parser keeps the label in info
        assert order["info"]["label"] == "hedge-7"
        fetched = await ex.fetch_order(order["id"])
        assert fetched["status"] == "open" and fetched["amount"] == 50
        by_label = await ex.privateGetGetOrderStateByLabel({"currency": "BTC", "label": "hedge-7"})
        assert [o["order_id"] for o in by_label["result"]] == [order["id"]]
        assert [o["id"] for o in await ex.fetch_open_orders(PERP)] == [order["id"]]
        cancelled = await ex.cancel_order(order["id"])
        assert cancelled["status"] == "canceled"
        assert await ex.fetch_open_orders(PERP) == []
        with pytest.raises(ccxt_async.InvalidOrder):
            await ex.cancel_order(order["id"])  # 11044 not_open_order
        with pytest.raises(ccxt_async.OrderNotFound):
            await ex.fetch_order("999999")
        filled = await ex.create_order(PERP, "market", "sell", 20, params={"label": "hedge-8"})
        closed = await ex.fetch_closed_orders(PERP)
        # ccxt sorts what the venue sends newest first into oldest first
        assert [(o["id"], o["status"]) for o in closed] == [(order["id"], "canceled"), (filled["id"], "closed")]


async def test_fill_shows_in_trades_positions_and_account() -> None:
    # A frozen clock holds the mid and the options' time to expiry, so the account summary
    # and the positions read in separate requests price the book alike.
    frozen = MatchingEngine(EngineConfig(seed=4), now_ms=lambda: 1_796_000_000_000)
    async with start_deribit_sim(engine=frozen) as sim, deribit(sim) as ex:
        markets = await ex.load_markets()
        ticker = await ex.fetch_ticker(PERP)
        order = await ex.create_order(PERP, "market", "buy", 1000, params={"label": "h-perp"})
        assert order["status"] == "closed" and order["filled"] == 1000
        assert order["average"] == ticker["ask"]  # took the best ask
        option = first_option(markets, "put")
        await ex.create_order(option["symbol"], "market", "buy", 0.5, params={"label": "h-opt"})
        trades = await ex.fetch_my_trades(PERP)
        positions = {p["symbol"]: p for p in await ex.fetch_positions()}
        summary = (await ex.privateGetGetAccountSummary({"currency": "BTC"}))["result"]
    assert [t["order"] for t in trades] == [order["id"]]
    trade = trades[0]
    assert trade["amount"] == 1000 and trade["info"]["label"] == "h-perp"
    assert trade["fee"]["currency"] == "BTC"
    assert trade["fee"]["cost"] == pytest.approx(0.0005 * 1000 / ticker["ask"], rel=1e-6)
    perp = positions[PERP]
    assert perp["info"]["size"] == 1000  # USD
    assert perp["side"] == "long"
    assert perp["entryPrice"] == ticker["ask"]
    assert perp["info"]["size_currency"] == pytest.approx(1000 / perp["info"]["mark_price"], rel=1e-9)
    put = positions[option["symbol"]]
    assert put["info"]["size"] == 0.5  # coin
    assert put["info"]["delta"] < 0
    assert summary["delta_total"] == pytest.approx(perp["info"]["delta"] + put["info"]["delta"], abs=1e-9)
    assert summary["options_delta"] == pytest.approx(put["info"]["delta"], abs=1e-9)
    assert summary["equity"] < 100  # fees and the spread paid


async def test_inverse_pnl_and_option_premium_settle_in_coin(sim: DeribitSim) -> None:
    venue = sim.venue
    sim.engine.set_mid("BTCUSDT", Decimal(60000))
    before = venue.balances["BTC"]
    _, buy_fills = venue.place("buy", "BTC-PERPETUAL", Decimal(6000), "market", None)
    sim.engine.set_mid("BTCUSDT", Decimal(66000))
    _, sell_fills = venue.place("sell", "BTC-PERPETUAL", Decimal(6000), "market", None)
    entry, exit_ = buy_fills[0].price, sell_fills[0].price
    fees = buy_fills[0].fee + sell_fills[0].fee
    expected = Decimal(6000) * (1 / entry - 1 / exit_)
    assert venue.balances["BTC"] - before == pytest.approx(expected - fees, abs=Decimal("1e-9"))
    assert venue.positions["BTC-PERPETUAL"].size == 0
    name = next(n for n, i in venue.instruments.items() if i.is_option and i.currency == "BTC")
    cash = venue.balances["BTC"]
    _, fills = venue.place("buy", name, Decimal(1), "market", None)
    premium = fills[0].price
    assert fills[0].fee == min(Decimal("0.0003"), Decimal("0.125") * premium).quantize(Decimal("1e-10"))
    assert venue.balances["BTC"] == cash - premium - fills[0].fee


async def test_error_envelopes_become_ccxt_exceptions(sim: DeribitSim) -> None:
    async with deribit(sim) as ex:
        await ex.load_markets()
        index = float(sim.venue.index("BTC"))
        with pytest.raises(ccxt_async.BadRequest):  # -32602: not a multiple of 10 USD
            await ex.privateGetBuy({"instrument_name": "BTC-PERPETUAL", "amount": 15, "type": "market"})
        with pytest.raises(ccxt_async.InsufficientFunds):  # 10009: 2 % of 1e9 USD over 100 BTC
            await ex.create_order(PERP, "limit", "buy", 1_000_000_000, round(index / 2))
        with pytest.raises(ccxt_async.InvalidOrder):  # 11054 post_only_reject
            await ex.create_order(PERP, "limit", "buy", 10, round(index * 1.01),
                                  params={"postOnly": True})
        with pytest.raises(ccxt_async.BadRequest):
            await ex.fetch_ticker("BTC/USD:BTC-991231")  # unknown symbol: ccxt refuses locally
    async with aiohttp.ClientSession() as http, http.get(f"{sim.base_url}/api/v2/public/ticker",
                        params={"instrument_name": "BTC-NOPE"}) as resp:
        body = await resp.json()
    assert resp.status == 400
    assert body["jsonrpc"] == "2.0" and body["error"]["code"] == -32602
    assert body["error"]["data"]["param"] == "instrument_name"


async def test_bad_credentials_are_refused(sim: DeribitSim) -> None:
    async with deribit(sim, secret="wrong") as ex:
        with pytest.raises(ccxt_async.AuthenticationError):
            await ex.fetch_balance({"code": "BTC"})
    async with deribit(sim, apiKey="someone-else") as ex:
        with pytest.raises(ccxt_async.AuthenticationError):
            await ex.fetch_positions()
    base = f"{sim.base_url}/api/v2"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/public/auth", params={
                "grant_type": "client_credentials", "client_id": sim.config.client_id,
                "client_secret": "nope"}) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == 13004
        async with http.get(f"{base}/private/get_positions") as resp:
            assert (await resp.json())["error"]["code"] == 13009


async def test_client_credentials_token_and_refresh(sim: DeribitSim) -> None:
    base = f"{sim.base_url}/api/v2"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/public/auth", params={
                "grant_type": "client_credentials", "client_id": sim.config.client_id,
                "client_secret": sim.config.client_secret}) as resp:
            auth = (await resp.json())["result"]
        assert auth["expires_in"] == sim.config.token_ttl_seconds and auth["token_type"] == "bearer"
        headers = {"Authorization": f"Bearer {auth['access_token']}"}
        async with http.get(f"{base}/private/get_account_summary", params={"currency": "BTC"},
                            headers=headers) as resp:
            assert (await resp.json())["result"]["currency"] == "BTC"
        async with http.get(f"{base}/public/auth", params={
                "grant_type": "refresh_token", "refresh_token": auth["refresh_token"]}) as resp:
            refreshed = (await resp.json())["result"]
        assert refreshed["access_token"] != auth["access_token"]
        async with http.get(f"{base}/public/auth", params={
                "grant_type": "refresh_token", "refresh_token": auth["refresh_token"]}) as resp:
            assert (await resp.json())["error"]["code"] == 13009  # a refresh token is used once


async def test_matching_credits_run_out_with_10028() -> None:
    config = DeribitSimConfig(engine=EngineConfig(seed=2), matching_burst=2, matching_refill=0.001)
    async with start_deribit_sim(config=config) as sim, deribit(sim) as ex:
        await ex.load_markets()
        for _ in range(2):
            await ex.create_order(PERP, "market", "buy", 10)
        with pytest.raises(ccxt_async.DDoSProtection):
            await ex.create_order(PERP, "market", "buy", 10)
        assert len(await ex.fetch_my_trades(PERP)) == 2  # the refused order did not trade


async def test_venue_sim_serves_both_protocols_over_one_market(capsys: pytest.CaptureFixture[str]) -> None:
    stop = asyncio.Event()
    config = SimConfig(port=0, engine=EngineConfig(seed=5))
    server = asyncio.get_running_loop().create_task(
        run_server(config, stop=stop, protocol="both", deribit_port=0))
    try:
        lines: list[str] = []
        for _ in range(100):
            await asyncio.sleep(0.05)
            lines += capsys.readouterr().out.splitlines()
            if len(lines) >= 2:
                break
        binance_url = next(line for line in lines if line.startswith("venue-sim listening")).split()[3]
        deribit_url = next(line for line in lines if "deribit listening" in line).split()[4]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{binance_url}/api/v3/ticker/price", params={"symbol": "BTCUSDT"}) as resp:
                binance_price = float((await resp.json())["price"])
            async with http.get(f"{deribit_url}/api/v2/public/get_index_price",
                                params={"index_name": "btc_usd"}) as resp:
                deribit_index = (await resp.json())["result"]["index_price"]
        assert deribit_index == pytest.approx(binance_price, rel=1e-3)  # one GBM mid, two ticks
    finally:
        stop.set()
        await server
    with pytest.raises(ValueError, match="protocol"):
        await run_server(config, protocol="ftx")


async def test_a_deribit_venue_reaches_the_simulator_through_sim_base_url(sim: DeribitSim) -> None:
    cfg = VenueConfig(name="deribit-sim", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                      api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                      sim_base_url=sim.base_url)
    exchange = create_exchange(cfg)
    try:
        assert exchange.urls["api"] == deribit_ccxt_urls(sim.base_url)
        await exchange.load_markets()
        balance = await exchange.fetch_balance({"code": "BTC"})
        every = await exchange.fetch_balance()  # private/get_account_summaries
    finally:
        await exchange.close()
    assert balance["BTC"]["total"] == 100
    assert (every["BTC"]["total"], every["ETH"]["total"]) == (100, 1000)
    with pytest.raises(ValueError, match="does not speak 'bybit'"):
        sim_urls("bybit", sim.base_url)


def test_perpetual_funding_beyond_the_dead_zone_moves_the_balance() -> None:
    clock = [1_796_000_000_000]
    venue = DeribitVenue(MatchingEngine(EngineConfig(seed=6), now_ms=lambda: clock[0]))
    venue.place("buy", "BTC-PERPETUAL", Decimal(6000), "market", None)
    venue.place("sell", "ETH-PERPETUAL", Decimal(3000), "market", None)
    venue.premium["BTC"] = 0.002  # 0.15 % per 8 h beyond the 0.05 % dead zone
    venue.premium["ETH"] = 0.0004  # inside the dead zone: no funding
    assert venue.funding_rate("BTC") == pytest.approx(0.0015)
    assert venue.funding_rate("ETH") == 0
    btc, eth = venue.balances["BTC"], venue.balances["ETH"]
    mark = venue.mark(venue.instruments["BTC-PERPETUAL"])
    clock[0] += 8 * 3600 * 1000
    venue.accrue_funding(clock[0])
    paid = (Decimal(6000) / mark * Decimal("0.0015")).quantize(Decimal("1e-10"))
    assert btc - venue.balances["BTC"] == pytest.approx(paid, abs=Decimal("1e-12"))  # the long pays
    assert venue.positions["BTC-PERPETUAL"].funding == -(btc - venue.balances["BTC"])
    assert venue.balances["ETH"] == eth
    assert venue.premium["BTC"] != 0.002  # the premium moved on


def test_expired_futures_and_options_deliver_at_the_index() -> None:
    clock = [1_796_000_000_000]
    engine = MatchingEngine(EngineConfig(seed=7), now_ms=lambda: clock[0])
    venue = DeribitVenue(engine)
    weekly = min((i for i in venue.instruments.values() if i.kind == "future" and not i.is_perpetual
                  and i.currency == "BTC"), key=lambda i: i.expiry_ms)
    call = next(i for i in venue.instruments.values() if i.is_option and i.option_type == "call"
                and i.expiry_ms == weekly.expiry_ms and i.currency == "BTC")
    _, future_fills = venue.place("buy", weekly.name, Decimal(1000), "market", None)
    venue.place("buy", call.name, Decimal(2), "market", None)
    resting, _ = venue.place("buy", weekly.name, Decimal(10), "limit", Decimal(1000))
    balance = venue.balances["BTC"]
    assert venue.settle_expired(clock[0]) == []  # nothing has expired yet
    clock[0] = weekly.expiry_ms
    delivery = (call.strike or Decimal(0)) + 3000
    engine.set_mid("BTCUSDT", delivery)
    delivered = venue.settle_expired(clock[0])
    assert weekly.name in delivered and call.name in delivered
    assert venue.delivered[call.name] == delivery
    future_pnl = Decimal(1000) * (1 / future_fills[0].price - 1 / delivery)
    value = Decimal(3000) / delivery
    expected = future_pnl + 2 * value - min(Decimal("0.00015") * 2, Decimal("0.125") * value * 2)
    assert venue.balances["BTC"] - balance == pytest.approx(expected, abs=Decimal("1e-9"))
    assert venue.positions[weekly.name].size == 0 and venue.positions[call.name].size == 0
    assert resting.state == "cancelled" and resting.cancel_reason == "settlement"
    with pytest.raises(DeribitError) as info:
        venue.place("buy", weekly.name, Decimal(10), "market", None)
    assert info.value.code == 10020
    clock[0] += 60_000
    venue.tick()  # later ticks (funding included) keep the delivery and deliver nothing twice
    assert venue.delivered[call.name] == delivery
    assert venue.settle_expired(clock[0]) == []


async def test_an_order_executed_but_unanswered_is_found_by_its_label(sim: DeribitSim) -> None:
    sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "hang", "hang_seconds": 2.0})
    async with deribit(sim, timeout=500) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt_async.RequestTimeout):
            await ex.create_order(PERP, "market", "buy", 30, params={"label": "intent-42"})
        found = (await ex.privateGetGetOrderStateByLabel({"currency": "BTC", "label": "intent-42"}))["result"]
        assert [(o["order_state"], o["filled_amount"]) for o in found] == [("filled", 30)]
        sim.faults.update({"error_5xx_next": 1, "error_5xx_executes": True})
        with pytest.raises(ccxt_async.ExchangeNotAvailable):
            await ex.create_order(PERP, "market", "sell", 30, params={"label": "intent-43"})
        positions = await ex.fetch_positions()
    assert positions == []  # the 503'd sell executed too: flat again
    assert [t.order.label for t in sim.venue.trades] == ["intent-42", "intent-43"]


async def test_a_dropped_order_request_is_resent_by_aiohttp(sim: DeribitSim) -> None:
    """ccxt sends Deribit orders as GET; aiohttp resends an idempotent request once when a
    reused keep-alive connection closes without an answer, so an order the venue executed and
    then lost the connection of is placed twice, under one label. The connector has to guard
    against this (it is no simulator artefact: the real venue closes connections too)."""
    sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
    async with deribit(sim) as ex:
        await ex.load_markets()  # leaves a keep-alive connection in the pool
        order = await ex.create_order(PERP, "market", "buy", 30, params={"label": "intent-44"})
        found = (await ex.privateGetGetOrderStateByLabel({"currency": "BTC", "label": "intent-44"}))["result"]
    assert order["status"] == "closed"
    assert len(found) == 2 and {o["order_state"] for o in found} == {"filled"}
    assert sim.venue.positions["BTC-PERPETUAL"].size == 60


def test_option_client_flow_fills_the_account_as_maker_at_the_touch() -> None:
    clock = [1_796_000_000_000]
    venue = DeribitVenue(MatchingEngine(EngineConfig(seed=8), now_ms=lambda: clock[0]))
    flow = OptionFlow(rate=5.0, mean_size={"BTC": Decimal("0.5")}, currencies=("BTC",), seed=8)
    assert flow.step(venue, clock[0]) == []  # the first step only starts the clock
    clock[0] += 10_000
    fills = flow.step(venue, clock[0])
    assert 20 <= len(fills) <= 80  # Poisson(50)
    for fill in fills:
        inst = fill.order.instrument
        bids, asks = venue.book(inst)
        touch = bids[0][0] if fill.order.direction == "buy" else asks[0][0]
        assert inst.is_option and inst.currency == "BTC"
        assert fill.maker and fill.order.label == "client-flow" and fill.price == touch
        assert fill.amount % inst.min_trade_amount == 0 and fill.amount > 0
    assert {f.order.direction for f in fills} == {"buy", "sell"}
    assert venue.summary("BTC")["options_delta"] != 0


async def test_ccxt_pro_streams_my_trades_orders_and_tickers(sim: DeribitSim) -> None:
    ex = ccxt_pro.deribit(sim.ccxt_config())
    try:
        await ex.load_markets()
        ticker = await asyncio.wait_for(ex.watch_ticker(PERP), 5)
        assert ticker["symbol"] == PERP and ticker["markPrice"] > 0
        trades_task = asyncio.ensure_future(ex.watch_my_trades())
        orders_task = asyncio.ensure_future(ex.watch_orders())
        await asyncio.sleep(0.3)  # both subscriptions are in place before the order
        order = await ex.create_order(PERP, "market", "buy", 40, params={"label": "ws-1"})
        trades = await asyncio.wait_for(trades_task, 5)
        orders = await asyncio.wait_for(orders_task, 5)
    finally:
        await ex.close()
    assert [(t["order"], t["amount"], t["info"]["label"]) for t in trades] == [(order["id"], 40, "ws-1")]
    assert orders[-1]["id"] == order["id"] and orders[-1]["status"] == "closed"


async def test_websocket_auth_heartbeat_and_private_calls(sim: DeribitSim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{sim.port}/ws/api/v2") as ws:
        await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "private/get_positions", "params": {}})
        assert (await ws.receive_json())["error"]["code"] == 13009
        await ws.send_json({"jsonrpc": "2.0", "id": 2, "method": "public/auth", "params": {
            "grant_type": "client_credentials", "client_id": sim.config.client_id, "client_secret": "x"}})
        assert (await ws.receive_json())["error"]["code"] == 13004
        await ws.send_json({"jsonrpc": "2.0", "id": 3, "method": "public/auth", "params": {
            "grant_type": "client_credentials", "client_id": sim.config.client_id,
            "client_secret": sim.config.client_secret}})
        assert "access_token" in (await ws.receive_json())["result"]
        await ws.send_json({"jsonrpc": "2.0", "id": 4, "method": "private/get_positions", "params": {}})
        reply = await ws.receive_json()
        assert reply["id"] == 4 and reply["result"] == []
        await ws.send_json({"jsonrpc": "2.0", "id": 5, "method": "public/set_heartbeat",
                            "params": {"interval": 10}})
        assert (await ws.receive_json())["result"] == "ok"
        started = asyncio.get_running_loop().time()
        beat = await asyncio.wait_for(ws.receive_json(), 15)
        assert beat == {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        assert asyncio.get_running_loop().time() - started >= 9.5  # one interval after set_heartbeat
        await ws.send_json({"jsonrpc": "2.0", "id": 6, "method": "public/test", "params": {}})
        assert (await ws.receive_json())["id"] == 6


async def _authed_ws(http: aiohttp.ClientSession, sim: DeribitSim, channels: list[str]) -> Any:
    ws = await http.ws_connect(f"ws://127.0.0.1:{sim.port}/ws/api/v2")
    await ws.send_json({"jsonrpc": "2.0", "id": 1, "method": "public/auth", "params": {
        "grant_type": "client_credentials", "client_id": sim.config.client_id,
        "client_secret": sim.config.client_secret}})
    assert "access_token" in (await ws.receive_json())["result"]
    await ws.send_json({"jsonrpc": "2.0", "id": 2, "method": "private/subscribe", "params": {"channels": channels}})
    assert (await ws.receive_json())["result"] == channels
    return ws


async def _next_message(ws: Any, channel_prefix: str, seconds: float) -> Any:
    """The next notification on a channel starting with ``channel_prefix`` (None on close or after ``seconds``)."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            return None
        if msg.type != aiohttp.WSMsgType.TEXT:
            return None
        body = msg.json()
        if str(body.get("params", {}).get("channel", "")).startswith(channel_prefix):
            return body
    return None


async def test_websocket_fault_switches_drop_sessions_and_silence_user_data(sim: DeribitSim) -> None:
    async with aiohttp.ClientSession() as http, deribit(sim) as ex:
        await ex.load_markets()
        ws = await _authed_ws(http, sim, ["user.trades.any.any.raw", "ticker.BTC-PERPETUAL.raw"])
        sim.faults.update({"user_data_paused": True})
        await ex.create_order(PERP, "market", "buy", 10, params={"label": "lost"})
        assert await _next_message(ws, "user.trades", 1.0) is None  # the session lives, its events are lost
        assert not ws.closed
        sim.faults.update({"user_data_paused": False, "market_data_paused": True})
        await ex.create_order(PERP, "market", "sell", 10, params={"label": "seen"})
        seen = await _next_message(ws, "user.trades", 2.0)
        assert seen is not None and seen["params"]["data"][0]["label"] == "seen"
        assert await _next_message(ws, "ticker.", 1.0) is None  # no ticker while market data is paused
        sim.faults.update({"market_data_paused": False, "ws_drop_interval": 0.5, "ws_drop_scope": "user"})
        assert await _next_message(ws, "ticker.", 1.0) is not None  # tickers again, until the drop
        assert await _next_message(ws, "no channel", 5.0) is None and ws.closed
        assert sim.stats.ws_dropped >= 1


async def test_running_out_of_credits_answers_10028_and_ends_the_websocket_sessions(sim: DeribitSim) -> None:
    async with aiohttp.ClientSession() as http, deribit(sim) as ex:
        await ex.load_markets()
        ws = await _authed_ws(http, sim, ["user.orders.any.any.raw"])
        sim.credits.starve()
        with pytest.raises(ccxt_async.DDoSProtection):
            await ex.fetch_ticker(PERP)
        closed = await ws.receive(timeout=5)
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
        assert sim.stats.rejected_10028 == 1 and sim.stats.sessions_ended_10028 == 1
        # a new session's subscription spends credits too, so it is refused (and ended) while they are out
        ws2 = await http.ws_connect(f"ws://127.0.0.1:{sim.port}/ws/api/v2")
        await ws2.send_json({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe",
                             "params": {"channels": ["ticker.BTC-PERPETUAL.raw"]}})
        assert (await ws2.receive_json())["error"]["code"] == 10028
        assert (await ws2.receive(timeout=5)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        sim.credits.restore(sim.config.credits_refill)
        await asyncio.sleep(0.1)
        assert (await ex.fetch_ticker(PERP))["symbol"] == PERP
