"""Hedge order execution: rate-limited, journaled, never the same order twice.

:mod:`~hedgerd.executor.executor` holds :class:`HedgeExecutor`, :mod:`~hedgerd.executor.ratelimit`
the per-venue :class:`TokenBucket`, :mod:`~hedgerd.executor.requests` the paced, retried venue
requests, :mod:`~hedgerd.executor.orders` the order state machine,
:mod:`~hedgerd.executor.passive` the lifecycle of a passive intent's child orders and
:mod:`~hedgerd.executor.deadman` the venues' dead-man switches.
"""

from hedgerd.executor.deadman import DeadManSwitches
from hedgerd.executor.executor import HedgeExecutor
from hedgerd.executor.orders import OrderJournal
from hedgerd.executor.ratelimit import TokenBucket
from hedgerd.executor.requests import LANDING_GRACE

__all__ = ["LANDING_GRACE", "DeadManSwitches", "HedgeExecutor", "OrderJournal", "TokenBucket"]
