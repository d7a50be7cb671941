"""Shared helpers of the fault suite (tests/fault/ and bench/faults.py).

* :class:`Row` and :func:`format_table`: one measured figure of one scenario, and the table
  ``bench/faults.py`` prints (scenario, figure, value, goal, ok).
* :func:`running_sim` / :class:`SimProcess`: the Binance-protocol venue simulator in its own
  process (so its state survives a ``kill -9`` of the daemon), driven through ``/_sim/*``.
* :func:`live_config` / :func:`write_config` / :func:`sim_credentials_env`: a live-mode
  config (``binance`` spot inventory + ``binanceusdm`` hedge) pointed at a simulator;
  :func:`live_daemon` runs ``hedgerd run`` on it as a subprocess.
* :func:`in_process_stack` / :func:`running_engine`: simulator and live-mode engine (real ccxt)
  on the test's own event loop, as an :class:`InProcessStack`.
* :func:`read_ledger` and the comparisons :func:`duplicate_client_ids`, :func:`compare_fills`,
  :func:`position_gaps`: the figures, computed from the venue's own books and the ledger file.
* :func:`log_events` / :class:`LogFollower`: the daemon's JSON log lines.

Run a simulator by hand: ``python -m tests.fault.harness sim '{"engine": {"flow_rate": 4}}'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.daemon_proc import DaemonProcess, running_daemon, stop_process

ROOT = Path(__file__).resolve().parents[2]

SPOT_VENUE = "binance-spot"
PERP_VENUE = "binance-usdm"
SPOT_SYMBOL = "BTC/USDT"
PERP_SYMBOL = "BTC/USDT:USDT"
SIM_SYMBOL = "BTCUSDT"
#: Simulator market kind -> (ledger venue name, unified symbol of BTCUSDT there).
KIND_VENUE = {"spot": (SPOT_VENUE, SPOT_SYMBOL), "usdm": (PERP_VENUE, PERP_SYMBOL)}
SIM_API_KEY = "sim-api-key"
SIM_SECRET = "sim-secret"


# --------------------------------------------------------------------------- figures
@dataclass(frozen=True)
class Row:
    """One measured figure: ``value`` against ``goal`` (both shown as text), ``ok`` if it meets it."""

    scenario: str
    figure: str
    value: str
    goal: str
    ok: bool


def row(scenario: str, figure: str, value: Any, goal: str, ok: bool) -> Row:
    """A :class:`Row` with ``value`` rendered (floats to 3 decimals)."""
    if isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, Decimal):
        text = format(value.normalize(), "f") if value else "0"
    else:
        text = str(value)
    return Row(scenario, figure, text, goal, bool(ok))


def zero_row(scenario: str, figure: str, value: int | Decimal) -> Row:
    """A figure whose goal is exactly zero."""
    return row(scenario, figure, value, "0", value == 0)


def format_table(rows: Sequence[Row]) -> str:
    """A plain-text table of ``rows`` with an ``ok`` column (``FAIL`` where the goal is missed)."""
    header = ("scenario", "figure", "value", "goal", "ok")
    cells = [header, *((r.scenario, r.figure, r.value, r.goal, "ok" if r.ok else "FAIL") for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------- waiting
def wait_until(predicate: Callable[[], bool], timeout: float, what: str, *, interval: float = 0.1,
               on_timeout: Callable[[], str] | None = None) -> None:
    """Poll ``predicate`` (exceptions count as False) until true; AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            if predicate():
                return
        except (OSError, ValueError, KeyError, urllib.error.URLError) as exc:
            last = exc
        if time.monotonic() >= deadline:
            extra = on_timeout() if on_timeout is not None else ""
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n{extra}")
        time.sleep(interval)


