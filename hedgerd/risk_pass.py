"""The risk pass: net delta per underlying, the auto-triggers, and the policy's decision.

One pass computes each hedge's :class:`~hedgerd.risk.delta.DeltaSnapshot` (inventory x ratio +
perp position + in-flight hedge quantity), checks the kill switch's auto-triggers (realized PnL
from :mod:`hedgerd.risk.pnl`), asks the pure :mod:`hedgerd.policy` what to do and starts the
order on the hedge's :class:`~hedgerd.executor.HedgeExecutor`. The engine decides when a pass
runs (its commit hook, the :class:`~hedgerd.risk_loop.RiskLoop`) and owns what outlives one.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import structlog

from hedgerd.clock import Clock
from hedgerd.config import HedgeConfig, Settings
from hedgerd.executor import HedgeExecutor
from hedgerd.killswitch import KillSwitch, evaluate_auto_triggers
from hedgerd.ledger import InventoryLedger, PreparedIntent
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, HedgeIntent, MarketInfo, OrderReport, PriceUpdate, TradingState, split_symbol
from hedgerd.policy import HedgeLimits, HedgePolicy, reduces_position
from hedgerd.risk.delta import DeltaSnapshot, make_snapshot
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


OrderDone = Callable[[HedgeState, HedgeIntent, "asyncio.Task[OrderReport]"], None]


class RiskPass:
    """One risk pass over every hedge, with the engine's state it reads passed in.

    ``settings``, ``may_decide`` and ``consecutive_errors`` are read on every pass (a reload
    replaces the settings; startup, shutdown and a ledger failure change whether it may decide).
    """

    def __init__(self, *, hedges: dict[str, HedgeState], ledger: InventoryLedger, clock: Clock, metrics: Metrics,
                 gauges: EngineGauges, pnl: BookPnl, kill_switch: KillSwitch,
                 prices: dict[tuple[str, str], PriceUpdate], risk_loop: RiskLoop,
                 settings: Callable[[], Settings], may_decide: Callable[[], bool],
                 consecutive_errors: Callable[[], int], sync_latches: Callable[[], None],
                 price_age: Callable[[str, str], float], policy_for: Callable[[str], HedgePolicy],
                 engage: Callable[[str, str], bool], submit_intent: Callable[..., PreparedIntent],
                 order_done: OrderDone) -> None:
        self.hedges = hedges
        self.ledger = ledger
        self.clock = clock
        self.metrics = metrics
        self.gauges = gauges
        self.pnl = pnl
        self.kill_switch = kill_switch
        self.prices = prices
        self.risk_loop = risk_loop
        self._settings = settings
        self._may_decide = may_decide
        self._consecutive_errors = consecutive_errors
        self._sync_latches = sync_latches
        self.price_age = price_age
        self.policy_for = policy_for
        self.engage = engage
        self._submit_intent = submit_intent
        self._execution_done = order_done

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
                moved = _inventory_move(fill, state.config)
                if moved:
                    self.policy_for(state.config.underlying).observe_flow(self.clock.monotonic(), moved)

    def run(self) -> None:
        """One pass over every underlying: gauges, auto-triggers, then a decision per hedge."""
        self.risk_loop.passing()
        self._sync_latches()
        snapshots = {u: self.snapshot(s) for u, s in self.hedges.items()}
        for underlying, snap in snapshots.items():
            state = self.hedges[underlying]
            state.snapshot = snap
            gauges = self.gauges.underlying(underlying)
            gauges.net_delta.set(snap.net_delta)
            gauges.in_flight.set(snap.in_flight)
            if snap.notional is not None:
                gauges.net_delta_notional.set(snap.notional)
        if self.ledger.metrics is not self.metrics:  # the ledger keeps them current itself otherwise
            self.gauges.set_inventory(self.ledger.positions())
        self.check_auto_triggers(snapshots)
        if not self._may_decide():
            return
        max_in_flight = self._settings().executor.max_orders_in_flight
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
        notionals: dict[str, tuple[Decimal, Decimal]] = {}
        trades = self.ledger.trade_totals()
        total_pnl = ZERO  # summed over the underlyings with a price; a loss is its negative
        for underlying, state in self.hedges.items():
            cfg = state.config
            age = self.price_age(cfg.venue, cfg.symbol)
            ages[cfg.symbol] = (age, cfg.max_price_age)
            gauges = self.gauges.underlying(underlying)
            snap = snapshots[underlying]
            if snap.notional is not None:
                notionals[underlying] = (abs(snap.notional), cfg.max_delta_notional)
            if snap.mid is not None:
                pnl = self.pnl.mark(underlying, trades, self.ledger.positions,
                                    inventory=[(s.venue, s.asset) for s in cfg.inventory],
                                    hedge=(cfg.venue, cfg.symbol), mid=snap.mid)
                gauges.realized_pnl.set(pnl)
                total_pnl += pnl
        kill_switch = self._settings().kill_switch
        reason = evaluate_auto_triggers(
            price_ages=ages, delta_notionals=notionals,
            consecutive_errors=self._consecutive_errors(),
            max_consecutive_errors=kill_switch.max_consecutive_errors,
            realized_loss=-total_pnl, max_realized_loss=kill_switch.max_realized_loss)
        if reason is not None and self.kill_switch.state is not TradingState.HALTED:
            self.engage(reason, "auto")

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
        if price is None:
            return
        policy = self.policy_for(cfg.underlying)
        # Limits apply to the position once the orders in flight have filled; an order is
        # reduce-only only if it shrinks the position both before and after they fill.
        projected = snap.perp_position + snap.in_flight
        decision = policy.decide(snap.net_delta, projected, limits, state.market, price=price.mid)
        if decision is None:
            state.first_unacted_fill_at = None
            return
        if decision.reduce_only and snap.in_flight and not reduces_position(
                snap.perp_position, decision.side.sign * decision.amount):
            decision = replace(decision, reduce_only=False)
        if not self.kill_switch.allows(decision.reduce_only):
            return
        executor_config = self._settings().executor
        # The order counts as in flight from here; its task sends nothing before the intent
        # is durable (the commit is already scheduled, this pass does not wait for it).
        intent, durable = self._submit_intent(
            underlying=cfg.underlying, venue=cfg.venue, symbol=cfg.symbol, side=decision.side,
            amount=decision.amount, created_at=self.clock.time(), reduce_only=decision.reduce_only,
            order_type=executor_config.order_type, reason=decision.reason,
            client_id_prefix=executor_config.client_id_prefix,
            decision_mid=price.mid, decision_half_spread=(price.ask - price.bid) / 2)
        task = state.executor.start(intent, durable=durable, reference_price=price.mid,
                                    received_at=state.first_unacted_fill_at)
        state.first_unacted_fill_at = None

        def log_decision() -> None:  # after the order's task has handed it off (it runs first)
            log.info("hedge_decision", underlying=cfg.underlying, client_order_id=intent.client_order_id,
                     side=decision.side.value, amount=str(decision.amount), reduce_only=decision.reduce_only,
                     reason=decision.reason, inventory=str(snap.inventory), hedge_ratio=str(snap.hedge_ratio),
                     perp_position=str(snap.perp_position), in_flight=str(snap.in_flight),
                     net_delta=str(snap.net_delta), mid=str(price.mid), threshold=str(cfg.threshold),
                     target=str(cfg.target), policy=policy.name)

        asyncio.get_running_loop().call_soon(log_decision)
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)
        task.add_done_callback(functools.partial(self._execution_done, state, intent))

    def book(self, venue: str, symbol: str) -> tuple[Decimal, Decimal] | None:
        """The latest (bid, ask) of ``symbol`` on ``venue``, None before the first."""
        price = self.prices.get((venue, symbol))
        return (price.bid, price.ask) if price is not None else None

    def urgency(self, intent: HedgeIntent) -> tuple[Decimal, Decimal] | None:
        """(|net delta - target| with the orders in flight left out, the policy's band) of the
        intent's underlying: how far the exposure has run while a passive intent rests
        (:mod:`hedgerd.executor.passive` escalates past a multiple of the band)."""
        state = self.hedges.get(intent.underlying)
        if state is None:
            return None
        snap = self.snapshot(state)
        band = getattr(self.policy_for(intent.underlying), "band", None)  # the adaptive policy's
        trigger = band.trigger if band is not None else state.config.threshold
        return abs(snap.net_delta - snap.in_flight - state.config.target), Decimal(trigger)

    def snapshot(self, state: HedgeState) -> DeltaSnapshot:
        """Net delta of one hedge as the ledger, the executor and the latest price have it now."""
        cfg = state.config
        position = self.ledger.position
        inventory = sum((position(s.venue, s.asset) for s in cfg.inventory), ZERO)
        price = self.prices.get((cfg.venue, cfg.symbol))
        return make_snapshot(
            underlying=cfg.underlying, inventory=inventory, hedge_ratio=cfg.hedge_ratio,
            perp_position=self.ledger.position(cfg.venue, cfg.symbol),
            in_flight=state.executor.in_flight(cfg.symbol),
            mid=price.mid if price else None)


def _inventory_move(fill: Fill, config: HedgeConfig) -> Decimal:
    """How much a client fill moves the hedge's net delta (signed base units x hedge ratio)."""
    base, quote, settle = split_symbol(fill.symbol)
    moved = ZERO
    for source in config.inventory:
        if source.venue != fill.venue:
            continue
        if settle is not None:
            moved += fill.signed_amount if source.asset == fill.symbol else ZERO
        elif source.asset == base:
            moved += fill.signed_amount
        elif source.asset == quote:
            moved -= fill.signed_amount * fill.price
    return moved * config.hedge_ratio
