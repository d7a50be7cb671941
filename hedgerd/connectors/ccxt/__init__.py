"""Real exchanges through ccxt: :class:`CcxtVenue` and its construction from a venue's config.

``convert`` parses ccxt payloads into hedgerd models (pure), ``errors`` maps ccxt exceptions,
``urls`` points ccxt's Binance and Deribit classes at ``hedgerd venue-sim``, ``traits`` holds what
differs between exchanges (units, client id parameters, listings) as data keyed by ccxt id;
``venue`` is the connector, built on ``client`` (requests), ``fills`` (fills and backfills) and
``streams`` (watch loops).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hedgerd.connectors.ccxt.build import CCXT_CACHE_LIMITS, build_ccxt_venue, create_exchange, venue_symbols
    from hedgerd.connectors.ccxt.convert import MalformedMessage
    from hedgerd.connectors.ccxt.venue import CcxtVenue

__all__ = ["CCXT_CACHE_LIMITS", "CcxtVenue", "MalformedMessage", "build_ccxt_venue", "create_exchange",
           "venue_symbols"]

# Exported on first use: config validation and the exchange simulator import urls.py and errors.py,
# which must not load ccxt and the venue with them (ccxt alone doubles the simulator process's memory).
_EXPORTED_FROM = {"CCXT_CACHE_LIMITS": "build", "build_ccxt_venue": "build", "create_exchange": "build",
                  "venue_symbols": "build", "MalformedMessage": "convert", "CcxtVenue": "venue"}


def __getattr__(name: str) -> Any:
    module = _EXPORTED_FROM.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
