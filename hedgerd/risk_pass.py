"""The risk pass: net delta per underlying, the auto-triggers, and the policy's decision.

One pass computes each hedge's :class:`~hedgerd.risk.delta.DeltaSnapshot` (the inventory's delta
by source from :mod:`hedgerd.risk.book`, x ratio, + collateral + hedge position + in-flight hedge
orders, valued at the hedge mid), checks the kill switch's auto-triggers (stale prices and option
quotes, the greeks cross-check, realized PnL from :mod:`hedgerd.risk.pnl`), asks the pure
:mod:`hedgerd.policy` what to do (in base units) and starts the order, in the hedge market's unit,
on the hedge's :class:`~hedgerd.executor.HedgeExecutor`. The engine decides when a pass runs (its
commit hook, the :class:`~hedgerd.risk_loop.RiskLoop`) and owns what outlives one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from hedgerd.book import MarketBook
from hedgerd.clock import Clock
from hedgerd.config import HedgeConfig, Settings
from hedgerd.executor import HedgeExecutor
from hedgerd.killswitch import KillSwitch, evaluate_auto_triggers
from hedgerd.ledger import InventoryLedger, PreparedIntent
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, HedgeIntent, MarketInfo, OrderReport, PriceUpdate, TradingState, split_symbol
from hedgerd.policy import AdaptiveBandPolicy, GammaBandPolicy, HedgeLimits, HedgePolicy, reduces_position
from hedgerd.policy.sizing import hedge_order_amount, policy_market
from hedgerd.risk.book import Holding, InventoryExposure, instrument_delta, inventory_exposure
from hedgerd.risk.delta import BookFigures, DeltaSnapshot, make_snapshot
from hedgerd.risk.exposure import NO_EXPOSURE, Exposure
from hedgerd.risk.pnl import BookPnl
from hedgerd.risk_loop import RiskLoop
from hedgerd.status import EngineGauges

log = structlog.get_logger("hedgerd.engine")  # the engine's decisions, under the engine's name


@dataclass
class HedgeState:
    """Runtime state of one configured hedge (one underlying)."""

    config: HedgeConfig
    executor: HedgeExecutor
    market: MarketInfo | None
    first_unacted_fill_at: float | None = None
    snapshot: DeltaSnapshot | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    limits: tuple[HedgeConfig, HedgeLimits] | None = None  # built from this config
    capped: bool = False  # the last pass decided nothing: max_orders_in_flight were unsettled
    values_pnl: bool = True  # the hedged-book PnL is valued (not yet for inverse or option books)


OrderDone = Callable[[HedgeState, HedgeIntent, "asyncio.Task[OrderReport]"], None]


@dataclass(frozen=True, slots=True)
class EngineHooks:
    """What a risk pass reads from and asks of the engine, as callables: ``settings``,
    ``may_decide`` and ``consecutive_errors`` are read on every pass (a reload replaces the
    settings; startup, shutdown and a ledger failure change whether it may decide)."""

    settings: Callable[[], Settings]
    may_decide: Callable[[], bool]
    consecutive_errors: Callable[[], int]
    sync_latches: Callable[[], None]
    price_age: Callable[[str, str], float]
    quote_age: Callable[[tuple[str, str]], float]  # seconds since an option's quote arrived (since start if none)
    policy_for: Callable[[str], HedgePolicy]
    engage: Callable[[str, str], bool]
    submit_intent: Callable[..., PreparedIntent]
    order_done: OrderDone


class RiskPass:
    """One risk pass over every hedge, with the engine's state it reads passed in (``hooks``)."""

    def __init__(self, *, hedges: dict[str, HedgeState], ledger: InventoryLedger, clock: Clock, metrics: Metrics,
                 gauges: EngineGauges, pnl: BookPnl, kill_switch: KillSwitch,
                 prices: dict[tuple[str, str], PriceUpdate], risk_loop: RiskLoop, book: MarketBook,
                 hooks: EngineHooks) -> None:
        self.hedges = hedges
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self.gauges = gauges
        self.pnl = pnl
        self.kill_switch = kill_switch
        self.prices = prices
        self.risk_loop = risk_loop
        self.book = book
        self.hooks = hooks

    def observe_client_fills(self, fills: Iterable[Fill]) -> None:
        """Note client fills (not our orders') for the policies' flow estimate and the
        decision-latency clock of every hedge they move."""
        for fill in fills:
            if fill.client_order_id is not None:
                continue
            for state in self.hedges.values():
                if state.first_unacted_fill_at is None and any(
                        s.venue == fill.venue for s in state.config.inventory):
                    state.first_unacted_fill_at = fill.received_at or self.clock.monotonic()
                moved = _inventory_move(fill, state.config, self._instrument_move)
                if moved:
                    self.hooks.policy_for(state.config.underlying).observe_flow(self.clock.monotonic(), moved)

    def run(self) -> None:
        """One pass over every underlying: gauges, auto-triggers, then a decision per hedge."""
        self.risk_loop.passing()
        self.hooks.sync_latches()
        snapshots = {u: self.snapshot(s) for u, s in self.hedges.items()}
        for underlying, snap in snapshots.items():
            state = self.hedges[underlying]
            state.snapshot = snap
            gauges = self.gauges.underlying(underlying)
            gauges.net_delta.set(snap.net_delta)
            gauges.in_flight.set(snap.in_flight)
            if snap.notional is not None:
                gauges.net_delta_notional.set(snap.notional)
            self.gauges.set_book(snap, self.oldest_quote_age(snap))
        if self.ledger.metrics is not self.metrics:  # the ledger keeps them current itself otherwise
            self.gauges.set_inventory(self.ledger.positions())
        self.check_auto_triggers(snapshots)
        if not self.hooks.may_decide():
            return
        max_in_flight = self.hooks.settings().executor.max_orders_in_flight
        for underlying, snap in snapshots.items():
            state = self.hedges[underlying]
            state.capped = state.executor.open_count(state.config.symbol) >= max_in_flight
            if state.capped:
                continue
            self.decide(state, snap)

    def check_auto_triggers(self, snapshots: dict[str, DeltaSnapshot]) -> None:
        """Halt on a stale price, a delta notional over its cap, too many order errors in a row or
        a realized loss over the limit (:func:`~hedgerd.killswitch.evaluate_auto_triggers`)."""
        ages: dict[str, tuple[float, float]] = {}
        greeks_ages: dict[str, tuple[float, float]] = {}
        disagreements: dict[str, tuple[Decimal, Decimal]] = {}
        notionals: dict[str, tuple[Decimal, Decimal]] = {}
        trades = self.ledger.trade_totals()
        total_pnl = ZERO  # summed over the underlyings with a price; a loss is its negative
        for underlying, state in self.hedges.items():
            cfg = state.config
            age = self.hooks.price_age(cfg.venue, cfg.symbol)
            ages[cfg.symbol] = (age, cfg.max_price_age)
            gauges = self.gauges.underlying(underlying)
            snap = snapshots[underlying]
            quote_age = self.oldest_quote_age(snap)
            if quote_age is not None:
                greeks_ages[underlying] = (quote_age, cfg.max_greeks_age)
            gap = snap.book.greeks_disagreement if snap.book is not None else None
            if cfg.max_greeks_disagreement is not None and gap is not None:
                disagreements[underlying] = (gap, cfg.max_greeks_disagreement)
            if snap.notional is not None:
                notionals[underlying] = (abs(snap.notional), cfg.max_delta_notional)
            if snap.mid is not None and state.values_pnl:
                pnl = self.pnl.mark(underlying, trades, self.ledger.positions,
                                    inventory=[(s.venue, s.asset) for s in cfg.inventory],
                                    hedge=(cfg.venue, cfg.symbol), mid=snap.mid)
                gauges.realized_pnl.set(pnl)
                total_pnl += pnl
        kill_switch = self.hooks.settings().kill_switch
        reason = evaluate_auto_triggers(
            price_ages=ages, delta_notionals=notionals,
            consecutive_errors=self.hooks.consecutive_errors(),
            max_consecutive_errors=kill_switch.max_consecutive_errors,
            realized_loss=-total_pnl, max_realized_loss=kill_switch.max_realized_loss,
            greeks_ages=greeks_ages, greeks_disagreements=disagreements)
        if reason is not None and self.kill_switch.state is not TradingState.HALTED:
            self.hooks.engage(reason, "auto")

    def price_ages(self) -> list[tuple[str, float | None, float]]:
        """Per hedge: (symbol, seconds since its last price or None if none yet, max age), for readiness."""
        return [(cfg.symbol, self.hooks.price_age(cfg.venue, cfg.symbol) if (cfg.venue, cfg.symbol) in self.prices
                 else None, cfg.max_price_age) for cfg in (state.config for state in self.hedges.values())]

    def unvalued(self) -> list[str]:
        """What the last pass could not value, over every hedge (their books are not hedged)."""
        return [what for state in self.hedges.values() if state.snapshot and state.snapshot.book
                for what in state.snapshot.book.unvalued]

    def next_quote_stale(self, wait: float) -> float:
        """``wait``, or less so that the first held option's quote to go stale (as of the last pass)
        is seen at its max age rather than up to ``wait`` later."""
        for state in self.hedges.values():
            age = self.oldest_quote_age(state.snapshot) if state.snapshot is not None else None
            if age is not None and age <= state.config.max_greeks_age:
                wait = min(wait, state.config.max_greeks_age - age + 0.01)
        return wait

    def oldest_quote_age(self, snap: DeltaSnapshot) -> float | None:
        """Seconds since the oldest quote of the held options arrived; None when no option is held."""
        if snap.book is None or not snap.book.held_options:
            return None
        return max(self.hooks.quote_age(key) for key in snap.book.held_options)

    @staticmethod
    def limits(state: HedgeState) -> HedgeLimits:
        """The limits decisions on ``state`` are made with (built once per (reloaded) config)."""
        cfg = state.config
        if state.limits is None or state.limits[0] is not cfg:
            state.limits = (cfg, HedgeLimits.from_config(cfg))
        return state.limits[1]

    def decide(self, state: HedgeState, snap: DeltaSnapshot) -> None:
        """Ask the hedge's policy; start the order it decides, if the kill switch allows it."""
        cfg = state.config
        limits = self.limits(state)
        price = self.prices.get((cfg.venue, cfg.symbol))
        if price is None or (snap.book is not None and snap.book.unvalued):
            return  # a book that cannot be valued whole is not hedged (the triggers halt a stale one)
        policy = self.hooks.policy_for(cfg.underlying)
        if isinstance(policy, GammaBandPolicy):
            policy.observe_gamma(snap.book.gamma if snap.book is not None else 0.0)
        # Limits apply to the position once the orders in flight have filled; an order is
        # reduce-only only if it shrinks the position both before and after they fill.
        projected = snap.perp_position + snap.in_flight
        decision = policy.decide(snap.net_delta, projected, limits, policy_market(state.market), price=price.mid)
        if isinstance(policy, AdaptiveBandPolicy) and policy.trigger is not None:
            self.metrics.hedge_band.labels(cfg.underlying).set(float(policy.trigger))
        if decision is None:
            state.first_unacted_fill_at = None
            return
        amount = hedge_order_amount(decision.amount, state.market, price.mid)
        if not amount:
            state.first_unacted_fill_at = None
            return
        if decision.reduce_only and snap.in_flight and not reduces_position(
                snap.perp_position, decision.side.sign * decision.amount):
            decision = replace(decision, reduce_only=False)
        if not self.kill_switch.allows(decision.reduce_only):
            return
        executor_config = self.hooks.settings().executor
        # The order counts as in flight from here; its task sends nothing before the intent
        # is durable (the commit is already scheduled, this pass does not wait for it).
        intent, durable = self.hooks.submit_intent(
            underlying=cfg.underlying, venue=cfg.venue, symbol=cfg.symbol, side=decision.side,
            amount=amount, created_at=self.clock.time(), reduce_only=decision.reduce_only,
            order_type=executor_config.order_type, reason=decision.reason,
            client_id_prefix=executor_config.client_id_prefix,
            decision_mid=price.mid, decision_half_spread=(price.ask - price.bid) / 2)
        task = state.executor.start(intent, durable=durable, reference_price=price.mid,
                                    received_at=state.first_unacted_fill_at)
        state.first_unacted_fill_at = None

        def log_decision() -> None:  # after the order's task has handed it off (it runs first)
            log.info("hedge_decision", underlying=cfg.underlying, client_order_id=intent.client_order_id,
                     side=decision.side.value, amount=str(amount), reduce_only=decision.reduce_only,
                     reason=decision.reason, inventory=str(snap.inventory), hedge_ratio=str(snap.hedge_ratio),
                     perp_position=str(snap.perp_position), in_flight=str(snap.in_flight),
                     net_delta=str(snap.net_delta), mid=str(price.mid), threshold=str(cfg.threshold),
                     target=str(cfg.target), policy=policy.name,
                     **({} if amount is decision.amount else {"delta": str(decision.amount), "unit": "contracts"}))

        asyncio.get_running_loop().call_soon(log_decision)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        task.add_done_callback(functools.partial(self.hooks.order_done, state, intent))

    def snapshot(self, state: HedgeState) -> DeltaSnapshot:
        """Net delta of one hedge as the ledger, the executor, the option quotes and the latest
        prices have it now."""
        cfg = state.config
        price = self.prices.get((cfg.venue, cfg.symbol))
        mid = price.mid if price else None
        inventory = inventory_exposure(
            self.book.holdings(cfg, self.ledger.position), quotes=self.book.quotes, mark_of=self._mid,
            fallback_mark=mid, now=self.clock.time(), greeks_source=cfg.greeks_source)
        instrument = state.market.instrument if state.market is not None else None
        hedge_contracts = self.ledger.position(cfg.venue, cfg.symbol)
        in_flight_contracts = state.executor.in_flight(cfg.symbol)
        hedge = instrument_delta(instrument, hedge_contracts, mid)
        in_flight = instrument_delta(instrument, in_flight_contracts, mid)
        collateral = self.book.collateral_of(cfg)
        figures = _figures(inventory, cfg.hedge_ratio, collateral, hedge or NO_EXPOSURE, in_flight or NO_EXPOSURE,
                           hedge_contracts, in_flight_contracts,
                           unpriced=hedge is None or in_flight is None)
        return make_snapshot(
            underlying=cfg.underlying, inventory=inventory.total, hedge_ratio=cfg.hedge_ratio,
            perp_position=(hedge or NO_EXPOSURE).delta, in_flight=(in_flight or NO_EXPOSURE).delta, mid=mid,
            collateral=collateral, book=figures)

    def _instrument_move(self, fill: Fill, cfg: HedgeConfig) -> Decimal | None:
        """The delta a fill of a derivative with an instrument of ``cfg``'s underlying carries (0 when
        it cannot be valued now), None when its symbol has no instrument."""
        instrument = self.book.instruments.get((fill.venue, fill.symbol))
        if instrument is None:
            return None
        if instrument.underlying != cfg.underlying:
            return ZERO
        price = self.prices.get((cfg.venue, cfg.symbol))
        held = Holding(fill.venue, fill.symbol, fill.signed_amount, instrument)
        return inventory_exposure([held], quotes=self.book.quotes, mark_of=self._mid,
                                  fallback_mark=price.mid if price else fill.price, now=self.clock.time(),
                                  greeks_source=cfg.greeks_source).total

    def _mid(self, key: tuple[str, str]) -> Decimal | None:
        price = self.prices.get(key)
        return price.mid if price is not None else None


