"""``hedgerd simulate``: the real engine on simulated time against simulated venues.

What runs is the production :class:`~hedgerd.engine.HedgeEngine` — risk loop, policy, kill
switch, executor and the durable :class:`~hedgerd.ledger.InventoryLedger` (on a temporary file)
— against :class:`~hedgerd.connectors.paper.SimSpotVenue` / :class:`~hedgerd.connectors.paper.SimPerpVenue`.
Only time is simulated:

* :class:`VirtualTimeLoop` is an asyncio event loop whose ``time()`` is virtual: when no
  callback is ready it jumps straight to the next timer instead of sleeping, so
  ``asyncio.sleep``/``wait_for`` in the engine and the venues work unchanged; the built-in
  day (seed 1) takes 14 s here with the adaptive policy, 17 s with the fixed one, mostly in
  the engine's risk passes (one per price tick, fill and order outcome) and the ledger's commits.
* The ledger commits on the event loop (``commit_on="loop"``): a write is answered by a
  callback scheduled at once, so a run is a deterministic function of the seed whatever the
  ``batch_max``. Work handed to threads (``run_in_executor``/``asyncio.to_thread``: the ledger's
  open, close and WAL resets) holds virtual time until it is done; answers posted from other
  threads (``call_soon_threadsafe``) go to an inbox that the loop drains one at a time, only
  when nothing else is ready.
* Busy polling (``risk.busy_poll``) is off: spinning on virtual time would only burn wall time.
* :class:`SimulatedClock` implements :class:`~hedgerd.clock.Clock` over ``loop.time()``
  (monotonic) plus a fixed simulated epoch (``time()``).

Scenario file (TOML, ``--scenario FILE``; without one, :data:`DEFAULT_SCENARIO` is used: a day of
four regimes and three bursts of one-sided flow). Every key is optional; a key left out takes
the model default shown here (the built-in day differs in volatility, price interval, flow and
its regimes and bursts)::

    name = "my-day"
    [market]                        # shared GBM mid of the inventory and hedge venues
    initial_price = 60000
    volatility = 0.6                # annualised, at the start of the run
    price_interval = 1.0            # seconds between price ticks (max_price_age must exceed it)
    spread_bps = 2                  # full spread of both venues
    [flow]                          # client fills on the inventory venue (Poisson arrivals)
    rate = 1.0                      # fills per second at the start of the run
    mean_size = 0.02                # base units
    size_distribution = "exponential"   # or "lognormal" (log-sd = size_sigma) or "fixed"
    size_sigma = 1.0
    buy_probability = 0.5           # probability that a client fill makes the desk buy
    [costs]
    taker_fee_bps = 4               # hedge venue taker fee
    order_cost = 1.0                # fixed cost per hedge order, quote units (added by the simulator)
    latency_ms = 20                 # hedge venue round trip
    inform_policy = true            # tell the adaptive policy fee + half spread and order cost
    [limits]                        # override the hedge's limits for the simulated desk
    max_position = 100
    max_order = 5
    [[regimes]]                     # from `at` (fraction of the run) on; unset fields keep their value
    at = 0.25
    volatility = 1.0
    flow_rate = 2.0
    mean_size = 0.02
    [[bursts]]                      # one-sided flow from `at` for `duration` (fractions of the run)
    at = 0.4
    duration = 0.01
    rate = 4.0
    buy_probability = 0.05

Times in a scenario are fractions of the run, so a short run is a compressed day with the same
events. The simulation takes the engine settings (hedges, executor, risk, kill switch, policy)
from the config; the first hedge's venues must be ``kind = "sim"``; the scenario replaces their
simulation parameters, the ledger goes to a temporary file, the kill file is ignored, and the
inventory venue's own price stream is muted (the engine prices the hedge instrument).

Figures (:class:`SimulationResult`): hedging cost = fees + spread paid (``|fill - mid| x amount``)
+ fixed order costs; residual risk = time-averaged ``|net delta x mid|`` and the standard
deviation of the hedged mark-to-market PnL (square root of its realised quadratic variation,
price tick by price tick; costs excluded), over the whole run: its horizon is the run's
duration; number of hedge orders; max ``|net delta|``. Net delta here is the actual exposure:
inventory x hedge ratio + perp position. Sizes are in the hedge symbol's base currency, money in
its settlement (else quote) currency. Printing and plotting: :mod:`hedgerd.simulate_cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import math
import os
import random
import re
import selectors
import sys
import tempfile
import threading
import time
import tomllib
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor
from contextvars import Context
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from functools import wraps
from pathlib import Path
from typing import Any, Literal, TypeVar, TypeVarTuple

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hedgerd.config import (
    Mode,
    Settings,
    SimSettings,
    VenueConfig,
    VenueKind,
    VenueRole,
    config_error_from_validation,
)
from hedgerd.connectors.base import Venue
from hedgerd.connectors.paper import SPOT_AMOUNT_STEP, SimMarketData, SimPerpVenue, SimSpotVenue
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, HedgeIntent, PriceUpdate, Side, is_derivative, split_symbol
from hedgerd.policy import POLICY_NAMES

SIM_EPOCH = 1_700_000_000.0
"""Simulated wall-clock time at the start of every run (epoch seconds)."""
SIM_MONOTONIC_START = 1_000.0
"""Virtual ``loop.time()`` at the start of every run."""
STALL_TIMEOUT = 30.0
"""Real seconds to wait for the ledger thread before declaring the simulation stuck."""

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")
_Callback = Callable[..., object]


# --------------------------------------------------------------------------------------------
# Virtual time
# --------------------------------------------------------------------------------------------

class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time.

    ``time()`` starts at ``start`` and only moves when the loop is idle (nothing ready, no
    outstanding external work): it then jumps to the next timer. Callbacks posted from other
    threads (``call_soon_threadsafe``) wait in an inbox and are run one per idle point, in
    arrival order; while :meth:`external_work` is held the loop waits (really) for them instead
    of moving time. Without timers and external work the loop blocks on real I/O as usual.
    """

    def __init__(self, start: float = SIM_MONOTONIC_START, *, stall_timeout: float = STALL_TIMEOUT) -> None:
        self._virtual_now = start
        self._stall_timeout = stall_timeout
        self._inbox: deque[tuple[_Callback, tuple[Any, ...], Context | None]] = deque()
        self._inbox_ready = threading.Condition()
        self._external = 0
        self._owner: int | None = None
        self.jumps = 0
        super().__init__(selector=_VirtualSelector(self, selectors.DefaultSelector()))

    def time(self) -> float:
        return self._virtual_now

    def run_forever(self) -> None:
        self._owner = threading.get_ident()
        try:
            super().run_forever()
        finally:
            self._owner = None

    def call_soon_threadsafe(self, callback: _Callback, *args: Any,  # type: ignore[override]
                             context: Context | None = None) -> asyncio.Handle:
        if threading.get_ident() == self._owner:
            return self.call_soon(callback, *args, context=context)
        with self._inbox_ready:
            self._inbox.append((callback, args, context))
            self._inbox_ready.notify_all()
        return asyncio.Handle(callback, args, self, context)

    def hold_time(self) -> Callable[[], None]:
        """Stop virtual time (the loop waits for thread answers instead) until the returned
        release function is called (calling it again is harmless)."""
        self._external += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._external -= 1
        return release

    def hold_time_until_done(self) -> Callable[[asyncio.Future[Any]], None]:
        """Hold time now; returns a future done-callback that releases it (once)."""
        release = self.hold_time()
        return lambda _: release()

    def run_in_executor(self, executor: Executor | None, func: Callable[[*_Ts], _T],
                        *args: *_Ts) -> asyncio.Future[_T]:
        """As usual, and virtual time stands still until the job is done (``asyncio.to_thread``
        included): work in a thread takes no simulated time."""
        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(self.hold_time_until_done())
        return future

    @contextlib.contextmanager
    def external_work(self) -> Iterator[None]:
        """Context manager form of :meth:`hold_time`."""
        release = self.hold_time()
        try:
            yield
        finally:
            release()

    def _idle(self, timeout: float | None, inner: selectors.BaseSelector) -> list[Any]:
        """Called by the selector when nothing is ready: deliver a thread answer or move time."""
        events = _poll(inner)
        if events:
            return events
        deadline = time.monotonic() + self._stall_timeout
        with self._inbox_ready:
            while not self._inbox and (self._external > 0 or timeout is None):
                remaining = deadline - time.monotonic()
                if self._external > 0 and remaining <= 0:
                    raise RuntimeError(f"simulation stalled: no answer from a worker thread in "
                                       f"{self._stall_timeout:.0f} s")
                self._inbox_ready.wait(min(max(remaining, 0.001), 0.05))
                if self._external == 0 and timeout is None and not self._inbox:
                    events = inner.select(0)  # nothing to simulate: real I/O only
                    if events:
                        return events
            if self._inbox:
                callback, args, context = self._inbox.popleft()
                self.call_soon(callback, *args, context=context)
                return []
        if timeout is not None:
            self._virtual_now += timeout
            self.jumps += 1
        return []


