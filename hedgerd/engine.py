"""The hedging engine: venue events in, hedge orders out.

:class:`HedgeEngine` is the :class:`~hedgerd.connectors.base.VenueEventSink` of every venue and
wires them to the ledger, the :class:`~hedgerd.risk_pass.RiskPass` (net delta per underlying,
the auto-triggers, the pure :mod:`hedgerd.policy`'s decision) and the venue's
:class:`~hedgerd.executor.HedgeExecutor`, which sends nothing before the intent is durable.
Streamed fills get their pass as they commit (the ledger's commit hook: positions, totals and
triggers all include them, and the intent joins their transaction when the ledger commits on
the event loop); prices, order updates and the safety tick wake the risk loop for theirs. An
order that ends filled as sized (and a fill of one in flight) leaves net delta as the last pass
saw it: its pass may wait up to 10 ms for the next event's (:meth:`HedgeEngine._order_changed`). The
:class:`~hedgerd.trading_control.TradingControl` (the kill switch and the other reasons not to send)
gates every order, right before it is sent.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import structlog

from hedgerd.book import MarketBook
from hedgerd.busypoll import BusyPoller
from hedgerd.clock import Clock
from hedgerd.config import HedgeConfig, Settings, VenueRole
from hedgerd.connectors.base import Venue
from hedgerd.cost_book import CostBook
from hedgerd.errors import ConfigError, VenueError
from hedgerd.executor import DeadManSwitches, HedgeExecutor, TokenBucket
from hedgerd.foreign import ForeignOrderWatch
from hedgerd.ledger import InventoryLedger, LedgerError, PreparedIntent
from hedgerd.metrics import Metrics
from hedgerd.models import (
    Fill,
    HedgeIntent,
    MarketInfo,
    OptionQuote,
    OrderReport,
    OrderStatus,
    PriceUpdate,
)
from hedgerd.pnl_book import PnlBook
from hedgerd.policy import HedgePolicy, build_policy
from hedgerd.reconciliation.reconciler import StartupReconciliation
from hedgerd.risk.pnl import BookPnl
from hedgerd.risk.prices import LogThrottle, PriceBook
from hedgerd.risk_loop import RiskLoop
from hedgerd.risk_pass import EngineHooks, HedgeState, RiskPass
from hedgerd.status import EngineGauges, engine_status, readiness_problems, underlying_status
from hedgerd.trading_control import TradingControl

log = structlog.get_logger("hedgerd.engine")

_REJECT_LOG_INTERVAL = 10.0  # seconds between log lines about rejected prices of one feed and kind
_SHUTDOWN_SETTLE = 4.0  # seconds stop() waits for in-flight orders at most (SIGTERM must exit within 10 s)


class HedgeEngine:
    """Ledger + risk loop + kill switch + executors, fed by venue events."""

    def __init__(self, settings: Settings, venues: dict[str, Venue], ledger: InventoryLedger,
                 clock: Clock, metrics: Metrics, policy: HedgePolicy | None = None) -> None:
        self.settings = settings
        self.venues = venues
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self._injected_policy = policy  # if given, shared by every underlying (tests)
        self.policies: dict[str, HedgePolicy] = {}  # one instance per underlying, from settings.policy
        self.gauges = EngineGauges(metrics)
        # The kill switch and every other reason not to send, with what engages and resumes it.
        self.control = TradingControl(lambda: self.settings, clock, metrics, self.gauges, self._executors,
                                      on_resume=self._resumed)
        self.kill_switch = self.control.kill_switch
        self.dead_man = DeadManSwitches(lambda: self.settings.executor, clock, metrics,
                                        lambda: self.control.send_fence() if self.control.send_fence else None)
        self.price_book = PriceBook(max_jump=settings.risk.max_price_jump)
        self.price_guard = self.price_book.guard
        self.prices = self.price_book.latest
        self._price_seen_at = self.price_book.seen_at
        self.hedges: dict[str, HedgeState] = {}
        self.markets: dict[str, dict[str, MarketInfo]] = {}
        self.book = MarketBook()  # instruments, option quotes and collateral the risk pass values
        self.pnl = BookPnl()
        self.realized_pnl = self.pnl.by_underlying  # underlying -> hedged-book PnL (quote), see risk/pnl.py
        self.costs = CostBook(metrics, self.prices, self.pnl.funding)  # hedging cost per underlying, funding too
        self.pnl_book = PnlBook(metrics, ledger.position, lambda: self.settings.risk.pnl_method, self.prices)
        self._rejection_log = LogThrottle(_REJECT_LOG_INTERVAL)  # per feed and kind of rejection
        self.started_at = clock.monotonic()
        self.reconciled = False
        self.intake_open = False
        self.risk_loop = RiskLoop(clock, safety_tick=lambda: self.settings.risk.safety_tick,
                                  next_wait=self._next_wait, refresh=self._refresh_open_orders,
                                  run_pass=self.evaluate, on_error=self._risk_pass_failed)
        self._wake = self.risk_loop.wake
        self.risk_pass = RiskPass(
            hedges=self.hedges, ledger=ledger, clock=clock, metrics=metrics, gauges=self.gauges, pnl=self.pnl,
            kill_switch=self.kill_switch, prices=self.prices, risk_loop=self.risk_loop, book=self.book,
            hooks=EngineHooks(
                settings=lambda: self.settings, may_decide=self._may_decide,
                consecutive_errors=lambda: self.control.consecutive_order_errors,
                sync_latches=self.control.sync_latches,
                price_age=self.price_age,
                quote_age=lambda key: self.book.quote_age(key, self.clock.monotonic(), self.started_at),
                policy_for=self.policy_for, engage=self.engage, submit_intent=self._submit_intent,
                order_done=self._execution_done))
        self._risk_task: asyncio.Task[None] | None = None  # set once the risk loop runs
        self.busy_poller = BusyPoller(lambda: self.settings.risk.busy_poll)
        self._streamed: set[tuple[str, str]] = set()  # (venue, trade id) of fills on_fills is journaling
        ledger.commit_hook = self._on_journaled
        self._joining: list[PreparedIntent] | None = None  # intents decided inside the commit hook
        # Another hedger trading with our client-id prefix halts this one (see hedgerd.foreign).
        self.foreign_orders = ForeignOrderWatch(
            prefix=settings.executor.client_id_prefix,
            issued=lambda cid: ledger.order_state(cid) is not None,
            hedged=[(h.venue, h.symbol) for h in settings.hedges], metrics=metrics, clock=clock,
            halt=lambda reason: self.engage(reason, "auto:foreign_order"))

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the ledger, load markets, reconcile, start streams and the risk loop."""
        await self.ledger.open()
        self.control.sync_latches()
        for name, venue in self.venues.items():
            if self.venue_config(name).role is VenueRole.HEDGE:
                self.markets[name] = await venue.load_markets()
        await self.book.load(self.settings.hedges, self.venues, self.markets, self.clock.monotonic())
        for index, cfg in enumerate(self.settings.hedges):
            market, values_pnl = _hedge_market(index, cfg, self.markets, self.book, self.settings)
            rl = self.settings.executor.rate_limit_for(cfg.venue)
            executor = self._executor_for(cfg.venue, rl.requests_per_second, rl.burst)
            self.hedges[cfg.underlying] = HedgeState(config=cfg, executor=executor, market=market,
                                                     values_pnl=values_pnl)
            executor.passive.attach(book=functools.partial(self.risk_pass.touch, cfg.venue),
                                    urgency=self.risk_pass.urgency)
            self.metrics.hedge_band.labels(cfg.underlying).set(float(cfg.threshold))
            self.metrics.hedge_fees.labels(cfg.venue)  # export 0 before the first fee
            self.costs.track(cfg.underlying, cfg.venue, cfg.symbol, market.instrument)
            self.pnl_book.track(cfg.underlying, cfg.venue, cfg.symbol, self.ledger.symbol_trades(cfg.venue, cfg.symbol),
                                market.instrument)
        await self.costs.rebuild(self.ledger)  # the cost so far, before reconciliation journals more fills
        await self._reconcile()
        self.intake_open = True
        # A price that never arrives is stale max_price_age after the streams start, not after
        # construction: loading markets and reconciling may take longer than that.
        self.started_at = self.clock.monotonic()
        for venue in self.venues.values():
            await venue.start(self)
        # before the first decision: every order from now on is covered
        await self.dead_man.start((h.executor, h.config.symbol) for h in self.hedges.values())
        self._risk_task = self.risk_loop.start()
        self.gauges.publish_trading_state(self.kill_switch)
        log.info("engine_started", mode=self.settings.mode.value, hedges=list(self.hedges),
                 venues=list(self.venues), trading_state=self.kill_switch.state.name)

    def _executor_for(self, venue_name: str, rate: float, burst: int) -> HedgeExecutor:
        for state in self.hedges.values():
            if state.config.venue == venue_name:
                return state.executor
        bucket = TokenBucket(rate, burst, self.clock)
        return HedgeExecutor(
            venue=self.venues[venue_name], ledger=self.ledger, markets=self.markets[venue_name],
            config=self.settings.executor, bucket=bucket, clock=self.clock, metrics=self.metrics,
            gate=self.control.gate, on_result=self.control.on_order_result, on_halt=self.engage)

    async def _reconcile(self) -> None:
        """Startup reconciliation (see :class:`StartupReconciliation`). A disagreement beyond
        tolerance starts HALTED with the difference in the reason (or journals the venue's figure
        when ``reconcile.adopt_venue_positions``)."""
        problems = await StartupReconciliation(
            self.settings, self.venues, self.ledger, self.clock, self._executors(), self.foreign_orders,
            reconciled_positions(self.hedges.values(), self.book)).run()
        self.reconciled = True
        if problems:
            self.control.reconcile_mismatch = "reconciliation mismatch: " + "; ".join(problems)
            self.engage(self.control.reconcile_mismatch, "auto:reconcile")
        log.info("reconciled", open_intents=len(self.ledger.open_intents()), mismatches=problems,
                 positions={f"{v}:{a}": str(q) for (v, a), q in self.ledger.positions().items()})

    async def stop(self) -> None:
        """Stop intake, settle or cancel in-flight orders, flush the ledger."""
        if self.control.stopping:
            return
        self.control.stopping = True
        self.intake_open = False
        inventory = [v for n, v in self.venues.items() if self.venue_config(n).role is VenueRole.INVENTORY]
        await asyncio.gather(*(v.close() for v in inventory), return_exceptions=True)
        self.busy_poller.stop()
        await self.risk_loop.stop()
        tasks = [t for h in self.hedges.values() for t in h.tasks]
        if tasks:
            settle = min(self.settings.executor.order_timeout, _SHUTDOWN_SETTLE)
            _, still = await asyncio.wait(tasks, timeout=settle)
            for t in still:
                t.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        if self.settings.executor.cancel_on_shutdown:
            for executor in self._executors():
                try:
                    await asyncio.wait_for(executor.cancel_all(), timeout=3.0)
                except (TimeoutError, VenueError, LedgerError) as exc:
                    log.warning("cancel_on_shutdown_failed", error=repr(exc))
        await self.dead_man.stop(orders_kept=not self.settings.executor.cancel_on_shutdown)
        hedge = [v for n, v in self.venues.items() if self.venue_config(n).role is VenueRole.HEDGE]
        await asyncio.gather(*(v.close() for v in hedge), return_exceptions=True)
        await self.ledger.close()
        log.info("engine_stopped", fills=self.ledger.fill_count)

    def _executors(self) -> list[HedgeExecutor]:
        """Each executor once (several underlyings may hedge on one venue)."""
        return list({id(h.executor): h.executor for h in self.hedges.values()}.values())

    def venue_config(self, name: str) -> Any:
        return next(v for v in self.settings.venues if v.name == name)

    # ----------------------------------------------------------------- venue events
    async def on_fill(self, fill: Fill) -> None:
        """Journal a fill (durable); the risk pass on it runs as it commits."""
        await self.on_fills((fill,))

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        """Journal fills that arrived together (one group commit); returns once they are durable.

        The risk pass on them runs as they commit (:meth:`_on_journaled`): by the time this
        returns, any hedge they call for has been decided (committing on the event loop, its
        intent was journaled in the fills' own transaction). On the loop the batch commits at
        once, in this call, and this returns only after the orders it started have had their
        turn (they go to the venue before the caller's next batch is journaled).
        """
        if self.control.ledger_failed or not fills:
            return
        self.busy_poller.touch()
        streamed = self._streamed
        keys = [(fill.venue, fill.trade_id) for fill in fills]
        streamed.update(keys)
        submitted: list[asyncio.Future[bool]] = []
        committed_here = False
        try:
            try:
                for fill in fills:
                    submitted.append(self.ledger.submit_fill(fill))
                # The batch is whole: commit it now rather than an event-loop iteration later.
                committed_here = self.ledger.flush_now()
            finally:  # an invalid fill: the ones before it are still journaled before this returns
                # (done futures and a single one are not gathered: gather adds event-loop hops)
                if committed_here and all(future.done() for future in submitted):
                    _raise_first(submitted)
                elif len(submitted) == 1:
                    await submitted[0]
                elif submitted:
                    await asyncio.gather(*submitted)
        except LedgerError as exc:
            self.control.ledger_failure(exc)
            raise
        finally:
            streamed.difference_update(keys)
        if committed_here:  # the orders its risk pass started go out before the caller's next batch
            await asyncio.sleep(0)

    def _on_journaled(self, fills: list[Fill]) -> list[PreparedIntent]:
        """The ledger's commit hook: new fills are in its view (inside their transaction when it
        commits on the event loop). Any of them from another hedger trading with our prefix halts
        first. For those that came through :meth:`on_fills`: note client flow for the policy and
        the decision-latency clock, then run a risk pass right here and return the hedge intents
        it decides, which the ledger journals with the fills."""
        for book in (self.foreign_orders, self.costs, self.pnl_book):  # the foreign-order halt first
            book.on_fills(fills)
        streamed = [fill for fill in fills if (fill.venue, fill.trade_id) in self._streamed]
        if not streamed:
            return []
        if all(self._absorbed(fill) for fill in streamed):  # e.g. our hedge fills, ahead of the order's answer
            self.risk_loop.settle_soon()
            return []
        self.risk_pass.observe_client_fills(streamed)
        if self._risk_task is None:  # not running yet: its first pass will see them
            self._wake.set()
            return []
        joining: list[PreparedIntent] = []
        self._joining = joining
        try:
            self._pass_now()
        finally:
            self._joining = None
        return joining

    def _submit_intent(self, **fields: Any) -> PreparedIntent:
        """Inside the commit hook an intent is the hook's answer (the ledger journals it with the
        fills); elsewhere it is queued for the next commit. Either way the cost book learns the
        quote it was decided on."""
        joining = self._joining
        if joining is None:
            prepared = self.ledger.submit_intent(**fields)
        else:
            prepared = self.ledger.prepare_intent(**fields)
            joining.append(prepared)
        self.costs.decided((prepared[0],))
        return prepared

    async def on_price(self, price: PriceUpdate) -> None:
        """Validate and store a best bid/ask; wild or invalid prices are counted and dropped."""
        self.busy_poller.touch()
        reason = self.price_guard.check(price)
        key = (price.venue, price.symbol)
        if reason is not None:
            kind = reason.split(":")[0]
            self.metrics.wild_prices.labels(price.symbol, kind).inc()
            self.metrics.venue_errors.labels(price.venue, "bad_price").inc()
            # The metrics count every one; the log gets a line per feed and kind now and then.
            suppressed = self._rejection_log.admit((price.venue, price.symbol, kind), self.clock.monotonic())
            if suppressed is not None:
                log.warning("price_rejected", venue=price.venue, symbol=price.symbol, reason=reason,
                            bid=str(price.bid), ask=str(price.ask), suppressed_since_last=suppressed or None)
            return
        self.price_book.store(price, self.clock.monotonic())
        for state in self.hedges.values():
            if (state.config.venue, state.config.symbol) == key:
                self.policy_for(state.config.underlying).observe_price(self._price_seen_at[key], price.mid)
                self._wake.set()  # prices no hedge is sized on (e.g. the inventory venue's) change nothing

    async def on_option_quote(self, quote: OptionQuote) -> None:
        """Store an option's quote (with its arrival time); one of a held option wakes the risk loop
        (the book's delta moved), one of any other listed option waits until it is traded."""
        self.book.on_quote(replace(quote, received_at=quote.received_at or self.clock.monotonic()))
        if self.ledger.position(quote.venue, quote.symbol):
            self._wake.set()

    async def on_order_update(self, venue: str, report: OrderReport) -> None:
        """Hand a streamed update of one of our orders to its executor, which journals it.

        Fills of our orders also arrive as fills on the trade stream; the ledger dedupes them.
        An update that journals nothing new (it repeats what the answer to the send said)
        changes nothing a risk pass would see. An order with our prefix that our ledger never
        issued is another hedger's: it halts trading.
        """
        self.busy_poller.touch()
        self.foreign_orders.on_order(venue, report.client_order_id)
        for state in self.hedges.values():
            executor = state.executor
            if executor.venue.name == venue:
                intent = await executor.on_order_update(report)
                if intent is not None:
                    self._order_changed(state, intent, report.status)

    def on_venue_error(self, venue: str, kind: str, detail: str) -> None:
        self.metrics.venue_errors.labels(venue, kind).inc()
        log.warning("venue_error", venue=venue, kind=kind, detail=detail)

    # ----------------------------------------------------------------- trading control
    def engage(self, reason: str, source: str) -> bool:
        """Halt trading (idempotent); see :class:`~hedgerd.trading_control.TradingControl`."""
        return self.control.engage(reason, source)

    def reduce(self, reason: str, source: str) -> bool:
        """Allow only position-reducing orders."""
        return self.control.reduce(reason, source)

    def resume(self, source: str) -> tuple[bool, str]:
        """Deliberately leave HALTED/REDUCING; refused while a latch (kill file, config) holds."""
        return self.control.resume(source)

    def _resumed(self) -> None:
        """After a resume: forget a detected foreign order, re-anchor stale prices, decide again."""
        self.foreign_orders.detected = None
        self.price_book.reset_stale_anchors(self.clock.monotonic(), max(
            (h.config.max_price_age for h in self.hedges.values()), default=0.0))
        self._wake.set()

    # ----------------------------------------------------------------- risk loop
    async def _refresh_open_orders(self) -> None:
        for executor in self._executors():
            await executor.refresh_open()
        for venue, exc in await self.book.refresh_collateral(self.settings.hedges, self.venues, self.clock.monotonic()):
            self.on_venue_error(venue, "collateral", repr(exc))

    def _next_wait(self) -> float:
        """Seconds the risk loop may sleep: the safety tick, or less so that a price (or a held
        option's quote) going stale halts at its max age rather than up to a tick later."""
        feeds = ((s.config.venue, s.config.symbol, s.config.max_price_age) for s in self.hedges.values())
        now = self.clock.monotonic()
        wait = self.price_book.next_stale(feeds, now, self.started_at, self.settings.risk.safety_tick)
        return self.risk_pass.next_quote_stale(wait)  # and a held option's quote

    def policy_for(self, underlying: str) -> HedgePolicy:
        """The policy instance deciding ``underlying`` (built from ``settings.policy`` on first use)."""
        policy = self.policies.get(underlying)
        if policy is None:
            policy = self.policies[underlying] = self._injected_policy or build_policy(self.settings.policy)
        return policy

    def apply_settings(self, settings: Settings) -> None:
        """Take reloaded settings that differ only in fields a reload may change in place
        (:data:`hedgerd.config.SAFE_RELOAD_FIELDS`, checked by the caller), then re-evaluate.

        Per-hedge limits, the executors (rate limits included), the price guard and the hedge
        band gauge take theirs here; everything else is read from :attr:`settings` on use.
        """
        self.settings = settings
        by_underlying = {h.underlying: h for h in settings.hedges}
        for underlying, state in self.hedges.items():
            state.config = by_underlying[underlying]
            self.metrics.hedge_band.labels(underlying).set(float(state.config.threshold))
        for executor in self._executors():
            executor.apply_config(settings.executor)
        self.price_guard.max_jump = settings.risk.max_price_jump
        self.evaluate_soon()

    def evaluate_soon(self) -> None:
        """Wake the risk loop now (after a config change, a resume, ...)."""
        self._wake.set()

    def price_age(self, venue: str, symbol: str) -> float:
        """Seconds since the last accepted price (since start if none yet)."""
        return self.price_book.age(venue, symbol, self.clock.monotonic(), self.started_at)

    async def evaluate(self) -> None:
        """One pass of the risk loop over every underlying."""
        self.risk_pass.run()

    def _pass_now(self) -> None:
        """A risk pass outside the risk loop's task, with the loop's error handling."""
        try:
            self.risk_pass.run()
        except Exception as exc:  # never break the caller (the ledger's commit)
            self._risk_pass_failed(exc)

    def _may_decide(self) -> bool:
        """Whether a risk pass may decide orders (it always updates gauges and checks triggers)."""
        return self.reconciled and not self.control.stopping and not self.control.ledger_failed

    def _risk_pass_failed(self, exc: Exception) -> None:
        """A ledger failure halts trading as such; anything else is a bug and halts it too."""
        if isinstance(exc, LedgerError):
            self.control.ledger_failure(exc)
            return
        log.error("risk_loop_error", exc_info=exc)
        self.engage("internal error in risk loop (see logs)", "auto:internal")

    def _order_changed(self, state: HedgeState, intent: HedgeIntent, status: OrderStatus) -> None:
        """An order's task ended or a streamed update of it was journaled: the next risk pass
        must see what changed.

        An order filled exactly as sized changed nothing a decision rests on (its in-flight
        amount became position), unless the in-flight cap held a decision back. The pass after
        it may then wait up to ``SETTLE_PASS_DELAY`` (10 ms) for the next one (at a steady flow a
        client fill's pass comes first); that bounds only how late the realized-loss trigger
        and the gauges see the hedge fill. Anything else (a partial fill, a rejection, an
        error, a cancellation, a capped decision) calls for a pass right away.
        """
        if status is OrderStatus.FILLED and not state.capped and state.executor.settled_as_sized(intent):
            self.risk_loop.settle_soon()
        else:
            self._wake.set()

    def _absorbed(self, fill: Fill) -> bool:
        """A fill of one of our hedge orders in flight, within its size (net delta unchanged),
        while no decision is held back by the in-flight cap: see :meth:`_order_changed`."""
        for state in self.hedges.values():
            if state.config.venue == fill.venue and not state.capped and state.executor.absorbs(fill):
                return True
        return False

    def _execution_done(self, state: HedgeState, intent: HedgeIntent, task: asyncio.Task[OrderReport]) -> None:
        if task.cancelled():
            self._wake.set()
            return
        exc = task.exception()
        if exc is None:
            self._order_changed(state, intent, task.result().status)
            return
        self._wake.set()
        if isinstance(exc, LedgerError):
            self.control.ledger_failure(exc)
        elif exc is not None:
            log.error("execute_failed", client_order_id=intent.client_order_id, exc_info=exc)
            self.control.on_order_result(False, "internal")

    # ----------------------------------------------------------------- views
    def readiness(self) -> tuple[bool, list[str]]:
        """Whether the daemon is ready to hedge, and why not."""
        problems = readiness_problems(
            reconciled=self.reconciled, reconcile_mismatch=self.control.reconcile_mismatch,
            foreign_order=self.foreign_orders.detected, ledger_failed=self.control.ledger_failed,
            disconnected=[name for name, venue in self.venues.items() if not venue.connected],
            prices=self.risk_pass.price_ages(), unvalued=self.risk_pass.unvalued())
        return not problems, problems

    def refresh_gauges(self) -> None:
        """Update time-dependent gauges right before a scrape."""
        self.gauges.refresh(((s.config.symbol, self.price_age(s.config.venue, s.config.symbol))
                             for s in self.hedges.values()), self.readiness()[0])

    def status(self) -> dict[str, Any]:
        """JSON-able view for ``/status`` (never contains secrets)."""
        underlyings = {
            underlying: underlying_status(
                self.risk_pass.snapshot(state), state.config, self.price_age(state.config.venue, state.config.symbol),
                self.realized_pnl.get(underlying), self.costs.status(underlying), self.pnl_book.status(state.config))
            for underlying, state in self.hedges.items()}
        ready, problems = self.readiness()
        return engine_status(mode=self.settings.mode, kill_switch=self.kill_switch, ready=ready, problems=problems,
                             underlyings=underlyings, ledger=self.ledger, quotes=self.book.quotes,
                             consecutive_order_errors=self.control.consecutive_order_errors, now=self.clock.time())


