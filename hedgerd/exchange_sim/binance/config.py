"""Server-level settings of the Binance-protocol simulator and its request counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from hedgerd.exchange_sim.binance.urls import DEFAULT_API_KEY, DEFAULT_SECRET
from hedgerd.exchange_sim.model import EngineConfig


@dataclass
class SimConfig:
    """Server-level settings of the simulator (the market itself is :class:`EngineConfig`)."""

    host: str = "127.0.0.1"
    port: int = 8901
    api_key: str = DEFAULT_API_KEY
    secret: str = DEFAULT_SECRET
    engine: EngineConfig = field(default_factory=EngineConfig)
    tick_interval: float = 0.25
    spot_weight_limit: int = 6000
    usdm_weight_limit: int = 2400
    weight_window_seconds: float = 60.0
    ban_after: int = 3
    ban_seconds: float = 120.0
    spot_order_limit: int = 100
    spot_order_window_seconds: float = 10.0
    usdm_order_limit: int = 1200
    usdm_order_window_seconds: float = 60.0
    listen_key_ttl_seconds: float = 3600.0
    funding_interval: float = 8 * 3600.0  # seconds between USD-M funding times (binance/funding.py)


@dataclass
class SimStats:
    """Counters exposed by ``GET /_sim/stats``."""

    requests: int = 0
    faults_5xx: int = 0
    faults_timeout: int = 0
    ws_dropped: int = 0
    ws_connections: int = 0
