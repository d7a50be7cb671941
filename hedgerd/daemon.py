"""The running daemon: engine + admin server + POSIX signals + config reload (+ HA leadership).

Signals: SIGUSR1 halts trading (a plain handler: sends stop even while the loop is stuck),
SIGUSR2 resumes it, SIGHUP reloads the config file (safe fields only; an invalid file keeps the
old config), SIGTERM/SIGINT stop gracefully.

With ``ha.enabled`` the engine starts only once this instance leads its pair (docs/ha.md): a
standby serves its admin endpoints and competes for the lock, nothing else. A leader that loses
the lock halts, cancels what it can and exits with :data:`EXIT_STEPPED_DOWN`, for its supervisor
to restart it as a standby.
"""

from __future__ import annotations

import asyncio
import gc
import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from hedgerd.admin.server import AdminServer
from hedgerd.admin.token import GENERATE_HINT
from hedgerd.clock import Clock, RealClock
from hedgerd.config import AdminConfig, Settings, load_settings, reload_diff
from hedgerd.connectors import build_venues
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.funding import FundingPoller
from hedgerd.ha import Leadership, LeadershipLost, LockSession, Role, derive_lock_key
from hedgerd.ledger import InventoryLedger
from hedgerd.liquidation import LiquidationWatch, liquidation_status
from hedgerd.log import configure_logging
from hedgerd.metrics import Metrics
from hedgerd.paper import archive_previous_run, starts_clean

log = structlog.get_logger("hedgerd.daemon")

SHUTDOWN_BUDGET = 8.0  # seconds; SIGTERM must exit within 10 s
EXIT_STEPPED_DOWN = 75  # EX_TEMPFAIL: leadership lost; restart me (as a standby)
_STEP_DOWN_CANCEL = 3.0  # seconds a stepping-down leader spends cancelling open orders at most


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
        self.leadership = build_leadership(settings, self.clock, self.metrics) if settings.ha.enabled else None
        if self.leadership is not None:
            self.engine.control.send_fence = self.leadership.fence  # checked in the engine's gate, before every send
        self.exit_code = 0
        self._engine_started = False  # engine.start() was called (so engine.stop() must run)
        self._stop = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_usr1: Any = signal.SIG_DFL

    # ----------------------------------------------------------------- admin (hedgerd.admin.server.Control)
    @property
    def admin_config(self) -> AdminConfig:
        return self.settings.admin

    def render_metrics(self) -> bytes:
        self.engine.refresh_gauges()
        if self.leadership is not None:
            self.metrics.ready.set(1 if self.readiness()[0] else 0)
        return self.metrics.render()

    def trading_state(self) -> tuple[str, str]:
        ks = self.engine.kill_switch
        return ks.state.name.lower(), ks.reason

    def readiness(self) -> tuple[bool, list[str]]:
        """The engine's readiness; with HA, a healthy standby is ready too (docs/ha.md: Kubernetes
        gates rolling updates and disruption budgets on readiness, and a standby that can take
        over is exactly what they should count), one that cannot reach the lock database is not."""
        lead = self.leadership
        if lead is None or (lead.role is Role.ACTIVE and self._engine_started):
            return self.engine.readiness()
        if lead.role is Role.STANDBY:
            problems = [] if lead.db_error is None else [f"standby cannot reach the lock database: {lead.db_error}"]
            return not problems, problems
        if lead.role is Role.STEPPED_DOWN:
            return False, [f"stepped down: {lead.lost_reason}"]
        return False, ["taking over: waiting out the previous leader's lease"]

    def role(self) -> str | None:
        return None if self.leadership is None else self.leadership.role.value

    def status(self) -> dict[str, Any]:
        lead = self.leadership
        if lead is not None and not self._engine_started:
            view = self._standby_status()
        else:
            view = self.engine.status()
            for underlying, entry in view["underlyings"].items():  # the watch is the daemon's
                entry["liquidation"] = liquidation_status(self.engine.hedges[underlying], self.engine.prices)
        if lead is not None:
            view["role"] = lead.role.value
            view["ha"] = lead.status()
        return view

    def _standby_status(self) -> dict[str, Any]:
        """``/status`` before the engine has started: no ledger is open, nothing is hedged."""
        ks = self.engine.kill_switch
        ready, problems = self.readiness()
        return {"mode": self.settings.mode.value, "trading_state": ks.state.name.lower(), "reason": ks.reason,
                "source": ks.source, "since": ks.since if ks.history else None, "latches": sorted(ks.latches),
                "ready": ready, "not_ready": problems, "underlyings": {}, "open_orders": []}

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
        stop_requested = asyncio.create_task(self._stop.wait(), name="stop-requested")
        watching: asyncio.Task[None] | None = None  # the hedge positions' liquidation safety (hedgerd.liquidation)
        try:
            if await self._lead(stop_requested):
                self._engine_started = True
                # Startup (reconciliation against slow venues) can take long: a stop request cuts it short.
                if await self._unless_stopped(self.engine.start(), stop_requested, "engine-start"):
                    # Only the leader polls: a standby has no ledger open and no position to watch.
                    watching = self._start_pollers()
                    log.info("startup_heap_frozen", objects=freeze_startup_heap())
                    await self._serve(stop_requested)
                else:
                    log.warning("startup_interrupted")
        finally:
            stop_requested.cancel()
            if watching is not None:
                watching.cancel()
            log.info("shutting_down")
            if self.funding is not None:
                await self.funding.stop()
            if self._engine_started:
                await self._stop_engine()
            if self.leadership is not None:
                await self.leadership.close()
            await self.admin.stop()
            self._remove_signals(loop)

    def _start_pollers(self) -> asyncio.Task[None]:
        """Start the funding poller (its first poll backfills the funding paid while we were down)
        and the hedge positions' liquidation watch (:mod:`hedgerd.liquidation`), once the engine runs."""
        self.funding = FundingPoller.for_engine(self.engine)
        self.funding.start()
        return asyncio.create_task(LiquidationWatch(
            self.engine.hedges, self.engine.venues, self.metrics, self.clock,
            lambda: self.engine.settings.risk.liquidation_poll_interval, self.ledger.position).run(),
            name="liquidation-watch")

    async def _lead(self, stop_requested: asyncio.Task[Any]) -> bool:
        """Without HA: True. With HA: compete for leadership until ACTIVE (True), or a stop
        request (False), or the lock lost while taking over (False, exit code set)."""
        if self.leadership is None:
            return True
        log.info("ha_standby", lock_key=self.leadership.key, detail="competing for leadership; sending nothing")
        try:
            return await self._unless_stopped(self.leadership.acquire(), stop_requested, "ha-acquire")
        except LeadershipLost as exc:
            log.error("ha_stepping_down", reason=str(exc), exit_code=EXIT_STEPPED_DOWN)
            self.exit_code = EXIT_STEPPED_DOWN
            return False

    @staticmethod
    async def _unless_stopped(work: Any, stop_requested: asyncio.Task[Any], name: str) -> bool:
        """Run ``work`` until it completes (True; its failure propagates) or a stop is requested
        (False, ``work`` cancelled)."""
        task = asyncio.create_task(work, name=name)
        try:
            await asyncio.wait({task, stop_requested}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled():
            return False
        task.result()
        return True

    async def _serve(self, stop_requested: asyncio.Task[Any]) -> None:
        """Run until a stop request or, with HA, until leadership is lost or the ledger fails
        (then step down)."""
        lead = self.leadership
        if lead is None:
            await stop_requested
            return
        lost = asyncio.create_task(lead.lost.wait(), name="ha-lost")
        try:
            while not (stop_requested.done() or lost.done()):
                await asyncio.wait({lost, stop_requested}, timeout=lead.config.heartbeat,
                                   return_when=asyncio.FIRST_COMPLETED)
                if self.engine.control.ledger_failed is not None and not stop_requested.done():
                    # A failed ledger halts for good until a restart; a leader holding the lock
                    # meanwhile would keep the standby, whose ledger may work, from taking over.
                    await self._step_down(f"ledger failed: {self.engine.control.ledger_failed}")
                    return
        finally:
            lost.cancel()
        if lead.lost.is_set():
            await self._step_down(lead.lost_reason)

    async def _step_down(self, reason: str) -> None:
        """Leadership lost: sends are already refused (the gate asks the lease); halt so nothing
        more is decided, cancel what can be cancelled, and exit for the supervisor to restart us."""
        log.error("ha_stepping_down", reason=reason, exit_code=EXIT_STEPPED_DOWN)
        self.exit_code = EXIT_STEPPED_DOWN
        self.engine.engage(f"leadership lost: {reason}", "auto:ha")
        try:
            await asyncio.wait_for(self.engine.control.cancel_all_open(), timeout=_STEP_DOWN_CANCEL)
        except TimeoutError:
            log.error("ha_step_down_cancel_timeout", budget=_STEP_DOWN_CANCEL)

    async def _stop_engine(self) -> None:
        try:
            await asyncio.wait_for(self.engine.stop(), timeout=SHUTDOWN_BUDGET)
        except TimeoutError:
            log.error("shutdown_timeout", budget=SHUTDOWN_BUDGET)
            try:  # whatever else overran, the journal must be flushed and closed
                await asyncio.wait_for(self.ledger.close(), timeout=1.0)
            except TimeoutError:
                log.error("ledger_close_timeout")

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
        self.engine.control.halt_requested = "operator kill via SIGUSR1"
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._signal_kill)

    def _signal_kill(self) -> None:
        self.engine.engage("operator kill via SIGUSR1", "signal:SIGUSR1")
        self.engine.control.halt_requested = None  # the kill switch holds it now

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


