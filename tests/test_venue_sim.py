"""The Binance-protocol venue simulator, driven by the real, unmodified ccxt classes.

Every test starts its own simulator on 127.0.0.1 with a free port; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import ccxt.async_support as ccxt_async
import ccxt.pro as ccxt_pro
import pytest

from hedgerd.clock import RealClock
from hedgerd.connectors.ccxt import CcxtVenue
from hedgerd.exchange_sim import (
    SPOT,
    USDM,
    ApiError,
    EngineConfig,
    FaultConfig,
    MatchingEngine,
    SimConfig,
    VenueSim,
    align_ccxt_exceptions,
    ccxt_urls,
    start_venue_sim,
)
from hedgerd.exchange_sim.binance.auth import hmac_sha256, rest_signature_payload
from hedgerd.exchange_sim.binance.ratelimit import WeightLimiter
from hedgerd.exchange_sim.faults import TradeMessageShaper
from hedgerd.ledger import InventoryLedger
from tests.test_engine import eventually

ROOT = Path(__file__).resolve().parent.parent
BTC_SPOT = "BTC/USDT"
BTC_PERP = "BTC/USDT:USDT"


@contextlib.asynccontextmanager
async def exchange(module: Any, name: str, sim: VenueSim, **overrides: Any) -> AsyncIterator[Any]:
    """A real ccxt exchange pointed at ``sim`` (fast local rate limiter), closed afterwards."""
    config = sim.ccxt_config()
    config["rateLimit"] = 1
    options = overrides.pop("options", None)
    if options is not None:
        config["options"] = options
    config.update(overrides)
    ex = getattr(module, name)(config)
    align_ccxt_exceptions(ex)
    try:
        yield ex
    finally:
        await ex.close()


def own_trades(sim: VenueSim, kind: str, client_order_id: str) -> list[Any]:
    return [t for t in sim.engine.trades(kind) if t.client_order_id == client_order_id]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- url override


@pytest.mark.parametrize("module,name", [(ccxt_pro, "binance"), (ccxt_pro, "binanceusdm"),
                                         (ccxt_async, "binance"), (ccxt_async, "binanceusdm")])
async def test_ccxt_urls_override_every_section(module: Any, name: str) -> None:
    ex = getattr(module, name)()
    try:
        original = ex.urls["api"]
        ours = ccxt_urls("http://127.0.0.1:1", "ws://127.0.0.1:1")
        missing = set(original) - set(ours)
        assert not missing, f"ccxt sections without a simulator url: {missing}"
        if "ws" in original:
            assert set(original["ws"]) <= set(ours["ws"])
            assert set(original["ws"]["ws-api"]) <= set(ours["ws"]["ws-api"])
        assert "binance.com" not in json.dumps(ours)
    finally:
        await ex.close()


# --------------------------------------------------------------------------- spot REST


async def test_spot_rest_round_trip_with_default_ccxt_options() -> None:
    async with start_venue_sim(port=0, seed=3) as sim, \
            exchange(ccxt_async, "binance", sim, options={}) as ex:
        # default options: load_markets also calls sapi capital/config + margin pairs and fapi/dapi
        markets = await ex.load_markets()
        assert {BTC_SPOT, "ETH/USDT", BTC_PERP}.issubset(markets)
        btc = markets[BTC_SPOT]
        assert btc["precision"]["amount"] == 0.00001 and btc["precision"]["price"] == 0.01
        assert btc["limits"]["cost"]["min"] == 5.0

        ticker = await ex.fetch_ticker(BTC_SPOT)
        assert 0 < ticker["bid"] < ticker["ask"]
        book = await ex.fetch_order_book(BTC_SPOT, 5)
        bids, asks = [level[0] for level in book["bids"]], [level[0] for level in book["asks"]]
        assert len(bids) == len(asks) == 5
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        assert 0 < bids[0] < asks[0] and all(level[1] > 0 for level in book["bids"] + book["asks"])
        # the same synthetic market milliseconds later: the mid moves about 1e-4 in a second
        assert bids[0] == pytest.approx(ticker["bid"], rel=1e-3)
        assert asks[0] == pytest.approx(ticker["ask"], rel=1e-3)
        before = await ex.fetch_balance()

        order = await ex.create_order(BTC_SPOT, "market", "buy", 0.01, None, {"clientOrderId": "hgdt1x1"})
        assert order["clientOrderId"] == "hgdt1x1"
        assert order["status"] == "closed" and order["filled"] == 0.01

        fetched = await ex.fetch_order(None, BTC_SPOT, {"clientOrderId": "hgdt1x1"})
        assert fetched["id"] == order["id"] and fetched["status"] == "closed"
        assert fetched["filled"] == pytest.approx(0.01)

        trades = await ex.fetch_my_trades(BTC_SPOT)
        mine = [t for t in trades if t["order"] == order["id"]]
        assert len(mine) == 1 and mine[0]["side"] == "buy" and mine[0]["amount"] == pytest.approx(0.01)
        assert mine[0]["fee"]["currency"] == "BTC"
        venue = own_trades(sim, SPOT, "hgdt1x1")
        assert [str(t.trade_id) for t in venue] == [mine[0]["id"]]

        after = await ex.fetch_balance()
        fee = float(venue[0].commission)
        assert after["BTC"]["free"] == pytest.approx(before["BTC"]["free"] + 0.01 - fee)
        assert after["USDT"]["free"] == pytest.approx(before["USDT"]["free"] - float(venue[0].quote_qty))

        since_id = await ex.fetch_my_trades(BTC_SPOT, None, None, {"fromId": int(mine[0]["id"])})
        assert [t["id"] for t in since_id] == [mine[0]["id"]]


async def test_spot_limit_ioc_gtc_cancel_and_lookups() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_async, "binance", sim) as ex:
        await ex.load_markets()
        ticker = await ex.fetch_ticker(BTC_SPOT)
        far_below = ex.price_to_precision(BTC_SPOT, ticker["bid"] * 0.9)
        ioc_miss = await ex.create_order(BTC_SPOT, "limit", "buy", 0.01, far_below, {"timeInForce": "IOC"})
        assert ioc_miss["status"] == "expired" and ioc_miss["filled"] == 0
        through = ex.price_to_precision(BTC_SPOT, ticker["ask"] * 1.01)
        ioc_hit = await ex.create_order(BTC_SPOT, "limit", "buy", 0.01, through, {"timeInForce": "IOC"})
        assert ioc_hit["status"] == "closed" and ioc_hit["filled"] == pytest.approx(0.01)
        assert ioc_hit["average"] <= float(through)

        resting = await ex.create_order(BTC_SPOT, "limit", "buy", 0.01, far_below,
                                        {"clientOrderId": "rest1"})
        assert resting["status"] == "open"
        open_orders = await ex.fetch_open_orders(BTC_SPOT)
        assert [o["clientOrderId"] for o in open_orders] == ["rest1"]
        balance = await ex.fetch_balance()
        assert balance["USDT"]["used"] == pytest.approx(0.01 * float(far_below))
        cancelled = await ex.cancel_order(resting["id"], BTC_SPOT)
        assert cancelled["status"] == "canceled"
        assert await ex.fetch_open_orders(BTC_SPOT) == []
        with pytest.raises(ccxt.OrderNotFound):
            await ex.cancel_order(resting["id"], BTC_SPOT)
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order(None, BTC_SPOT, {"clientOrderId": "never-sent"})
        with pytest.raises(ccxt.InvalidOrder):  # LOT_SIZE filter
            await ex.create_order(BTC_SPOT, "market", "buy", 0.000001)


async def test_spot_insufficient_funds_and_duplicate_client_id() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_async, "binance", sim) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):
            await ex.create_order(BTC_SPOT, "market", "sell", 11)  # account holds 10 BTC
        assert sim.engine.orders(SPOT) == []
        price = ex.price_to_precision(BTC_SPOT, (await ex.fetch_ticker(BTC_SPOT))["bid"] * 0.9)
        await ex.create_order(BTC_SPOT, "limit", "buy", 0.01, price, {"clientOrderId": "dup1"})
        with pytest.raises(ccxt.InvalidOrder):  # -2010 Duplicate order sent (among open orders)
            await ex.create_order(BTC_SPOT, "limit", "buy", 0.01, price, {"clientOrderId": "dup1"})


# --------------------------------------------------------------------------- USD-M REST


async def test_usdm_orders_positions_reduce_only_and_trades() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_async, "binanceusdm", sim) as ex:
        markets = await ex.load_markets()
        assert markets[BTC_PERP]["linear"] and markets[BTC_PERP]["precision"]["amount"] == 0.001
        balance = await ex.fetch_balance()
        assert balance["USDT"]["total"] == pytest.approx(1_000_000)
        assert (await ex.set_leverage(10, BTC_PERP))["leverage"] == 10

        sell = await ex.create_order(BTC_PERP, "market", "sell", 0.01, None, {"clientOrderId": "hgdp1"})
        assert sell["status"] == "closed" and sell["filled"] == pytest.approx(0.01)
        fetched = await ex.fetch_order(None, BTC_PERP, {"clientOrderId": "hgdp1"})
        assert fetched["id"] == sell["id"] and fetched["filled"] == pytest.approx(0.01)
        positions = await ex.fetch_positions([BTC_PERP])
        assert len(positions) == 1
        assert positions[0]["side"] == "short" and positions[0]["contracts"] == pytest.approx(0.01)

        ask = (await ex.fetch_order_book(BTC_PERP, 5))["asks"][0][0]
        limit = ex.price_to_precision(BTC_PERP, ask * 1.01)
        reduce = await ex.create_order(BTC_PERP, "limit", "buy", 0.02, limit,
                                       {"timeInForce": "IOC", "reduceOnly": True, "clientOrderId": "hgdp2"})
        assert reduce["reduceOnly"] is True
        assert reduce["filled"] == pytest.approx(0.01)  # capped at the position size
        assert await ex.fetch_positions([BTC_PERP]) == []
        assert sim.engine.position("BTCUSDT").amount == 0
        with pytest.raises(ccxt.InvalidOrder):  # -2022: nothing left to reduce
            await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"reduceOnly": True})

        trades = await ex.fetch_my_trades(BTC_PERP)
        assert [t["order"] for t in trades] == [sell["id"], reduce["id"]]
        venue_ids = [str(t.trade_id) for t in sim.engine.trades(USDM)]
        assert [t["id"] for t in trades] == venue_ids
        realized = sim.engine.trades(USDM)[1].realized_pnl
        fees = sum(t.commission for t in sim.engine.trades(USDM))
        assert sim.engine.usdm_wallet == Decimal(1_000_000) + realized - fees


async def test_usdm_margin_and_min_notional_errors_map_like_real_hosts() -> None:
    config = SimConfig(port=0, engine=EngineConfig(usdm_wallet=Decimal(1000)))
    async with start_venue_sim(config=config) as sim, exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt.InsufficientFunds):  # -2019 Margin is insufficient
            await ex.create_order(BTC_PERP, "market", "buy", 1)
        with pytest.raises(ccxt.InvalidOrder):  # -4164 notional below 100
            await ex.create_order(BTC_PERP, "market", "buy", 0.001)
        price = ex.price_to_precision(BTC_PERP, (await ex.fetch_ticker(BTC_PERP))["last"] * 0.9)
        await ex.create_order(BTC_PERP, "limit", "buy", 0.002, price, {"clientOrderId": "dupf"})
        with pytest.raises(ccxt.InvalidOrder):  # -4116 ClientOrderId is duplicated
            await ex.create_order(BTC_PERP, "limit", "buy", 0.002, price, {"clientOrderId": "dupf"})


# --------------------------------------------------------------------------- auth and limits


async def test_bad_signature_bad_key_and_stale_timestamp() -> None:
    async with start_venue_sim(port=0) as sim:
        async with exchange(ccxt_async, "binance", sim, secret="not-the-secret") as ex:
            await ex.load_markets()
            with pytest.raises(ccxt.AuthenticationError, match="-1022"):
                await ex.fetch_balance()
        async with exchange(ccxt_async, "binanceusdm", sim, apiKey="unknown-key") as ex:
            await ex.load_markets()
            with pytest.raises(ccxt.AuthenticationError, match="-2015"):
                await ex.fetch_balance()
        async with exchange(ccxt_async, "binanceusdm", sim) as ex:
            await ex.load_markets()
            ex.options["timeDifference"] = 120_000  # our clock 2 minutes behind: outside recvWindow
            with pytest.raises(ccxt.InvalidNonce, match="-1021"):
                await ex.fetch_balance()
        assert sim.engine.orders(USDM) == []


async def test_weight_limit_429_with_retry_after_then_418_ban() -> None:
    config = SimConfig(port=0, spot_weight_limit=50, ban_after=2)
    async with start_venue_sim(config=config) as sim, exchange(ccxt_async, "binance", sim) as ex:
        await ex.load_markets()  # exchangeInfo: weight 20
        await ex.fetch_balance()  # account: weight 20 -> 40
        assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"] == "40"
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            await ex.fetch_balance()
        retry_after = int(ex.last_response_headers["Retry-After"])
        assert 1 <= retry_after <= 60
        with pytest.raises(ccxt.DDoSProtection, match="429"):  # ignoring Retry-After
            await ex.fetch_balance()
        with pytest.raises(ccxt.DDoSProtection, match="418"):  # ... gets the IP banned
            await ex.fetch_ticker(BTC_SPOT)
        stats = sim.limiters["spot"].stats
        assert stats.requests_during_backoff == 2 and stats.bans == 1


async def test_accept_then_timeout_and_5xx_leave_the_order_executed_once() -> None:
    faults = FaultConfig(order_timeout_next=1, hang_seconds=5.0)
    async with start_venue_sim(port=0, faults=faults) as sim, \
            exchange(ccxt_async, "binanceusdm", sim, timeout=500) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt.RequestTimeout):
            await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgdto1"})
        found = await ex.fetch_order(None, BTC_PERP, {"clientOrderId": "hgdto1"})
        assert found["status"] == "closed"
        assert len(own_trades(sim, USDM, "hgdto1")) == 1

        sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
        with pytest.raises(ccxt.NetworkError):
            await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgdto2"})
        assert len(own_trades(sim, USDM, "hgdto2")) == 1

        sim.faults.update({"error_5xx_next": 1, "error_5xx_executes": True})
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgd5xx"})
        assert (await ex.fetch_order(None, BTC_PERP, {"clientOrderId": "hgd5xx"}))["filled"] == 0.01
        sim.faults.update({"error_5xx_next": 1, "error_5xx_executes": False})
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgd5xy"})
        with pytest.raises(ccxt.OrderNotFound):
            await ex.fetch_order(None, BTC_PERP, {"clientOrderId": "hgd5xy"})


# --------------------------------------------------------------------------- ccxt.pro streams


async def test_pro_spot_ticker_bids_asks_client_fill_and_orders() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_pro, "binance", sim) as ex:
        await ex.load_markets()
        ticker = await asyncio.wait_for(ex.watch_ticker(BTC_SPOT), 5)
        assert ticker["symbol"] == BTC_SPOT and ticker["last"] > 0
        quotes = await asyncio.wait_for(ex.watch_bids_asks([BTC_SPOT]), 5)
        assert 0 < quotes[BTC_SPOT]["bid"] < quotes[BTC_SPOT]["ask"]

        watching = asyncio.ensure_future(ex.watch_my_trades(BTC_SPOT))
        await asyncio.sleep(0.3)  # ws-api signature subscription established
        fill = sim.engine.client_fill("BTCUSDT", "SELL", Decimal("0.2"))
        assert fill is not None
        streamed = await asyncio.wait_for(watching, 5)
        assert [(t["id"], t["side"], t["amount"]) for t in streamed] == [(str(fill.trade_id), "sell", 0.2)]
        rest = await ex.fetch_my_trades(BTC_SPOT)
        assert [t["id"] for t in rest] == [str(fill.trade_id)] and rest[0]["takerOrMaker"] == "maker"

        orders = asyncio.ensure_future(ex.watch_orders(BTC_SPOT))
        await asyncio.sleep(0.1)
        placed = await ex.create_order(BTC_SPOT, "market", "buy", 0.01, None, {"clientOrderId": "hgdws1"})
        updates = await asyncio.wait_for(orders, 5)
        ours = [o for o in updates if o["clientOrderId"] == "hgdws1"]
        assert ours and ours[-1]["id"] == placed["id"]


async def test_pro_usdm_positions_my_trades_and_orders() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_pro, "binanceusdm", sim) as ex:
        await ex.load_markets()
        quotes = await asyncio.wait_for(ex.watch_bids_asks([BTC_PERP]), 5)
        assert quotes[BTC_PERP]["bid"] < quotes[BTC_PERP]["ask"]
        assert (await asyncio.wait_for(ex.watch_ticker(BTC_PERP), 5))["symbol"] == BTC_PERP
        assert await asyncio.wait_for(ex.watch_positions(), 5) == []  # REST snapshot, flat

        positions = asyncio.ensure_future(ex.watch_positions())
        trades = asyncio.ensure_future(ex.watch_my_trades(BTC_PERP))
        orders = asyncio.ensure_future(ex.watch_orders(BTC_PERP))
        await asyncio.sleep(0.2)
        placed = await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgdwp1"})
        pos = await asyncio.wait_for(positions, 5)
        assert [(p["symbol"], p["side"], p["contracts"]) for p in pos] == [(BTC_PERP, "long", 0.01)]
        streamed = await asyncio.wait_for(trades, 5)
        venue = own_trades(sim, USDM, "hgdwp1")
        assert [t["id"] for t in streamed] == [str(t.trade_id) for t in venue]
        updates = await asyncio.wait_for(orders, 5)
        assert updates[-1]["id"] == placed["id"] and updates[-1]["clientOrderId"] == "hgdwp1"


async def test_dropped_streams_raise_network_error_and_reconnect() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_pro, "binance", sim) as ex:
        await ex.load_markets()
        await asyncio.wait_for(ex.watch_bids_asks([BTC_SPOT]), 5)
        pending = asyncio.ensure_future(ex.watch_bids_asks([BTC_SPOT]))
        await asyncio.sleep(0.05)
        assert await sim.close_streams("market") == 1
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(pending, 5)
        again = await asyncio.wait_for(ex.watch_bids_asks([BTC_SPOT]), 5)
        assert BTC_SPOT in again


# --------------------------------------------------------------------------- raw protocol


async def _collect_trade_messages(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while len(out) < count:
        message = json.loads((await asyncio.wait_for(ws.receive(), 5)).data)
        if message.get("e") == "ORDER_TRADE_UPDATE" and message["o"]["x"] == "TRADE":
            out.append(message)
    return out


async def test_user_stream_duplicate_and_out_of_order_trade_messages() -> None:
    async with start_venue_sim(port=0) as sim, aiohttp.ClientSession() as http:
        headers = {"X-MBX-APIKEY": sim.config.api_key}
        async with http.post(f"{sim.base_url}/fapi/v1/listenKey", headers=headers) as resp:
            listen_key = (await resp.json())["listenKey"]
        async with http.ws_connect(f"{sim.ws_url}/fws/private/ws?listenKey={listen_key}") as ws:
            await asyncio.sleep(0.05)
            sim.faults.duplicate_trade_next = 1
            sim.engine.place_order(USDM, symbol="BTCUSDT", side="BUY", order_type="MARKET",
                                   quantity=Decimal("0.01"))
            first, second = await _collect_trade_messages(ws, 2)
            assert first == second  # same trade id twice

            sim.faults.reorder_trade_next = 1
            for _ in range(2):
                sim.engine.place_order(USDM, symbol="BTCUSDT", side="SELL", order_type="MARKET",
                                       quantity=Decimal("0.01"))
            later, earlier = await _collect_trade_messages(ws, 2)
            assert later["o"]["t"] > earlier["o"]["t"]  # delivered newest first
        async with http.put(f"{sim.base_url}/fapi/v1/listenKey", headers=headers) as resp:
            assert resp.status == 200
        async with http.put(f"{sim.base_url}/fapi/v1/listenKey") as resp:
            assert resp.status == 401 and (await resp.json())["code"] == -2014


async def test_signature_is_checked_over_raw_query_and_body() -> None:
    async with start_venue_sim(port=0) as sim, aiohttp.ClientSession() as http:
        now = sim.engine.now()
        body = f"symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001&newClientOrderId=raw1&timestamp={now}"
        good = body + "&signature=" + hmac_sha256(sim.config.secret, body)
        headers = {"X-MBX-APIKEY": sim.config.api_key, "Content-Type": "application/x-www-form-urlencoded"}
        async with http.post(f"{sim.base_url}/api/v3/order", data=good, headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] == "FILLED"
            assert resp.headers["X-MBX-USED-WEIGHT-1M"] == "1"
        tampered = good.replace("quantity=0.001", "quantity=0.002")
        async with http.post(f"{sim.base_url}/api/v3/order", data=tampered, headers=headers) as resp:
            assert resp.status == 400 and (await resp.json())["code"] == -1022
    assert rest_signature_payload("a=1&signature=x", "") == ("a=1", "x")


async def test_admin_endpoints_control_faults_flow_and_history() -> None:
    async with start_venue_sim(port=0) as sim, aiohttp.ClientSession() as http:
        async with http.post(f"{sim.base_url}/_sim/faults", json={"latency_ms": 5, "error_5xx_next": 2}) as r:
            assert r.status == 200 and (await r.json())["error_5xx_next"] == 2
        assert sim.faults.latency_ms == 5.0
        async with http.post(f"{sim.base_url}/_sim/faults", json={"no_such_switch": 1}) as r:
            assert r.status == 400
        async with http.post(f"{sim.base_url}/_sim/faults", json={"error_5xx_rate": 2}) as r:
            assert r.status == 400
        async with http.post(f"{sim.base_url}/_sim/faults/reset") as r:
            assert (await r.json())["error_5xx_next"] == 0
        async with http.post(f"{sim.base_url}/_sim/fill", json={"symbol": "BTCUSDT", "side": "BUY",
                                                                 "qty": "0.05"}) as r:
            fill = await r.json()
        async with http.get(f"{sim.base_url}/_sim/trades", params={"kind": "spot"}) as r:
            history = await r.json()
        assert [t["id"] for t in history] == [fill["id"]] and history[0]["clientFlow"] is True
        async with http.post(f"{sim.base_url}/_sim/flow", json={"rate": 3.5}) as r:
            assert r.status == 200
        assert sim.engine.flow_rate == 3.5
        async with http.post(f"{sim.base_url}/_sim/price", json={"symbol": "BTCUSDT", "price": "90000"}) as r:
            assert r.status == 200
        assert sim.engine.mid(SPOT, "BTCUSDT") == Decimal("90000.00")
        async with http.get(f"{sim.base_url}/_sim/state") as r:
            state = await r.json()
        assert Decimal(state["spot_balances"]["BTC"]["free"]) > Decimal(10)


# --------------------------------------------------------------------------- engine (pure)


class FakeClock:
    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def test_client_flow_is_poisson_and_lands_in_the_spot_trade_history() -> None:
    clock = FakeClock()
    engine = MatchingEngine(EngineConfig(seed=5, flow_rate=8.0), now_ms=clock)
    events: list[Any] = []
    engine.add_listener(events.append)
    start_btc, _ = engine.spot_balance("BTC")
    for _ in range(40):  # 10 simulated seconds
        clock.ms += 250
        engine.advance()
    trades = engine.trades(SPOT)
    assert 40 <= len(trades) <= 130  # mean 80
    assert len({t.trade_id for t in trades}) == len(trades)
    assert all(t.is_client_flow and t.is_maker for t in trades)
    assert engine.my_trades(SPOT, "BTCUSDT", limit=1000) == trades
    base_delta = sum((t.qty if t.side == "BUY" else -t.qty) for t in trades)
    base_fees = sum(t.commission for t in trades if t.commission_asset == "BTC")
    assert engine.spot_balance("BTC")[0] == start_btc + base_delta - base_fees
    trade_events = [e for e in events if getattr(e, "execution_type", None) == "TRADE"]
    assert [e.trade for e in trade_events] == trades


def test_usdm_realized_pnl_fees_and_flip() -> None:
    clock = FakeClock()
    engine = MatchingEngine(EngineConfig(seed=1), now_ms=clock)
    buy = engine.place_order(USDM, symbol="BTCUSDT", side="BUY", order_type="MARKET", quantity=Decimal("0.1"))
    engine.set_mid("BTCUSDT", Decimal(61000))
    flip = engine.place_order(USDM, symbol="BTCUSDT", side="SELL", order_type="MARKET",
                              quantity=Decimal("0.3"))
    pos = engine.position("BTCUSDT")
    assert pos.amount == Decimal("-0.2")
    assert pos.entry_price == flip.avg_price  # the 0.3 fill is at one level
    realized = Decimal("0.1") * (flip.avg_price - buy.avg_price)
    fees = sum(t.commission for t in engine.trades(USDM))
    assert engine.usdm_wallet == Decimal(1_000_000) + realized - fees
    assert engine.trades(USDM)[-1].realized_pnl == realized
    with pytest.raises(ApiError) as err:
        engine.place_order(USDM, symbol="NOPEUSDT", side="BUY", order_type="MARKET", quantity=Decimal(1))
    assert err.value.code == -1121


def test_resting_limit_order_fills_as_maker_when_price_moves_through() -> None:
    engine = MatchingEngine(EngineConfig(seed=2), now_ms=FakeClock())
    order = engine.place_order(SPOT, symbol="BTCUSDT", side="SELL", order_type="LIMIT",
                               quantity=Decimal("0.5"), price=Decimal(61000), time_in_force="GTC")
    assert order.status == "NEW" and engine.spot_balance("BTC")[1] == Decimal("0.5")
    engine.set_mid("BTCUSDT", Decimal(62000))
    assert order.status == "FILLED" and engine.spot_balance("BTC")[1] == 0
    (trade,) = engine.trades(SPOT)
    assert trade.is_maker and trade.price == Decimal(61000)


def test_trade_and_order_history_stay_within_their_bounds_under_client_flow() -> None:
    balances = {"USDT": Decimal(10**9), "BTC": Decimal(10**4), "ETH": Decimal(0)}
    engine = MatchingEngine(EngineConfig(seed=3, trade_history=100, order_history=100, spot_balances=balances),
                    now_ms=FakeClock())
    resting = engine.place_order(SPOT, symbol="BTCUSDT", side="SELL", order_type="LIMIT",
                                 quantity=Decimal("0.5"), price=Decimal(61000), time_in_force="GTC")
    for i in range(1_000):
        assert engine.client_fill("BTCUSDT", "BUY" if i % 2 else "SELL", Decimal("0.01")) is not None
        assert len(engine.trades(SPOT)) <= 100
        assert len(engine.orders(SPOT)) <= 100
    trades = engine.trades(SPOT)
    assert len(trades) == 100 and trades[-1].trade_id == engine.last_trade_id(SPOT)
    assert [t.trade_id for t in trades] == list(range(trades[0].trade_id, trades[0].trade_id + 100))
    # the open order outlives the history; the matcher still finds it
    assert resting in engine.orders(SPOT) and engine.open_orders(SPOT) == [resting]
    engine.set_mid("BTCUSDT", Decimal(62000))
    assert resting.status == "FILLED" and engine.open_orders(SPOT) == []
    after = engine.last_trade_id(SPOT)
    order = engine.place_order(SPOT, symbol="BTCUSDT", side="BUY", order_type="MARKET", quantity=Decimal(3))
    fills = engine.my_trades(SPOT, "BTCUSDT", order_id=order.order_id, from_id=after + 1)
    assert fills and sum(t.qty for t in fills) == order.executed_qty == Decimal(3)


def test_weight_limiter_windows_and_ban() -> None:
    limiter = WeightLimiter(limit=10, window_seconds=60, ban_after=2, ban_seconds=30)
    assert limiter.admit("ip", 10, 120.0).allowed
    first = limiter.admit("ip", 1, 130.0)
    assert first.status == 429 and first.retry_after == 50
    assert limiter.admit("ip", 1, 131.0).status == 429
    banned = limiter.admit("ip", 1, 132.0)
    assert banned.status == 418 and banned.retry_after == 30
    assert limiter.admit("other", 1, 132.0).allowed
    still_spent = limiter.admit("ip", 1, 163.0)  # ban over, but this window's weight is used up
    assert still_spent.status == 429 and still_spent.retry_after == 17
    assert limiter.admit("ip", 1, 200.0).allowed  # next window


def test_trade_shaper_duplicates_and_reorders() -> None:
    import random

    faults = FaultConfig(duplicate_trade_next=1, reorder_hold_ms=100)
    shaper = TradeMessageShaper(faults, random.Random(0))
    assert shaper.shape("t1", True, 0.0) == ["t1", "t1"]
    assert shaper.shape("acct", False, 0.0) == ["acct"]  # non-trade messages pass untouched
    faults.update({"reorder_trade_next": 1})
    assert shaper.shape("t2", True, 0.0) == []  # held back ...
    assert shaper.shape("t3", True, 0.0) == ["t3", "t2"]  # ... and sent behind the next trade
    faults.update({"reorder_trade_next": 1})
    assert shaper.shape("t4", True, 1.0) == []
    assert shaper.flush_due(1.05) == [] and shaper.flush_due(1.2) == ["t4"]


# --------------------------------------------------------------------------- command line


def test_module_entry_point_serves_until_sigterm() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "hedgerd.exchange_sim", "--port", "0", "--flow-rate", "0",
               "--log-level", "WARNING"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("venue-sim listening on http://127.0.0.1:")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0


# --------------------------------------------------------------------------- funding


async def test_usdm_funding_is_charged_on_the_position_and_served_as_income_to_ccxt() -> None:
    config = SimConfig(port=0, funding_interval=1.0)  # a funding time every second
    async with start_venue_sim(config=config) as sim, exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        await ex.create_order(BTC_PERP, "market", "sell", 0.01, None, {"clientOrderId": "hgdf1"})
        wallet = sim.engine.usdm_wallet
        started = sim.engine.now()
        await eventually(lambda: len(sim.funding.records) >= 2, "two funding times")
        records = list(sim.funding.records)
        assert all(r.time % 1000 == 0 and r.time > started - 1000 for r in records)
        # no premium sampled within a 1 s interval: the rate is the interest rate, and a short receives it
        assert all(r.rate == pytest.approx(0.0001) and r.income > 0 for r in records)
        assert sim.engine.usdm_wallet - wallet == sum((r.income for r in sim.funding.records), Decimal(0))
        history = await ex.fetch_funding_history(BTC_PERP, started - 1000)  # GET /fapi/v1/income, unmodified ccxt
        assert [(h["id"], h["timestamp"], h["code"], Decimal(str(h["amount"]))) for h in history][:2] == [
            (str(r.tran_id), r.time, "USDT", r.income) for r in records]
        assert all(h["symbol"] == BTC_PERP for h in history)
        later = await ex.fetch_funding_history(BTC_PERP, records[1].time)
        assert later[0]["id"] == str(records[1].tran_id)
        premium = await ex.fetch_funding_rate(BTC_PERP)  # premiumIndex: the last rate charged
        assert premium["fundingRate"] == pytest.approx(records[-1].rate)


async def test_the_ccxt_connector_books_the_simulators_funding_once(tmp_path: Path) -> None:
    config = SimConfig(port=0, funding_interval=1.0)
    async with start_venue_sim(config=config) as sim, exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        await ex.create_order(BTC_PERP, "market", "buy", 0.01, None, {"clientOrderId": "hgdf2"})
        await eventually(lambda: len(sim.funding.records) >= 2, "two funding times")
        venue = CcxtVenue("binance", ex, RealClock(), symbols=[BTC_PERP])
        payments = await venue.fetch_funding_since(None)
        assert [(p.payment_id, p.amount, p.currency) for p in payments][:2] == [
            (str(r.tran_id), r.income, "USDT") for r in list(sim.funding.records)[:2]]
        assert all(p.amount < 0 for p in payments)  # a long pays the positive rate
        async with InventoryLedger(tmp_path / "ledger.sqlite") as ledger:
            assert await ledger.costs.record_funding(payments) == payments
            again = await venue.fetch_funding_since(payments[0].ts)  # overlapping: the first ones again
            assert len(again) >= len(payments)
            assert await ledger.costs.record_funding(again) == again[len(payments):]
