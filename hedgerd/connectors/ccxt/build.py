"""A ccxt venue from its configuration: the exchange object (simulator urls, error tables, cache
bounds) and the :class:`~hedgerd.connectors.ccxt.venue.CcxtVenue` around it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

from hedgerd import errors as herr
from hedgerd.clock import Clock
from hedgerd.config import Settings, VenueConfig, VenueRole
from hedgerd.connectors.ccxt.errors import align_ccxt_exceptions
from hedgerd.connectors.ccxt.fills import SAFETY_BACKFILL_INTERVAL
from hedgerd.connectors.ccxt.streams import CATCH_UP_DELAY
from hedgerd.connectors.ccxt.traits import traits_for
from hedgerd.connectors.ccxt.urls import sim_urls
from hedgerd.connectors.ccxt.venue import CcxtVenue

log = structlog.get_logger("hedgerd.ccxt")

#: Bounds of ccxt.pro's own caches (a config's ``options`` may set others). hedgerd takes each
#: watch result at once (only the new entries) and dedupes fills itself, so ccxt's caches of our
#: trades and orders only bridge the time between two reads: 1,000 is far more than arrive in that
#: time (a bigger burst falls to the backfills), and stays a few MB per venue. hedgerd watches no
#: candles, trades of others or order books, so those caches get the minimum.
CCXT_CACHE_LIMITS: dict[str, int] = {"tradesLimit": 1000, "ordersLimit": 1000, "OHLCVLimit": 1}


def deep_merge(target: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``target`` recursively (in place) and return it."""
    for key, value in override.items():
        current = target.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            deep_merge(current, value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value
    return target



def venue_symbols(cfg: VenueConfig, settings: Settings) -> list[str]:
    """The unified symbols a ccxt venue serves (besides :func:`venue_underlyings`' instruments).

    ``cfg.options["symbols"]`` (a list) wins when given. Otherwise a hedge venue serves the
    ``symbol`` of every hedge whose ``venue`` is this venue, and an inventory venue the asset of
    every inventory source on this venue that names an instrument (``BTC/USD:BTC-261227-100000-C``)
    and the spot pair of one that names a coin (``"<asset>/USDT"``; the quote is the exchange's
    ``spot_quote`` trait).
    """
    path = _venue_path(cfg, settings)
    explicit = cfg.options.get("symbols")
    if explicit is not None:
        if not isinstance(explicit, list) or not all(isinstance(s, str) and "/" in s for s in explicit):
            raise herr.ConfigError(f"{path}.options.symbols", "must be a list of unified symbols")
        symbols = list(explicit)
    elif cfg.role is VenueRole.HEDGE:
        symbols = [h.symbol for h in settings.hedges if h.venue == cfg.name]
    else:
        quote = traits_for(cfg.exchange).spot_quote
        symbols = [src.asset if "/" in src.asset else f"{src.asset}/{quote}" for h in settings.hedges
                   for src in h.inventory if src.venue == cfg.name and not src.all_instruments]
    symbols = list(dict.fromkeys(symbols))
    if not symbols and not venue_underlyings(cfg, settings):
        raise herr.ConfigError(path, f"no hedge or inventory uses venue {cfg.name!r} "
                               "(set options.symbols to stream something anyway)")
    return symbols


def venue_underlyings(cfg: VenueConfig, settings: Settings) -> list[str]:
    """The underlyings of the hedges with inventory ``"*"`` on this venue: it serves every listed
    derivative of each (resolved when its markets load)."""
    return list(dict.fromkeys(h.underlying for h in settings.hedges for src in h.inventory
                              if src.venue == cfg.name and src.all_instruments))


def same_account_hedge_symbols(cfg: VenueConfig, settings: Settings) -> list[str]:
    """Hedge symbols traded through another venue entry of the same ccxt exchange: an inventory
    ``"*"`` leaves them out, since one account is typically configured as two entries (inventory and
    hedge) and the hedge position must not also count as inventory."""
    same = {v.name for v in settings.venues if v.name != cfg.name and v.exchange == cfg.exchange
            and v.sim_base_url == cfg.sim_base_url}
    return [h.symbol for h in settings.hedges if h.venue in same]


def _venue_path(cfg: VenueConfig, settings: Settings) -> str:
    for index, venue in enumerate(settings.venues):
        if venue.name == cfg.name:
            return f"venues.{index}"
    return f"venues.{cfg.name}"


def create_exchange(cfg: VenueConfig, *, timeout: float | None = None, path: str | None = None) -> Any:
    """A ``ccxt.pro`` exchange (``ccxt.async_support`` if pro lacks it) configured from ``cfg``.

    ``cfg.options`` go to ccxt (minus hedgerd's own ``symbols`` key); sandbox mode is applied, or
    with ``cfg.sim_base_url`` every url ccxt calls is replaced by the simulator's, before
    ``cfg.urls`` is deep-merged into ``exchange.urls`` (then ccxt's per-market error tables are
    made host-independent). Credentials are never logged.
    """
    import ccxt.async_support as ccxt_async
    import ccxt.pro as ccxt_pro

    exchange_id = cfg.exchange or ""
    cls = getattr(ccxt_pro, exchange_id, None) or getattr(ccxt_async, exchange_id, None)
    if not isinstance(cls, type):
        raise herr.ConfigError(f"{path or 'venues.' + cfg.name}.exchange",
                               f"unknown ccxt exchange id {exchange_id!r}")
    params: dict[str, Any] = {
        "enableRateLimit": True,
        "options": {**CCXT_CACHE_LIMITS, **{k: v for k, v in cfg.options.items() if k != "symbols"}},
    }
    if timeout is not None:
        params["timeout"] = int(timeout * 1000)
        if traits_for(exchange_id).recv_window and "recvWindow" not in params["options"]:
            # The venue drops a signed request older than this: an order we stopped waiting
            # for cannot execute later (the executor resends only after that; Binance max 60 s).
            params["options"]["recvWindow"] = min(60_000, max(1, int(timeout * 1000)))
    for key, secret in (("apiKey", cfg.api_key), ("secret", cfg.secret), ("password", cfg.password)):
        if secret is not None and secret.get_secret_value():
            params[key] = secret.get_secret_value()
    exchange = cls(params)
    no_silent_resend(exchange)
    if cfg.sandbox:
        exchange.set_sandbox_mode(True)
    if cfg.sim_base_url is not None:
        # the whole table is replaced, not merged, so no section is left pointing at the exchange
        exchange.urls["api"] = sim_urls(str(cfg.exchange), cfg.sim_base_url)
        log.warning("venue_on_simulator", venue=cfg.name, sim_base_url=cfg.sim_base_url)
    if cfg.urls:
        deep_merge(exchange.urls, cfg.urls)
    if cfg.urls or cfg.sim_base_url is not None:
        # ccxt picks Binance's market-specific error tables by host name; keep them on other hosts
        align_ccxt_exceptions(exchange)
    return exchange


def no_silent_resend(exchange: Any) -> None:
    """Stop aiohttp from resending a request whose connection the server closed unanswered.

    aiohttp resends an idempotent-method request (GET, DELETE, ...) once when the server
    disconnects before answering; ccxt.deribit places orders with GET (``private/buy``), so an
    order the venue executed but did not answer went out twice under the same label. Only the
    executor may resend an order, after looking it up by client id. aiohttp has no public switch
    for this, so the session ccxt opens (lazily, and again after a close) gets its private one.
    """
    original = exchange.open

    def open_session(lazy: bool = False) -> None:
        original(lazy)
        session = getattr(exchange, "session", None)
        if session is not None:
            session._retry_connection = False

    exchange.open = open_session


def build_ccxt_venue(cfg: VenueConfig, settings: Settings, clock: Clock) -> CcxtVenue:
    """The connector for one ``kind = "ccxt"`` venue (see :func:`venue_symbols` for what it streams)."""
    symbols = venue_symbols(cfg, settings)
    exchange = create_exchange(cfg, timeout=settings.executor.order_timeout, path=_venue_path(cfg, settings))
    secrets = [s.get_secret_value() for s in (cfg.api_key, cfg.secret, cfg.password) if s is not None]
    hedge = cfg.role is VenueRole.HEDGE
    return CcxtVenue(cfg.name, exchange, clock, symbols=symbols, underlyings=venue_underlyings(cfg, settings),
                     exclude_symbols=same_account_hedge_symbols(cfg, settings), price_symbols=cfg.price_symbols,
                     own_client_id_prefix=settings.executor.client_id_prefix, secrets=secrets,
                     stream_orders=hedge, stream_positions=hedge, resolve_client_ids=hedge,
                     # the start-up backfill must not reach further back than the engine's
                     # reconciliation snapshot, which journals the fills an adopted balance includes
                     backfill_overlap=settings.reconcile.backfill_overlap,
                     catch_up_delay=CATCH_UP_DELAY, backfill_when_live=True,
                     safety_backfill_interval=SAFETY_BACKFILL_INTERVAL)
