"""Venue connectors: in-process paper venues (paper.py, the embedded default) and ccxt venues."""

from __future__ import annotations

from hedgerd.clock import Clock
from hedgerd.config import Settings, VenueKind
from hedgerd.connectors.base import Venue


def build_venues(settings: Settings, clock: Clock) -> dict[str, Venue]:
    """One connector per configured venue, keyed by venue name."""
    from hedgerd.connectors.paper import build_sim_venues

    venues: dict[str, Venue] = dict(
        build_sim_venues([v for v in settings.venues if v.kind is VenueKind.SIM], clock))
    ccxt_configs = [v for v in settings.venues if v.kind is VenueKind.CCXT]
    if ccxt_configs:
        from hedgerd.connectors.ccxt import build_ccxt_venue

        for cfg in ccxt_configs:
            venues[cfg.name] = build_ccxt_venue(cfg, settings, clock)
    return venues
