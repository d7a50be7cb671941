"""The hedge venues' dead-man switches, kept armed while this instance may send (docs/ha.md).

Where a hedge venue offers one (:class:`~hedgerd.connectors.base.DeadManSwitchVenue`; Binance
USD-M's countdownCancelAll) and ``executor.dead_man_switch`` is ``auto``, the venue is told at
startup to cancel the open orders of our hedge symbols unless it hears from us again within
``executor.dead_man_switch_window``; every third of the window we tell it again. A process that
crashes, hangs or is fenced stops telling it, and its resting orders outlive it by one window at
most. A clean shutdown cancels first and then stops the timer.

A failure to arm or refresh is logged and counted (``hedgerd_dead_man_switch_errors``) but does
not halt: the switch only matters once this process is gone, and halting while it runs would
leave the book unhedged over a venue hiccup, a larger risk than an order outliving a crash (the
new process's reconciliation and the foreign-order watch still find it). If refreshes keep
failing the venue's timer runs out and it cancels our resting orders: the executor sees those
cancellations like any other and decides again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from hedgerd.clock import Clock
from hedgerd.config import ExecutorConfig
from hedgerd.connectors.base import DeadManSwitchVenue
from hedgerd.executor.executor import HedgeExecutor
from hedgerd.metrics import Metrics

log = structlog.get_logger("hedgerd.deadman")

#: refreshes per window: two can fail (or be slow) before the venue's timer runs out
REFRESHES_PER_WINDOW = 3
_DISARM_TIMEOUT = 2.0  # seconds per symbol at shutdown, inside the daemon's shutdown budget


@dataclass
class _Switch:
    venue: DeadManSwitchVenue
    name: str  # the venue's name in the config
    kind: str  # the switch's name, e.g. countdownCancelAll
    symbols: tuple[str, ...]
    executor: HedgeExecutor  # its token bucket paces the refreshes; it knows what is still open
    armed: bool = False


def refresh_interval(window: float) -> float:
    """Seconds between two refreshes of a switch whose venue waits ``window`` seconds."""
    return window / REFRESHES_PER_WINDOW


class DeadManSwitches:
    """Every hedge venue's dead-man switch: armed at :meth:`start`, refreshed until :meth:`stop`.

    ``fenced`` says why this instance may not send now (HA: its lease is not confirmed); while it
    does, the switches are not refreshed, so the venue cancels what this instance left resting.
    """

    def __init__(self, config: Callable[[], ExecutorConfig], clock: Clock, metrics: Metrics,
                 fenced: Callable[[], str | None]) -> None:
        self._config = config
        self._clock = clock
        self._metrics = metrics
        self._fenced = fenced
        self.switches: list[_Switch] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self, hedges: Iterable[tuple[HedgeExecutor, str]]) -> None:
        """Arm the switch of each venue among ``hedges`` (executor, hedge symbol) that offers one
        (returns once each was tried), then refresh them in the background."""
        if self._config().dead_man_switch == "off":
            log.info("dead_man_switch_off", detail="executor.dead_man_switch = off")
            return
        symbols: dict[str, list[str]] = {}
        executors: dict[str, HedgeExecutor] = {}
        for executor, symbol in hedges:
            symbols.setdefault(executor.venue.name, []).append(symbol)
            executors[executor.venue.name] = executor
        for name, executor in executors.items():
            venue = executor.venue
            if not isinstance(venue, DeadManSwitchVenue) or venue.dead_man_switch is None:
                log.info("dead_man_switch_unavailable", venue=name,
                         detail="the venue offers none hedgerd can use (see docs/ha.md)")
                continue
            self.switches.append(_Switch(venue, name, venue.dead_man_switch, tuple(dict.fromkeys(symbols[name])),
                                         executor))
        if not self.switches:
            return
        await self.refresh()
        self._task = asyncio.create_task(self._run(), name="dead-man-switch")

    async def _run(self) -> None:
        # Refreshes start one interval apart whatever each took, and each gives up after half a
        # window: the venue hears from us again within 1/3 + 1/2 of a window at worst.
        started = self._clock.monotonic()
        while True:
            started += refresh_interval(self._config().dead_man_switch_window)
            await self._clock.sleep(max(0.0, started - self._clock.monotonic()))
            started = self._clock.monotonic()
            await self.refresh()

    async def refresh(self) -> None:
        """Restart every switch's timer, unless this instance is fenced."""
        fenced = self._fenced()
        window = self._config().dead_man_switch_window
        for switch in self.switches:
            if fenced is not None:
                if switch.armed:
                    log.warning("dead_man_switch_left_to_run", venue=switch.name, reason=fenced, window=window,
                                detail="not refreshed while fenced: the venue cancels our open orders in one window")
                self._set_armed(switch, False)
                continue
            await self._arm(switch, window)

    async def _arm(self, switch: _Switch, window: float) -> None:
        try:
            for symbol in switch.symbols:
                await switch.executor.bucket.acquire(switch.executor.request_weight("dead_man_switch"))
                await asyncio.wait_for(switch.venue.arm_dead_man_switch([symbol], window), timeout=window / 2)
        except Exception as exc:  # any failure: counted and logged, trading goes on (module docstring)
            self._metrics.dead_man_switch_errors.labels(switch.name, "arm").inc()
            log.error("dead_man_switch_refresh_failed", venue=switch.name, switch=switch.kind, error=repr(exc),
                      detail="trading goes on; if refreshes keep failing the venue cancels our open orders")
            self._set_armed(switch, False)
            return
        if not switch.armed:
            log.info("dead_man_switch_armed", venue=switch.name, switch=switch.kind, symbols=list(switch.symbols),
                     window=window, refresh_every=refresh_interval(window))
        self._set_armed(switch, True)

    def _set_armed(self, switch: _Switch, armed: bool) -> None:
        switch.armed = armed
        self._metrics.dead_man_switch_armed.labels(switch.name).set(1 if armed else 0)

    async def stop(self, *, orders_kept: bool) -> None:
        """Stop refreshing; then stop the venue's timer of each symbol with nothing of ours open
        (every symbol if ``orders_kept``: the operator chose to leave orders resting, so the
        venue must not cancel them). A fenced instance stops none: the timer is the account's
        and symbol's, shared with the instance that leads now."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        fenced = self._fenced()
        for switch in self.switches:
            if not switch.armed:
                continue
            self._set_armed(switch, False)
            if fenced is not None:
                log.warning("dead_man_switch_left_to_run", venue=switch.name, reason=fenced)
                continue
            still_open = [s for s in switch.symbols if not orders_kept and switch.executor.has_open(s)]
            await self._disarm(switch, [s for s in switch.symbols if s not in still_open])
            if still_open:
                log.warning("dead_man_switch_left_to_run", venue=switch.name, symbols=still_open,
                            detail="orders still open after the shutdown's cancel: the venue cancels them")

    async def _disarm(self, switch: _Switch, symbols: Sequence[str]) -> None:
        for symbol in symbols:
            try:
                await asyncio.wait_for(switch.venue.disarm_dead_man_switch([symbol]), timeout=_DISARM_TIMEOUT)
            except Exception as exc:  # the timer then runs out with nothing of ours left to cancel
                self._metrics.dead_man_switch_errors.labels(switch.name, "disarm").inc()
                log.warning("dead_man_switch_disarm_failed", venue=switch.name, symbol=symbol, error=repr(exc))
                continue
            log.info("dead_man_switch_disarmed", venue=switch.name, symbol=symbol)