async def async_wait_until(predicate: Callable[[], bool], seconds: float, what: str,
                           interval: float = 0.05) -> None:
    """:func:`wait_until` for code running on an event loop."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(interval)


# --------------------------------------------------------------------------- the simulator process
def _http(method: str, url: str, body: Any = None, timeout: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"null")


@dataclass
class SimProcess:
    """A venue simulator running in a child process, reached through its admin endpoints."""

    proc: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    @property
    def ws_url(self) -> str:
        return "ws://" + self.base_url.removeprefix("http://")

    def get(self, path: str) -> Any:
        return _http("GET", self.base_url + path)

    def post(self, path: str, body: Any = None) -> Any:
        return _http("POST", self.base_url + path, body if body is not None else {})

    def set_faults(self, **switches: Any) -> dict[str, Any]:
        """Flip fault switches (see :class:`hedgerd.exchange_sim.FaultConfig`)."""
        result: dict[str, Any] = self.post("/_sim/faults", switches)
        return result

    def reset_faults(self) -> None:
        self.post("/_sim/faults/reset")

    def set_flow(self, rate: float) -> None:
        """Synthetic client fills per second on the spot account."""
        self.post("/_sim/flow", {"rate": rate})

    def client_fill(self, side: str, qty: Decimal | str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self.post("/_sim/fill", {"symbol": SIM_SYMBOL, "side": side,
                                                                 "qty": str(qty)})
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/_sim/stats")
        return result

    def trades(self, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/_sim/trades?kind={kind}")
        return result

    def orders(self, kind: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get(f"/_sim/orders?kind={kind}")
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/_sim/state")
        return result

    def positions(self) -> dict[tuple[str, str], Decimal]:
        """The venue's side of the positions the daemon hedges: spot BTC balance, perp position."""
        state = self.state()
        spot = state["spot_balances"].get("BTC", {"free": "0", "locked": "0"})
        perp = state["positions"].get(SIM_SYMBOL, {"amount": "0"})
        return {(SPOT_VENUE, "BTC"): Decimal(spot["free"]) + Decimal(spot["locked"]),
                (PERP_VENUE, PERP_SYMBOL): Decimal(perp["amount"])}

    # what the crash scenario asks of every protocol's simulator (deribit_stack.DeribitSimThread too)
    def faults_timeout(self) -> int:
        """Executed orders whose answer the simulator held or dropped so far."""
        return int(self.stats()["faults_timeout"])

    def hedge_orders(self) -> list[dict[str, Any]]:
        return self.orders("usdm")

    def fill_comparisons(self, ledger_fills: list[dict[str, Any]], since_ms: int = 0) -> dict[str, FillComparison]:
        """Spot fills since ``since_ms`` (older ones are in the adopted balance) and every perp fill."""
        return {SPOT_VENUE: compare_fills(self.trades("spot"), ledger_fills, SPOT_VENUE, since_ms=since_ms),
                PERP_VENUE: compare_fills(self.trades("usdm"), ledger_fills, PERP_VENUE)}

    def credentials_env(self) -> dict[str, str]:
        return sim_credentials_env()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def sim_config_json(*, seed: int = 1, flow_rate: float = 0.0, btc: str = "0.3", tick_interval: float = 0.25,
                    **server: Any) -> dict[str, Any]:
    """JSON settings for :func:`running_sim`: engine seed/flow/BTC balance plus SimConfig fields."""
    return {"tick_interval": tick_interval, **server,
            "engine": {"seed": seed, "flow_rate": flow_rate, "spot_balances": {"USDT": "1000000", "BTC": btc}}}


@contextlib.contextmanager
def running_sim(workdir: Path, config: Mapping[str, Any] | None = None,
                startup_timeout: float = 30.0) -> Iterator[SimProcess]:
    """Run ``python -m tests.fault.harness sim CONFIG`` until the block ends."""
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "venue-sim.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "tests.fault.harness", "sim",
                                 json.dumps(dict(config or sim_config_json()))],
                                cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        base_url = ""

        def listening() -> bool:
            nonlocal base_url
            if proc.poll() is not None:
                raise AssertionError(f"venue simulator exited ({proc.returncode}):\n"
                                     f"{log_path.read_text(errors='replace')}")
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith("venue-sim listening on "):
                    base_url = line.split()[3]
                    return True
            return False

        wait_until(listening, startup_timeout, "the venue simulator to listen")
        yield SimProcess(proc=proc, base_url=base_url, log_path=log_path)
    finally:
        stop_process(proc)