def _poll(selector: selectors.BaseSelector) -> list[tuple[selectors.SelectorKey, int]]:
    """Ready real I/O, without a system call when only the loop's own self-pipe is registered
    (it is never written: thread answers go to the inbox and simulations install no signals)."""
    if len(selector.get_map()) <= 1:
        return []
    return selector.select(0)


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to a real selector; a blocking ``select`` becomes a virtual-time step.

    ``real_io`` is True while anything besides the loop's self-pipe is registered."""

    def __init__(self, loop: VirtualTimeLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner
        self.real_io = False

    def _registered(self, key: selectors.SelectorKey) -> selectors.SelectorKey:
        self.real_io = len(self._inner.get_map()) > 1
        return key

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._registered(self._inner.register(fileobj, events, data))

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._registered(self._inner.unregister(fileobj))

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._inner.select(0) if self.real_io else []
        return self._loop._idle(timeout, self._inner)

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Any:
        return self._inner.get_map()


class SimulatedClock:
    """:class:`~hedgerd.clock.Clock` on a :class:`VirtualTimeLoop`: ``monotonic()`` is
    ``loop.time()``, ``time()`` is ``epoch`` plus the virtual time elapsed since construction."""

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float = SIM_EPOCH) -> None:
        self._loop = loop
        self._offset = epoch - loop.time()
        self.monotonic: Callable[[], float] = loop.time  # the loop's own method: one call, not two

    def time(self) -> float:
        return self._offset + self._loop.time()

    def sleep(self, seconds: float) -> Coroutine[Any, Any, None]:
        return asyncio.sleep(seconds)


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

    def submit_intent(self, **kwargs: Any) -> tuple[HedgeIntent, asyncio.Future[Any]]:
        intent, durable = super().submit_intent(**kwargs)
        return intent, self._held(durable)

    def _held(self, future: asyncio.Future[_T]) -> asyncio.Future[_T]:
        """With a writer thread, virtual time waits for ``future`` (the writer's answer)."""
        if not self.commit_on_loop:
            loop = asyncio.get_running_loop()
            if isinstance(loop, VirtualTimeLoop):
                future.add_done_callback(loop.hold_time_until_done())
        return future


