"""The real ledger for ``hedgerd simulate``, answering in virtual time (see :class:`SimulationLedger`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from hedgerd.ledger import InventoryLedger
from hedgerd.models import Fill, HedgeIntent
from hedgerd.sim.clock import VirtualTimeLoop

_T = TypeVar("_T")


class SimulationLedger(InventoryLedger):
    """The real ledger, with answers in virtual time: no ledger call lets virtual time move.

    Committing on the event loop (``commit_on="loop"``, what :func:`run_simulation` uses), a
    write is answered by a callback that is already scheduled, and the work the ledger hands to
    threads (open, close, WAL resets) goes through ``run_in_executor``, which
    :class:`VirtualTimeLoop` brackets; nothing more is needed, and group commits stay
    deterministic. With a writer thread (``commit_on="thread"``) every awaitable call holds
    virtual time until the writer answers; use ``batch_max = 1`` there, so that each write is
    answered on its own (batches would depend on thread timing).
    """

    def submit_fill(self, fill: Fill) -> asyncio.Future[bool]:
        return self._held(super().submit_fill(fill))

    def prepare_intent(self, **kwargs: Any) -> tuple[HedgeIntent, asyncio.Future[Any]]:
        intent, durable = super().prepare_intent(**kwargs)
        return intent, self._held(durable)

    def _awaiting_outside_work(self) -> contextlib.AbstractContextManager[None]:
        """With a writer thread, every public coroutine method holds virtual time while it waits."""
        loop = asyncio.get_running_loop()
        if self.commit_on_loop or not isinstance(loop, VirtualTimeLoop):
            return contextlib.nullcontext()
        return loop.external_work()

    def _held(self, future: asyncio.Future[_T]) -> asyncio.Future[_T]:
        """With a writer thread, virtual time waits for ``future`` (the writer's answer)."""
        if not self.commit_on_loop:
            loop = asyncio.get_running_loop()
            if isinstance(loop, VirtualTimeLoop):
                future.add_done_callback(loop.hold_time_until_done())
        return future

