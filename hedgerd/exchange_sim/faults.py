"""Fault-injection switches of the venue simulator and the user-data trade-message shaper.

Every switch is a plain field of :class:`FaultConfig`; flip them on the Python object or with
``POST /_sim/faults`` (a JSON object of field -> value). Rates are probabilities per event;
``*_next`` counters make a fault hit the next N events deterministically (tests use these).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from aiohttp import web

FIVE_XX_SCOPES = ("orders", "all")
TIMEOUT_MODES = ("hang", "drop")
WS_SCOPES = ("all", "user", "market")


@dataclass
class FaultConfig:
    """Current fault switches (all off by default)."""

    latency_ms: float = 0.0
    """Delay added before every REST request is processed."""
    latency_jitter_ms: float = 0.0
    """Uniform extra delay in [0, jitter]."""
    error_5xx_rate: float = 0.0
    """Probability that a REST request in scope is answered with a 5xx."""
    error_5xx_next: int = 0
    """The next N requests in scope are answered with a 5xx."""
    error_5xx_status: int = 503
    error_5xx_scope: str = "orders"
    """"orders" (order entry and cancel) or "all" (every REST endpoint)."""
    error_5xx_executes: bool = False
    """Execute the order before answering 5xx (Binance: 'execution status unknown')."""
    order_timeout_rate: float = 0.0
    """Accept-then-timeout: probability that a new order executes but gets no response."""
    order_timeout_next: int = 0
    order_timeout_mode: str = "hang"
    """"hang": hold the request for ``hang_seconds`` and then drop it; "drop": close at once."""
    hang_seconds: float = 30.0
    ws_drop_interval: float = 0.0
    """Close streams every N seconds (0: off)."""
    ws_drop_scope: str = "all"
    """Which streams the periodic drop closes: "all", "user" or "market"."""
    duplicate_trade_rate: float = 0.0
    """Probability that a user-data trade message is delivered twice."""
    duplicate_trade_next: int = 0
    reorder_trade_rate: float = 0.0
    """Probability that a user-data trade message is held back and sent after the next one."""
    reorder_trade_next: int = 0
    reorder_hold_ms: float = 500.0
    """A held-back message is delivered after this long even if no other trade follows."""
    market_data_paused: bool = False
    """Stop sending market-data stream messages (connections stay open)."""
    user_data_paused: bool = False
    """Drop user-data stream events (connections stay open): a stream that died silently."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def update(self, values: Mapping[str, Any]) -> None:
        """Set fields from a JSON-like mapping; ValueError on unknown keys or bad values."""
        known = {f.name: f for f in fields(self)}
        staged: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise ValueError(f"unknown fault switch: {key}")
            current = getattr(self, key)
            staged[key] = _coerce(key, value, current)
        for key, value in staged.items():
            setattr(self, key, value)

    def reset(self) -> None:
        """Turn every fault off."""
        for f in fields(self):
            setattr(self, f.name, getattr(FaultConfig(), f.name))

    def take(self, rate_field: str, next_field: str, rng: random.Random) -> bool:
        """Decide one event: consume a ``*_next`` count if any, else draw against the rate."""
        pending = int(getattr(self, next_field))
        if pending > 0:
            setattr(self, next_field, pending - 1)
            return True
        rate = float(getattr(self, rate_field))
        return rate > 0 and rng.random() < rate


def _coerce(key: str, value: Any, current: Any) -> Any:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{key} must be a boolean")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a non-negative integer")
        if key == "error_5xx_status" and not 500 <= value <= 599:
            raise ValueError(f"{key} must be a 5xx status")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{key} must be a non-negative number")
        if key.endswith("_rate") and value > 1:
            raise ValueError(f"{key} must be a probability in [0, 1]")
        return float(value)
    choices = {"error_5xx_scope": FIVE_XX_SCOPES, "order_timeout_mode": TIMEOUT_MODES,
               "ws_drop_scope": WS_SCOPES}.get(key, ())
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}")
    return value


class TradeMessageShaper:
    """Applies the duplicate / out-of-order faults to one user-data stream's messages.

    ``shape`` takes each outgoing payload and returns what to deliver now; a held-back
    trade message comes out behind the next trade message or from ``flush_due``.
    """

    def __init__(self, faults: FaultConfig, rng: random.Random) -> None:
        self._faults = faults
        self._rng = rng
        self._held: tuple[Any, float] | None = None
        self.duplicated = 0
        self.reordered = 0

    def shape(self, payload: Any, is_trade: bool, now_s: float) -> list[Any]:
        if not is_trade:
            return [payload]
        out = [payload]
        if self._faults.take("duplicate_trade_rate", "duplicate_trade_next", self._rng):
            out.append(payload)
            self.duplicated += 1
        if self._held is not None:
            held, _ = self._held
            self._held = None
            return [*out, held]
        if self._faults.take("reorder_trade_rate", "reorder_trade_next", self._rng):
            self._held = (payload, now_s)
            self.reordered += 1
            return out[1:]
        return out

    def flush_due(self, now_s: float) -> list[Any]:
        """Release a held message older than ``reorder_hold_ms``."""
        if self._held is None:
            return []
        payload, since = self._held
        if (now_s - since) * 1000.0 >= self._faults.reorder_hold_ms:
            self._held = None
            return [payload]
        return []


class PeriodicDrop:
    """When the ``ws_drop_interval`` switch drops streams, for every wire protocol: the first
    drop comes one interval after the switch is turned on, then one every interval."""

    def __init__(self, faults: FaultConfig) -> None:
        self._faults = faults
        self._last: float | None = None

    def due(self, now: float) -> bool:
        """Whether to drop now (``now``: monotonic seconds, polled at least once per interval)."""
        interval = self._faults.ws_drop_interval
        if interval <= 0:
            self._last = None
            return False
        if self._last is None:
            self._last = now
            return False
        if now - self._last >= interval:
            self._last = now
            return True
        return False


def add_fault_routes(router: web.UrlDispatcher, faults: FaultConfig) -> None:
    """``GET/POST /_sim/faults`` and ``POST /_sim/faults/reset`` on ``faults``, for every wire protocol."""

    async def get(_request: web.Request) -> web.Response:
        return web.json_response(faults.to_dict())

    async def update(request: web.Request) -> web.Response:
        try:
            values = await request.json() if request.can_read_body else {}
            if not isinstance(values, dict):
                raise ValueError("body must be a JSON object")
            faults.update(values)
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.to_dict())

    async def reset(_request: web.Request) -> web.Response:
        faults.reset()
        return web.json_response(faults.to_dict())

    router.add_get("/_sim/faults", get)
    router.add_post("/_sim/faults", update)
    router.add_post("/_sim/faults/reset", reset)
