"""The fault suite's Deribit side: the Deribit-protocol simulator and a live engine on it, in-process.

:class:`DeribitStack` has the interface the scenarios use on :class:`~tests.fault.harness.InProcessStack`
(the Binance side), answered from the Deribit simulator's own books: its orders (hedge orders carry
the client order id as Deribit's ``label``), its trades, its positions (USD for the perpetual, coin
for options) turned into the ledger's contracts (10 USD per BTC-PERPETUAL contract, 1 BTC per
option contract) and its credit counters (10028). The daemon's config is config/deribit-sim.toml
(options inventory ``"*"`` hedged on BTC-PERPETUAL) pointed at the simulator.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from tests.fault.harness import FillComparison, compare_trade_ids, deep_merge, position_gaps

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
OPTIONS_VENUE, DPERP_VENUE = "sim-deribit-options", "sim-deribit-perp"
DPERP_SYMBOL = "BTC/USD:BTC"
PERP_NAME = "BTC-PERPETUAL"
PERP_CONTRACT_USD = Decimal(10)
#: the option the scenarios' single client fills trade (about 0.5 delta: 0.3 BTC of it is ~0.15 BTC)
CLIENT_FILL_AMOUNT = Decimal("0.3")


def unified_symbol(inst: Any) -> str:
    """ccxt's unified symbol of a simulator instrument (``BTC-PERPETUAL`` -> ``BTC/USD:BTC``,
    ``BTC-11DEC26-58000-C`` -> ``BTC/USD:BTC-261211-58000-C``)."""
    base = f"{inst.currency}/USD:{inst.currency}"
    if inst.is_perpetual:
        return base
    day = datetime.fromtimestamp(inst.expiry_ms / 1000, UTC).strftime("%y%m%d")
    if not inst.is_option:
        return f"{base}-{day}"
    return f"{base}-{day}-{format(inst.strike.normalize(), 'f')}-{inst.option_type[0].upper()}"


def deribit_settings_data(base_url: str, ledger_path: Path, client_id: str, secret: str,
                          overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """config/deribit-sim.toml on ``base_url``, credentials inline, ``overrides`` deep-merged."""
    data = tomllib.loads((ROOT / "config/deribit-sim.toml").read_text())
    for venue in data["venues"]:
        venue.update(sim_base_url=base_url, api_key=client_id, secret=secret)
    data["ledger"] = {"path": str(ledger_path)}
    data["kill_switch"]["kill_file"] = None
    data.pop("admin", None)
    data["logging"] = {"format": "json", "level": "info"}
    # a loaded CI box must not halt on quote age (as in tests/test_e2e_deribit_live.py)
    data["hedges"][0].update(max_price_age=30.0, max_greeks_age=30.0)
    return deep_merge(data, dict(overrides or {}))


def hedge_orders(sim: Any) -> list[dict[str, Any]]:
    """Orders on BTC-PERPETUAL as the Binance side's ``/_sim/orders`` rows (label = client order id)."""
    return [{"orderId": o.order_id, "clientOrderId": o.label, "clientFlow": o.label == "client-flow"}
            for o in sim.venue.orders.values() if o.instrument.name == PERP_NAME]


def fill_comparisons(sim: Any, ledger_fills: list[dict[str, Any]], since_ms: int = 0) -> dict[str, FillComparison]:
    """The ledger's fills of each venue entry against the account's trades (in contracts); trades
    before ``since_ms`` may be missing (inside the adopted balance)."""
    at_venue: dict[str, dict[str, Decimal]] = {OPTIONS_VENUE: {}, DPERP_VENUE: {}}
    expected: dict[str, dict[str, Decimal]] = {OPTIONS_VENUE: {}, DPERP_VENUE: {}}
    for t in sim.venue.trades:
        inst = t.order.instrument
        venue = DPERP_VENUE if inst.name == PERP_NAME else OPTIONS_VENUE
        amount = t.amount / PERP_CONTRACT_USD if inst.name == PERP_NAME else t.amount
        trade_id = f"{unified_symbol(inst)}#{t.trade_id}"
        at_venue[venue][trade_id] = amount
        if t.timestamp >= since_ms:
            expected[venue][trade_id] = amount
    return {venue: compare_trade_ids(at_venue[venue], expected[venue], ledger_fills, venue) for venue in at_venue}


