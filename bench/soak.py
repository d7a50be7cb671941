"""Soak benchmark: the daemon under continuous client flow, sampled from /proc until the end.

Usage: python bench/soak.py [--modes live,paper] [--rate 50] [--duration 1800] [--interval 30]
                            [--warmup 300] [--json] [--tracemalloc] [--workdir DIR]

live  -- ``hedgerd venue-sim`` (a subprocess) with its client flow off, then ``hedgerd run`` in live
         mode with two ccxt venues on it; once the daemon is ready the simulator's client flow
         is raised to --rate fills/s (startup reconciliation under flow is another matter, see
         issue 24), so the soak measures the steady state.
paper -- ``hedgerd run`` with no config: the embedded paper default, at its own client flow.

Every --interval seconds the daemon's (and the simulator's) VmRSS, anonymous RSS, open files,
threads and CPU time are read from /proc, with the ledger's and its WAL's sizes and the fills
counted by the daemon's ``hedgerd_fills`` metric. After --warmup seconds a least-squares line
of RSS against fills gives the RSS growth per 100k fills (and against time, per hour); CPU per
fill is the CPU time spent after the warm-up over the fills recorded in it.

--profile S samples the daemon's stacks with py-spy (``pip install -e '.[profile]'``) for S seconds
after the warm-up and splits its CPU per fill by stage (websocket parsing, backfill polling,
ledger, risk pass, order path, other) and by whose code ran (hedgerd's own, ccxt's, or
neither: the event loop, aiohttp, SQLite reached from neither). A main-thread sample goes to the
first stage whose marker is on its stack, in that order: backfill, order path, ledger, risk pass,
websocket; its owner is the innermost hedgerd or ccxt frame; samples of the loop waiting for I/O
are left out. Each stage is its samples' time per fill; the rest of the main thread's CPU per
fill (/proc, same window) is the event loop's native work (uvloop's socket reads and writes,
sampled as waiting), the other threads' CPU (the WAL checkpointer's, mostly) a row of its own.

--tracemalloc runs the daemon (and the simulator) under tracemalloc and prints the allocation
sites that grew most between the first snapshot after the warm-up and the last one: slower, for
finding what grows, not for the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hedgerd.config import toml_dumps
from hedgerd.exchange_sim.binance.urls import DEFAULT_API_KEY, DEFAULT_SECRET, ccxt_options
from tests.daemon_proc import stop_process

SPOT_VENUE = "soak-spot"
PERP_VENUE = "soak-usdm"
ADMIN_TOKEN = "soak-token-0123456789abcdef0123456789"  # live mode wants 32+ characters
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
MODES = ("live", "paper")

# Started instead of ``python -m ...`` under --tracemalloc: snapshots every SOAK_TRACE_INTERVAL
# seconds into SOAK_TRACE_DIR, so the parent can diff them after the run.
TRACE_BOOTSTRAP = """
import os, runpy, sys, threading, time, tracemalloc
tracemalloc.start(int(os.environ.get("SOAK_TRACE_FRAMES", "8")))
out, every = os.environ["SOAK_TRACE_DIR"], float(os.environ["SOAK_TRACE_INTERVAL"])
def dump():
    n = 0
    while True:
        time.sleep(every)
        tracemalloc.take_snapshot().dump(os.path.join(out, f"snap-{n:05d}.bin"))
        n += 1
threading.Thread(target=dump, daemon=True, name="soak-trace").start()
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


@dataclass
class Sample:
    """One reading of a process and of the daemon's files."""

    t: float  # seconds since the flow started
    fills: float  # hedgerd_fills, summed over venues and symbols
    rss_mib: float
    anon_mib: float
    cpu_s: float  # user + system
    open_files: int
    threads: int
    ledger_mib: float
    wal_mib: float
    sim_rss_mib: float | None = None
    sim_cpu_s: float | None = None


