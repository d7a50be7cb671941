"""What every hedge policy shares: the configured limits, the decision and the policy interface."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Protocol

from hedgerd.models import MarketInfo, Side

if TYPE_CHECKING:
    from hedgerd.config import HedgeConfig


@dataclass(frozen=True, slots=True)
class HedgeLimits:
    """Configured limits of one hedge, in base units of the underlying.

    ``threshold`` is the half-width of the no-trade band around ``target``: a hedge is due
    when ``|net_delta - target| > threshold``. ``max_position`` caps ``|perp position|``.
    """

    threshold: Decimal
    target: Decimal
    min_order: Decimal
    max_order: Decimal
    max_position: Decimal

    def __post_init__(self) -> None:
        if self.threshold < 0 or self.min_order < 0:
            raise ValueError("threshold and min_order must be >= 0")
        if self.max_order <= 0 or self.max_position <= 0:
            raise ValueError("max_order and max_position must be > 0")
        if self.min_order > self.max_order:
            raise ValueError("min_order must not exceed max_order")

    @classmethod
    def from_config(cls, config: HedgeConfig) -> HedgeLimits:
        """The limits of a ``[[hedges]]`` config entry."""
        return cls(threshold=config.threshold, target=config.target, min_order=config.min_order,
                   max_order=config.max_order, max_position=config.max_position)


@dataclass(frozen=True, slots=True)
class HedgeDecision:
    """An order to send: ``amount`` in base units (positive, a whole number of contract steps)."""

    side: Side
    amount: Decimal
    reduce_only: bool
    reason: str

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.side is Side.BUY else -self.amount


class HedgePolicy(Protocol):
    """What the risk loop asks. ``name`` is the value of the ``--policy``/config option."""

    name: str

    def decide(self, net_delta: Decimal, perp_position: Decimal, limits: HedgeLimits,
               market: MarketInfo | None, *, price: Decimal | None = None) -> HedgeDecision | None:
        """The order to send now, or None to hold.

        ``net_delta`` includes in-flight hedges; ``price`` is the hedge instrument's mid (needed
        for the venue's ``min_notional``; without it a market with a notional minimum holds).
        """
        ...

    def observe_price(self, ts: float, mid: Decimal) -> None:
        """An accepted mid price of the hedge instrument (for policies that estimate volatility)."""
        ...

    def observe_flow(self, ts: float, signed_amount: Decimal) -> None:
        """A client (inventory) fill, signed base units (for policies that estimate flow)."""
        ...
