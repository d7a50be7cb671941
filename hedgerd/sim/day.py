"""``hedgerd simulate``'s simulated day: the real engine on virtual time against simulated venues.

What runs is the production :class:`~hedgerd.engine.HedgeEngine` — risk loop, policy, kill
switch, executor and the durable :class:`~hedgerd.ledger.InventoryLedger` (on a temporary file)
— against the paper venues (:mod:`hedgerd.connectors.paper`; the inventory venue's client flow
follows the scenario: :mod:`hedgerd.sim.venues`). Only time is simulated
(:mod:`hedgerd.sim.clock`); the day's market and events come from a scenario
(:mod:`hedgerd.sim.scenario`).

The simulation takes the engine settings (hedges, executor, risk, kill switch, policy)
from the config; the first hedge's venues must be ``kind = "sim"``; the scenario replaces their
simulation parameters, the ledger goes to a temporary file, the kill file is ignored, and the
inventory venue's own price stream is muted (the engine prices the hedge instrument).

Figures (:class:`SimulationResult`): hedging cost = fees + spread paid (``(fill - mid) x amount``
against us, mid at fill time: a taker pays ``|fill - mid|``, a passive fill may earn) + fixed order
costs; the daemon's own decomposition of it (fee, spread,
slippage against the decision quote, funding: :mod:`hedgerd.risk.cost`, as ``/status`` shows,
without the order costs); residual risk = time-averaged ``|net delta x mid|`` and the standard
deviation of the hedged mark-to-market PnL (square root of its realised quadratic variation,
price tick by price tick; costs excluded), over the whole run: its horizon is the run's
duration; number of hedge orders; max ``|net delta|``. Net delta here is the actual exposure:
inventory x hedge ratio + perp position. Sizes are in the hedge symbol's base currency, money in
its settlement (else quote) currency. Printing and plotting: :mod:`hedgerd.sim.cli`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from hedgerd.config import Mode, Settings, VenueKind, VenueRole, config_error_from_validation
from hedgerd.connectors.paper import SimPerpVenue
from hedgerd.connectors.paper_options import SimOptionsVenue
from hedgerd.engine import HedgeEngine
from hedgerd.errors import ConfigError
from hedgerd.funding import FundingPoller
from hedgerd.instruments import InstrumentKind
from hedgerd.ledger.accounting import trade_moves
from hedgerd.metrics import Metrics
from hedgerd.models import ZERO, Fill, PriceUpdate, split_symbol
from hedgerd.policy import POLICY_NAMES
from hedgerd.risk.cost import HedgeCost
from hedgerd.sim.clock import SimulatedClock, VirtualTimeLoop
from hedgerd.sim.ledger import SimulationLedger
from hedgerd.sim.market import SimMarketData
from hedgerd.sim.options_book import HedgeUnits, OptionsDelta
from hedgerd.sim.scenario import DEFAULT_SCENARIO, Burst, Regime, Scenario
from hedgerd.sim.venues import ScenarioSpotVenue, build_scenario_venues

# --------------------------------------------------------------------------------------------
# Settings of a run
# --------------------------------------------------------------------------------------------

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
            sim.update(flow_rate=0.0, taker_fee_bps=scenario.costs.taker_fee_bps,
                       maker_fee_bps=scenario.costs.maker_fee_bps, market_volume=scenario.market.market_volume,
                       touch_depth=scenario.market.touch_depth,
                       sweep_probability=scenario.market.sweep_probability,
                       adverse_selection_bps=scenario.market.adverse_selection_bps)
        else:
            sim.update(flow_rate=scenario.flow.rate, flow_mean_size=scenario.flow.mean_size,
                       latency_ms=0.0)
            if scenario.options is not None:
                if sim["options"] is None:
                    raise ConfigError(f"venues.{venue['name']}.sim.options", (
                        f"scenario {scenario.name!r} is an options book: its inventory venue must list options "
                        "(sim.options), e.g. --config config/paper-options.toml"))
                sim["options"] = scenario.options.model_dump()
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
    # the daemon's own decomposition (hedgerd.risk.cost, as in /status): fee, spread and slippage
    # against the quote each hedge was decided on, funding, total; excludes the fixed order costs
    cost_decomposition: dict[str, float]
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
        # An options book and an inverse hedge (hedgerd.sim.options_book); None: spot and linear.
        self.options_delta: OptionsDelta | None = None
        self.options_venue: str | None = None
        self.units: HedgeUnits | None = None

    @property
    def exposure(self) -> float:
        if self.units is None:
            return self.inventory * self.ratio + self.perp
        return self.inventory * self.ratio + self.units.coin(self.perp, self.mid)

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
        moved = trade_moves(fill)
        for position_key, delta in moved.items():
            self.positions[position_key] = self.positions.get(position_key, ZERO) + delta
        if fill.venue == self.hedge_venue and fill.symbol == self.hedge_symbol:
            self.perp = float(self.positions[(fill.venue, fill.symbol)])
            if self.units is None:
                self.fees += fill.fee
                # signed: a passive fill below the mid (buy) earns; for a taker fill it is |fill - mid|
                self.spread_paid += (fill.price - self.market.mid()) * fill.side.sign * fill.amount
                self.volume += fill.amount
            else:
                self.fees += self.units.fee_in_quote(fill)
                self.spread_paid += self.units.spread_paid(fill, self.market.mid())
                self.volume += self.units.coin_amount(fill)
            if fill.client_order_id is not None:
                self.orders.add(fill.client_order_id)
        elif self.options_delta is not None and fill.venue == self.options_venue:
            if "-settle-" not in fill.trade_id:  # a settlement at expiry is not client flow
                self.client_fills += 1
            self.inventory = self.options_delta(self.positions)
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
        if self.options_delta is not None:  # an options book's delta moves with the price
            self.inventory = self.options_delta(self.positions)
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

    async def on_fills(self, fills: Sequence[Fill]) -> None:
        for fill in fills:
            self.recorder.on_fill(fill, self.clock.monotonic())
        await super().on_fills(fills)

    async def on_price(self, price: PriceUpdate) -> None:
        self.recorder.on_price(price, self.clock.monotonic())
        await super().on_price(price)


# --------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------

ProgressCallback = Callable[[float], None]


async def _drive_scenario(scenario: Scenario, duration: float, market: SimMarketData,
                          inventory: ScenarioSpotVenue | SimOptionsVenue, clock: SimulatedClock,
                          start: float) -> None:
    """Apply regime changes and bursts at their times (an options venue's flow is its own)."""
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
        if not isinstance(inventory, ScenarioSpotVenue):
            continue
        spot = inventory
        spot.flow.buy_probability = burst.buy_probability if burst else scenario.flow.buy_probability
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
    venues, market, inventory = build_scenario_venues(settings, scenario, clock)
    metrics = Metrics()
    ledger = SimulationLedger(settings.ledger.path, synchronous=settings.ledger.synchronous,
                              batch_max=settings.ledger.batch_max, metrics=metrics, commit_on="loop")
    engine = _SimulationEngine(settings, venues, ledger, clock, metrics)
    start = clock.monotonic()
    recorder = _Recorder(settings, market, scenario.costs.order_cost, start, samples, duration)
    engine.recorder = recorder
    underlying = settings.hedges[0].underlying
    base, quote, settle = split_symbol(settings.hedges[0].symbol)
    hedge_venue = venues[settings.hedges[0].venue]
    if isinstance(hedge_venue, SimPerpVenue) and hedge_venue.instrument.kind is InstrumentKind.INVERSE:
        recorder.units = HedgeUnits(hedge_venue.instrument)
        settle = quote  # money in quote: coin fees are valued at their fill price
    if isinstance(inventory, SimOptionsVenue):
        recorder.options_delta, recorder.options_venue = OptionsDelta(inventory), inventory.name

    def band() -> float | None:
        current = getattr(engine.policy_for(underlying), "band", None)
        trigger = getattr(current, "trigger", None)
        return float(trigger) if trigger is not None else float(settings.hedges[0].threshold)

    recorder.band_of = band
    await engine.start()
    funding = FundingPoller.for_engine(engine)  # as the daemon runs it, on virtual time
    funding.start()
    inventory.stall_prices(True)
    helpers = [asyncio.create_task(_drive_scenario(scenario, duration, market, inventory, clock, start))]
    if progress is not None:
        helpers.append(asyncio.create_task(_progress(duration, start, clock, progress)))
    try:
        await clock.sleep(start + duration - clock.monotonic())
        recorder._integrate(clock.monotonic())
        await funding.poll_once()  # funding charged since the last poll counts too
    finally:
        for task in helpers:
            task.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
        await funding.stop()
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
        cost_decomposition=_decomposition(engine.costs.by_underlying.get(underlying, HedgeCost())),
        wall_seconds=time.perf_counter() - started_wall, series=recorder.series)


def _decomposition(cost: HedgeCost) -> dict[str, float]:
    return {**{kind: float(value) for kind, value in cost.parts().items()}, "total": float(cost.total)}


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
