"""The running daemon: engine + admin server + POSIX signals + config reload.

Signals: SIGUSR1 halts trading (a plain handler: sends stop even while the loop is stuck),
SIGUSR2 resumes it, SIGHUP reloads the config file (safe fields only; an invalid file keeps the
old config), SIGTERM/SIGINT stop gracefully.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path
from typing import Any

import structlog

from hedgerd.admin.server import AdminServer
from hedgerd.admin.token import GENERATE_HINT
from hedgerd.clock import Clock, RealClock
from hedgerd.config import AdminConfig, Settings, load_settings, reload_diff
from hedgerd.connectors import build_venues
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.funding import FundingPoller
from hedgerd.ledger import InventoryLedger
from hedgerd.liquidation import LiquidationWatch, liquidation_status
from hedgerd.log import configure_logging
from hedgerd.metrics import Metrics
from hedgerd.paper import archive_previous_run, starts_clean

log = structlog.get_logger("hedgerd.daemon")

SHUTDOWN_BUDGET = 8.0  # seconds; SIGTERM must exit within 10 s


def freeze_startup_heap() -> int:
    """Collect once, then exempt everything alive from the cyclic GC; returns how many objects.

    Called when startup is done. What startup builds (settings, markets, the loaded modules,
    ccxt's above all) lives as long as the process; left in the GC's oldest generation, every
    full collection walks all of it again, on the event loop, a stall of tens of milliseconds
    (docs/performance.md). Frozen, a full collection walks only what was allocated since.
    Frozen objects are still freed when their last reference goes; only garbage cycles among
    them would stay, and the collection just before the freeze has removed those.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class Daemon:
    """Owns every long-lived component of one hedgerd process."""

    def __init__(self, settings: Settings, *, config_file: Path | None = None,
                 clock: Clock | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.config_file = config_file
        self.clock = clock or RealClock()
        self.metrics = metrics or Metrics()
        commit_on = settings.ledger.commit_on
        self.ledger = InventoryLedger(settings.ledger.location(), synchronous=settings.ledger.synchronous,
                                      batch_max=settings.ledger.batch_max, metrics=self.metrics,
                                      commit_on=None if commit_on == "auto" else commit_on)
        self.venues = build_venues(settings, self.clock)
        self.engine = HedgeEngine(settings, self.venues, self.ledger, self.clock, self.metrics)
        self.funding: FundingPoller | None = None  # once the engine has started
        self.admin = AdminServer(self)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_usr1: Any = signal.SIG_DFL

    # ----------------------------------------------------------------- admin (hedgerd.admin.server.Control)
    @property
    def admin_config(self) -> AdminConfig:
        return self.settings.admin

    def render_metrics(self) -> bytes:
        self.engine.refresh_gauges()
        return self.metrics.render()

    def trading_state(self) -> tuple[str, str]:
        ks = self.engine.kill_switch
        return ks.state.name.lower(), ks.reason

    def readiness(self) -> tuple[bool, list[str]]:
        return self.engine.readiness()

    def status(self) -> dict[str, Any]:
        view = self.engine.status()
        for underlying, entry in view["underlyings"].items():  # the watch is the daemon's
            entry["liquidation"] = liquidation_status(self.engine.hedges[underlying], self.engine.prices)
        return view

    def engage(self, reason: str, source: str) -> bool:
        return self.engine.engage(reason, source)

    def reduce(self, reason: str, source: str) -> bool:
        return self.engine.reduce(reason, source)

    def resume(self, source: str) -> tuple[bool, str]:
        return self.engine.resume(source)

    def request_stop(self) -> None:
        self._stop.set()

    async def _start_paper_run_clean(self) -> None:
        """Paper mode on simulated venues: archive the previous run's ledger (see hedgerd.paper)."""
        if not starts_clean(self.settings):
            return
        previous = await archive_previous_run(self.settings, self.clock.time())
        log.info("paper_run_starts_clean", ledger=str(self.settings.ledger.path),
                 detail="simulated venues restart empty, so each paper run starts with an empty ledger",
                 previous_archived_to=None if previous is None else str(previous.archived_to),
                 previous_fills=None if previous is None else previous.fills,
                 previous_positions=None if previous is None else previous.positions)

    async def run(self) -> None:
        """Start everything, serve until asked to stop, then shut down within the budget."""
        self.metrics.up_since.set(self.clock.time())
        weakness = self.settings.admin.token_weakness()
        if weakness is not None:  # live mode refuses it when the config is loaded
            log.warning("admin_token_weak", field="admin.token", problem=weakness, mode=self.settings.mode.value,
                        detail=f"accepted in paper mode, refused in live mode; {GENERATE_HINT}")
        await self._start_paper_run_clean()
        await self.admin.start()
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        # Startup (reconciliation against slow venues) can take long: a stop request cuts it short.
        starting = asyncio.create_task(self.engine.start(), name="engine-start")
        stop_requested = asyncio.create_task(self._stop.wait(), name="stop-requested")
        watching: asyncio.Task[None] | None = None  # the hedge positions' liquidation safety (hedgerd.liquidation)
        try:
            await asyncio.wait({starting, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
            if starting.done():
                starting.result()  # a startup failure propagates
                self.funding = FundingPoller.for_engine(self.engine)
                self.funding.start()  # its first poll backfills the funding paid while we were down
                log.info("startup_heap_frozen", objects=freeze_startup_heap())
                watching = asyncio.create_task(LiquidationWatch(
                    self.engine.hedges, self.engine.venues, self.metrics, self.clock,
                    lambda: self.engine.settings.risk.liquidation_poll_interval, self.ledger.position).run(),
                    name="liquidation-watch")
                await stop_requested
            else:
                log.warning("startup_interrupted")
        finally:
            stop_requested.cancel()
            if watching is not None:
                watching.cancel()
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            log.info("shutting_down")
            if self.funding is not None:
                await self.funding.stop()
            try:
                await asyncio.wait_for(self.engine.stop(), timeout=SHUTDOWN_BUDGET)
            except TimeoutError:
                log.error("shutdown_timeout", budget=SHUTDOWN_BUDGET)
                try:  # whatever else overran, the journal must be flushed and closed
                    await asyncio.wait_for(self.ledger.close(), timeout=1.0)
                except TimeoutError:
                    log.error("ledger_close_timeout")
            await self.admin.stop()
            self._remove_signals(loop)

    # ----------------------------------------------------------------- signals
    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        handlers: dict[signal.Signals, Any] = {
            signal.SIGTERM: self.request_stop,
            signal.SIGINT: self.request_stop,
            signal.SIGUSR2: lambda: self._signal_resume(),
            signal.SIGHUP: lambda: self.reload(),
        }
        for sig, handler in handlers.items():
            loop.add_signal_handler(sig, handler)
        # SIGUSR1 (halt) gets a plain Python handler instead: it runs in the main thread as soon
        # as the interpreter gets control back, even in the middle of a stuck loop callback, and
        # sets a flag every send checks; a handler added with add_signal_handler would only run
        # once the loop next polls for I/O, after whatever sends were already queued.
        self._loop = loop
        self._previous_usr1 = signal.signal(signal.SIGUSR1, self._on_sigusr1)

    def _remove_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        signal.signal(signal.SIGUSR1, self._previous_usr1)

    def _on_sigusr1(self, signum: int, frame: object) -> None:
        # Only a flag and a thread-safe hand-off here: this may interrupt the loop's own code.
        self.engine.halt_requested = "operator kill via SIGUSR1"
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._signal_kill)

    def _signal_kill(self) -> None:
        self.engine.engage("operator kill via SIGUSR1", "signal:SIGUSR1")
        self.engine.halt_requested = None  # the kill switch holds it now

    def _signal_resume(self) -> None:
        ok, detail = self.engine.resume("signal:SIGUSR2")
        log.warning("resume_requested", source="signal:SIGUSR2", ok=ok, detail=detail)

    # ----------------------------------------------------------------- reload
    def reload(self) -> bool:
        """Re-read the config; apply safe changes, keep the old config on any error."""
        try:
            new = load_settings(self.config_file)
        except ConfigError as exc:
            log.error("reload_rejected", path=exc.path, reason=exc.reason)
            return False
        applied, rejected = reload_diff(self.settings, new)
        if rejected:
            log.error("reload_rejected", reason="fields need a restart", fields=rejected)
            return False
        # The one place reloaded settings take effect: each component takes its own part.
        self.settings = new
        self.engine.apply_settings(new)
        configure_logging(new.logging.format, new.logging.level)
        log.warning("config_reloaded", changed=applied)
        return True


async def run_daemon(settings: Settings, config_file: Path | None = None) -> int:
    """Entry point of ``hedgerd run``; returns the process exit code."""
    daemon = Daemon(settings, config_file=config_file)
    await daemon.run()
    return 0
