"""How to point the unmodified ccxt ``binance`` / ``binanceusdm`` classes at the simulator.

ccxt is not imported here (it is untyped); the helpers return plain dicts or mutate an
exchange object passed in by the caller::

    ex = ccxt.pro.binanceusdm(ccxt_config(sim.base_url, sim.ws_url))
    # or, on an existing instance:
    ex.urls["api"] = ccxt_urls(sim.base_url, sim.ws_url)
    align_ccxt_exceptions(ex)

The URL table itself is :mod:`hedgerd.connectors.ccxt.urls` (a venue's ``sim_base_url`` uses it
too); it is re-exported here for the simulator's callers.
"""

from __future__ import annotations

from typing import Any

from hedgerd.connectors.ccxt.errors import align_ccxt_exceptions
from hedgerd.connectors.ccxt.urls import ccxt_urls, ws_root_from

__all__ = ["DEFAULT_API_KEY", "DEFAULT_SECRET", "align_ccxt_exceptions", "ccxt_config", "ccxt_options",
           "ccxt_urls", "ws_root_from"]

DEFAULT_API_KEY = "sim-api-key"
DEFAULT_SECRET = "sim-secret"


def ccxt_options() -> dict[str, Any]:
    """Options that keep ccxt from extra calls the simulator answers only trivially."""
    return {
        "fetchCurrencies": False,
        "fetchMargins": False,
        "warnOnFetchOpenOrdersWithoutSymbol": False,
    }


def ccxt_config(base_url: str, ws_url: str | None = None, *, api_key: str = DEFAULT_API_KEY,
                secret: str = DEFAULT_SECRET, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """A constructor config for ``ccxt.binance(...)`` / ``ccxt.binanceusdm(...)`` (REST or pro)."""
    merged = ccxt_options()
    merged.update(options or {})
    return {
        "apiKey": api_key,
        "secret": secret,
        "enableRateLimit": True,
        "urls": {"api": ccxt_urls(base_url, ws_url)},
        "options": merged,
    }