def _figures(inventory: InventoryExposure, ratio: Decimal, collateral: Decimal | None, hedge: Exposure,
             in_flight: Exposure, hedge_contracts: Decimal, in_flight_contracts: Decimal, *,
             unpriced: bool) -> BookFigures:
    """The by-source breakdown and greeks of one snapshot (the hedge ratio applied to inventory)."""
    by_source = [(source, delta * ratio) for source, delta in inventory.by_source.items()]
    if collateral is not None:
        by_source.append(("collateral", collateral))
    by_source += [("hedge", hedge.delta), ("in_flight", in_flight.delta)]
    scale = float(ratio)
    gap = inventory.disagreement
    unvalued = inventory.unvalued + (("hedge: no price to value it",) if unpriced else ())
    return BookFigures(by_source=tuple(by_source), collateral=collateral or ZERO,
                       gamma=inventory.gamma * scale + hedge.gamma + in_flight.gamma, vega=inventory.vega * scale,
                       hedge_contracts=hedge_contracts, in_flight_contracts=in_flight_contracts,
                       greeks_disagreement=None if gap is None else gap * ratio,
                       held_options=inventory.held_options, unvalued=unvalued)


def _inventory_move(fill: Fill, config: HedgeConfig,
                    instrument_move: Callable[[Fill, HedgeConfig], Decimal | None]) -> Decimal:
    """How much a client fill moves the hedge's net delta (signed base units x hedge ratio).

    ``instrument_move`` values a fill of a derivative with an instrument (None: the symbol has
    none, its amount is base units).
    """
    base, quote, settle = split_symbol(fill.symbol)
    moved = ZERO
    for source in config.inventory:
        if source.venue != fill.venue:
            continue
        if settle is not None:
            if source.asset == fill.symbol or source.all_instruments:
                valued = instrument_move(fill, config)
                if valued is not None:
                    moved += valued
                elif source.asset == fill.symbol:
                    moved += fill.signed_amount
        elif source.asset == base:
            moved += fill.signed_amount
        elif source.asset == quote:
            moved -= fill.signed_amount * fill.price
    return moved * config.hedge_ratio
