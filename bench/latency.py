"""Reaction latency: client fill received -> hedge order handed to the venue client.

Usage: python bench/latency.py [--rates 500,2000,10000] [--seconds 3] [--loops asyncio,uvloop]
                               [--gc frozen,unfrozen] [--busy-poll 0,0.005]
                               [--delivery stream,concurrent] [--fills-per-order 1,10]
                               [--log-level warning] [--dir DIR] [--stages]
                               [--backend sqlite,postgresql] [--pg-url URL]

The real :class:`~hedgerd.engine.HedgeEngine` runs on the real clock with the real durable
ledger (SQLite WAL, ``synchronous=NORMAL``, group commit, on disk in ``--dir``), risk loop,
kill-switch gate and executor (``--backend postgresql``: the ledger on PostgreSQL instead, a fresh
database per level on ``--pg-url``'s server or on a throw-away local one with fsync on, commits on
the writer thread as the daemon's default there). Both venues are in-process stubs: the inventory venue does
nothing (the bench feeds its fills), the hedge venue's ``create_order`` records the hand-off
time (``time.perf_counter``) and answers FILLED at once.

Every client fill is a buy of 0.01 BTC; the hedge threshold is crossed every K fills
(``--fills-per-order``, threshold = (K - 1/2) x 0.01) and the fixed policy hedges back to zero.
K = 1: every fill needs hedging, one order per fill (2,000 orders/s at 2,000 fills/s, far beyond
any venue's order rate limit: the worst case). Orders carry the whole unhedged amount, so fill
*i* is covered by the first order that brings the cumulative hedged amount to
``(i + 1) x 0.01``; the latency of a fill = that order's hand-off time - the time the fill
arrived (was produced; in ``stream`` mode it may then wait behind earlier fills). K > 1: the
latency of each order from the arrival of the fill that took delta out of the band (the K-th
since the previous order); the other fills were waiting for the band to fill, not for the
daemon. Fills arrive at ``rate`` per second on a fixed schedule (the producer releases every
fill whose time has come, then sleeps: bursts of ~rate/1000 fills per event-loop tick at high
rates).

Delivery modes: ``stream`` is a connector's stream loop: it awaits ``engine.on_fills`` with
every fill that arrived since its previous call (as ccxt.pro's ``watch_my_trades`` returns
them), so fills that pile up behind a commit share the next one; ``concurrent`` hands each fill
to the engine in its own task (the ledger group-commits what arrives together). The executor's
token bucket is opened wide (the bench measures the daemon, not an exchange rate limit). Up to
``executor.max_orders_in_flight`` (default 4) orders per underlying may be unsettled at once,
each sized net of the others.
``--busy-poll`` sets ``risk.busy_poll`` (seconds the event loop spins after each venue event
instead of sleeping, :mod:`hedgerd.busypoll`; 0 = off, the default). While it spins, the loop
thread's CPU per fill is the whole core divided by the rate.
Reported: p50/p99/p99.9 latency (us) over the measured window (after a 0.5 s warm-up), fills
per second actually journaled, orders per second, the fills still unhedged at the end, and the
event-loop thread's CPU time per fill (us, warm-up included; the producer's share is in it). On
a shared machine the CPU figure is steadier than the tail percentiles: it is what the loop is busy
with per fill, and the queueing that makes the tail grows with it.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import gc
import itertools
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import ValidationError

from hedgerd.clock import RealClock
from hedgerd.config import (
    ExecutorConfig,
    HedgeConfig,
    InventorySource,
    KillSwitchConfig,
    LedgerConfig,
    RateLimitConfig,
    RiskConfig,
    Settings,
)
from hedgerd.connectors.base import VenueEventSink
from hedgerd.daemon import freeze_startup_heap
from hedgerd.engine import HedgeEngine
from hedgerd.ledger import InventoryLedger
from hedgerd.log import configure_logging
from hedgerd.metrics import Metrics
from hedgerd.models import Fill, FundingPayment, HedgeIntent, MarketInfo, OrderReport, OrderStatus, PriceUpdate, Side
from hedgerd.reconciliation import PositionSnapshot
from tests.pgserver import PgServer

FILL_SIZE = Decimal("0.01")
PRICE = Decimal(60000)
SPOT, PERP = "sim-spot", "sim-perp"
PERP_SYMBOL = "BTC/USDT:USDT"
WARMUP = 0.5
# --stages: where a reaction's time goes, in path order (each a separate distribution: the
# percentiles of the parts do not add up to the total's). The risk pass runs as the fills commit
# and its intent joins their transaction, so "delivered -> intent asked" is the wait for the
# flush, the fills' insert and the pass; "intent asked -> hand-off" the intent's insert, the
# commit and the executor up to the send. "on_fills call" is how long the delivery awaited.
STAGES = ("arrival -> delivered", "delivered -> intent asked", "intent asked -> hand-off", "on_fills call")


class StubVenue:
    """A venue that answers at once: no network, no latency."""

    def __init__(self, name: str, on_order: Callable[[HedgeIntent, Decimal], None] | None = None) -> None:
        self.name = name
        self._on_order = on_order
        self.position = Decimal(0)
        self._seq = 0

    @property
    def connected(self) -> bool:
        return True

    async def start(self, sink: VenueEventSink) -> None:
        return None

    async def close(self) -> None:
        return None

    async def load_markets(self) -> dict[str, MarketInfo]:
        return {PERP_SYMBOL: MarketInfo(symbol=PERP_SYMBOL, base="BTC", quote="USDT", amount_step=Decimal("0.001"),
                                        price_step=Decimal("0.1"), min_amount=Decimal("0.001"),
                                        min_notional=Decimal(5), contract_size=Decimal(1))}

    async def fetch_positions(self) -> dict[str, Decimal]:
        return {PERP_SYMBOL: self.position} if self._on_order else {}

    async def fetch_position_snapshot(self) -> PositionSnapshot:
        return PositionSnapshot(await self.fetch_positions())

    async def fetch_fills_since(self, since: float | None) -> list[Fill]:
        return []

    async def fetch_funding_since(self, since: float | None) -> list[FundingPayment]:
        return []

    async def create_order(self, intent: HedgeIntent, amount: Decimal, price: Decimal | None) -> OrderReport:
        assert self._on_order is not None
        self._on_order(intent, amount)  # the hand-off
        self._seq += 1
        self.position += intent.side.sign * amount
        fill = Fill(venue=self.name, trade_id=f"h{self._seq}", symbol=PERP_SYMBOL, side=intent.side, amount=amount,
                    price=PRICE, ts=time.time(), client_order_id=intent.client_order_id)
        return OrderReport(client_order_id=intent.client_order_id, symbol=PERP_SYMBOL, status=OrderStatus.FILLED,
                           filled=amount, average_price=PRICE, venue_order_id=f"o{self._seq}", ts=fill.ts,
                           fills=(fill,))

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[OrderReport]:
        return []

    async def cancel_order(self, symbol: str, client_order_id: str) -> OrderReport | None:
        return None


def bench_settings(ledger_path: Path, fills_per_order: int = 1, busy_poll: float = 0.0) -> Settings:
    base = Settings()
    hedge = HedgeConfig(underlying="BTC", inventory=[InventorySource(venue=SPOT, asset="BTC")], venue=PERP,
                        symbol=PERP_SYMBOL, threshold=FILL_SIZE * fills_per_order - FILL_SIZE / 2,
                        min_order=Decimal("0.001"),
                        max_order=Decimal(1_000_000), max_position=Decimal(1_000_000),
                        max_delta_notional=Decimal(10) ** 12)
    wide = RateLimitConfig(requests_per_second=1_000_000.0, burst=1_000_000)
    return base.model_copy(update={
        "hedges": [hedge],
        "executor": ExecutorConfig(default_rate_limit=wide),
        "kill_switch": KillSwitchConfig(kill_file=None),
        "ledger": LedgerConfig(path=ledger_path, synchronous="NORMAL"),
        "risk": base.risk.model_copy(update={"busy_poll": busy_poll}),
    })


def _pg_admin(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.encode())


async def measure(rate: float, seconds: float, delivery: str, workdir: Path,
                  fills_per_order: int = 1, freeze_heap: bool = True, busy_poll: float = 0.0,
                  pg_url: str | None = None) -> dict[str, Any]:
    """One run at ``rate`` fills/s (the ledger on ``pg_url``'s server when given); returns the figures."""
    handoffs: list[float] = []
    covered: list[int] = []  # cumulative number of fills covered by the orders handed off so far
    hedged = [Decimal(0)]

    # Stage marks (--stages): the last delivery call, the last intent asked for.
    marks = {"delivered": 0.0, "intent_asked": 0.0}
    stages: dict[str, list[float]] = {name: [] for name in STAGES}

    def on_order(intent: HedgeIntent, amount: Decimal) -> None:
        now = time.perf_counter()
        handoffs.append(now)
        if marks["intent_asked"]:
            stages["intent asked -> hand-off"].append(now - marks["intent_asked"])
            marks["intent_asked"] = 0.0
        hedged[0] += amount
        covered.append(int(hedged[0] / FILL_SIZE))

    path = Path(tempfile.mkdtemp(dir=workdir)) / "ledger.sqlite"
    settings = bench_settings(path, fills_per_order, busy_poll)
    location: Path | str = path
    if pg_url is not None:
        database = f"latency_{time.monotonic_ns()}"
        _pg_admin(pg_url, f'CREATE DATABASE "{database}"')
        location = pg_url.rsplit("/", 1)[0] + "/" + database
    venues: dict[str, Any] = {SPOT: StubVenue(SPOT), PERP: StubVenue(PERP, on_order)}
    metrics = Metrics()  # shared by the ledger and the engine, as in the daemon
    ledger = InventoryLedger(location, metrics=metrics)
    engine = HedgeEngine(settings, venues, ledger, RealClock(), metrics)
    prepare_intent = ledger.prepare_intent  # every intent is made here, in the commit hook or not

    def timed_prepare_intent(**kwargs: Any) -> tuple[HedgeIntent, asyncio.Future[Any]]:
        asked = time.perf_counter()
        if marks["delivered"]:
            stages["delivered -> intent asked"].append(asked - marks["delivered"])
            marks["delivered"] = 0.0
        marks["intent_asked"] = asked
        return prepare_intent(**kwargs)

    ledger.prepare_intent = timed_prepare_intent  # type: ignore[method-assign]
    await engine.start()
    if freeze_heap:
        freeze_startup_heap()  # as the daemon does once it has started

    async def prices() -> None:
        while True:
            await engine.on_price(PriceUpdate(venue=PERP, symbol=PERP_SYMBOL, bid=PRICE - 1, ask=PRICE + 1,
                                              ts=time.time(), received_at=time.monotonic()))
            await asyncio.sleep(0.1)

    price_task = asyncio.create_task(prices())
    await asyncio.sleep(0.05)
    received: list[float] = []
    arrived: dict[str, float] = {}
    journaled: list[float] = []
    queue: asyncio.Queue[Fill | None] = asyncio.Queue()
    pending: set[asyncio.Task[None]] = set()

    async def deliver(fill: Fill) -> None:
        called = marks["delivered"] = time.perf_counter()
        await engine.on_fill(fill)
        journaled_at(called, [fill])

    async def deliver_batch(fills: list[Fill]) -> None:
        called = marks["delivered"] = time.perf_counter()
        await engine.on_fills(fills)
        journaled_at(called, fills)

    def journaled_at(called: float, fills: list[Fill]) -> None:
        done = time.perf_counter()
        journaled.extend(done for _ in fills)
        stages["on_fills call"].append(done - called)
        stages["arrival -> delivered"].extend(called - arrived[f.trade_id] for f in fills)

    async def stream() -> None:
        # A connector's stream loop: ccxt.pro's watch_my_trades returns every trade received
        # since the previous call, and the connector hands them to the engine together.
        while True:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            fills = [f for f in batch if f is not None]
            if fills:
                await deliver_batch(fills)
            if len(fills) < len(batch):
                return

    consumer = asyncio.create_task(stream()) if delivery == "stream" else None
    total = int(rate * (seconds + WARMUP))
    cpu_started = time.thread_time()
    started = time.perf_counter()
    for i in range(total):
        due = started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        fill = Fill(venue=SPOT, trade_id=f"c{i}", symbol="BTC/USDT", side=Side.BUY, amount=FILL_SIZE, price=PRICE,
                    ts=time.time(), received_at=time.monotonic())
        received.append(time.perf_counter())  # the fill arrives (e.g. off the websocket)
        arrived[fill.trade_id] = received[-1]
        if consumer is not None:
            queue.put_nowait(fill)
        else:
            task = asyncio.create_task(deliver(fill))
            pending.add(task)
            task.add_done_callback(pending.discard)
    offered_until = time.perf_counter()
    if consumer is not None:
        queue.put_nowait(None)
        await consumer
    if pending:
        await asyncio.gather(*pending)
    drained = time.perf_counter()
    loop_cpu = time.thread_time() - cpu_started
    await asyncio.sleep(0.05)  # let the last orders go out
    price_task.cancel()
    await engine.stop()
    if pg_url is not None:
        _pg_admin(pg_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    if freeze_heap:
        gc.unfreeze()  # back to the GC: the next level (or the caller) starts from its own heap

    # fills are journaled in arrival order (stream) or nearly so (tasks start in creation order)
    latencies: list[float] = []
    unhedged = 0
    measured_from = started + WARMUP
    if fills_per_order == 1:  # every fill needs an order: each one's wait for the first order covering it
        for index, at in enumerate(received):
            if at < measured_from:
                continue
            order = bisect.bisect_left(covered, index + 1)
            if order >= len(handoffs):
                unhedged += 1
                continue
            latencies.append(handoffs[order] - at)
    else:  # the reaction to the fill that took delta out of the band: the K-th after the last order
        previous = 0
        for order, count in enumerate(covered):
            trigger = min(previous + fills_per_order, count) - 1
            previous = count
            if trigger >= 0 and received[trigger] >= measured_from:
                latencies.append(handoffs[order] - received[trigger])
        unhedged = len(received) - (covered[-1] if covered else 0)
    window = [t for t in journaled if t >= measured_from]
    span = (max(window) - measured_from) if window else 0.0
    orders_in_window = sum(1 for t in handoffs if t >= measured_from)
    latencies.sort()

    return {
        "rate": rate, "delivery": delivery, "fills": len(latencies), "unhedged": unhedged,
        "p50": quantile_us(latencies, 0.50), "p99": quantile_us(latencies, 0.99),
        "p999": quantile_us(latencies, 0.999),
        "mean": statistics.fmean(latencies) * 1e6 if latencies else float("nan"),
        "achieved": len(window) / span if span > 0 else 0.0,
        "orders_per_s": orders_in_window / span if span > 0 else 0.0,
        "loop_cpu_us": loop_cpu / total * 1e6 if total else float("nan"),
        "offered_s": offered_until - started, "drain_s": drained - offered_until,
        "stages": {name: sorted(values) for name, values in stages.items()},
    }


def quantile_us(ordered: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of sorted seconds, in microseconds."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e6


def run_level(loop_name: str, rate: float, seconds: float, delivery: str, workdir: Path,
              fills_per_order: int, freeze_heap: bool = True, busy_poll: float = 0.0,
              pg_url: str | None = None) -> dict[str, Any]:
    if loop_name == "uvloop":
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(measure(rate, seconds, delivery, workdir, fills_per_order, freeze_heap, busy_poll,
                                    pg_url))
    result["loop"] = loop_name
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="500,2000,10000")
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per level (after warm-up)")
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument("--delivery", default="stream,concurrent")
    parser.add_argument("--fills-per-order", default="1",
                        help="comma list: the hedge threshold is crossed every K fills (K=1: every fill needs its "
                             "own order; K>1 reports the reaction to the fill that crossed it)")
    parser.add_argument("--gc", default="frozen",
                        help="comma list of frozen,unfrozen: whether the startup heap is frozen out of the "
                             "cyclic GC, as the daemon does (hedgerd.daemon.freeze_startup_heap)")
    parser.add_argument("--busy-poll", default="0",
                        help="comma list of risk.busy_poll values, seconds the event loop spins after each venue "
                             "event instead of sleeping (0 = off)")
    parser.add_argument("--log-level", default="warning", choices=("debug", "info", "warning", "error"),
                        help="log level of the daemon's own logging (hedgerd.log, JSON lines, here to /dev/null); the "
                             "daemon runs at info")
    parser.add_argument("--dir", type=Path, default=None, help="where the ledger files go (default: a tmp dir)")
    parser.add_argument("--stages", action="store_true",
                        help="also print p50/p99/p99.9 of each stage on the path (warm-up included)")
    parser.add_argument("--backend", default="sqlite", help="comma list of ledger backends: sqlite, postgresql")
    parser.add_argument("--pg-url", default=None, help="PostgreSQL server for --backend postgresql (default: a "
                                                       "throw-away local server, fsync on)")
    args = parser.parse_args()
    backends = args.backend.split(",")
    if any(b not in ("sqlite", "postgresql") for b in backends):
        parser.error(f"--backend {args.backend!r}: sqlite and/or postgresql")
    bad_gc = [heap for heap in args.gc.split(",") if heap not in ("frozen", "unfrozen")]
    if bad_gc:  # before any level runs
        parser.error(f"--gc: {', '.join(map(repr, bad_gc))} is neither frozen nor unfrozen")
    try:  # each value checked as the config checks risk.busy_poll
        spins = [RiskConfig(busy_poll=value).busy_poll for value in args.busy_poll.split(",")]
    except ValidationError as exc:
        parser.error(f"--busy-poll {args.busy_poll!r}: {exc.errors()[0]['msg']}")
    # the daemon's own logging pipeline (JSON lines), writing to /dev/null instead of stdout
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        configure_logging("json", args.log_level)
    workdir = Path(tempfile.mkdtemp(prefix="hedgerd-latency-", dir=args.dir))
    print(f"ledger files in {workdir} (durable: synchronous=NORMAL, WAL); log level {args.log_level}")
    server: PgServer | None = None
    pg_url = args.pg_url
    if "postgresql" in backends and pg_url is None:
        server = PgServer(fsync=True)
        pg_url = server.url()
    if "postgresql" in backends:
        print(f"postgresql ledger on {pg_url.rsplit('@', 1)[-1]} (synchronous_commit=on, commits on a writer thread)")
    print(f"{'backend':<10} {'loop':<8} {'gc':<8} {'spin s':>6} {'delivery':<10} {'K':>3} {'offered/s':>9} "
          f"{'achieved/s':>10} {'orders/s':>8} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'n':>6} {'left':>5} "
          f"{'cpu us':>6}")
    try:
        for fills_per_order in (int(k) for k in args.fills_per_order.split(",")):
            for backend, loop_name, heap, spin, delivery, rate in itertools.product(
                    backends, args.loops.split(","), args.gc.split(","), spins, args.delivery.split(","),
                    [float(r) for r in args.rates.split(",")]):
                r = run_level(loop_name, rate, args.seconds, delivery, workdir, fills_per_order, heap == "frozen",
                              spin, pg_url if backend == "postgresql" else None)
                print(f"{backend:<10} {loop_name:<8} {heap:<8} {spin:>6g} {delivery:<10} {fills_per_order:>3} "
                      f"{rate:>9.0f} {r['achieved']:>10.0f} {r['orders_per_s']:>8.0f} {r['p50']:>8.0f} "
                      f"{r['p99']:>8.0f} {r['p999']:>9.0f} {r['fills']:>6} {r['unhedged']:>5} "
                      f"{r['loop_cpu_us']:>6.0f}", flush=True)
                if args.stages:
                    for name, values in r["stages"].items():
                        print(f"    {name:<38} {quantile_us(values, 0.5):>8.0f} {quantile_us(values, 0.99):>8.0f} "
                              f"{quantile_us(values, 0.999):>9.0f} {len(values):>6}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if server is not None:
            server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