def sim_main(argv: Sequence[str]) -> int:
    """Entry of the simulator child process: ``sim [JSON]`` (see :func:`sim_config_json`)."""
    from hedgerd.exchange_sim import EngineConfig, SimConfig, run_server

    raw: dict[str, Any] = json.loads(argv[0]) if argv else {}
    engine_raw: dict[str, Any] = dict(raw.pop("engine", {}))
    balances = engine_raw.pop("spot_balances", None)
    engine = EngineConfig(**engine_raw)
    if balances is not None:
        engine.spot_balances = {asset: Decimal(str(qty)) for asset, qty in balances.items()}
    config = SimConfig(host="127.0.0.1", port=int(raw.pop("port", 0)), engine=engine, **raw)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_server(config))
    return 0


# --------------------------------------------------------------------------- daemon config
def _ccxt_urls(base_url: str, ws_url: str) -> dict[str, Any]:
    from hedgerd.exchange_sim import ccxt_urls

    return ccxt_urls(base_url, ws_url)


def live_config(base_url: str, ws_url: str, *, credentials: bool = False,
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Live-mode settings (plain data): binance spot inventory, binanceusdm hedge, both on the simulator.

    ``credentials`` puts the simulator's key and secret into the venues (for in-process
    ``Settings``); a daemon subprocess gets them from :func:`sim_credentials_env` instead.
    ``overrides`` is deep-merged (``{"executor": {"order_timeout": 2}}``); ``hedge`` and
    ``spot_venue``/``perp_venue`` keys merge into the hedge and the venues.
    """
    from hedgerd.exchange_sim import ccxt_options

    overrides = dict(overrides or {})
    urls = {"api": _ccxt_urls(base_url, ws_url)}
    venue_common: dict[str, Any] = {"kind": "ccxt", "urls": urls, "options": ccxt_options()}
    if credentials:
        venue_common.update(api_key=SIM_API_KEY, secret=SIM_SECRET)
    spot = {"name": SPOT_VENUE, "exchange": "binance", "role": "inventory", **venue_common}
    perp = {"name": PERP_VENUE, "exchange": "binanceusdm", "role": "hedge", **venue_common}
    deep_merge(spot, overrides.pop("spot_venue", {}))
    deep_merge(perp, overrides.pop("perp_venue", {}))
    hedge: dict[str, Any] = {
        "underlying": "BTC", "venue": PERP_VENUE, "symbol": PERP_SYMBOL, "hedge_ratio": 1,
        "threshold": "0.01", "min_order": "0.002", "max_order": "0.05", "max_position": "5",
        "max_price_age": 15.0, "max_delta_notional": 10_000_000,
        "inventory": [{"venue": SPOT_VENUE, "asset": "BTC"}],
    }
    deep_merge(hedge, overrides.pop("hedge", {}))
    data: dict[str, Any] = {
        "mode": "live",
        "venues": [spot, perp],
        "hedges": [hedge],
        "executor": {"order_type": "market", "order_timeout": 3.0, "max_retries": 3, "backoff_initial": 0.2,
                     "backoff_max": 2.0, "client_id_prefix": "hgd", "cancel_on_shutdown": True,
                     "default_rate_limit": {"requests_per_second": 10.0, "burst": 10}},
        "kill_switch": {"engaged": False, "cancel_open_orders_on_halt": True, "max_consecutive_errors": 50},
        "risk": {"safety_tick": 1.0, "max_price_jump": "0.2"},
        "logging": {"format": "json", "level": "info"},
    }
    return deep_merge(data, overrides)


def sim_credentials_env() -> dict[str, str]:
    """Environment giving both venues the simulator's credentials."""
    env: dict[str, str] = {}
    for venue in (SPOT_VENUE, PERP_VENUE):
        key = venue.upper().replace("-", "_")
        env[f"HEDGERD_CREDENTIALS__{key}__API_KEY"] = SIM_API_KEY
        env[f"HEDGERD_CREDENTIALS__{key}__SECRET"] = SIM_SECRET
    return env


