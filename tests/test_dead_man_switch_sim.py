"""The simulators' dead-man switches, driven by the real, unmodified ccxt classes: Binance USD-M's
``countdownCancelAll`` (a countdown per symbol) and Deribit's cancel-on-disconnect."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import ccxt.async_support as ccxt_async
import pytest

from hedgerd.exchange_sim import USDM, SimConfig, start_venue_sim
from hedgerd.exchange_sim.deribit import DeribitSim, start_deribit_sim
from tests.test_engine import eventually
from tests.test_venue_sim import exchange

BTC_PERP = "BTC/USDT:USDT"
ETH_PERP = "ETH/USDT:USDT"
TICK = 0.05  # the simulator checks countdowns once per tick


async def _resting_buy(ex: object, symbol: str, cid: str) -> str:
    """A GTC limit buy 10% under the bid: it rests on the book."""
    book = await ex.fetch_order_book(symbol, 5)  # type: ignore[attr-defined]
    price = ex.price_to_precision(symbol, book["bids"][0][0] * 0.9)  # type: ignore[attr-defined]
    amount = 0.01 if symbol == BTC_PERP else 0.1
    order = await ex.create_order(symbol, "limit", "buy", amount, price,  # type: ignore[attr-defined]
                                  {"timeInForce": "GTC", "clientOrderId": cid})
    assert order["status"] == "open"
    return str(order["id"])


async def test_binance_countdown_cancels_the_symbols_open_orders_when_it_runs_out() -> None:
    async with start_venue_sim(config=SimConfig(port=0, tick_interval=TICK)) as sim, \
            exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        await _resting_buy(ex, BTC_PERP, "hgdbtc1")
        await _resting_buy(ex, ETH_PERP, "hgdeth1")
        answer = await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 600})
        assert answer == {"symbol": "BTCUSDT", "countdownTime": "600"}
        used = int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"])
        await asyncio.sleep(0.3)
        # a refresh well inside the countdown replaces it: nothing is cancelled at its first end
        await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 600})
        assert int(ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]) == used + 10  # weight 10
        await asyncio.sleep(0.45)
        assert [o.client_order_id for o in sim.engine.open_orders(USDM, "BTCUSDT")] == ["hgdbtc1"]
        stats = sim.stats_json()["countdown_cancel_all"]
        assert (stats["armed"], stats["refreshed"], stats["expired"]) == (1, 1, 0)
        await asyncio.sleep(0.15 + 2 * TICK)  # the refreshed countdown's end, plus a tick
        assert sim.engine.open_orders(USDM, "BTCUSDT") == []
        cancelled = await ex.fetch_order(None, BTC_PERP, {"clientOrderId": "hgdbtc1"})
        assert cancelled["status"] == "canceled"
        # only the symbol the countdown was set for
        assert [o.client_order_id for o in sim.engine.open_orders(USDM, "ETHUSDT")] == ["hgdeth1"]
        stats = sim.stats_json()["countdown_cancel_all"]
        assert (stats["expired"], stats["cancelled_orders"], stats["remaining_ms"]) == (1, 1, {})


async def test_binance_countdown_time_zero_stops_the_countdown() -> None:
    async with start_venue_sim(config=SimConfig(port=0, tick_interval=TICK)) as sim, \
            exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        await _resting_buy(ex, BTC_PERP, "hgdbtc2")
        await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 300})
        assert await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 0}) == \
            {"symbol": "BTCUSDT", "countdownTime": "0"}
        await asyncio.sleep(0.3 + 3 * TICK)
        assert [o.client_order_id for o in sim.engine.open_orders(USDM, "BTCUSDT")] == ["hgdbtc2"]
        stats = sim.stats_json()["countdown_cancel_all"]
        assert (stats["armed"], stats["disarmed"], stats["expired"]) == (1, 1, 0)


async def test_binance_countdown_refuses_a_bad_symbol_or_time() -> None:
    async with start_venue_sim(port=0) as sim, exchange(ccxt_async, "binanceusdm", sim) as ex:
        await ex.load_markets()
        with pytest.raises(ccxt_async.BadRequest):
            await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": -5})
        with pytest.raises(ccxt_async.BadRequest):
            await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT"})
        with pytest.raises(ccxt_async.BadSymbol):
            await ex.fapiPrivatePostCountdownCancelAll({"symbol": "NOPEUSDT", "countdownTime": 1000})
        assert sim.countdowns.deadlines == {}


# --------------------------------------------------------------------------- Deribit cancel on disconnect
async def _rpc(ws: Any, request_id: int, method: str, **params: Any) -> Any:
    """One JSON-RPC call over the websocket; its result (asserts no error)."""
    await ws.send_json({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
    while True:  # skip notifications
        body = await asyncio.wait_for(ws.receive_json(), 5)
        if body.get("id") == request_id:
            assert "error" not in body, body
            return body["result"]


async def _authed(http: aiohttp.ClientSession, sim: DeribitSim) -> Any:
    ws = await http.ws_connect(f"ws://127.0.0.1:{sim.port}/ws/api/v2")
    await _rpc(ws, 1, "public/auth", grant_type="client_credentials", client_id=sim.config.client_id,
               client_secret=sim.config.client_secret)
    return ws


async def _ws_resting_buy(ws: Any, sim: DeribitSim, request_id: int, label: str) -> str:
    low = float(sim.venue.index("BTC")) // 2
    result = await _rpc(ws, request_id, "private/buy", instrument_name="BTC-PERPETUAL", amount=10,
                        type="limit", price=low, label=label)
    return str(result["order"]["order_id"])


def _state(sim: DeribitSim, order_id: str) -> str:
    return sim.venue.orders[order_id].state


async def test_deribit_cancel_on_disconnect_cancels_the_connections_own_orders_when_it_closes() -> None:
    async with start_deribit_sim(port=0, seed=3) as sim, aiohttp.ClientSession() as http:
        ex = ccxt_async.deribit(sim.ccxt_config())
        try:
            await ex.load_markets()
            over_http = await ex.create_order("BTC/USD:BTC", "limit", "buy", 10,
                                              float(sim.venue.index("BTC")) // 2, params={"label": "hgdhttp"})
            # websocket only: over HTTP the method is not there
            with pytest.raises(ccxt_async.ExchangeError):
                await ex.privateGetEnableCancelOnDisconnect({"scope": "connection"})
        finally:
            await ex.close()
        ws = await _authed(http, sim)
        assert await _rpc(ws, 2, "private/get_cancel_on_disconnect") == {"scope": "connection", "enabled": False}
        assert await _rpc(ws, 3, "private/enable_cancel_on_disconnect") == "ok"
        mine = await _ws_resting_buy(ws, sim, 4, "hgdws1")
        other = await _authed(http, sim)  # a second connection without it
        theirs = await _ws_resting_buy(other, sim, 5, "hgdws2")
        await ws.close()
        await eventually(lambda: _state(sim, mine) == "cancelled", "the connection's order cancelled", 3.0)
        # orders placed over HTTP or through another connection stay
        assert (_state(sim, theirs), _state(sim, over_http["id"])) == ("open", "open")
        assert sim.stats.cancelled_on_disconnect == 1
        await other.close()
        await asyncio.sleep(0.2)
        assert _state(sim, theirs) == "open"


async def test_deribit_logout_keeps_the_orders_and_account_scope_arms_new_connections() -> None:
    async with start_deribit_sim(port=0, seed=3) as sim, aiohttp.ClientSession() as http:
        ws = await _authed(http, sim)
        assert await _rpc(ws, 2, "private/enable_cancel_on_disconnect", scope="account") == "ok"
        kept = await _ws_resting_buy(ws, sim, 3, "hgdws3")
        await ws.send_json({"jsonrpc": "2.0", "id": 4, "method": "private/logout", "params": {}})
        assert (await ws.receive()).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        await asyncio.sleep(0.2)
        assert _state(sim, kept) == "open"  # a graceful logout does not cancel
        fresh = await _authed(http, sim)  # starts with it on: the account scope
        assert await _rpc(fresh, 2, "private/get_cancel_on_disconnect", scope="account") == \
            {"scope": "account", "enabled": True}
        placed = await _ws_resting_buy(fresh, sim, 3, "hgdws4")
        await sim.close_sessions("all")  # the server ends the connection (or its heartbeat fails)
        await eventually(lambda: _state(sim, placed) == "cancelled", "the order cancelled", 3.0)
        assert _state(sim, kept) == "open"
