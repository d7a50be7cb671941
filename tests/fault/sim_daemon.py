"""Helpers for the bad-input / operator / disk / security half of the fault suite.

* :class:`SimThread` runs the Binance-protocol venue simulator on its own event loop in a
  background thread, so a ``hedgerd run`` subprocess (driven with blocking HTTP calls from the
  test) can trade against it through the real ccxt classes;
* :func:`ccxt_daemon_config` writes a TOML config with two ccxt venues pointed at it;
* :func:`engine_settings` / :func:`running_engine` build an in-process :class:`HedgeEngine` on
  the embedded simulated venues (no subprocess) for scenarios that need direct hooks;
* :func:`wait_until`, :func:`log_events` are small utilities.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import asynccontextmanager, contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from hedgerd import exchange_sim
from hedgerd.clock import RealClock
from hedgerd.config import (
    HedgeConfig,
    InventorySource,
    Settings,
    SimSettings,
    VenueConfig,
    VenueKind,
    VenueRole,
    toml_dumps,
)
from hedgerd.connectors.base import Venue
from hedgerd.connectors.paper import build_sim_venues
from hedgerd.engine import HedgeEngine
from hedgerd.ledger import InventoryLedger
from hedgerd.metrics import Metrics

T = TypeVar("T")
SPOT_VENUE = "sim-spot"
PERP_VENUE = "sim-usdm"
PERP = "BTC/USDT:USDT"


# --------------------------------------------------------------------------- simulator in a thread
class SimThread:
    """A :class:`~hedgerd.exchange_sim.VenueSim` served from a background thread's event loop."""

    def __init__(self, config: exchange_sim.SimConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.sim: exchange_sim.VenueSim | None = None
        self._stop: asyncio.Event | None = None
        self._ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._main, name="venue-sim", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self.loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        try:
            async with exchange_sim.start_venue_sim(config=self.config) as sim:
                self.sim = sim
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
            raise

    def start(self) -> SimThread:
        self._thread.start()
        self._ready.result(timeout=20)
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    @property
    def venue(self) -> exchange_sim.VenueSim:
        assert self.sim is not None, "simulator not started"
        return self.sim

    def call(self, fn: Callable[[exchange_sim.VenueSim], T]) -> T:
        """Run ``fn(sim)`` on the simulator's loop and return its result."""
        async def run() -> T:
            return fn(self.venue)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=10)

    def admin(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST (with a body) or GET one of the simulator's ``/_sim/...`` endpoints."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.venue.base_url + path, data=data,
                                         method="GET" if body is None else "POST")
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def our_orders(self, prefix: str = "hgd") -> list[Any]:
        """Orders the daemon placed on the USD-M account (by client order id prefix)."""
        return self.call(lambda s: [o for o in s.engine.orders(exchange_sim.USDM)
                                    if o.client_order_id.startswith(prefix)])

    def trades(self, kind: str) -> list[Any]:
        return self.call(lambda s: list(s.engine.trades(kind)))  # type: ignore[arg-type]


@contextmanager
def sim_thread(*, api_key: str = exchange_sim.DEFAULT_API_KEY, secret: str = exchange_sim.DEFAULT_SECRET,
               flow_rate: float = 0.0, spot_btc: Decimal = Decimal(1), seed: int = 5) -> Iterator[SimThread]:
    """A running simulator (free port) for the duration of the block."""
    balances = {"USDT": Decimal(1_000_000), "BTC": spot_btc, "ETH": Decimal(0)}
    engine = exchange_sim.EngineConfig(seed=seed, flow_rate=flow_rate, spot_balances=balances)
    config = exchange_sim.SimConfig(port=0, api_key=api_key, secret=secret, engine=engine)
    thread = SimThread(config).start()
    try:
        yield thread
    finally:
        thread.stop()


