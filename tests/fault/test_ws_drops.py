"""Websocket drops: fills at the venue and in the ledger match exactly (issue 5).

The venue closes the user-data and market-data streams every few seconds while client fills
flow and the daemon hedges; REST backfill after each reconnect (plus the connector's periodic
safety backfill) and trade-id dedupe must leave the ledger with exactly the venue's fills.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

from hedgerd.clock import RealClock
from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import CcxtVenue, create_exchange
from hedgerd.exchange_sim import ccxt_options, start_venue_sim
from hedgerd.models import Fill, OptionQuote, OrderReport, PriceUpdate
from tests.fault.harness import SPOT_SYMBOL, async_wait_until, format_table, sim_server_config
from tests.fault.scenarios import PROTOCOLS, ws_drop_scenario

#: (client fills per second, at least this many of them at the venue); Deribit's option flow is
#: slower: each option fill moves the book's delta more than a spot fill does
FLOW = {"binance": (4.0, 20), "deribit": (2.0, 10)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_fills_match_exactly_through_websocket_drops(tmp_path: Path, protocol: str) -> None:
    rate, at_least = FLOW[protocol]
    result = await ws_drop_scenario(tmp_path, seconds=15.0, drop_interval=3.0, flow_rate=rate, protocol=protocol)
    report = format_table(result.rows())
    assert result.streams_dropped >= 4 and result.reconnects >= 4, report  # the fault really happened
    inventory, perp = result.fills.values()
    assert inventory.venue_fills >= at_least and perp.venue_fills >= 1, report  # ... while fills flowed both ways
    assert all(c.exact for c in result.fills.values()), report
    assert result.duplicate_orders == 0, report
    assert result.final_gap == 0, report
    assert all(r.ok for r in result.rows()), report


class _Sink:
    def __init__(self) -> None:
        self.fills: list[Fill] = []

    async def on_fill(self, fill: Fill) -> None:
        self.fills.append(fill)

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        self.fills.extend(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        return None

    async def on_option_quote(self, quote: OptionQuote) -> None:
        return None

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        return None

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        return None


async def test_safety_backfill_delivers_the_fills_of_a_silently_dead_stream() -> None:
    # The user-data connection stays open but carries nothing (no error to reconnect on):
    # only the periodic REST backfill can bring those fills in.
    async with start_venue_sim(config=sim_server_config(seed=31)) as sim:
        cfg = VenueConfig(name="spot", kind=VenueKind.CCXT, role=VenueRole.INVENTORY, exchange="binance",
                          api_key=SecretStr(sim.config.api_key), secret=SecretStr(sim.config.secret),
                          urls={"api": sim.ccxt_urls()}, options=ccxt_options())
        venue = CcxtVenue("spot", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[SPOT_SYMBOL],
                          stream_orders=False, stream_positions=False, resolve_client_ids=False,
                          resubscribe_delay=0.1, safety_backfill_interval=0.5, rng=random.Random(1))
        sink = _Sink()
        try:
            await venue.start(sink)
            await async_wait_until(lambda: venue.connected, 30, "the streams")
            streamed = sim.engine.client_fill("BTCUSDT", "BUY", Decimal("0.02"))
            assert streamed is not None
            await async_wait_until(lambda: len(sink.fills) == 1, 30, "the streamed fill")
            sim.faults.update({"user_data_paused": True})
            lost = [sim.engine.client_fill("BTCUSDT", side, Decimal("0.01")) for side in ("SELL", "BUY")]
            await async_wait_until(lambda: len({f.trade_id for f in sink.fills}) == 3, 30, "the lost fills")
            assert {f.trade_id for f in sink.fills} == {f"{SPOT_SYMBOL}#{t.trade_id}"
                                                        for t in (streamed, *lost) if t is not None}
        finally:
            await venue.close()