@dataclass
class Result:
    """A mode's samples and the figures fitted to them."""

    mode: str
    rate: float
    duration: float
    warmup: float
    samples: list[Sample] = field(default_factory=list)
    fills_after_warmup: float = 0.0
    fills_per_s: float = 0.0
    rss_mib_per_100k_fills: float | None = None
    rss_mib_per_hour: float | None = None
    anon_mib_per_100k_fills: float | None = None
    cpu_ms_per_fill: float | None = None
    cpu_share: float | None = None  # of one core, after warm-up
    sim_rss_mib_per_hour: float | None = None
    tracemalloc_top: list[str] = field(default_factory=list)
    # stage -> owner -> CPU ms per fill over the profiled window (see --profile)
    cpu_split_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    profile_samples: int = 0
    error: str | None = None


# --------------------------------------------------------------------------- /proc readings
def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds (user + system) of thread ``tid`` of ``pid``."""
    stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def read_proc(pid: int) -> tuple[float, float, float, int, int]:
    """(RSS MiB, anonymous RSS MiB, CPU seconds, open files, threads) of ``pid`` from /proc."""
    status: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        status[key] = value.strip()
    rss = int(status["VmRSS"].split()[0]) / 1024
    anon = int(status.get("RssAnon", "0 kB").split()[0]) / 1024
    threads = int(status["Threads"])
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    open_files = len(os.listdir(f"/proc/{pid}/fd"))
    return rss, anon, cpu, open_files, threads


def file_mib(path: Path) -> float:
    try:
        return path.stat().st_size / 2**20
    except FileNotFoundError:
        return 0.0


# --------------------------------------------------------------------------- fitting
def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ``ys`` on ``xs`` (None with fewer than 3 points or no spread)."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def fit(result: Result) -> None:
    """Fill in ``result``'s figures from the samples taken at or after the warm-up."""
    after = [s for s in result.samples if s.t >= result.warmup]
    if len(after) < 2:
        result.error = result.error or "too few samples after the warm-up"
        return
    first, last = after[0], after[-1]
    fills = last.fills - first.fills
    elapsed = last.t - first.t
    result.fills_after_warmup = fills
    result.fills_per_s = fills / elapsed if elapsed > 0 else 0.0
    xs_fills = [s.fills for s in after]
    xs_hours = [s.t / 3600 for s in after]
    per_fill = slope(xs_fills, [s.rss_mib for s in after])
    anon_per_fill = slope(xs_fills, [s.anon_mib for s in after])
    result.rss_mib_per_100k_fills = None if per_fill is None else per_fill * 100_000
    result.anon_mib_per_100k_fills = None if anon_per_fill is None else anon_per_fill * 100_000
    result.rss_mib_per_hour = slope(xs_hours, [s.rss_mib for s in after])
    cpu = last.cpu_s - first.cpu_s
    result.cpu_ms_per_fill = cpu / fills * 1000 if fills > 0 else None
    result.cpu_share = cpu / elapsed if elapsed > 0 else None
    sim = [s for s in after if s.sim_rss_mib is not None]
    if len(sim) >= 3:
        result.sim_rss_mib_per_hour = slope([s.t / 3600 for s in sim], [s.sim_rss_mib or 0.0 for s in sim])


# --------------------------------------------------------------------------- CPU split (py-spy)
#: (stage, frame markers): a sample goes to the first stage with a marker on its stack. The
#: backfills come first so their ledger and conversion work counts as backfill cost.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("backfill polling", ("safety_backfills (", "backfill (", "_catch_up_when_quiet (",
                          "fetch_fills_since (", "_poll_phase (")),
    ("order path", ("hedgerd/executor/", "create_order (", "fetch_order (")),
    ("ledger", ("hedgerd/ledger/",)),
    ("risk pass", ("hedgerd/risk/", "hedgerd/risk_loop.py", "hedgerd/policy/", "hedgerd/killswitch.py",
                   "hedgerd/engine.py", "hedgerd/risk_pass.py")),
    ("websocket parsing", ("ws/client.py", "ccxt/pro/", "aiohttp/client_ws.py", "aiohttp/_websocket",
                           "hedgerd/connectors/ccxt/")),
)
OWNERS = ("hedgerd", "ccxt", "other")


