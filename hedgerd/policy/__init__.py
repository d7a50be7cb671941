"""Hedge policies: pure functions from net delta to an order (or nothing).

A policy answers one question: given the net delta of an underlying (already including
in-flight hedges), the current perp position, the configured limits and the instrument,
what order (if any) should be sent now? It does no I/O and reads no clock.

Every policy splits the work in two: *what it wants*, a signed amount in base units
(:class:`FixedThresholdPolicy` in :mod:`~hedgerd.policy.fixed`: back to the target once outside
a fixed band; :class:`AdaptiveBandPolicy` in :mod:`~hedgerd.policy.adaptive`: back to the inner
edge of a band whose width it estimates online; :class:`GammaBandPolicy` in
:mod:`~hedgerd.policy.gamma`: that band widened by the options book's gamma), and
:func:`~hedgerd.policy.sizing.size_order`, shared by all policies, which fits that wish to the limits and the venue.

Policies may keep state; the engine keeps one policy instance per underlying (built by
:func:`build_policy` from the ``[policy]`` config section) and feeds it through
:meth:`HedgePolicy.observe_price` and :meth:`HedgePolicy.observe_flow`. The adaptive band's
derivation is in docs/policy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hedgerd.policy.adaptive import AdaptiveBandPolicy, AdaptiveParams, Band
from hedgerd.policy.base import HedgeDecision, HedgeLimits, HedgePolicy
from hedgerd.policy.fixed import FixedThresholdPolicy
from hedgerd.policy.gamma import GammaBandPolicy
from hedgerd.policy.sizing import SizedOrder, reduces_position, size_order

if TYPE_CHECKING:
    from hedgerd.config import PolicyConfig

__all__ = [
    "POLICY_NAMES",
    "AdaptiveBandPolicy",
    "AdaptiveParams",
    "Band",
    "FixedThresholdPolicy",
    "GammaBandPolicy",
    "HedgeDecision",
    "HedgeLimits",
    "HedgePolicy",
    "SizedOrder",
    "build_policy",
    "reduces_position",
    "size_order",
]

POLICY_NAMES = ("fixed", "adaptive", "gamma")


def build_policy(config: PolicyConfig | None = None, name: str | None = None) -> HedgePolicy:
    """A fresh policy instance: ``name`` (else ``config.name``, else "fixed") with ``config``'s parameters."""
    chosen = name or (config.name if config is not None else "fixed")
    if chosen == "fixed":
        return FixedThresholdPolicy()
    if chosen == "adaptive":
        params = AdaptiveParams.from_config(config.adaptive) if config is not None else AdaptiveParams()
        return AdaptiveBandPolicy(params)
    if chosen == "gamma":
        params = AdaptiveParams.from_config(config.adaptive) if config is not None else AdaptiveParams()
        negligible = config.gamma.negligible_gamma if config is not None else 1e-9
        return GammaBandPolicy(params, negligible_gamma=negligible)
    raise ValueError(f"unknown policy {chosen!r} (one of {', '.join(POLICY_NAMES)})")
