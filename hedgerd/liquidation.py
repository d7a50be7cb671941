"""Polls each hedge position's liquidation price and margin ratio from its venue, every
``risk.liquidation_poll_interval`` seconds, into the hedge's state (the risk pass's
liquidation-distance trigger reads it, :mod:`hedgerd.killswitch`) and the metrics
``hedgerd_hedge_liquidation_price``, ``hedgerd_hedge_liquidation_distance`` and
``hedgerd_hedge_margin_ratio``.

Only venues that report it (:class:`~hedgerd.connectors.base.PositionRiskSource`) are polled.
A failed poll keeps the last figures (the trigger acts on the last known distance), counts a
venue error of kind ``position_risk`` and is logged; a flat position clears them (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from decimal import Decimal

import structlog

from hedgerd.clock import Clock
from hedgerd.connectors.base import PositionRiskSource, Venue
from hedgerd.errors import VenueError
from hedgerd.metrics import Metrics
from hedgerd.models import PositionRisk, PriceUpdate
from hedgerd.risk.liquidation import liquidation_distance
from hedgerd.risk_pass import HedgeState

log = structlog.get_logger(__name__)


#: Seconds between looks at the ledger's hedge positions (no request): a position that changed
#: since the last poll is polled again at once, so a new or grown position's liquidation price is
#: known within about a second rather than a whole interval.
_LOOK = 1.0


class LiquidationWatch:
    """The poll loop (see the module docstring); ``interval()`` is read before every wait.

    ``position(venue, symbol)`` is the ledger's hedge position: a hedge whose position differs
    from what its last poll saw is polled again after at most :data:`_LOOK` seconds.
    """

    def __init__(self, hedges: Mapping[str, HedgeState], venues: Mapping[str, Venue], metrics: Metrics,
                 clock: Clock, interval: Callable[[], float],
                 position: Callable[[str, str], Decimal] | None = None) -> None:
        self.hedges = hedges
        self.venues = venues
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self.position = position
        self._polled: dict[str, Decimal] = {}  # underlying -> the ledger's position at its last poll

    async def run(self) -> None:
        """Poll until cancelled."""
        due = self.clock.monotonic()
        while True:
            now = self.clock.monotonic()
            try:
                await self.poll_once(None if now >= due else self._moved())
            except Exception:  # a bug here must not end the polls: the trigger would go blind
                log.exception("position_risk_poll_failed")
            if now >= due:
                due = now + self.interval()
            await self.clock.sleep(min(_LOOK, max(0.0, due - self.clock.monotonic())))

    def _moved(self) -> set[str]:
        """The hedges whose ledger position changed since their last poll."""
        if self.position is None:
            return set()
        return {u for u, s in self.hedges.items()
                if self.position(s.config.venue, s.config.symbol) != self._polled.get(u)}

    async def poll_once(self, only: set[str] | None = None) -> None:
        """One poll of every hedge (or those in ``only``) on a venue that reports position risk."""
        for underlying, state in list(self.hedges.items()):
            cfg = state.config
            venue = self.venues.get(cfg.venue)
            if not isinstance(venue, PositionRiskSource) or (only is not None and underlying not in only):
                continue
            if self.position is not None:
                self._polled[underlying] = self.position(cfg.venue, cfg.symbol)
            try:
                risk = await venue.fetch_position_risk(cfg.symbol)
            except VenueError as exc:
                self.metrics.venue_errors.labels(cfg.venue, "position_risk").inc()
                log.warning("position_risk_failed", venue=cfg.venue, symbol=cfg.symbol, error=str(exc))
                continue
            state.liquidation = risk
            self.export(underlying, risk)

    def export(self, underlying: str, risk: PositionRisk | None) -> None:
        """Set the three gauges of ``underlying`` from ``risk`` (None: no position, NaN)."""
        distance = None if risk is None else liquidation_distance(risk)
        price = None if risk is None or not risk.position else risk.liquidation_price
        ratio = None if risk is None or not risk.position else risk.margin_ratio
        self.metrics.hedge_liquidation_price.labels(underlying).set(_float(price))
        self.metrics.hedge_liquidation_distance.labels(underlying).set(_float(distance))
        self.metrics.hedge_margin_ratio.labels(underlying).set(_float(ratio))
        if distance is not None:
            log.debug("position_risk", underlying=underlying, liquidation_price=str(price),
                      distance=str(distance), margin_ratio=str(ratio))


def liquidation_status(state: HedgeState, prices: Mapping[tuple[str, str], PriceUpdate]) -> dict[str, object] | None:
    """A hedge's liquidation safety for ``/status``: the last polled liquidation price and margin
    ratio, the distance at the hedge's latest mid (what the trigger uses) and the venue's time of them;
    None before a poll or for a venue that reports none."""
    risk = state.liquidation
    if risk is None:
        return None
    price = prices.get((state.config.venue, state.config.symbol))
    distance = liquidation_distance(risk, None if price is None else price.mid)
    return {"liquidation_price": None if risk.liquidation_price is None else str(risk.liquidation_price),
            "distance": None if distance is None else str(distance.quantize(Decimal("0.0001"))),
            "margin_ratio": None if risk.margin_ratio is None else str(risk.margin_ratio),
            "position": str(risk.position), "as_of": risk.ts or None}


def _float(value: Decimal | None) -> float:
    return math.nan if value is None else float(value)