def classify(stack: str) -> tuple[str, str]:
    """(stage, owner) of one collapsed py-spy stack (root first, frames separated by ``;``)."""
    stage = next((name for name, markers in STAGES if any(m in stack for m in markers)), "other")
    owner = "other"
    for frame in reversed(stack.split(";")):
        if "hedgerd/" in frame:
            owner = "hedgerd"
            break
        if "ccxt/" in frame:
            owner = "ccxt"
            break
    return stage, owner


#: Leaf frames of an event loop waiting for I/O: py-spy cannot always tell that thread is idle.
IDLE_LEAVES = ("run (uvloop/", "Runner.run (asyncio/runners.py", "run_forever (asyncio/", "select (selectors.py")
EVENT_LOOP = "event loop (native)"
OTHER_THREADS = "other threads"
PROFILE_RATE_HZ = 100


def cpu_split(raw: str, main_tid: int, rate_hz: float, fills: float, main_cpu_ms_per_fill: float,
              other_threads_ms_per_fill: float) -> tuple[dict[str, dict[str, float]], int]:
    """CPU ms per fill by stage and owner.

    Each busy sample of the main thread stands for ``1 / rate_hz`` seconds of its stage. What the
    main thread's CPU (from /proc) has beyond those is the event loop's own native work (uvloop's
    socket reads and writes, timers), sampled as waiting; the other threads' CPU (the WAL
    checkpointer's, mostly) is a row of its own. ``raw`` is py-spy's ``--threads --format raw``
    output: ``thread (TID): NAME;frame;frame... COUNT`` per line.
    """
    counts: dict[tuple[str, str], int] = {}
    total = 0
    prefix = f"thread ({main_tid})"
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack.startswith(prefix) or not count.isdigit():
            continue
        if stack.rsplit(";", 1)[-1].startswith(IDLE_LEAVES):
            continue
        key = classify(stack)
        counts[key] = counts.get(key, 0) + int(count)
        total += int(count)
    ms_per_sample = 1000 / rate_hz / fills if fills > 0 else 0.0
    split: dict[str, dict[str, float]] = {}
    for stage in [name for name, _ in STAGES] + ["other"]:
        split[stage] = {owner: counts.get((stage, owner), 0) * ms_per_sample for owner in OWNERS}
    loop = max(0.0, main_cpu_ms_per_fill - total * ms_per_sample)
    split[EVENT_LOOP] = {owner: loop if owner == "other" else 0.0 for owner in OWNERS}
    split[OTHER_THREADS] = {owner: other_threads_ms_per_fill if owner == "other" else 0.0 for owner in OWNERS}
    return split, total


