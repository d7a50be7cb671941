"""Real exchanges through ccxt: :class:`CcxtVenue` and its construction from a venue's config.

``convert`` parses ccxt payloads into hedgerd models (pure), ``errors`` maps ccxt exceptions,
``urls`` points ccxt's Binance classes at ``hedgerd venue-sim``, ``venue`` is the connector.
"""

from hedgerd.connectors.ccxt.build import CCXT_CACHE_LIMITS, build_ccxt_venue, create_exchange, venue_symbols
from hedgerd.connectors.ccxt.convert import MalformedMessage
from hedgerd.connectors.ccxt.venue import CcxtVenue

__all__ = ["CCXT_CACHE_LIMITS", "CcxtVenue", "MalformedMessage", "build_ccxt_venue", "create_exchange",
           "venue_symbols"]
