"""Local exchange simulator speaking Binance's spot and USD-M futures wire protocol, and Deribit's.

Point the unmodified ccxt ``binance`` / ``binanceusdm`` classes (REST and pro) at it::

    async with start_venue_sim(port=0, seed=1) as sim:
        ex = ccxt.pro.binanceusdm(sim.ccxt_config())      # or ccxt_config(sim.base_url, sim.ws_url)
        await ex.load_markets()
        ...
        sim.engine.trades("usdm")                           # the venue's own trade history
        sim.faults.order_timeout_next = 1                   # accept-then-timeout on the next order

Run standalone with ``python -m hedgerd.exchange_sim --port 8901`` (or ``hedgerd venue-sim``).

Layout: ``matching.py`` is the matching engine shared by every wire protocol (``model.py`` its
data, ``accounts.py`` its balances and positions, ``margin.py`` USD-M maintenance tiers and
liquidation prices; the mid and client flow come from :mod:`hedgerd.sim.market`, the
perpetuals' funding from :mod:`hedgerd.sim.funding`); ``faults.py`` the injectable faults;
``binance/`` the first wire protocol (its USD-M account pays funding every 8 h and lists it at
``/fapi/v1/income``: ``binance/funding.py``); ``deribit/`` the second (Deribit API v2: inverse
futures and options, its own coin-margined account on the same market model, funding settled
daily: ``deribit/settlement.py``; ``start_deribit_sim``, ``--protocol deribit``).
"""

from hedgerd.exchange_sim.binance.config import SimConfig
from hedgerd.exchange_sim.binance.server import VenueSim, main, run_server, start_venue_sim
from hedgerd.exchange_sim.binance.urls import (
    DEFAULT_API_KEY,
    DEFAULT_SECRET,
    align_ccxt_exceptions,
    ccxt_config,
    ccxt_options,
    ccxt_urls,
)
from hedgerd.exchange_sim.faults import FaultConfig
from hedgerd.exchange_sim.matching import MatchingEngine
from hedgerd.exchange_sim.model import (
    SPOT,
    USDM,
    ApiError,
    EngineConfig,
    InstrumentConfig,
    MarketKind,
    Order,
    Position,
    Trade,
)

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_SECRET",
    "SPOT",
    "USDM",
    "ApiError",
    "EngineConfig",
    "FaultConfig",
    "InstrumentConfig",
    "MarketKind",
    "MatchingEngine",
    "Order",
    "Position",
    "SimConfig",
    "Trade",
    "VenueSim",
    "align_ccxt_exceptions",
    "ccxt_config",
    "ccxt_options",
    "ccxt_urls",
    "main",
    "run_server",
    "start_venue_sim",
]
