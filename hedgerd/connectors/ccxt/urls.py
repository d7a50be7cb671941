"""Where ``hedgerd venue-sim`` serves each part of the Binance and Deribit APIs that ccxt calls.

The simulator serves every API section on one host, so sections that Binance tells apart only by
host name (spot, USD-M and COIN-M websockets all end in ``/ws``; ``fapiData`` and ``dapiData``
share ``/futures/data``) get distinct paths here. A venue's ``sim_base_url`` setting (the
connector, :func:`hedgerd.connectors.ccxt.build.create_exchange`) and the simulator's own test
helpers (:mod:`hedgerd.exchange_sim.binance.urls`) both use this table, so they cannot drift apart. It lives
in the connector package because production code never imports the simulator.

ccxt is not imported here (it is untyped); the helpers return plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: ccxt exchange ids whose URL table this is (the simulator speaks Binance spot and USD-M)
SIMULATED_EXCHANGES = ("binance", "binanceusdm")

# ccxt's implicit REST API sections -> path prefix on the simulator (the real Binance paths)
_REST_SECTIONS: dict[str, str] = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
    "sapi": "/sapi/v1",
    "sapiV2": "/sapi/v2",
    "sapiV3": "/sapi/v3",
    "sapiV4": "/sapi/v4",
    "fapiPublic": "/fapi/v1",
    "fapiPublicV2": "/fapi/v2",
    "fapiPublicV3": "/fapi/v3",
    "fapiPrivate": "/fapi/v1",
    "fapiPrivateV2": "/fapi/v2",
    "fapiPrivateV3": "/fapi/v3",
    "fapiData": "/futures/data",
    "dapiPublic": "/dapi/v1",
    "dapiPrivate": "/dapi/v1",
    "dapiPrivateV2": "/dapi/v2",
    "dapiData": "/dapi-futures/data",
    "eapiPublic": "/eapi/v1",
    "eapiPrivate": "/eapi/v1",
    "papi": "/papi/v1",
    "papiV2": "/papi/v2",
}

# websocket bases. ccxt.pro treats a client url containing "/stream" as spot, so the spot base
# must contain it and the USD-M base must not; USD-M urls get /public, /market or /private
# inserted before the trailing "/ws".
SPOT_WS_PATH = "/stream/ws"
USDM_WS_PATH = "/fws/ws"
COINM_WS_PATH = "/dws/ws"
SPOT_WS_API_PATH = "/ws-api/v3"
USDM_WS_API_PATH = "/ws-fapi/v1"
COINM_WS_API_PATH = "/ws-dapi/v1"


def ws_root_from(base_url: str) -> str:
    """``http://host:port`` -> ``ws://host:port`` (``https`` -> ``wss``)."""
    if base_url.startswith("https://"):
        return "wss://" + base_url[len("https://"):].rstrip("/")
    if base_url.startswith("http://"):
        return "ws://" + base_url[len("http://"):].rstrip("/")
    return base_url.rstrip("/")


def ccxt_urls(base_url: str, ws_url: str | None = None) -> dict[str, Any]:
    """The complete ``exchange.urls['api']`` dict routing every ccxt Binance section to the simulator.

    Every section ccxt 4.5 knows (spot, sapi, USD-M, COIN-M, options, portfolio margin, and the
    websocket bases) is overridden, so no request of the instance can reach binance.com.
    ``ws_url`` is the websocket root (``ws://host:port``); derived from ``base_url`` if omitted.
    """
    base = base_url.rstrip("/")
    ws = (ws_url or ws_root_from(base)).rstrip("/")
    urls: dict[str, Any] = {name: base + path for name, path in _REST_SECTIONS.items()}
    urls["ws"] = {
        "spot": ws + SPOT_WS_PATH,
        "margin": ws + SPOT_WS_PATH,
        "linear": ws + USDM_WS_PATH,
        "inverse": ws + COINM_WS_PATH,
        "stock": ws + "/equity/ws",
        "option": ws + "/eoptions/public/ws",
        "optionMarket": ws + "/eoptions/market/ws",
        "optionPrivate": ws + "/eoptions/private/ws",
        "papi": ws + "/pm/ws",
        "ws-api": {
            "spot": ws + SPOT_WS_API_PATH,
            "linear": ws + USDM_WS_API_PATH,
            "inverse": ws + COINM_WS_API_PATH,
        },
    }
    return urls


# --------------------------------------------------------------------------- Deribit

#: ccxt exchange ids served by the simulator's Deribit API v2 protocol
DERIBIT_SIMULATED_EXCHANGES = ("deribit",)
#: Deribit's websocket JSON-RPC path (the same on the real venue and the simulator)
DERIBIT_WS_PATH = "/ws/api/v2"


def deribit_ccxt_urls(base_url: str, ws_url: str | None = None) -> dict[str, Any]:
    """``exchange.urls['api']`` routing ccxt's ``deribit`` (REST and pro) to a Deribit simulator.

    Deribit has one REST root (ccxt appends ``/api/v2/public|private/...``) and one websocket
    endpoint, so the table is two entries.
    """
    base = base_url.rstrip("/")
    ws = (ws_url or ws_root_from(base)).rstrip("/")
    return {"rest": base, "ws": ws + DERIBIT_WS_PATH}


#: ccxt exchange id -> its simulator url table (``sim_base_url`` is accepted for these ids only)
SIM_URL_TABLES: dict[str, Callable[[str], dict[str, Any]]] = {
    **{exchange: ccxt_urls for exchange in SIMULATED_EXCHANGES},
    **{exchange: deribit_ccxt_urls for exchange in DERIBIT_SIMULATED_EXCHANGES},
}


def sim_urls(exchange: str, base_url: str) -> dict[str, Any]:
    """The whole ``urls['api']`` of ccxt exchange ``exchange`` on the simulator at ``base_url``."""
    table = SIM_URL_TABLES.get(exchange)
    if table is None:
        raise ValueError(f"the simulator does not speak {exchange!r}: one of {', '.join(SIM_URL_TABLES)}")
    return table(base_url)