# --------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, body: dict[str, Any] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def fills_counted(admin: str) -> float:
    """The daemon's ``hedgerd_fills_total``, summed over its label sets."""
    _, body = http(admin + "/metrics", timeout=30.0)  # a daemon under tracemalloc answers slowly
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("hedgerd_fills_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def python_command(module: str, args: Sequence[str], trace_dir: Path | None) -> list[str]:
    if trace_dir is None:
        return [sys.executable, "-m", module, *args]
    return [sys.executable, "-c", TRACE_BOOTSTRAP, module, *args]


def spawn(cmd: list[str], workdir: Path, log_name: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with (workdir / log_name).open("ab") as log:
        return subprocess.Popen(cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_until(check: Any, timeout: float, what: str, procs: Sequence[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"a process exited ({proc.returncode}) while waiting for {what}")
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")


def live_config(sim_url: str, *, log_level: str) -> dict[str, Any]:
    """Two ccxt venues on the simulator at ``sim_url``, limits wide enough for a long random walk."""
    return {
        "mode": "live",
        "venues": [
            {"name": SPOT_VENUE, "kind": "ccxt", "exchange": "binance", "role": "inventory",
             "sim_base_url": sim_url, "options": ccxt_options()},
            {"name": PERP_VENUE, "kind": "ccxt", "exchange": "binanceusdm", "role": "hedge",
             "sim_base_url": sim_url, "options": ccxt_options()},
        ],
        "hedges": [
            {"underlying": "BTC", "venue": PERP_VENUE, "symbol": "BTC/USDT:USDT", "threshold": "0.05",
             "min_order": "0.001", "max_order": "5", "max_position": "1000", "max_price_age": 10.0,
             "max_delta_notional": 100_000_000, "inventory": [{"venue": SPOT_VENUE, "asset": "BTC"}]},
        ],
        "logging": {"level": log_level, "format": "json"},
        "executor": {"order_timeout": 5.0},
    }


def daemon_env(workdir: Path, admin_port: int, live: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGERD_")}
    env.update({
        "HEDGERD_ADMIN__PORT": str(admin_port),
        "HEDGERD_ADMIN__TOKEN": ADMIN_TOKEN,
        "HEDGERD_LEDGER__PATH": str(workdir / "ledger.sqlite"),
        "HEDGERD_KILL_SWITCH__KILL_FILE": str(workdir / "KILL"),
        "HEDGERD_SECRETS_DIR": str(workdir / "secrets"),
    })
    if live:
        for venue in (SPOT_VENUE, PERP_VENUE):
            prefix = f"HEDGERD_CREDENTIALS__{venue.upper().replace('-', '_')}__"
            env[prefix + "API_KEY"] = DEFAULT_API_KEY
            env[prefix + "SECRET"] = DEFAULT_SECRET
    return env


@dataclass
class Profiler:
    """A py-spy recording of the daemon, and the daemon's fills and CPU time when it began."""

    proc: subprocess.Popen[bytes]
    pid: int
    out: Path
    admin: str
    fills: float
    cpu_s: float
    main_cpu_s: float
    finished: bool = False

    @classmethod
    def start(cls, pid: int, seconds: float, out: Path, admin: str) -> Profiler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(exe).exists():
            raise RuntimeError("--profile needs py-spy: pip install -e '.[profile]'")
        fills, cpu, main_cpu = fills_counted(admin), read_proc(pid)[2], thread_cpu(pid, pid)
        proc = subprocess.Popen([exe, "record", "--pid", str(pid), "--duration", str(int(seconds)),
                                 "--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--threads", "--nonblocking",
                                 "--output", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return cls(proc=proc, pid=pid, out=out, admin=admin, fills=fills, cpu_s=cpu, main_cpu_s=main_cpu)

    def finish(self, result: Result) -> None:
        """Split the CPU per fill of the recorded window by stage into ``result``."""
        self.finished = True
        fills = fills_counted(self.admin) - self.fills
        cpu = read_proc(self.pid)[2] - self.cpu_s
        main_cpu = thread_cpu(self.pid, self.pid) - self.main_cpu_s
        if fills <= 0 or not self.out.exists():
            result.error = result.error or "py-spy recorded nothing (or no fills in its window)"
            return
        result.cpu_split_ms, result.profile_samples = cpu_split(
            self.out.read_text(), self.pid, PROFILE_RATE_HZ, fills, main_cpu / fills * 1000,
            (cpu - main_cpu) / fills * 1000)


def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> Result:
    """Start ``mode``'s processes, raise the flow, sample until --duration, stop them."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "secrets").mkdir(exist_ok=True)
    result = Result(mode=mode, rate=args.rate if mode == "live" else 0.0, duration=args.duration,
                    warmup=args.warmup)
    trace_dirs: dict[str, Path] = {}
    base_env = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []

    def traced(name: str) -> tuple[Path | None, dict[str, str]]:
        if not args.tracemalloc:
            return None, {}
        directory = workdir / f"trace-{name}"
        directory.mkdir(exist_ok=True)
        trace_dirs[name] = directory
        return directory, {"SOAK_TRACE_DIR": str(directory), "SOAK_TRACE_INTERVAL": str(args.interval)}

    sim: subprocess.Popen[bytes] | None = None
    admin_port = free_port()
    admin = f"http://127.0.0.1:{admin_port}"
    try:
        run_args = ["run"]
        if mode == "live":
            sim_port = free_port()
            sim_url = f"http://127.0.0.1:{sim_port}"
            trace_dir, extra = traced("sim")
            sim = spawn(python_command("hedgerd.exchange_sim", ["--port", str(sim_port), "--flow-rate", "0",
                                                             "--seed", str(args.seed), "--log-level", "WARNING"],
                                       trace_dir),
                        workdir, "venue-sim.log", {**base_env, **extra})
            procs.append(sim)
            wait_until(lambda: http(sim_url + "/_sim/health")[0] == 200, 30, "the simulator", procs)
            config = workdir / "soak.toml"
            config.write_text(toml_dumps(live_config(sim_url, log_level=args.log_level)))
            run_args += ["--config", str(config)]
        trace_dir, extra = traced("daemon")
        daemon = spawn(python_command("hedgerd.cli", run_args, trace_dir), workdir, "daemon.log",
                       {**daemon_env(workdir, admin_port, mode == "live"), **extra})
        procs.append(daemon)
        wait_until(lambda: http(admin + "/readyz")[0] == 200, 120, "the daemon's /readyz", procs)
        if mode == "live" and sim is not None:
            http(sim_url + "/_sim/flow", {"rate": args.rate})
        started = time.monotonic()
        ledger, wal = workdir / "ledger.sqlite", workdir / "ledger.sqlite-wal"
        profiler: Profiler | None = None
        while True:
            now = time.monotonic() - started
            for proc in procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"a process exited ({proc.returncode}) during the soak")
            if args.profile and profiler is None and now >= args.warmup:
                profiler = Profiler.start(daemon.pid, args.profile, workdir / "profile.txt", admin)
            if profiler is not None and not profiler.finished and profiler.proc.poll() is not None:
                profiler.finish(result)
            rss, anon, cpu, files, threads = read_proc(daemon.pid)
            sample = Sample(t=now, fills=fills_counted(admin), rss_mib=rss, anon_mib=anon, cpu_s=cpu,
                            open_files=files, threads=threads, ledger_mib=file_mib(ledger), wal_mib=file_mib(wal))
            if sim is not None:
                sim_rss, _, sim_cpu, _, _ = read_proc(sim.pid)
                sample.sim_rss_mib, sample.sim_cpu_s = sim_rss, sim_cpu
            result.samples.append(sample)
            if not args.json:
                print(f"  {mode:5s} t={now:7.1f}s fills={sample.fills:9.0f} rss={rss:6.1f} MiB anon={anon:6.1f} "
                      f"cpu={cpu:7.1f}s files={files} threads={threads} ledger={sample.ledger_mib:.1f} MiB "
                      f"wal={sample.wal_mib:.1f} MiB"
                      + (f" sim_rss={sample.sim_rss_mib:.1f} MiB" if sample.sim_rss_mib is not None else ""),
                      flush=True)
            if now >= args.duration:
                break
            time.sleep(max(0.0, min(args.interval, args.duration - now + 0.05)))
        if profiler is not None and not profiler.finished:
            profiler.proc.wait(timeout=args.profile + 30)
            profiler.finish(result)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        result.error = str(exc)
    finally:
        for proc in reversed(procs):
            stop_process(proc, timeout=15.0)  # beyond the daemon's 10 s shutdown budget before SIGKILL
    fit(result)
    for name, directory in trace_dirs.items():
        result.tracemalloc_top += [f"{name}: {line}" for line in trace_growth(directory, args)]
    return result


def trace_growth(directory: Path, args: argparse.Namespace, top: int = 15) -> list[str]:
    """The allocation sites that grew most between the first snapshot after the warm-up and the last."""
    import tracemalloc

    snaps = sorted(directory.glob("snap-*.bin"))
    if len(snaps) < 2:
        return ["fewer than two snapshots"]
    first = snaps[min(len(snaps) - 2, int(args.warmup // args.interval))]
    old, new = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(snaps[-1]))
    lines = []
    for stat in new.compare_to(old, "traceback")[:top]:
        frames = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:5])
        lines.append(f"{stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frames}")
    return lines


# --------------------------------------------------------------------------- output
def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: Sequence[Result]) -> str:
    lines = [f"soak: {os.cpu_count()} CPUs, {cpu_model()}"]
    for r in results:
        if r.error:
            lines.append(f"{r.mode}: ERROR {r.error}")
        lines.append(
            f"{r.mode}: {len(r.samples)} samples over {r.samples[-1].t if r.samples else 0:.0f} s, "
            f"{r.fills_after_warmup:.0f} fills after the {r.warmup:.0f} s warm-up ({r.fills_per_s:.1f}/s); "
            f"RSS {fmt(r.rss_mib_per_100k_fills, '+.2f')} MiB per 100k fills "
            f"(anon {fmt(r.anon_mib_per_100k_fills, '+.2f')}), {fmt(r.rss_mib_per_hour, '+.1f')} MiB/h; "
            f"CPU {fmt(r.cpu_ms_per_fill, '.3f')} ms per fill "
            f"({fmt(None if r.cpu_share is None else r.cpu_share * 100, '.1f')}% of a core)"
            + (f"; simulator RSS {fmt(r.sim_rss_mib_per_hour, '+.1f')} MiB/h"
               if r.sim_rss_mib_per_hour is not None else ""))
        if r.samples:
            s0, s1 = r.samples[0], r.samples[-1]
            lines.append(f"{r.mode}: RSS {s0.rss_mib:.1f} -> {s1.rss_mib:.1f} MiB, open files {s0.open_files} -> "
                         f"{s1.open_files}, threads {s0.threads} -> {s1.threads}, ledger {s1.ledger_mib:.1f} MiB, "
                         f"WAL {s0.wal_mib:.1f} -> {s1.wal_mib:.1f} MiB")
        if r.cpu_split_ms:
            lines.append(f"{r.mode}: CPU per fill by stage, ms ({r.profile_samples} py-spy samples): "
                         + ", ".join(OWNERS))
            for stage, owners in r.cpu_split_ms.items():
                lines.append(f"  {stage:18s} " + " ".join(f"{owners[o]:7.3f}" for o in OWNERS))
            totals = {o: sum(v[o] for v in r.cpu_split_ms.values()) for o in OWNERS}
            lines.append(f"  {'total':18s} " + " ".join(f"{totals[o]:7.3f}" for o in OWNERS))
        lines += [f"  {line}" for line in r.tracemalloc_top]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", default="live,paper", help="comma-separated: live, paper")
    parser.add_argument("--rate", type=float, default=50.0, help="simulator client fills per second (live)")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of flow per mode")
    parser.add_argument("--interval", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=300.0, help="seconds left out of the fits")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--log-level", default="info", help="the daemon's log level (live)")
    parser.add_argument("--profile", type=float, default=0.0,
                        help="seconds of py-spy sampling after the warm-up (0 = off)")
    parser.add_argument("--tracemalloc", action="store_true", help="diff tracemalloc snapshots (slow)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and ledgers here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in str(args.modes).split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes: choose from {', '.join(MODES)}")
    if args.profile < 0 or args.warmup + args.profile > args.duration:
        parser.error("--profile must be >= 0 and fit between the warm-up and the end")
    if args.rate < 0 or args.duration <= 0 or args.interval <= 0 or args.warmup < 0:
        parser.error("--rate and --warmup must be >= 0, --duration and --interval > 0")
    if args.warmup >= args.duration:
        parser.error("--warmup must be shorter than --duration")
    args.modes = modes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (or SIGINT in a background job, where it is ignored) must still stop the children
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = args.workdir or Path(tempfile.mkdtemp(prefix="hedgerd-soak-"))
    results = [run_mode(mode, args, root / mode) for mode in args.modes]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print(report(results))
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