# --------------------------------------------------------------------------- configs
def ccxt_daemon_config(sim: SimThread, *, mode: str = "live", hedge_symbol: str = PERP,
                       max_price_age: float = 3.0, threshold: str = "0.05", log_level: str = "info",
                       extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Config data: a ccxt spot inventory venue and a ccxt USD-M hedge venue on the simulator."""
    urls = {"api": sim.venue.ccxt_urls()}
    options = exchange_sim.ccxt_options()
    data: dict[str, Any] = {
        "mode": mode,
        "venues": [
            {"name": SPOT_VENUE, "kind": "ccxt", "exchange": "binance", "role": "inventory",
             "urls": urls, "options": options},
            {"name": PERP_VENUE, "kind": "ccxt", "exchange": "binanceusdm", "role": "hedge",
             "urls": urls, "options": options},
        ],
        "hedges": [
            {"underlying": "BTC", "venue": PERP_VENUE, "symbol": hedge_symbol, "threshold": threshold,
             "min_order": "0.001", "max_order": "1", "max_position": "10", "max_price_age": max_price_age,
             "inventory": [{"venue": SPOT_VENUE, "asset": "BTC"}]},
        ],
        "logging": {"level": log_level, "format": "json"},
        "executor": {"order_timeout": 5.0},
    }
    for key, value in (extra or {}).items():
        if isinstance(value, Mapping) and isinstance(data.get(key), Mapping):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return data


def sim_credentials_env(sim: SimThread) -> dict[str, str]:
    """The simulator's key and secret for both ccxt venues, as environment variables."""
    env: dict[str, str] = {}
    for venue in (SPOT_VENUE, PERP_VENUE):
        prefix = f"HEDGERD_CREDENTIALS__{venue.upper().replace('-', '_')}__"
        env[prefix + "API_KEY"] = sim.config.api_key
        env[prefix + "SECRET"] = sim.config.secret
    return env


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_dumps(data))
    return path


# --------------------------------------------------------------------------- in-process engine
def engine_settings(tmp_path: Path, *, flow_rate: float = 0.0, max_price_age: float = 5.0,
                    threshold: str = "0.05", order_type: str = "market", safety_tick: float = 1.0,
                    price_interval: float = 0.1) -> Settings:
    """Paper settings on the embedded simulated venues, ledger and kill file under ``tmp_path``."""
    venues = [
        VenueConfig(name="sim-spot", kind=VenueKind.SIM, role=VenueRole.INVENTORY,
                    sim=SimSettings(seed=1, symbol="BTC/USDT", flow_rate=flow_rate, price_interval=price_interval,
                                    volatility=0.3)),
        VenueConfig(name="sim-perp", kind=VenueKind.SIM, role=VenueRole.HEDGE,
                    sim=SimSettings(seed=2, symbol=PERP, flow_rate=0.0, price_interval=price_interval,
                                    volatility=0.3, latency_ms=1.0)),
    ]
    hedges = [HedgeConfig(underlying="BTC", inventory=[InventorySource(venue="sim-spot", asset="BTC")],
                          venue="sim-perp", symbol=PERP, threshold=Decimal(threshold),
                          max_price_age=max_price_age)]
    return Settings.model_validate({
        "mode": "paper", "venues": venues, "hedges": hedges,
        "ledger": {"path": tmp_path / "ledger.sqlite"},
        "kill_switch": {"kill_file": tmp_path / "KILL"},
        "executor": {"order_type": order_type, "max_slippage_bps": 50},
        "risk": {"safety_tick": safety_tick},
    })


@asynccontextmanager
async def running_engine(settings: Settings, prepare: Callable[[dict[str, Venue]], None] | None = None,
                         ) -> AsyncIterator[HedgeEngine]:
    """A started :class:`HedgeEngine` on the settings' simulated venues (``prepare`` sees them
    before the start); stopped on exit."""
    clock = RealClock()
    metrics = Metrics()
    ledger = InventoryLedger(settings.ledger.path, metrics=metrics)
    venues = build_sim_venues(settings.venues, clock)
    if prepare is not None:
        prepare(venues)
    engine = HedgeEngine(settings, venues, ledger, clock, metrics)
    await engine.start()
    try:
        yield engine
    finally:
        await engine.stop()


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (0 if none)."""
    total = 0.0
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


async def until(predicate: Callable[[], bool], limit: float, what: str) -> float:
    """Await ``predicate()`` (polled every 20 ms); returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > limit:
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> float:
    """Blocking :func:`until` (tolerates connection errors while a daemon starts)."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def log_events(log_path: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon log (other lines skipped)."""
    events = []
    for line in log_path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def run_cli(workdir: Path, args: list[str], env: Mapping[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``hedgerd <args>`` to completion with the daemon test environment of ``workdir``."""
    from tests.daemon_proc import daemon_env, free_port

    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "secrets").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "hedgerd.cli", *args],
                          env=daemon_env(workdir, free_port(), dict(env or {})), cwd=workdir,
                          capture_output=True, text=True, timeout=timeout)
