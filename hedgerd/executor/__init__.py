"""Hedge order execution: rate-limited, journaled, never the same order twice.

:mod:`~hedgerd.executor.executor` holds :class:`HedgeExecutor`, :mod:`~hedgerd.executor.ratelimit`
the per-venue :class:`TokenBucket`, :mod:`~hedgerd.executor.orders` the order state machine and
:mod:`~hedgerd.executor.deadman` the venues' dead-man switches.
"""

from hedgerd.executor.deadman import DeadManSwitches
from hedgerd.executor.executor import LANDING_GRACE, HedgeExecutor
from hedgerd.executor.orders import OrderJournal
from hedgerd.executor.ratelimit import TokenBucket

__all__ = ["LANDING_GRACE", "DeadManSwitches", "HedgeExecutor", "OrderJournal", "TokenBucket"]