def ledger_identity(settings: Settings) -> str:
    """The ledger's location without credentials or options: ``host:port/database`` of a
    PostgreSQL ledger, else the SQLite path as configured (instances of a pair must name their
    ledger alike, or set ``ha.lock_key``)."""
    if settings.ledger.url is None:
        return str(settings.ledger.path)
    parts = urlsplit(settings.ledger.url.get_secret_value().strip())
    return f"{parts.hostname or ''}:{parts.port or 5432}{parts.path}"


def build_leadership(settings: Settings, clock: Clock, metrics: Metrics) -> Leadership:
    """The instance's :class:`Leadership` on the PostgreSQL lock of ``settings.ha``."""
    try:  # psycopg is an optional dependency, loaded only by instances in a pair
        from hedgerd.ha.postgres import PostgresLock
    except ImportError as exc:
        raise ConfigError("ha.enabled", f"needs psycopg ({exc}): pip install 'hedgerd[postgres]'") from None

    ha = settings.ha
    lock_db = ha.url or settings.ledger.url
    assert lock_db is not None  # the config refuses ha.enabled without either
    url = lock_db.get_secret_value()
    key = ha.lock_key if ha.lock_key is not None else derive_lock_key(
        settings.executor.client_id_prefix, ledger_identity(settings))

    async def connect() -> LockSession:
        return await PostgresLock.connect(url, key, connect_timeout=ha.connect_timeout, lease=ha.lease)

    return Leadership(ha, key, clock, metrics, connect)


async def run_daemon(settings: Settings, config_file: Path | None = None) -> int:
    """Entry point of ``hedgerd run``; returns the process exit code (:data:`EXIT_STEPPED_DOWN`
    after losing leadership)."""
    daemon = Daemon(settings, config_file=config_file)
    await daemon.run()
    return daemon.exit_code