def deep_merge(target: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` into ``target`` recursively (in place) and return it."""
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        else:
            target[key] = value
    return target


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Decimal):
        return json.dumps(str(value))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def toml_dumps(data: Mapping[str, Any], prefix: str = "") -> str:
    """Minimal TOML writer: scalars, inline tables for dicts inside arrays, ``[[x]]`` for lists of dicts."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        path = f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key)
        if isinstance(value, Mapping):
            tables.append(f"\n[{path}]\n" + toml_dumps(value, path))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for item in value:
                tables.append(f"\n[[{path}]]\n" + "\n".join(
                    f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()) + "\n")
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(lines) + ("\n" if lines else "") + "".join(tables)


def write_config(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as a TOML config file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(toml_dumps(data))
    return path


@contextlib.contextmanager
def live_daemon(workdir: Path, config: Path, *, env: Mapping[str, str] | None = None,
                ready_timeout: float = 60.0, credentials: Mapping[str, str] | None = None) -> Iterator[DaemonProcess]:
    """``hedgerd run --config config`` with the simulator's credentials, until the block ends.

    The ledger is ``workdir/ledger.sqlite``, the kill file ``workdir/KILL``, the log
    ``workdir/daemon.log`` (appended across restarts); see :func:`tests.daemon_proc.daemon_env`.
    ``credentials``: the venues' credential variables (default: the Binance simulator's).
    """
    creds = sim_credentials_env() if credentials is None else dict(credentials)
    with running_daemon(workdir, args=["--config", str(config)], env={**creds, **(env or {})},
                        wait_ready=False) as daemon:
        daemon.wait_for(lambda: daemon.get("/healthz")[0] == 200, ready_timeout, "/healthz")
        yield daemon


def daemon_status(daemon: DaemonProcess) -> dict[str, Any]:
    code, body = daemon.get("/status")
    if code != 200:
        raise AssertionError(f"/status answered {code}: {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


@dataclass
class InProcessStack:
    """A simulator and a live-mode :class:`~hedgerd.engine.HedgeEngine` (real ccxt) on this event loop."""

    sim: Any  # hedgerd.exchange_sim.VenueSim
    engine: Any  # hedgerd.engine.HedgeEngine
    ledger_path: Path

    def trades(self, kind: str) -> list[dict[str, Any]]:
        from hedgerd.exchange_sim.binance.server import trade_as_json

        return [trade_as_json(t) for t in self.sim.engine.trades(kind)]

    def orders(self, kind: str) -> list[dict[str, Any]]:
        from hedgerd.exchange_sim.binance.server import order_as_json

        return [order_as_json(o) for o in self.sim.engine.orders(kind)]

    def venue_positions(self) -> dict[tuple[str, str], Decimal]:
        free, locked = self.sim.engine.spot_balance("BTC")
        return {(SPOT_VENUE, "BTC"): free + locked,
                (PERP_VENUE, PERP_SYMBOL): self.sim.engine.position(SIM_SYMBOL).amount}

    def gaps(self) -> dict[tuple[str, str], Decimal]:
        """|ledger - venue| of the hedged positions, from the engine's in-memory ledger."""
        return position_gaps(self.engine.ledger.positions(), self.venue_positions())

    def open_orders(self) -> int:
        return sum(len(state.executor.open_orders()) for state in self.engine.hedges.values())

    def net_delta(self) -> Decimal:
        state = self.engine.hedges["BTC"]
        delta: Decimal = self.engine.risk_pass.snapshot(state).net_delta
        return delta

    def hedged(self) -> bool:
        """|net delta| within the hedge threshold."""
        threshold: Decimal = self.engine.hedges["BTC"].config.threshold
        return abs(self.net_delta()) <= threshold

    def settled(self) -> bool:
        """No order of ours unsettled and the ledger agreeing with the venue."""
        return self.open_orders() == 0 and not any(self.gaps().values())

    def client_fill(self, side: str, qty: str | None = None) -> None:
        self.sim.engine.client_fill(SIM_SYMBOL, side, Decimal(qty or "0.05"))

    # what the scenarios ask of every protocol's stack (tests/fault/deribit_stack.py: the Deribit side)
    protocol = "binance"
    hedge_venue = PERP_VENUE

    def hedge_orders(self) -> list[dict[str, Any]]:
        return self.orders("usdm")

    def fill_comparisons(self, ledger_fills: list[dict[str, Any]], since_ms: int = 0) -> dict[str, FillComparison]:
        """Spot fills since ``since_ms`` (older ones are in the adopted balance) and every perp fill."""
        return {SPOT_VENUE: compare_fills(self.trades("spot"), ledger_fills, SPOT_VENUE, since_ms=since_ms),
                PERP_VENUE: compare_fills(self.trades("usdm"), ledger_fills, PERP_VENUE)}

    def ws_dropped(self) -> int:
        return int(self.sim.stats.ws_dropped)

    def now_ms(self) -> int:
        return int(self.sim.engine.now())

    def set_flow(self, rate: float) -> None:
        self.sim.engine.flow_rate = rate

    def _limiters(self) -> list[Any]:
        return [*self.sim.limiters.values(), *self.sim.order_limiters.values()]

    def rate_limited(self) -> int:
        """429 answers so far."""
        return sum(int(lim.stats.rejected_429) for lim in self._limiters())

    def limit_for(self, case: str) -> None:
        """Put the USD-M account over its request-weight or its order-count limit."""
        if "order count" in case:
            now = self.sim.engine.now() / 1000.0
            self.sim.order_limiters["usdm"].limit = max(0, self.sim.order_limiters["usdm"].used("127.0.0.1", now))
        else:
            self.sim.limiters["usdm"].limit = 1

    def unlimit(self) -> None:
        self.sim.limiters["usdm"].limit = self.sim.config.usdm_weight_limit
        self.sim.order_limiters["usdm"].limit = self.sim.config.usdm_order_limit

    def backoff_seconds(self) -> float:
        """Long enough for the connector's back-off after a 429 to end."""
        return float(self.sim.config.weight_window_seconds)


@contextlib.asynccontextmanager
async def in_process_stack(workdir: Path, sim_config: Any = None,
                           overrides: Mapping[str, Any] | None = None) -> AsyncIterator[InProcessStack]:
    """Start a simulator (``sim_config``: a :class:`hedgerd.exchange_sim.SimConfig`) and a started engine."""
    from hedgerd.exchange_sim import start_venue_sim

    async with start_venue_sim(config=sim_config) as sim, running_engine(workdir, sim, overrides) as stack:
        yield stack


@contextlib.asynccontextmanager
async def running_engine(workdir: Path, sim: Any, overrides: Mapping[str, Any] | None = None,
                         clock: Any = None) -> AsyncIterator[InProcessStack]:
    """A started live-mode engine (ledger ``workdir/ledger.sqlite``) on the running simulator ``sim``."""
    from hedgerd.clock import RealClock
    from hedgerd.config import Settings
    from hedgerd.connectors import build_venues
    from hedgerd.engine import HedgeEngine
    from hedgerd.ledger import InventoryLedger
    from hedgerd.metrics import Metrics

    ledger_path = workdir / "ledger.sqlite"  # the ledger creates the directory
    base = {"ledger": {"path": str(ledger_path)}, "kill_switch": {"kill_file": None}}
    data = live_config(sim.base_url, sim.ws_url, credentials=True, overrides=deep_merge(base, overrides or {}))
    settings = Settings.model_validate(data)
    venue_clock, metrics = RealClock(), Metrics()
    ledger = InventoryLedger(settings.ledger.path, metrics=metrics)
    engine = HedgeEngine(settings, build_venues(settings, venue_clock), ledger, clock or venue_clock, metrics)
    try:
        await engine.start()
        yield InProcessStack(sim=sim, engine=engine, ledger_path=ledger_path)
    finally:
        await engine.stop()


def sim_server_config(*, seed: int = 1, flow_rate: float = 0.0, btc: str = "0.3", **server: Any) -> Any:
    """A :class:`hedgerd.exchange_sim.SimConfig` on a free port (``server``: its other fields)."""
    from hedgerd.exchange_sim import EngineConfig, SimConfig

    engine = EngineConfig(seed=seed, flow_rate=flow_rate,
                          spot_balances={"USDT": Decimal(1_000_000), "BTC": Decimal(btc)})
    return SimConfig(port=0, engine=engine, **server)


# --------------------------------------------------------------------------- ledger and venue figures
@dataclass
class LedgerView:
    """What a ledger file holds, read with plain SQL (the daemon may be dead or alive)."""

    fills: list[dict[str, Any]]
    intents: list[dict[str, Any]]
    positions: dict[tuple[str, str], Decimal] = field(default_factory=dict)


def read_ledger(path: Path | str) -> LedgerView:
    """Fills, intents and journaled positions of the ledger at ``path`` (a SQLite file, or a
    ``postgresql://`` URL)."""
    if isinstance(path, str):
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(path, row_factory=dict_row) as pg:
            fills = pg.execute("SELECT * FROM fills ORDER BY fill_id").fetchall()
            intents = pg.execute("SELECT * FROM intents ORDER BY intent_id").fetchall()
            positions = {(r["venue"], r["asset"]): Decimal(r["amount"])
                         for r in pg.execute("SELECT venue, asset, amount FROM positions")}
        return LedgerView(fills=fills, intents=intents, positions=positions)
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        fills = [dict(r) for r in conn.execute("SELECT * FROM fills ORDER BY fill_id")]
        intents = [dict(r) for r in conn.execute("SELECT * FROM intents ORDER BY intent_id")]
        positions = {(r["venue"], r["asset"]): Decimal(r["amount"])
                     for r in conn.execute("SELECT venue, asset, amount FROM positions")}
    finally:
        conn.close()
    return LedgerView(fills=fills, intents=intents, positions=positions)


def duplicate_client_ids(orders: Sequence[Mapping[str, Any]], prefix: str = "hgd") -> dict[str, int]:
    """Client order ids with our ``prefix`` that the venue accepted more than once -> how many times."""
    counts = Counter(o["clientOrderId"] for o in orders
                     if not o.get("clientFlow") and str(o.get("clientOrderId", "")).startswith(prefix))
    return {cid: n for cid, n in counts.items() if n > 1}


def venue_trade_ids(trades: Sequence[Mapping[str, Any]]) -> dict[str, Decimal]:
    """Venue trades as ledger trade ids (``"BTC/USDT:USDT#5000001"``) -> quantity (base units)."""
    out: dict[str, Decimal] = {}
    for t in trades:
        _, symbol = KIND_VENUE[t["kind"]]
        out[f"{symbol}#{t['id']}"] = Decimal(t["qty"])
    return out


@dataclass(frozen=True)
class FillComparison:
    """The ledger's fills of one venue against that venue's trade history."""

    venue_fills: int
    ledger_fills: int
    missing: int  # at the venue, not in the ledger
    doubled: int  # in the ledger more than once, or in the ledger but unknown to the venue
    amount_mismatch: int  # same trade id, different quantity

    @property
    def exact(self) -> bool:
        return self.missing == 0 and self.doubled == 0 and self.amount_mismatch == 0


def compare_fills(venue_trades: Sequence[Mapping[str, Any]], ledger_fills: Sequence[Mapping[str, Any]],
                  venue: str, *, since_ms: int = 0) -> FillComparison:
    """Compare ``venue_trades`` (``/_sim/trades``) with the ledger's fills of ``venue``.

    Trades before ``since_ms`` (venue time) may be absent from the ledger: they are inside the
    balance adopted at the first start. Any ledger fill the venue does not know is doubled.
    """
    at_venue = venue_trade_ids(venue_trades)
    expected = venue_trade_ids([t for t in venue_trades if int(t["time"]) >= since_ms])
    return compare_trade_ids(at_venue, expected, ledger_fills, venue)


def compare_trade_ids(at_venue: Mapping[str, Decimal], expected: Mapping[str, Decimal],
                      ledger_fills: Sequence[Mapping[str, Any]], venue: str) -> FillComparison:
    """The ledger's fills of ``venue`` against the venue's trades as ledger trade ids -> amount:
    ``at_venue`` all of them, ``expected`` those the ledger must hold (every wire protocol)."""
    mine = [f for f in ledger_fills if f["venue"] == venue]
    counts = Counter(f["trade_id"] for f in mine)
    amounts = {f["trade_id"]: Decimal(f["amount"]) for f in mine}
    missing = sum(1 for tid in expected if tid not in counts)
    doubled = sum(n - 1 for n in counts.values() if n > 1) + sum(1 for tid in counts if tid not in at_venue)
    mismatch = sum(1 for tid, qty in at_venue.items() if tid in amounts and amounts[tid] != qty)
    return FillComparison(len(expected), len(mine), missing, doubled, mismatch)


def position_gaps(ledger: Mapping[str, str] | Mapping[tuple[str, str], Decimal],
                  venue: Mapping[tuple[str, str], Decimal]) -> dict[tuple[str, str], Decimal]:
    """|ledger - venue| per hedged position; ``ledger`` as ``/status`` positions or journaled ones."""
    parsed: dict[tuple[str, str], Decimal] = {}
    for key, qty in ledger.items():
        if isinstance(key, str):
            venue_name, _, asset = key.partition(":")
            parsed[(venue_name, asset)] = Decimal(str(qty))
        else:
            parsed[key] = Decimal(str(qty))
    return {key: abs(parsed.get(key, Decimal(0)) - qty) for key, qty in venue.items()}


# --------------------------------------------------------------------------- daemon logs
def log_events(path: Path, event: str | None = None) -> list[dict[str, Any]]:
    """The JSON log lines of a daemon log file (optionally only ``event``); other lines skipped."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and (event is None or record.get("event") == event):
            out.append(record)
    return out


class LogFollower:
    """Reads a daemon's JSON log file incrementally (it is appended to across restarts)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        """Events written since the last poll (also appended to :attr:`events`)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        new: list[dict[str, Any]] = []
        for line in lines:
            if not line.startswith(b"{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                new.append(record)
        self.events.extend(new)
        return new

    def count(self, event: str) -> int:
        self.poll()
        return sum(1 for e in self.events if e.get("event") == event)

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str, proc: subprocess.Popen[bytes] | None = None) -> dict[str, Any] | None:
        """The first *new* event matching ``predicate``; None after ``timeout`` s or if ``proc`` died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.poll():
                if predicate(event):
                    return event
            if proc is not None and proc.poll() is not None:
                return None
            time.sleep(0.005)
        return None


def iso_to_epoch(stamp: str) -> float:
    """A structlog ISO timestamp (UTC, ``...Z``) as epoch seconds."""
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["sim"]:
        return sim_main(args[1:])
    print("usage: python -m tests.fault.harness sim [JSON]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
