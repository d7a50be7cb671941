"""The executor backs off on HTTP 429 through the real ccxt ``binanceusdm`` class and the simulator.

The simulator answers 429 with ``Retry-After`` (seconds to the end of its weight window) and
counts every request an IP sends before that moment (``requests_during_backoff`` in
``/_sim/stats``; three of them earn a 418 ban). The executor must pause its token bucket for
the Retry-After, lower its rate, and then place the order exactly once.
"""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from pydantic import SecretStr

from hedgerd import exchange_sim
from hedgerd.clock import RealClock
from hedgerd.config import ExecutorConfig, VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import CcxtVenue, create_exchange
from hedgerd.executor import HedgeExecutor, TokenBucket
from hedgerd.metrics import Metrics
from hedgerd.models import HedgeIntent, OrderStatus, Side
from tests.fakes import MemoryLedger

PERP = "BTC/USDT:USDT"


def perp_venue(sim: exchange_sim.VenueSim) -> CcxtVenue:
    cfg = VenueConfig(name="perp", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="binanceusdm",
                      api_key=SecretStr(sim.config.api_key), secret=SecretStr(sim.config.secret),
                      urls={"api": sim.ccxt_urls()}, options=exchange_sim.ccxt_options())
    exchange = create_exchange(cfg, timeout=10.0)
    exchange.timeout_on_exit = 10  # ms ccxt waits on close
    return CcxtVenue("perp", exchange, RealClock(), symbols=(PERP,), own_client_id_prefix="hgd",
                     secrets=[sim.config.secret])


WINDOW = 2.0  # seconds of the simulator's weight window: Retry-After is 1 or 2


async def wait_for_window_start() -> None:
    """Just after a weight-window boundary, so the next request cannot fall into a new window."""
    await asyncio.sleep(WINDOW - time.time() % WINDOW + 0.01)


async def test_executor_honours_retry_after_through_ccxt() -> None:
    config = exchange_sim.SimConfig(port=0, engine=exchange_sim.EngineConfig(seed=11), weight_window_seconds=WINDOW)
    async with exchange_sim.start_venue_sim(config=config) as sim:
        venue = perp_venue(sim)
        ledger = MemoryLedger()
        results: list[tuple[bool, str]] = []
        clock = RealClock()
        bucket = TokenBucket(20.0, 5, clock)
        limiter = sim.limiters["usdm"]
        try:
            markets = await venue.load_markets()
            executor = HedgeExecutor(
                venue=venue, ledger=ledger, markets=markets,
                config=ExecutorConfig(max_retries=3, backoff_initial=0.05, backoff_max=0.2, order_timeout=10.0),
                bucket=bucket, clock=clock, metrics=Metrics(), gate=lambda _intent: None,
                on_result=lambda ok, kind: results.append((ok, kind)))
            for _ in range(3):  # a stalled machine may cross into the next window before the order
                intent: HedgeIntent = await ledger.new_intent(
                    underlying="BTC", venue="perp", symbol=PERP, side=Side.SELL, amount=Decimal("0.01"),
                    created_at=clock.time())
                await wait_for_window_start()
                # Spend this window's weight: the next request (the order) is answered 429.
                limiter.limit = 2400
                limiter.admit("127.0.0.1", 1, sim.engine.now() / 1000.0)
                limiter.limit = 0
                rejected = limiter.stats.rejected_429
                started = time.monotonic()
                report = await executor.execute(intent, reference_price=sim.engine.mid(exchange_sim.USDM, "BTCUSDT"))
                elapsed = time.monotonic() - started
                if limiter.stats.rejected_429 > rejected:
                    break
            else:
                raise AssertionError("the order was never rate limited")
        finally:
            await venue.close()
        stats: dict[str, Any] = sim.stats_json()["rate_limits"]["usdm"]

    assert stats["rejected_429"] == 1
    assert stats["requests_during_backoff"] == 0, "a request was sent before Retry-After elapsed"
    assert stats["rejected_418"] == 0 and stats["bans"] == 0
    assert report.status is OrderStatus.FILLED and report.filled == Decimal("0.01")
    orders = [o for o in sim.engine.orders(exchange_sim.USDM) if o.client_order_id == intent.client_order_id]
    assert len(orders) == 1, "the order was placed more than once"
    assert elapsed >= 0.9, "no back-off at all: Retry-After is at least one second"
    assert bucket.rate < bucket.nominal_rate, "the bucket rate was not lowered after the 429"
    assert results[-1] == (True, "")