def venue_positions(sim: Any) -> dict[tuple[str, str], Decimal]:
    """The account's positions (every instrument it ever held, the perpetual always) in the
    ledger's keys and contracts."""
    out = {(DPERP_VENUE, DPERP_SYMBOL): Decimal(0)}
    for name, pos in sim.venue.positions.items():
        if name == PERP_NAME:
            out[(DPERP_VENUE, DPERP_SYMBOL)] = pos.size / PERP_CONTRACT_USD
        else:
            out[(OPTIONS_VENUE, unified_symbol(sim.venue.instruments[name]))] = pos.size
    return out


@dataclass
class DeribitStack:
    """A :class:`~hedgerd.exchange_sim.deribit.DeribitSim` and a started live engine on this loop."""

    sim: Any  # hedgerd.exchange_sim.deribit.DeribitSim
    engine: Any  # hedgerd.engine.HedgeEngine
    ledger_path: Path
    protocol = "deribit"
    hedge_venue = DPERP_VENUE

    # ------------------------------------------------------------------ the venue's books
    def hedge_orders(self) -> list[dict[str, Any]]:
        return hedge_orders(self.sim)

    def fill_comparisons(self, ledger_fills: list[dict[str, Any]], since_ms: int = 0) -> dict[str, FillComparison]:
        return fill_comparisons(self.sim, ledger_fills, since_ms)

    def venue_positions(self) -> dict[tuple[str, str], Decimal]:
        return venue_positions(self.sim)

    def ws_dropped(self) -> int:
        return int(self.sim.stats.ws_dropped)

    def now_ms(self) -> int:
        return int(self.sim.engine.now())

    def set_flow(self, rate: float) -> None:
        """Synthetic client fills on BTC options per second."""
        self.sim.option_flow.flow.rate = rate

    def client_fill(self, side: str, qty: str | None = None) -> None:
        """A desk client trades the nearest expiry's call closest to the index with the account
        (``side``: the account's, BUY or SELL; ``qty`` in BTC, default :data:`CLIENT_FILL_AMOUNT`)."""
        venue = self.sim.venue
        index = venue.index("BTC")
        calls = [i for i in venue.instruments.values() if i.is_option and i.currency == "BTC"
                 and i.option_type == "call" and i.name not in venue.delivered]
        nearest = min(i.expiry_ms for i in calls)
        inst = min((i for i in calls if i.expiry_ms == nearest), key=lambda i: abs(i.strike - index))
        trade = venue.client_fill(inst.name, side.lower(), Decimal(qty) if qty else CLIENT_FILL_AMOUNT)
        if trade is None:
            raise AssertionError(f"the simulator refused a client fill on {inst.name}")

    # ------------------------------------------------------------------ 10028: the account's credits
    def rate_limited(self) -> int:
        return int(self.sim.stats.rejected_10028)

    def limit_for(self, case: str) -> None:
        """Run the account out of credits: non-matching ones (the look-ups) or the matching engine's."""
        if "matching" in case:
            self.sim.matching_credits.starve()
        else:
            self.sim.credits.starve()

    def unlimit(self) -> None:
        self.sim.credits.restore(self.sim.config.credits_refill)
        self.sim.matching_credits.restore(self.sim.config.matching_refill)

    def backoff_seconds(self) -> float:
        return 1.0

    # ------------------------------------------------------------------ the engine's side
    def gaps(self) -> dict[tuple[str, str], Decimal]:
        return position_gaps(self.engine.ledger.positions(), self.venue_positions())

    def open_orders(self) -> int:
        return sum(len(state.executor.open_orders()) for state in self.engine.hedges.values())

    def net_delta(self) -> Decimal:
        delta: Decimal = self.engine.risk_pass.snapshot(self.engine.hedges["BTC"]).net_delta
        return delta

    def hedged(self) -> bool:
        threshold: Decimal = self.engine.hedges["BTC"].config.threshold
        return abs(self.net_delta()) <= threshold

    def settled(self) -> bool:
        return self.open_orders() == 0 and not any(self.gaps().values())


