"""The simulated day's scenario: market, client flow, costs, limits, regimes and bursts.

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
    market_volume = 2               # base units/s the rest of the market trades on the hedge venue
    touch_depth = 5                 # mean base units queued ahead of a resting order at the touch
    sweep_probability = 0.1         # chance per tick that a side's flow sweeps beyond the touch
    adverse_selection_bps = 0.5     # the mid moves this far against a resting order as it fills
    [flow]                          # client fills on the inventory venue (Poisson arrivals)
    rate = 1.0                      # fills per second at the start of the run
    mean_size = 0.02                # base units
    size_distribution = "exponential"   # or "lognormal" (log-sd = size_sigma) or "fixed"
    size_sigma = 1.0
    buy_probability = 0.5           # probability that a client fill makes the desk buy
    [costs]
    taker_fee_bps = 4               # hedge venue taker fee
    maker_fee_bps = 2               # hedge venue maker fee (fills of passive orders)
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
    [options]                       # an options book: the inventory venue lists options (its keys are
    flow_rate = 0.01                # the config's [venues.sim.options]; needs a config whose inventory
    client_buy_probability = 0.7    # venue is an options venue, e.g. config/paper-options.toml)

Times in a scenario are fractions of the run, so a short run is a compressed day with the same
events. Option expiries are not fractions: they are days from the start, so a run shorter than a
day may see none expire. With ``[options]`` the ``[flow]`` section, the regimes' flow fields and
the bursts (client flow on spot) do not apply: the options venue's flow is the ``[options]`` one.

Built-in scenarios, by name instead of a file: ``default-day`` (:data:`DEFAULT_SCENARIO`) and
``options-book`` (:data:`OPTIONS_BOOK_SCENARIO`).
"""

from __future__ import annotations

import itertools
import re
import tomllib
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hedgerd.config import SimOptionsSettings
from hedgerd.errors import ConfigError
from hedgerd.sim.market import SizeDistribution


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MarketScenario(_Model):
    initial_price: Decimal = Field(default=Decimal(60000), gt=0)
    volatility: float = Field(default=0.6, ge=0, description="annualised")
    price_interval: float = Field(default=1.0, gt=0, description="seconds between ticks")
    spread_bps: Decimal = Field(default=Decimal(2), ge=0)
    market_volume: Decimal = Field(default=Decimal(2), gt=0, description=(
        "base units the rest of the market trades per second on the hedge venue (fills resting orders)"))
    touch_depth: Decimal = Field(default=Decimal(5), ge=0, description=(
        "mean base units queued at the touch ahead of a resting order when it joins"))
    sweep_probability: float = Field(default=0.1, ge=0, le=1, description=(
        "chance per tick that a side's flow sweeps beyond the touch"))
    adverse_selection_bps: Decimal = Field(default=Decimal("0.5"), ge=0, le=100, description=(
        "the mid moves this far against a resting order the moment it fills"))


class FlowScenario(_Model):
    rate: float = Field(default=1.0, ge=0, description="client fills per second")
    mean_size: Decimal = Field(default=Decimal("0.02"), gt=0, description="base units")
    size_distribution: SizeDistribution = "exponential"
    size_sigma: float = Field(default=1.0, gt=0, description="log-sd of lognormal sizes")
    buy_probability: float = Field(default=0.5, ge=0, le=1)


class CostScenario(_Model):
    taker_fee_bps: Decimal = Field(default=Decimal(4), ge=0)
    maker_fee_bps: Decimal = Field(default=Decimal(2), ge=-10, description="on fills of resting (passive) orders")
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
    options: SimOptionsSettings | None = None

    @model_validator(mode="after")
    def _bursts_do_not_overlap(self) -> Scenario:
        if self.options is not None and self.bursts:
            raise ValueError("bursts are spot client flow: an options book ([options]) has none")
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


OPTIONS_BOOK_SCENARIO = Scenario(
    name="options-book",
    market=MarketScenario(volatility=0.6, price_interval=2.0, spread_bps=Decimal(1)),
    costs=CostScenario(taker_fee_bps=Decimal(5), order_cost=Decimal(1)),
    limits=LimitsScenario(max_position=Decimal(200), max_order=Decimal(20)),
    regimes=(
        Regime(at=0.25, volatility=0.9),   # volatile session
        Regime(at=0.5, volatility=0.4),    # quiet
        Regime(at=0.75, volatility=0.7),
    ),
    options=SimOptionsSettings(expiry_days=[1.0, 7.0, 28.0], strikes_each_side=2, initial_trades=400,
                               flow_rate=0.01, flow_mean_size=Decimal("0.5"), client_buy_probability=0.7,
                               quote_interval=5.0),
)
"""The built-in options book: the desk carries a book of 400 client trades into the day and
trades 0.01 more a second (clients buy 70 %: the desk is short options, short gamma, and its
delta drifts with the price) over three expiries and five strikes, the nearest expiry settling
during the day, in three vol regimes."""

BUILTIN_SCENARIOS = {DEFAULT_SCENARIO.name: DEFAULT_SCENARIO, OPTIONS_BOOK_SCENARIO.name: OPTIONS_BOOK_SCENARIO}


def load_scenario(path: Path | None) -> Scenario:
    """The scenario in TOML file ``path``, or the built-in one of that name (``options-book``),
    :data:`DEFAULT_SCENARIO` if None.

    Raises :class:`~hedgerd.errors.ConfigError` with the offending key's dotted path.
    """
    if path is None:
        return DEFAULT_SCENARIO
    if str(path) in BUILTIN_SCENARIOS and not path.exists():
        return BUILTIN_SCENARIOS[str(path)]
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
