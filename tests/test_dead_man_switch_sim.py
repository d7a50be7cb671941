"""The simulators' dead-man switches, driven by the real, unmodified ccxt classes: Binance USD-M's
``countdownCancelAll`` (a countdown per symbol) and Deribit's cancel-on-disconnect."""

from __future__ import annotations

import asyncio

import ccxt.async_support as ccxt_async
import pytest

from hedgerd.exchange_sim import USDM, SimConfig, start_venue_sim
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
        assert ex.last_response_headers["X-MBX-USED-WEIGHT-1M"]  # a weighed, signed request
        await asyncio.sleep(0.3)
        # a refresh well inside the countdown replaces it: nothing is cancelled at its first end
        await ex.fapiPrivatePostCountdownCancelAll({"symbol": "BTCUSDT", "countdownTime": 600})
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
