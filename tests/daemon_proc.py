"""Start ``hedgerd run`` as a subprocess for end-to-end tests, and read its metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

TOKEN = "e2e-token-0123456789-abcdef0123456789"  # long enough for live mode (32+)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class DaemonProcess:
    """A running daemon subprocess and how to reach it."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.base_url + path, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def post(self, path: str, body: dict[str, Any] | None = None, token: str | None = TOKEN) -> tuple[int, Any]:
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body or {}).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def metrics(self) -> dict[str, float]:
        """Samples as ``name{label=value,...}`` -> value (labels sorted)."""
        _, body = self.get("/metrics")
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for s in family.samples:
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = s.value
        return out

    def total(self, name: str, **labels: str) -> float:
        """Sum of samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for key, value in self.metrics().items():
            metric, _, rest = key.partition("{")
            if metric != name:
                continue
            have = dict(kv.split("=", 1) for kv in rest.rstrip("}").split(",") if kv)
            if all(have.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited ({self.proc.returncode}) waiting for {what}:\n{self.log_tail()}")
            try:
                if predicate():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """SIGTERM ``proc`` if it still runs, SIGKILL it after ``timeout`` seconds, and reap it."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def daemon_env(workdir: Path, port: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEDGERD_")}
    env.update({
        "HEDGERD_ADMIN__PORT": str(port),
        "HEDGERD_ADMIN__TOKEN": TOKEN,
        "HEDGERD_LEDGER__PATH": str(workdir / "ledger.sqlite"),
        "HEDGERD_KILL_SWITCH__KILL_FILE": str(workdir / "KILL"),
        "HEDGERD_SECRETS_DIR": str(workdir / "secrets"),
        "HEDGERD_LOGGING__FORMAT": "json",
    })
    env.update(extra or {})
    return env


@contextmanager
def running_daemon(workdir: Path, *, args: list[str] | None = None, env: dict[str, str] | None = None,
                   wait_ready: bool = True) -> Iterator[DaemonProcess]:
    """Run ``hedgerd run`` until the block ends (SIGTERM, then SIGKILL if it lingers)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "secrets").mkdir(exist_ok=True)
    port = free_port()
    log_path = workdir / "daemon.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "hedgerd.cli", "run", *(args or [])],
                                env=daemon_env(workdir, port, env), stdout=log_file, stderr=subprocess.STDOUT,
                                cwd=workdir)
    daemon = DaemonProcess(proc=proc, port=port, workdir=workdir, log_path=log_path)
    try:
        if wait_ready:
            daemon.wait_for(lambda: daemon.get("/healthz")[0] == 200, 60, "/healthz")
        yield daemon
    finally:
        stop_process(proc)
