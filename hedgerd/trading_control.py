"""Whether the engine may trade, and the glue around the kill switch that decides it.

:class:`TradingControl` owns the :class:`~hedgerd.killswitch.KillSwitch` and everything that
engages, reduces or resumes it, or refuses a send on its own: the config and kill-file latches,
a ledger failure, a halt signalled before the event loop got to it, the HA send fence, the
shutdown, the run of order errors, and the cancel-all on a halt. It is a class of its own so
that the last check before every send (:meth:`TradingControl.gate`) and what a resume clears
read in one place, apart from the engine's event plumbing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from hedgerd.clock import Clock
from hedgerd.config import Settings
from hedgerd.errors import VenueError
from hedgerd.executor import HedgeExecutor
from hedgerd.killswitch import KillSwitch
from hedgerd.ledger import LedgerError
from hedgerd.metrics import Metrics
from hedgerd.models import HedgeIntent, TradingState
from hedgerd.status import EngineGauges

log = structlog.get_logger("hedgerd.engine")


class TradingControl:
    """The kill switch and the engine's other reasons not to send (see the module docstring).

    ``executors()`` lists the hedge executors (each once) a halt cancels the open orders of;
    ``on_resume()`` lets the engine clear its own state after a successful resume (a detected
    foreign order, stale-price anchors) and wake the risk loop.
    """

    def __init__(self, settings: Callable[[], Settings], clock: Clock, metrics: Metrics, gauges: EngineGauges,
                 executors: Callable[[], list[HedgeExecutor]], on_resume: Callable[[], None]) -> None:
        self._settings = settings
        self.clock = clock
        self.metrics = metrics
        self.gauges = gauges
        self._executors = executors
        self._on_resume = on_resume
        self.kill_switch = KillSwitch()
        self.kill_switch.add_listener(self._on_trading_state_change)
        self.consecutive_order_errors = 0
        self.reconcile_mismatch: str | None = None  # until an operator resumes: /readyz not ready
        self.ledger_failed: str | None = None
        self.stopping = False
        self.halt_requested: str | None = None
        """Set by a signal handler the moment a halt is asked for, before the event loop gets to
        :meth:`engage` (which it may not for a while if a callback is stuck, e.g. a ledger write
        held up by the disk); every send is refused from then on."""
        self.send_fence: Callable[[], str | None] | None = None  # HA: why this instance may not send now
        self.cancel_task: asyncio.Task[None] | None = None  # the cancel-all of the last halt

    def engage(self, reason: str, source: str) -> bool:
        """Halt trading (idempotent)."""
        changed = self.kill_switch.engage(reason, source, self.clock.time())
        if changed:
            self.metrics.kill_switch_engagements.labels(source.split(":")[0]).inc()
        return changed

    def reduce(self, reason: str, source: str) -> bool:
        """Allow only position-reducing orders."""
        return self.kill_switch.reduce(reason, source, self.clock.time())

    def resume(self, source: str) -> tuple[bool, str]:
        """Deliberately leave HALTED/REDUCING; refused while a latch (kill file, config) holds."""
        self.sync_latches()
        if self.ledger_failed:
            return False, f"ledger failed: {self.ledger_failed}"
        if self.kill_switch.resume(source, self.clock.time()):
            self.consecutive_order_errors = 0
            self.reconcile_mismatch = None  # the operator has looked at it
            self._on_resume()
            return True, "resumed"
        if self.kill_switch.state is TradingState.ACTIVE:
            return True, "already active"
        return False, self.kill_switch.resume_refusal()

    def sync_latches(self) -> None:
        """Latch (or release) the halt of ``kill_switch.engaged`` and of the kill file."""
        ks = self._settings().kill_switch
        self.kill_switch.set_latch("config", ks.engaged, self.clock.time())
        self.kill_switch.set_latch("kill_file", bool(ks.kill_file and ks.kill_file.exists()),
                                   self.clock.time())

    def gate(self, intent: HedgeIntent) -> str | None:
        """Why ``intent`` may not be sent now (None: it may); asked right before every send."""
        if self.ledger_failed:
            return "ledger failed"
        if self.stopping:
            return "shutting down"
        if self.halt_requested is not None:
            return f"halt requested: {self.halt_requested}"
        if self.send_fence is not None and (fenced := self.send_fence()) is not None:
            return fenced
        if not self.kill_switch.allows(intent.reduce_only):
            return f"trading {self.kill_switch.state.name.lower()}: {self.kill_switch.reason}"
        return None

    def on_order_result(self, ok: bool, kind: str) -> None:
        """Count order errors in a row (the ``max_consecutive_errors`` trigger); a success resets it."""
        # No wake-up here: the order's task ends right after this, and its done callback
        # (the engine's _execution_done) wakes the risk loop once for every way an execution ends
        # (a success only resets the count: an order filled as sized may wait for the next pass).
        if ok:
            self.consecutive_order_errors = 0
        else:
            self.consecutive_order_errors += 1

    def ledger_failure(self, exc: LedgerError) -> None:
        """A failed ledger write halts for good (until a restart): nothing may be sent unjournaled."""
        if self.ledger_failed is None:
            self.ledger_failed = str(exc)
            self.metrics.ledger_errors.inc()
            log.error("ledger_failed", error=str(exc))
            self.engage(f"ledger failure: {exc}", "auto:ledger")

    def _on_trading_state_change(self, ks: KillSwitch) -> None:
        self.gauges.publish_trading_state(self.kill_switch)
        log.warning("trading_state", state=ks.state.name, reason=ks.reason, source=ks.source)
        if (ks.state is TradingState.HALTED and self._settings().kill_switch.cancel_open_orders_on_halt
                and self._executors() and (self.cancel_task is None or self.cancel_task.done())):
            self.cancel_task = asyncio.create_task(self.cancel_all_open(), name="cancel-on-halt")

    async def cancel_all_open(self) -> None:
        """Cancel every open hedge order (on halt, on losing leadership); failures are logged."""
        for executor in self._executors():
            try:
                await executor.cancel_all()
            except (VenueError, LedgerError) as exc:
                log.warning("cancel_on_halt_failed", error=repr(exc))