def _hedge_market(index: int, cfg: HedgeConfig, markets: dict[str, dict[str, MarketInfo]], book: MarketBook,
                  settings: Settings) -> tuple[MarketInfo, bool]:
    """The hedge instrument's market, and whether the book's PnL is valued; ConfigError when the venue
    does not list it, or when ``max_realized_loss`` is set for a book whose PnL is not valued yet."""
    market = markets.get(cfg.venue, {}).get(cfg.symbol)
    if market is None:
        raise ConfigError(f"hedges.{index}.symbol", f"instrument {cfg.symbol!r} is not listed on venue {cfg.venue!r}")
    values_pnl = book.values_pnl(cfg, market)
    if not values_pnl and settings.kill_switch.max_realized_loss is not None:
        raise ConfigError("kill_switch.max_realized_loss", f"not computed yet for the {cfg.underlying} book "
                          "(inverse hedge, options, inverse inventory or collateral): unset it")
    return market, values_pnl


def reconciled_positions(hedges: Iterable[HedgeState], book: MarketBook) -> dict[str, set[str]]:
    """Venue name -> the symbols and assets reconciliation compares (hedged or inventory; ``*``: every
    derivative of the underlying the venue lists)."""
    wanted: dict[str, set[str]] = {}
    for state in hedges:
        wanted.setdefault(state.config.venue, set()).add(state.config.symbol)
        for source in state.config.inventory:
            symbols = book.derivatives(source.venue, state.config.underlying) if source.all_instruments \
                else (source.asset,)
            wanted.setdefault(source.venue, set()).update(symbols)
    return wanted


def _raise_first(futures: list[asyncio.Future[bool]]) -> None:
    """Raise the first exception of done ``futures`` (each one's is retrieved, as gather would)."""
    errors = [exc for exc in (future.exception() for future in futures) if exc is not None]
    if errors:
        raise errors[0]