def deribit_sim_config(*, seed: int = 11, flow_rate: float = 0.0) -> Any:
    """A Deribit simulator on a free port, 20 BTC of equity (margin for the clients' options)."""
    from hedgerd.exchange_sim import EngineConfig
    from hedgerd.exchange_sim.deribit import DeribitConfig, DeribitSimConfig

    return DeribitSimConfig(port=0, engine=EngineConfig(seed=seed), option_flow_rate=flow_rate,
                            venue=DeribitConfig(balances={"BTC": Decimal(20), "ETH": Decimal(100)}))


@contextlib.asynccontextmanager
async def deribit_stack(workdir: Path, sim_config: Any = None,
                        overrides: Mapping[str, Any] | None = None) -> AsyncIterator[DeribitStack]:
    """Start a Deribit simulator and a live engine (real ccxt.deribit) on it; stop both on exit."""
    from hedgerd.clock import RealClock
    from hedgerd.config import Settings
    from hedgerd.connectors import build_venues
    from hedgerd.engine import HedgeEngine
    from hedgerd.exchange_sim.deribit import start_deribit_sim
    from hedgerd.ledger import InventoryLedger
    from hedgerd.metrics import Metrics

    ledger_path = workdir / "ledger.sqlite"
    async with start_deribit_sim(config=sim_config or deribit_sim_config()) as sim:
        data = deribit_settings_data(sim.base_url, ledger_path, sim.config.client_id, sim.config.client_secret,
                                     overrides)
        settings = Settings.model_validate(data)
        clock, metrics = RealClock(), Metrics()
        ledger = InventoryLedger(settings.ledger.path, metrics=metrics)
        engine = HedgeEngine(settings, build_venues(settings, clock), ledger, clock, metrics)
        try:
            await engine.start()
            yield DeribitStack(sim=sim, engine=engine, ledger_path=ledger_path)
        finally:
            await engine.stop()


# --------------------------------------------------------------------------- for a daemon subprocess
class DeribitSimThread:
    """A Deribit simulator on its own event loop in a background thread, for a ``hedgerd run``
    subprocess (a ``kill -9`` of the daemon leaves it running); the crash scenario's view of it
    has the methods of :class:`~tests.fault.harness.SimProcess` that scenario uses."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.sim: Any = None
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="deribit-sim", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        from hedgerd.exchange_sim.deribit import start_deribit_sim

        self._stop = asyncio.Event()
        async with start_deribit_sim(config=self.config) as sim:
            self.sim = sim
            self._started.set()
            await self._stop.wait()

    def start(self) -> DeribitSimThread:
        self._thread.start()
        if not self._started.wait(20):
            raise AssertionError("Deribit simulator did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(sim)`` on the simulator's loop (its state is not thread-safe)."""
        async def run() -> T:
            return fn(self.sim)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    @property
    def base_url(self) -> str:
        return str(self.sim.base_url)

    def credentials_env(self) -> dict[str, str]:
        """The simulator's client id and secret for both venue entries, as environment variables."""
        env: dict[str, str] = {}
        for venue in (OPTIONS_VENUE, DPERP_VENUE):
            key = venue.upper().replace("-", "_")
            env[f"HEDGERD_CREDENTIALS__{key}__API_KEY"] = self.config.client_id
            env[f"HEDGERD_CREDENTIALS__{key}__SECRET"] = self.config.client_secret
        return env

    def set_faults(self, **switches: Any) -> None:
        self.call(lambda s: s.faults.update(switches))

    def set_flow(self, rate: float) -> None:
        def apply(sim: Any) -> None:
            sim.option_flow.flow.rate = rate
        self.call(apply)

    def faults_timeout(self) -> int:
        return int(self.call(lambda s: s.stats.faults_timeout))

    def hedge_orders(self) -> list[dict[str, Any]]:
        return self.call(hedge_orders)

    def fill_comparisons(self, ledger_fills: list[dict[str, Any]], since_ms: int = 0) -> dict[str, FillComparison]:
        return self.call(lambda s: fill_comparisons(s, ledger_fills, since_ms))

    def positions(self) -> dict[tuple[str, str], Decimal]:
        return self.call(venue_positions)


@contextlib.contextmanager
def running_deribit_sim(*, seed: int, flow_rate: float) -> Iterator[DeribitSimThread]:
    """A Deribit simulator thread (options client flow at ``flow_rate``) for the block."""
    sim = DeribitSimThread(deribit_sim_config(seed=seed, flow_rate=flow_rate)).start()
    try:
        yield sim
    finally:
        sim.stop()