def _holding_time(method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    async def held(self: InventoryLedger, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.commit_on_loop or not isinstance(loop, VirtualTimeLoop):
            return await method(self, *args, **kwargs)
        with loop.external_work():
            return await method(self, *args, **kwargs)
    return held


# With a writer thread, every public coroutine method of the ledger (open, close, new_intent,
# record_order_state, ...; record_fill goes through submit_fill) holds virtual time, including
# ones added later.
for _name, _method in inspect.getmembers(InventoryLedger, inspect.iscoroutinefunction):
    if not _name.startswith("_") and _name != "record_fill":
        setattr(SimulationLedger, _name, _holding_time(_method))


# --------------------------------------------------------------------------------------------
# Scenario
# --------------------------------------------------------------------------------------------

class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketScenario(_Model):
    initial_price: Decimal = Field(default=Decimal(60000), gt=0)
    volatility: float = Field(default=0.6, ge=0, description="annualised")
    price_interval: float = Field(default=1.0, gt=0, description="seconds between ticks")
    spread_bps: Decimal = Field(default=Decimal(2), ge=0)


class FlowScenario(_Model):
    rate: float = Field(default=1.0, ge=0, description="client fills per second")
    mean_size: Decimal = Field(default=Decimal("0.02"), gt=0, description="base units")
    size_distribution: Literal["exponential", "lognormal", "fixed"] = "exponential"
    size_sigma: float = Field(default=1.0, gt=0, description="log-sd of lognormal sizes")
    buy_probability: float = Field(default=0.5, ge=0, le=1)


class CostScenario(_Model):
    taker_fee_bps: Decimal = Field(default=Decimal(4), ge=0)
    order_cost: Decimal = Field(default=Decimal(1), ge=0, description="fixed cost per hedge order, quote")
    latency_ms: float = Field(default=20.0, ge=0)
    inform_policy: bool = True


class LimitsScenario(_Model):
    max_position: Decimal | None = Field(default=Decimal(100), gt=0)
    max_order: Decimal | None = Field(default=Decimal(5), gt=0)


class Regime(_Model):
    at: float = Field(ge=0, lt=1, description="fraction of the run")
    volatility: float | None = Field(default=None, ge=0)
    flow_rate: float | None = Field(default=None, ge=0)
    mean_size: Decimal | None = Field(default=None, gt=0)


class Burst(_Model):
    at: float = Field(ge=0, lt=1, description="fraction of the run")
    duration: float = Field(gt=0, le=1, description="fraction of the run")
    rate: float = Field(gt=0, description="client fills per second during the burst")
    buy_probability: float = Field(ge=0, le=1)


class Scenario(_Model):
    """A simulated trading period (see the module docstring for the file format)."""

    name: str = "default-day"
    market: MarketScenario = Field(default_factory=MarketScenario)
    flow: FlowScenario = Field(default_factory=FlowScenario)
    costs: CostScenario = Field(default_factory=CostScenario)
    limits: LimitsScenario = Field(default_factory=LimitsScenario)
    regimes: tuple[Regime, ...] = ()
    bursts: tuple[Burst, ...] = ()

    @model_validator(mode="after")
    def _bursts_do_not_overlap(self) -> Scenario:
        ordered = sorted(self.bursts, key=lambda b: b.at)
        for first, second in itertools.pairwise(ordered):
            if first.at + first.duration > second.at:
                raise ValueError(f"bursts at {first.at} and {second.at} overlap")
        return self


DEFAULT_SCENARIO = Scenario(
    name="default-day",
    market=MarketScenario(volatility=0.5, price_interval=2.0),
    flow=FlowScenario(rate=0.4, mean_size=Decimal("0.04")),
    regimes=(
        Regime(at=0.2, volatility=0.9, flow_rate=0.8),     # busy, volatile session open
        Regime(at=0.45, volatility=0.25, flow_rate=0.2),   # quiet
        Regime(at=0.65, volatility=1.3, flow_rate=0.4),    # news: volatile, normal flow
        Regime(at=0.85, volatility=0.5, flow_rate=0.6),    # back to normal
    ),
    bursts=(
        Burst(at=0.12, duration=0.004, rate=2.0, buy_probability=0.95),
        Burst(at=0.40, duration=0.003, rate=2.5, buy_probability=0.05),
        Burst(at=0.75, duration=0.002, rate=3.0, buy_probability=0.9),
    ),
)
"""The built-in scenario: a 24 h day of four regimes and three one-sided bursts."""


def load_scenario(path: Path | None) -> Scenario:
    """The scenario in TOML file ``path`` (:data:`DEFAULT_SCENARIO` if None).

    Raises :class:`~hedgerd.errors.ConfigError` with the offending key's dotted path.
    """
    if path is None:
        return DEFAULT_SCENARIO
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read scenario file: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "scenario"
        raise ConfigError(f"scenario.{where}", error["msg"]) from exc


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(d|h|m|s|ms)?\s*$")
_UNIT_SECONDS = {"d": 86_400.0, "h": 3_600.0, "m": 60.0, "s": 1.0, "ms": 0.001, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds in ``"24h"``, ``"90m"``, ``"30s"``, ``"1d"``, ``"1.5h"`` or a plain number of seconds."""
    match = _DURATION.match(text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r} (e.g. 24h, 90m, 3600s)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


# --------------------------------------------------------------------------------------------
# Simulated venues and settings
# --------------------------------------------------------------------------------------------

class ScenarioSpotVenue(SimSpotVenue):
    """Inventory venue whose client flow follows the scenario: side bias and size distribution."""

    def __init__(self, name: str, settings: SimSettings, market: SimMarketData, clock: SimulatedClock,
                 flow: FlowScenario) -> None:
        super().__init__(name, settings, market, clock)
        self.buy_probability = flow.buy_probability
        self.size_distribution = flow.size_distribution
        self.size_sigma = flow.size_sigma
        self.mean_size = flow.mean_size

    def set_flow(self, rate: float, mean_size: Decimal | None = None) -> None:
        super().set_flow(rate, mean_size)
        if mean_size is not None:
            self.mean_size = mean_size

    def _client_fill(self, rng: random.Random) -> Fill:
        side = Side.BUY if rng.random() < self.buy_probability else Side.SELL
        mean = float(self.mean_size)
        if self.size_distribution == "exponential":
            raw = rng.expovariate(1.0 / mean)
        elif self.size_distribution == "lognormal":
            sigma = self.size_sigma
            raw = rng.lognormvariate(math.log(mean) - sigma * sigma / 2.0, sigma)
        else:
            raw = mean
        amount = max(Decimal(raw).quantize(SPOT_AMOUNT_STEP, rounding=ROUND_HALF_EVEN), SPOT_AMOUNT_STEP)
        bid, ask = self.quote()
        return Fill(venue=self.name, trade_id=self._next_trade_id(), symbol=self.symbol, side=side,
                    amount=amount, price=bid if side is Side.BUY else ask, ts=self._clock.time(),
                    received_at=self._clock.monotonic())


def simulation_settings(settings: Settings, scenario: Scenario, *, seed: int, ledger_path: Path,
                        policy: str | None = None) -> Settings:
    """``settings`` prepared for a simulation run (see the module docstring for what changes)."""
    if not settings.hedges:
        raise ConfigError("hedges", "simulate needs a configured hedge")
    if len(settings.hedges) > 1:
        raise ConfigError("hedges", "simulate runs one hedge; configure exactly one")
    hedge = settings.hedges[0]
    data = settings.model_dump()
    names = {hedge.venue, *(source.venue for source in hedge.inventory)}
    for venue in data["venues"]:
        if venue["name"] not in names:
            continue
        if venue["kind"] != VenueKind.SIM:
            raise ConfigError(f"venues.{venue['name']}.kind", "simulate needs kind = 'sim' venues")
        sim = venue["sim"]
        sim.update(seed=seed, initial_price=scenario.market.initial_price,
                   volatility=scenario.market.volatility, price_interval=scenario.market.price_interval,
                   spread_bps=scenario.market.spread_bps, latency_ms=scenario.costs.latency_ms)
        if venue["role"] == VenueRole.HEDGE:
            sim.update(flow_rate=0.0, taker_fee_bps=scenario.costs.taker_fee_bps)
        else:
            sim.update(flow_rate=scenario.flow.rate, flow_mean_size=scenario.flow.mean_size,
                       latency_ms=0.0)
    data["venues"] = [v for v in data["venues"] if v["name"] in names]
    data["mode"] = Mode.PAPER
    data["ledger"].update(path=ledger_path, commit_on="loop")  # deterministic group commits
    data["risk"]["busy_poll"] = 0.0  # spinning on simulated time would only burn the wall clock
    data["kill_switch"]["kill_file"] = None
    data["executor"]["rate_limits"] = {k: v for k, v in data["executor"]["rate_limits"].items() if k in names}
    limits = scenario.limits
    if limits.max_position is not None:
        data["hedges"][0]["max_position"] = limits.max_position
        data["hedges"][0]["max_order"] = min(limits.max_order or hedge.max_order, limits.max_position)
    elif limits.max_order is not None:
        data["hedges"][0]["max_order"] = limits.max_order
    if policy is not None:
        data["policy"]["name"] = policy
    if scenario.costs.inform_policy:
        half_spread = scenario.market.spread_bps / 2
        data["policy"]["adaptive"].update(cost_bps=scenario.costs.taker_fee_bps + half_spread,
                                          order_cost=scenario.costs.order_cost)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_validation(exc) from exc


def build_scenario_venues(settings: Settings, scenario: Scenario,
                          clock: SimulatedClock) -> tuple[dict[str, Venue], SimMarketData, ScenarioSpotVenue]:
    """The hedge's simulated venues on one shared market (inventory venue with scenario flow)."""
    hedge = settings.hedges[0]
    configs: dict[str, VenueConfig] = {v.name: v for v in settings.venues}
    perp_config = configs[hedge.venue]
    market = SimMarketData(split_symbol(perp_config.sim.symbol)[0], perp_config.sim, clock)
    venues: dict[str, Venue] = {hedge.venue: SimPerpVenue(hedge.venue, perp_config.sim, market, clock)}
    spot: ScenarioSpotVenue | None = None
    for source in hedge.inventory:
        if source.venue in venues:
            continue
        cfg = configs[source.venue]
        spot = ScenarioSpotVenue(cfg.name, cfg.sim, market, clock, scenario.flow)
        venues[cfg.name] = spot
    if spot is None:
        raise ConfigError("hedges.0.inventory", "simulate needs an inventory venue")
    return venues, market, spot


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

@dataclass
class SimulationResult:
    """Figures of one run (money in quote units, sizes in base units)."""

    scenario: str
    policy: str
    seed: int
    base_currency: str  # sizes (net delta, volume) are in this
    quote_currency: str  # money (costs, PnL, notional) is in this
    duration_s: float  # the horizon of the PnL standard deviations
    hedging_cost: float
    fees: float
    spread_paid: float
    order_costs: float
    avg_abs_net_delta_notional: float
    hedged_pnl_std: float
    unhedged_pnl_std: float
    hedge_orders: int
    hedged_volume: float
    max_abs_net_delta: float
    client_fills: int
    trading_state: str
    wall_seconds: float
    series: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def figures(self) -> dict[str, Any]:
        """Everything but the time series (JSON-able)."""
        out = asdict(self)
        out.pop("series")
        return out


class _Recorder:
    """Integrates exposure, PnL and costs from the fills and prices the engine receives."""

    def __init__(self, settings: Settings, market: SimMarketData, order_cost: Decimal, start: float,
                 samples: int, duration: float) -> None:
        hedge = settings.hedges[0]
        self.hedge_venue, self.hedge_symbol = hedge.venue, hedge.symbol
        self.ratio = float(hedge.hedge_ratio)
        self.sources = {(s.venue, s.asset) for s in hedge.inventory}
        self.market = market
        self.order_cost = order_cost
        self.positions: dict[tuple[str, str], Decimal] = {}
        self.seen: set[tuple[str, str]] = set()
        self.orders: set[str] = set()
        self.fees = ZERO
        self.spread_paid = ZERO
        self.volume = ZERO
        self.client_fills = 0
        self.inventory = 0.0
        self.perp = 0.0
        self.mid: float | None = None
        self.start = self.last_t = start
        self.abs_notional_time = 0.0
        self.pnl_qv = 0.0
        self.unhedged_qv = 0.0
        self.max_abs = 0.0
        self.sample_every = duration / max(samples, 1)
        self.next_sample = start
        self.series: dict[str, list[float]] = {"hours": [], "net_delta": [], "cost": [], "band": [], "mid": []}
        self.band_of: Callable[[], float | None] = lambda: None

    @property
    def exposure(self) -> float:
        return self.inventory * self.ratio + self.perp

    def _integrate(self, now: float) -> None:
        if self.mid is not None and now > self.last_t:
            self.abs_notional_time += abs(self.exposure) * self.mid * (now - self.last_t)
        self.last_t = max(self.last_t, now)

    def cost(self) -> Decimal:
        return self.fees + self.spread_paid + self.order_cost * len(self.orders)

    def on_fill(self, fill: Fill, now: float) -> None:
        key = (fill.venue, fill.trade_id)
        if key in self.seen:
            return
        self.seen.add(key)
        self._integrate(now)
        signed = fill.signed_amount
        if is_derivative(fill.symbol):
            moved = {(fill.venue, fill.symbol): signed}
        else:
            base, quote, _ = split_symbol(fill.symbol)
            moved = {(fill.venue, base): signed, (fill.venue, quote): -signed * fill.price}
        for position_key, delta in moved.items():
            self.positions[position_key] = self.positions.get(position_key, ZERO) + delta
        if fill.venue == self.hedge_venue and fill.symbol == self.hedge_symbol:
            self.perp = float(self.positions[(fill.venue, fill.symbol)])
            self.fees += fill.fee
            self.spread_paid += abs(fill.price - self.market.mid()) * fill.amount
            self.volume += fill.amount
            if fill.client_order_id is not None:
                self.orders.add(fill.client_order_id)
        elif any(k in self.sources for k in moved):
            self.client_fills += 1
            self.inventory = float(sum((self.positions.get(s, ZERO) for s in self.sources), ZERO))
        self.max_abs = max(self.max_abs, abs(self.exposure))

    def on_price(self, price: PriceUpdate, now: float) -> None:
        if price.venue != self.hedge_venue or price.symbol != self.hedge_symbol:
            return
        self._integrate(now)
        mid = float(price.mid)
        if self.mid is not None:
            change = mid - self.mid
            self.pnl_qv += (self.exposure * change) ** 2
            self.unhedged_qv += (self.inventory * self.ratio * change) ** 2
        self.mid = mid
        if now >= self.next_sample:
            self.next_sample += self.sample_every
            band = self.band_of()
            self.series["hours"].append((now - self.start) / 3600.0)
            self.series["net_delta"].append(self.exposure)
            self.series["cost"].append(float(self.cost()))
            self.series["band"].append(math.nan if band is None else band)
            self.series["mid"].append(mid)


class _SimulationEngine(HedgeEngine):
    """The engine, with every venue event also shown to the recorder first."""

    recorder: _Recorder

    async def on_fill(self, fill: Fill) -> None:
        self.recorder.on_fill(fill, self.clock.monotonic())
        await super().on_fill(fill)

    async def on_price(self, price: PriceUpdate) -> None:
        self.recorder.on_price(price, self.clock.monotonic())
        await super().on_price(price)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

ProgressCallback = Callable[[float], None]


async def _drive_scenario(scenario: Scenario, duration: float, market: SimMarketData,
                          spot: ScenarioSpotVenue, clock: SimulatedClock, start: float) -> None:
    """Apply regime changes and bursts at their times."""
    vol = scenario.market.volatility
    rate = scenario.flow.rate
    mean_size = scenario.flow.mean_size
    burst: Burst | None = None
    events: list[tuple[float, int, Regime | Burst | None]] = []
    for regime in scenario.regimes:
        events.append((regime.at, 1, regime))
    for b in scenario.bursts:
        events.append((b.at, 2, b))
        events.append((min(b.at + b.duration, 1.0), 0, None))  # end of a burst
    events.sort(key=lambda e: (e[0], e[1]))
    for at, _, event in events:
        delay = start + at * duration - clock.monotonic()
        if delay > 0:
            await clock.sleep(delay)
        if isinstance(event, Regime):
            vol = event.volatility if event.volatility is not None else vol
            rate = event.flow_rate if event.flow_rate is not None else rate
            mean_size = event.mean_size if event.mean_size is not None else mean_size
            market.set_volatility(vol)
        elif isinstance(event, Burst):
            burst = event
        else:
            burst = None
        spot.buy_probability = burst.buy_probability if burst else scenario.flow.buy_probability
        spot.set_flow(burst.rate if burst else rate, mean_size)


async def _progress(duration: float, start: float, clock: SimulatedClock, report: ProgressCallback) -> None:
    step = duration / 200.0
    while True:
        report(min((clock.monotonic() - start) / duration, 1.0))
        await clock.sleep(step)


async def _simulate(settings: Settings, scenario: Scenario, *, seed: int, duration: float,
                    progress: ProgressCallback | None, samples: int) -> SimulationResult:
    loop = asyncio.get_running_loop()
    clock = SimulatedClock(loop)
    started_wall = time.perf_counter()
    venues, market, spot = build_scenario_venues(settings, scenario, clock)
    metrics = Metrics()
    ledger = SimulationLedger(settings.ledger.path, synchronous=settings.ledger.synchronous,
                              batch_max=settings.ledger.batch_max, metrics=metrics, commit_on="loop")
    engine = _SimulationEngine(settings, venues, ledger, clock, metrics)
    start = clock.monotonic()
    recorder = _Recorder(settings, market, scenario.costs.order_cost, start, samples, duration)
    engine.recorder = recorder
    underlying = settings.hedges[0].underlying
    base, quote, settle = split_symbol(settings.hedges[0].symbol)

    def band() -> float | None:
        current = getattr(engine.policy_for(underlying), "band", None)
        trigger = getattr(current, "trigger", None)
        return float(trigger) if trigger is not None else float(settings.hedges[0].threshold)

    recorder.band_of = band
    await engine.start()
    spot.stall_prices(True)
    helpers = [asyncio.create_task(_drive_scenario(scenario, duration, market, spot, clock, start))]
    if progress is not None:
        helpers.append(asyncio.create_task(_progress(duration, start, clock, progress)))
    try:
        await clock.sleep(start + duration - clock.monotonic())
        recorder._integrate(clock.monotonic())
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await engine.stop()
    if progress is not None:
        progress(1.0)
    elapsed = recorder.last_t - start
    return SimulationResult(
        scenario=scenario.name, policy=engine.policy_for(underlying).name, seed=seed, base_currency=base,
        quote_currency=settle or quote, duration_s=duration,
        hedging_cost=float(recorder.cost()), fees=float(recorder.fees), spread_paid=float(recorder.spread_paid),
        order_costs=float(recorder.order_cost * len(recorder.orders)),
        avg_abs_net_delta_notional=recorder.abs_notional_time / elapsed if elapsed > 0 else 0.0,
        hedged_pnl_std=math.sqrt(recorder.pnl_qv), unhedged_pnl_std=math.sqrt(recorder.unhedged_qv),
        hedge_orders=len(recorder.orders), hedged_volume=float(recorder.volume),
        max_abs_net_delta=recorder.max_abs, client_fills=recorder.client_fills,
        trading_state=engine.kill_switch.state.name.lower(),
        wall_seconds=time.perf_counter() - started_wall, series=recorder.series)


@contextlib.contextmanager
def _quiet_logs(level: str) -> Iterator[None]:
    """structlog to stderr at ``level`` for the duration (restores the previous setup)."""
    import logging

    previous = structlog.get_config()
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False)
    try:
        yield
    finally:
        structlog.configure(**previous)


def _temp_root() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def run_simulation(settings: Settings, scenario: Scenario = DEFAULT_SCENARIO, *, seed: int = 1,
                   duration: float = 86_400.0, policy: str | None = None,
                   progress: ProgressCallback | None = None, samples: int = 2_000,
                   log_level: str = "error") -> SimulationResult:
    """Run one simulation in a fresh :class:`VirtualTimeLoop` (blocking; not from a running loop).

    ``policy`` overrides ``settings.policy.name``; ``progress`` is called with the fraction done;
    ``samples`` is the number of points of the time series kept for plots.
    """
    if policy is not None and policy not in POLICY_NAMES:
        raise ValueError(f"unknown policy {policy!r} (one of {', '.join(POLICY_NAMES)})")
    if not duration > 0:
        raise ValueError("duration must be > 0")
    with tempfile.TemporaryDirectory(prefix="hedgerd-sim-", dir=_temp_root()) as tmp:
        prepared = simulation_settings(settings, scenario, seed=seed, ledger_path=Path(tmp) / "ledger.sqlite",
                                       policy=policy)
        loop = VirtualTimeLoop()
        with _quiet_logs(log_level), asyncio.Runner(loop_factory=lambda: loop) as runner:
            return runner.run(_simulate(prepared, scenario, seed=seed, duration=duration,
                                        progress=progress, samples=samples))
