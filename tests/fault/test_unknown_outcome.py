"""Unknown order outcome: accept-then-timeout, 5xx, 429/418 -- nothing placed twice (issue 5)."""

from __future__ import annotations

import random
from pathlib import Path

import ccxt
import pytest
from pydantic import SecretStr

from hedgerd import errors as herr
from hedgerd.clock import RealClock
from hedgerd.config import VenueConfig, VenueKind, VenueRole
from hedgerd.connectors.ccxt import CcxtVenue, create_exchange
from hedgerd.exchange_sim import ccxt_options, start_venue_sim
from tests.fault.harness import PERP_SYMBOL, format_table, sim_server_config
from tests.fault.scenarios import OUTCOME_CASES, PROTOCOLS, unknown_outcome_scenario


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_unknown_outcomes_place_nothing_twice_and_honour_rate_limits(tmp_path: Path, protocol: str) -> None:
    result = await unknown_outcome_scenario(tmp_path, rounds=1, order_timeout=2.0, protocol=protocol)
    report = format_table(result.rows())
    assert [c.name for c in result.cases] == list(OUTCOME_CASES[protocol])
    for case in result.cases:
        assert case.venue_orders == 1 and case.client_ids == 1 and case.settled, report
        if case.name.startswith(("429", "10028")):
            assert case.rate_limited >= 1, report  # the venue really answered 429 / 10028
    assert result.duplicate_orders == 0, report
    assert result.requests_during_backoff == 0, report
    assert result.rejected_418 == 0 and result.bans == 0, report
    if protocol == "deribit":  # running out of credits also ended the websocket sessions
        assert result.sessions_ended > 0, report
    assert result.final_gap == 0, report
    assert all(r.ok for r in result.rows()), report


async def test_connector_sends_nothing_until_retry_after_has_elapsed() -> None:
    config = sim_server_config(seed=41, weight_window_seconds=3.0)
    async with start_venue_sim(config=config) as sim:
        cfg = VenueConfig(name="perp", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="binanceusdm",
                          api_key=SecretStr(sim.config.api_key), secret=SecretStr(sim.config.secret),
                          urls={"api": sim.ccxt_urls()}, options=ccxt_options())
        venue = CcxtVenue("perp", create_exchange(cfg, timeout=5.0), RealClock(), symbols=[PERP_SYMBOL],
                          rng=random.Random(1))
        try:
            await venue.load_markets()
            sim.limiters["usdm"].limit = 1
            with pytest.raises(herr.RateLimited) as first:
                await venue.fetch_positions()
            assert first.value.retry_after is not None and first.value.retry_after > 0
            sim.limiters["usdm"].limit = sim.config.usdm_weight_limit
            requests = sim.stats.requests
            for _ in range(5):  # every caller is refused locally while the back-off lasts
                with pytest.raises(herr.RateLimited):
                    await venue.fetch_open_orders()
            assert sim.stats.requests == requests
            assert sim.limiters["usdm"].stats.requests_during_backoff == 0
            assert sim.limiters["usdm"].stats.bans == 0
        finally:
            await venue.close()


async def test_an_order_whose_connection_is_dropped_unanswered_is_not_resent_by_the_http_library() -> None:
    # ccxt.deribit places orders with GET, which aiohttp resends once by itself when the server
    # closes the connection without answering: the executed order went out twice under one label.
    from hedgerd.exchange_sim.deribit import start_deribit_sim

    async with start_deribit_sim(seed=43) as sim:
        cfg = VenueConfig(name="perp", kind=VenueKind.CCXT, role=VenueRole.HEDGE, exchange="deribit",
                          api_key=SecretStr(sim.config.client_id), secret=SecretStr(sim.config.client_secret),
                          sim_base_url=sim.base_url)
        exchange = create_exchange(cfg, timeout=5.0)
        try:
            await exchange.load_markets()
            await exchange.fetch_balance({"currency": "BTC"})  # a kept-alive connection for the order
            sim.faults.update({"order_timeout_next": 1, "order_timeout_mode": "drop"})
            with pytest.raises(ccxt.NetworkError):
                await exchange.create_order("BTC/USD:BTC", "market", "buy", 10, None, {"label": "hgdtest1"})
            orders = [o for o in sim.venue.orders.values() if o.label == "hgdtest1"]
            assert len(orders) == 1, [o.order_id for o in orders]  # executed once, answered never
            assert orders[0].state == "filled"
        finally:
            await exchange.close()
