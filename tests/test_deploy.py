"""Container and monitoring artefacts, checked with the real tools rather than by reading them.

promtool checks the Prometheus config, the alert rules and a live ``/metrics`` scrape; a real
Prometheus scrapes a paper-mode daemon, evaluates every dashboard and alert expression and raises
``HedgerdHalted`` after ``POST /kill``; ``docker compose config`` (or ``docker-compose config``)
validates the compose files and kubernetes-validate the manifests. No Docker engine is used: the
Dockerfile is read, and its healthcheck command is run against the daemon.

Tools come from tests/tools/install_tools.sh. With ``CI`` set a missing tool fails the test,
elsewhere it skips with the reason.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hedgerd.admin.token import MIN_ADMIN_TOKEN_LENGTH
from hedgerd.config import VenueKind, credential_env_var, credential_secret_file, load_settings, settings_notes
from hedgerd.errors import ConfigError
from tests.daemon_proc import TOKEN, DaemonProcess, free_port, running_daemon, stop_process

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "hedgerd.json"
K8S = DEPLOY / "k8s"
IN_CI = bool(os.environ.get("CI"))
INSTALL_HINT = "run tests/tools/install_tools.sh"

REQUIRED_ALERTS = {"HedgerdDown", "HedgerdHalted", "NetDeltaOutsideBand", "PriceStale", "VenueErrorsHigh",
                   "HedgeOrdersRejected", "LedgerDuplicateFills"}
SEVERITIES = {"critical", "warning", "info"}
# Metric families the dashboard must show (issue 4's list).
DASHBOARD_METRICS = {"hedgerd_trading_state", "hedgerd_kill_reason", "hedgerd_net_delta",
                     "hedgerd_net_delta_notional", "hedgerd_hedge_band", "hedgerd_inventory",
                     "hedgerd_hedge_orders_total", "hedgerd_hedge_fees_total",
                     "hedgerd_decision_latency_seconds_bucket", "hedgerd_rate_limit_wait_seconds_bucket",
                     "hedgerd_price_age_seconds", "hedgerd_venue_errors_total",
                     "hedgerd_ledger_duplicate_fills_total", "hedgerd_ledger_fill_echoes_total", "up",
                     # issue 22: hedging cost and realized PnL
                     "hedgerd_hedge_cost", "hedgerd_realized_pnl", "hedgerd_fee_unvalued_total",
                     # issue 20: options and inverse contracts
                     "hedgerd_delta", "hedgerd_gamma", "hedgerd_vega", "hedgerd_greeks_disagreement",
                     "hedgerd_option_quote_age_seconds"}
# Grafana's built-in variables, as the tests substitute them (scrapes run every second here).
GRAFANA_BUILTINS = {"__rate_interval": "15s", "__interval": "5s", "__range": "2m"}
KILL_REASON = "test_deploy drill"


# ----------------------------------------------------------------------------------- tools

def missing(what: str) -> None:
    """Fail under CI, skip elsewhere."""
    message = f"{what} ({INSTALL_HINT})"
    if IN_CI:
        pytest.fail(f"CI is set and a required tool is missing: {message}")
    pytest.skip(message)


def tool(name: str, *extra_dirs: Path) -> str:
    for directory in extra_dirs:
        if (directory / name).is_file() and os.access(directory / name, os.X_OK):
            return str(directory / name)
    found = shutil.which(name)
    if found is None:
        missing(f"{name} not found on PATH")
    assert found is not None
    return found


def load_yaml(path_or_text: Path | str) -> Any:
    try:
        import yaml  # type: ignore[import-untyped, unused-ignore]  # installed by install_tools.sh
    except ImportError:
        missing("PyYAML is not installed in this Python")
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    return yaml.safe_load(text)


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30, check=False)
        if probe.returncode == 0:
            return [docker, "compose"]
    return [tool("docker-compose")]


def run(args: list[str], *, stdin: bytes | None = None, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin.decode() if stdin is not None else None, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env, check=False)


def http_json(url: str, *, timeout: float = 5) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:  # Prometheus answers bad queries with 400 + a JSON body
        return json.loads(exc.read() or b"{}")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, urllib.error.URLError, ValueError):
            pass
        time.sleep(0.25)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


# ------------------------------------------------------------------------------ Dockerfile

@dataclass
class DockerStage:
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]

    def last(self, instruction: str) -> str:
        values = self.all(instruction)
        assert values, f"the final stage has no {instruction}"
        return values[-1]


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[DockerStage]]:
    """(global ARG defaults, stages) with continuation lines joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[DockerStage] = []
    for line in lines:
        name, _, args = line.partition(" ")
        name, args = name.upper(), args.strip()
        if name == "FROM":
            image = args.split()[0]
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), image)
            stages.append(DockerStage(base=image))
        elif not stages and name == "ARG":
            key, _, default = args.partition("=")
            global_args[key] = default
        elif stages:
            stages[-1].instructions.append((name, args))
    return global_args, stages


def env_of(stage: DockerStage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.all("ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"use ENV KEY=VALUE, not {args!r}"
            env[key] = value
    return env


def healthcheck_argv(stage: DockerStage) -> list[str]:
    spec = stage.last("HEALTHCHECK")
    _, cmd, exec_form = spec.partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {spec!r}"
    argv = json.loads(exec_form)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


@pytest.fixture(scope="module")
def final_stage() -> DockerStage:
    _, stages = parse_dockerfile((ROOT / "Dockerfile").read_text())
    assert len(stages) >= 2, "the Dockerfile must be multi-stage"
    return stages[-1]


def test_dockerfile_final_stage(final_stage: DockerStage) -> None:
    assert re.fullmatch(r"(docker\.io/(library/)?)?python:3\.11[\w.-]*-slim[\w.-]*", final_stage.base), \
        final_stage.base
    assert any(a.startswith("--from=") for a in final_stage.all("COPY")), "the final stage copies a build"
    for command in final_stage.all("RUN"):
        assert not re.search(r"\b(gcc|g\+\+|clang|build-essential|make)\b", command), \
            f"compiler in the final stage: {command}"

    user = final_stage.last("USER").split(":")[0]
    assert user not in {"root", "0", ""}, f"final stage runs as {user!r}"
    assert final_stage.last("STOPSIGNAL") == "SIGTERM"
    assert json.loads(final_stage.last("ENTRYPOINT")) == ["hedgerd"]
    assert json.loads(final_stage.last("CMD")) == ["run"]
    argv = healthcheck_argv(final_stage)
    assert any("/healthz" in a for a in argv), argv

    env = env_of(final_stage)
    assert env["HEDGERD_CONFIG"] == "/etc/hedgerd/hedgerd.toml"
    assert env["HEDGERD_SECRETS_DIR"] == "/run/secrets"
    assert env["HEDGERD_ADMIN__HOST"] == "0.0.0.0"
    assert Path(env["HEDGERD_LEDGER__PATH"]).parent == Path("/var/lib/hedgerd")
    assert Path(env["HEDGERD_KILL_SWITCH__KILL_FILE"]).parent == Path("/var/lib/hedgerd")
    assert any("/var/lib/hedgerd" in v for v in final_stage.all("VOLUME"))
    copies = [shlex.split(a) for a in final_stage.all("COPY")]
    assert ["deploy/hedgerd.toml", env["HEDGERD_CONFIG"]] in copies


@pytest.mark.tools
def test_hadolint_passes_the_dockerfile() -> None:
    hadolint = tool("hadolint", ROOT / ".tools" / "venv" / "bin")
    result = run([hadolint, "--no-color", str(ROOT / "Dockerfile")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_environment_loads_the_shipped_container_config(final_stage: DockerStage,
                                                               tmp_path: Path) -> None:
    """deploy/hedgerd.toml with the image's environment is a valid paper configuration."""
    env = {k: v for k, v in env_of(final_stage).items() if k.startswith("HEDGERD_")}
    settings = load_settings(DEPLOY / "hedgerd.toml", env=env, secrets_dir=tmp_path)
    assert settings.mode.value == "paper"
    assert settings.admin.host == "0.0.0.0"
    assert settings.ledger.path == Path(env["HEDGERD_LEDGER__PATH"])
    assert settings.kill_switch.kill_file == Path(env["HEDGERD_KILL_SWITCH__KILL_FILE"])
    assert all(v.kind is VenueKind.SIM for v in settings.venues)

    # The image's build step `RUN hedgerd check-config`, with the file the image copies.
    copies = {dst: src for src, dst in (shlex.split(a)[-2:] for a in final_stage.all("COPY"))}
    env |= {"HEDGERD_CONFIG": str(ROOT / copies[env["HEDGERD_CONFIG"]]), "HEDGERD_SECRETS_DIR": str(tmp_path),
            "PYTHONPATH": str(ROOT)}
    result = run([sys.executable, "-m", "hedgerd.cli", "check-config"], env={"PATH": os.environ["PATH"], **env})
    assert result.returncode == 0, result.stderr
    assert 'mode = "paper"' in result.stdout


def test_dockerignore_keeps_tests_and_state_out_but_not_the_build_inputs() -> None:
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.lstrip().startswith("#")]

    def ignored(path: str) -> bool:
        verdict = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            body = pattern[1:] if negate else pattern
            candidates = [body, body[3:]] if body.startswith("**/") else [body]
            parts = path.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            if any(fnmatch.fnmatchcase(prefix, c) or fnmatch.fnmatchcase(prefix, "*/" + c)
                   for prefix in prefixes for c in candidates):
                verdict = not negate
        return verdict

    for path in ["tests/test_deploy.py", ".venv/bin/python", ".git/HEAD", "var/hedgerd.sqlite",
                 "ledger.sqlite-wal", "hedgerd/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v",
                 "deploy/k8s/deployment.yaml", "deploy/secrets/hedgerd_admin__token"]:
        assert ignored(path), f"{path} would be sent to the Docker build"
    for path in ["pyproject.toml", "README.md", "hedgerd/cli.py", "hedgerd/connectors/base.py",
                 "deploy/hedgerd.toml"]:
        assert not ignored(path), f"{path} is needed by the Dockerfile but ignored"


# -------------------------------------------------------------------------------- promtool

@pytest.mark.tools
def test_promtool_checks_shipped_config_and_rules() -> None:
    promtool = tool("promtool")
    lint = ["--lint=all", "--lint-fatal"]
    result = run([promtool, "check", "config", *lint, str(PROM_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout, "prometheus.yml must load alerts.yml"
    result = run([promtool, "check", "rules", *lint, str(PROM_DIR / "alerts.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_have_severity_and_instructions() -> None:
    rules = [r for g in load_yaml(PROM_DIR / "alerts.yml")["groups"] for r in g["rules"] if "alert" in r]
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) >= REQUIRED_ALERTS, REQUIRED_ALERTS - set(names)
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["description"].split()) >= 15, f"{rule['alert']}: say what to do"
    band = next(r for r in rules if r["alert"] == "NetDeltaOutsideBand")
    assert "hedgerd_hedge_band" in band["expr"] and "hedgerd_net_delta" in band["expr"]
    assert re.fullmatch(r"[1-9]\d*m", band["for"]), "NetDeltaOutsideBand must be sustained (minutes)"


# ------------------------------------------------------------------- running daemon + Prometheus

@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """``hedgerd run`` in paper mode (no config file) on a free port, tmp ledger and kill file."""
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    with running_daemon(tmp_path_factory.mktemp("daemon"), env={"PYTHONPATH": python_path}) as d:
        yield d


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def query(self, expr: str) -> dict[str, Any]:
        body: dict[str, Any] = http_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
        return body

    def vector(self, expr: str) -> list[dict[str, Any]]:
        body = self.query(expr)
        assert body.get("status") == "success", f"{expr}: {body.get('error')}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def rules(self) -> list[dict[str, Any]]:
        body = http_json(f"{self.url}/api/v1/rules")
        return [r for g in body["data"]["groups"] for r in g["rules"]]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = http_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]
        return alerts


def prometheus_config_for_test(daemon_port: int, prom_port: int) -> str:
    """The shipped prometheus.yml, pointed at the test daemon and sped up to 1 s."""
    text = (PROM_DIR / "prometheus.yml").read_text()
    replacements = [
        (r"\bhedgerd:9108\b", f"127.0.0.1:{daemon_port}"),
        (r"\blocalhost:9090\b", f"127.0.0.1:{prom_port}"),
        (r"(scrape_interval:\s*)\S+", r"\g<1>1s"),
        (r"(scrape_timeout:\s*)\S+", r"\g<1>1s"),
        (r"(evaluation_interval:\s*)\S+", r"\g<1>1s"),
    ]
    for pattern, replacement in replacements:
        text, count = re.subn(pattern, replacement, text)
        assert count == 1, f"expected one {pattern!r} in prometheus.yml, found {count}"
    return text


@pytest.fixture(scope="module")
def prometheus(daemon: DaemonProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    binary = tool("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (workdir / "prometheus.yml").write_text(prometheus_config_for_test(daemon.port, port))
    shutil.copy(PROM_DIR / "alerts.yml", workdir / "alerts.yml")
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=workdir)
    prom = Prometheus(url=f"http://127.0.0.1:{port}", proc=proc, log_path=log_path)
    try:
        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited with {proc.returncode}"
            with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        wait_until(ready, 20, "Prometheus /-/ready", log_path)
        yield prom
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def scraped(prometheus: Prometheus, daemon: DaemonProcess) -> Prometheus:
    """Prometheus after several scrapes of a daemon that has hedged at least once."""
    def enough() -> bool:
        scrapes = prometheus.vector('count_over_time(up{job="hedgerd"}[1m])')
        orders = prometheus.vector("sum(hedgerd_hedge_orders_total)")
        up = prometheus.vector('up{job="hedgerd"}')
        return (bool(scrapes) and float(scrapes[0]["value"][1]) >= 8 and bool(orders)
                and bool(up) and up[0]["value"][1] == "1")
    wait_until(enough, 30, "8 scrapes of the daemon with hedge orders", prometheus.log_path)
    return prometheus


@pytest.mark.e2e
@pytest.mark.tools
def test_promtool_lints_a_live_metrics_scrape(daemon: DaemonProcess) -> None:
    promtool = tool("promtool")
    daemon.wait_for(lambda: b"hedgerd_hedge_orders_total" in daemon.get("/metrics")[1], 20, "a hedge order")
    status, body = daemon.get("/metrics")
    assert status == 200
    result = run([promtool, "check", "metrics"], stdin=body)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == "", "lint warnings:\n" + result.stdout


@pytest.mark.e2e
def test_image_healthcheck_command_probes_the_daemon(final_stage: DockerStage, daemon: DaemonProcess) -> None:
    """The HEALTHCHECK's own command, run here: passes against the daemon, fails on a dead port."""
    argv = healthcheck_argv(final_stage)
    assert argv[0] == "python"
    command = [sys.executable, *argv[1:]]
    ok = run(command, env={**os.environ, "HEDGERD_ADMIN__PORT": str(daemon.port)}, timeout=20)
    assert ok.returncode == 0, ok.stderr
    dead = run(command, env={**os.environ, "HEDGERD_ADMIN__PORT": str(free_port())}, timeout=20)
    assert dead.returncode != 0


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        panels.extend([panel, *panel.get("panels", [])])  # rows may nest panels
    return [p for p in panels if p.get("targets")]


def resolve_variables(prometheus: Prometheus) -> dict[str, str]:
    """Values of the dashboard's query variables, asked of Prometheus as Grafana would."""
    values: dict[str, str] = {}
    for variable in dashboard()["templating"]["list"]:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"label_values\(\s*([^,]+?)\s*,\s*(\w+)\s*\)", query)
        assert match, f"variable {variable['name']}: unsupported query {query!r}"
        metric, label = match.groups()
        url = f"{prometheus.url}/api/v1/label/{label}/values?{urllib.parse.urlencode({'match[]': metric})}"
        found = http_json(url)["data"]
        assert found, f"variable {variable['name']} has no values ({query})"
        values[variable["name"]] = sorted(found)[0]
    return values


def substitute(expr: str, variables: dict[str, str]) -> str:
    known = {**GRAFANA_BUILTINS, **variables}

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in known, f"undeclared dashboard variable ${name} in {expr}"
        return known[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def has_finite_value(series: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(s["value"][1])) for s in series)


def test_dashboard_uses_the_provisioned_datasource_and_covers_the_metrics() -> None:
    provisioning = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    uids = {d["uid"] for d in provisioning["datasources"]}
    exprs = []
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] in uids, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids, panel["title"]
            exprs.append(target["expr"])
    names = {n for e in exprs for n in re.findall(r"[a-zA-Z_:][\w:]*", e)}
    assert names >= DASHBOARD_METRICS, DASHBOARD_METRICS - names
    assert [v["name"] for v in dashboard()["templating"]["list"]] == ["underlying"]
    assert len({p["id"] for p in dashboard_panels()}) == len(dashboard_panels()), "panel ids must be unique"


@pytest.mark.e2e
@pytest.mark.tools
def test_every_dashboard_panel_returns_data(scraped: Prometheus, tmp_path: Path) -> None:
    variables = resolve_variables(scraped)
    embedded_default = load_settings(env={}, secrets_dir=tmp_path)  # what the daemon runs on
    assert variables["underlying"] in {h.underlying for h in embedded_default.hedges}
    empty = []
    for panel in dashboard_panels():
        results = [scraped.vector(substitute(t["expr"], variables)) for t in panel["targets"]]
        if not any(has_finite_value(r) for r in results):
            empty.append(f"{panel['title']}: {[t['expr'] for t in panel['targets']]}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


@pytest.mark.e2e
@pytest.mark.tools
def test_prometheus_loads_and_evaluates_every_alert_rule(scraped: Prometheus) -> None:
    shipped = {r["alert"] for g in load_yaml(PROM_DIR / "alerts.yml")["groups"] for r in g["rules"]}
    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("2") and r["health"] != "unknown"
                           for r in scraped.rules()), 10, "a rule evaluation", scraped.log_path)
    rules = scraped.rules()
    assert {r["name"] for r in rules} == shipped
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        assert scraped.query(rule["query"])["status"] == "success", rule["name"]
    firing = [a["labels"]["alertname"] for a in scraped.alerts() if a["state"] == "firing"]
    assert firing == [], f"alerts firing on a healthy paper daemon: {firing}"


@pytest.mark.e2e
@pytest.mark.tools
def test_kill_raises_hedgerd_halted_in_prometheus(scraped: Prometheus, daemon: DaemonProcess) -> None:
    status, body = daemon.post("/kill", {"reason": KILL_REASON}, token=TOKEN)
    assert status == 200, body

    def halted_alert() -> dict[str, Any] | None:
        return next((a for a in scraped.alerts() if a["labels"]["alertname"] == "HedgerdHalted"
                     and a["state"] in {"pending", "firing"}), None)
    wait_until(lambda: halted_alert() is not None, 15, "HedgerdHalted pending/firing", scraped.log_path)
    alert = halted_alert()
    assert alert is not None
    assert alert["labels"]["severity"] == "critical"
    assert KILL_REASON in alert["annotations"]["description"], alert["annotations"]["description"]

    kill_panel = next(p for p in dashboard_panels() if "hedgerd_kill_reason" in p["targets"][0]["expr"])
    rows = scraped.vector(substitute(kill_panel["targets"][0]["expr"], {}))
    assert any(r["metric"].get("state") == "halted" and KILL_REASON in r["metric"].get("reason", "")
               for r in rows), rows


# ---------------------------------------------------------------------------------- compose

def compose_config(*files: str) -> dict[str, Any]:
    command = compose_command()
    env = {k: v for k, v in os.environ.items()
           if k not in {"HEDGERD_ADMIN_TOKEN", "HEDGERD_LIVE_CONFIG", "GRAFANA_ADMIN_PASSWORD"}}
    args = [*command, "--project-directory", str(ROOT)]
    for name in files:
        args += ["-f", str(ROOT / name)]
    result = run([*args, "config"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    config: dict[str, Any] = load_yaml(result.stdout)
    return config


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a normalised compose service (v1 strings or v2 mappings)."""
    out: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume["source"], volume["target"]
        out[target] = source
    return out


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


@pytest.mark.tools
def test_compose_file_validates_and_wires_the_stack() -> None:
    config = compose_config("docker-compose.yml")
    services = config["services"]
    assert {"hedgerd", "prometheus", "grafana"} <= set(services)

    hedgerd = services["hedgerd"]
    assert environment(hedgerd)["HEDGERD_MODE"] == "paper"
    assert environment(hedgerd)["HEDGERD_ADMIN__TOKEN"], "the demo needs a documented default token"
    assert mounts(hedgerd)["/var/lib/hedgerd"] in config["volumes"], "ledger on a named volume"
    assert hedgerd.get("stop_signal", "SIGTERM") == "SIGTERM"

    prom_mounts = mounts(services["prometheus"])
    assert Path(prom_mounts["/etc/prometheus"]) == PROM_DIR
    scrape_targets = re.findall(r'"(\w+):(\d+)"', (PROM_DIR / "prometheus.yml").read_text())
    assert ("hedgerd", "9108") in scrape_targets

    grafana = services["grafana"]
    grafana_mounts = mounts(grafana)
    assert Path(grafana_mounts["/etc/grafana/provisioning"]) == DEPLOY / "grafana" / "provisioning"
    assert grafana_mounts["/var/lib/grafana"] in config["volumes"], "grafana data on a named volume"
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "hedgerd.yml")["providers"][0]
    assert Path(grafana_mounts[provider["options"]["path"]]) == DASHBOARD.parent
    datasource = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    gf_env = environment(grafana)
    assert gf_env["GF_AUTH_ANONYMOUS_ENABLED"] == "true" and gf_env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    # no admin/admin: no admin account is created and nobody logs in by password
    assert "GF_SECURITY_ADMIN_PASSWORD" not in gf_env
    assert gf_env["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"] == "true"
    assert gf_env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true" and gf_env["GF_AUTH_BASIC_ENABLED"] == "false"


@pytest.mark.tools
def test_compose_demo_token_is_for_paper_mode_only(tmp_path: Path) -> None:
    hedgerd = compose_config("docker-compose.yml")["services"]["hedgerd"]
    demo = load_settings(env=environment(hedgerd), secrets_dir=tmp_path)
    assert demo.mode.value == "paper"
    assert any(n.startswith("admin.token is a known placeholder") for n in settings_notes(demo))
    live = {**environment(hedgerd), **{credential_env_var(v, part): f"value-{v}-{part}"
                                       for v in ("binance-spot", "binance-usdm") for part in ("api_key", "secret")}}
    with pytest.raises(ConfigError) as excinfo:
        load_settings(DEPLOY / "hedgerd.live.example.toml", env={**live, "HEDGERD_MODE": "live"}, secrets_dir=tmp_path)
    assert excinfo.value.path == "admin.token"


@pytest.mark.tools
def test_compose_grafana_admin_override_requires_a_password() -> None:
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(DEPLOY / "compose.grafana-admin.yml")]
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    refused = run([*compose_command(), "--project-directory", str(ROOT), *files, "config"], env=env)
    assert refused.returncode != 0 and "GRAFANA_ADMIN_PASSWORD" in refused.stdout + refused.stderr
    password = secrets.token_hex(16)
    given = run([*compose_command(), "--project-directory", str(ROOT), *files, "config"],
                env={**env, "GRAFANA_ADMIN_PASSWORD": password})
    assert given.returncode == 0, given.stdout + given.stderr
    gf_env = environment(load_yaml(given.stdout)["services"]["grafana"])
    assert gf_env["GF_SECURITY_ADMIN_PASSWORD"] == password
    assert gf_env["GF_SECURITY_DISABLE_INITIAL_ADMIN_CREATION"] == "false"


@pytest.mark.tools
def test_compose_live_override_validates_and_provides_every_credential(tmp_path: Path) -> None:
    config = compose_config("docker-compose.yml", "deploy/compose.live.yml")
    hedgerd = config["services"]["hedgerd"]
    assert environment(hedgerd)["HEDGERD_MODE"] == "live"
    live_config = mounts(hedgerd)[environment(hedgerd)["HEDGERD_CONFIG"]]
    assert Path(live_config) == DEPLOY / "hedgerd.live.example.toml"
    given = {s if isinstance(s, str) else s["source"] for s in hedgerd["secrets"]}

    raw = tomllib.loads(Path(live_config).read_text())
    ccxt_venues = [v["name"] for v in raw["venues"] if v.get("kind") == "ccxt"]
    needed = {credential_secret_file(name, part) for name in ccxt_venues for part in ("api_key", "secret")}
    assert needed | {"hedgerd_admin__token"} <= given

    token = secrets.token_hex(32)  # as deploy/README.md generates it
    for name in given:  # the same file names make a valid live configuration
        (tmp_path / name).write_text(token if name == "hedgerd_admin__token" else f"value-{name}")
    settings = load_settings(live_config, env=environment(hedgerd), secrets_dir=tmp_path)
    assert settings.mode.value == "live"
    assert settings.admin.token is not None
    assert settings.admin.token.get_secret_value() == token  # the file wins over the demo token


# -------------------------------------------------------------------------------------- k8s

def k8s_documents() -> dict[str, dict[str, Any]]:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    docs: dict[str, dict[str, Any]] = {}
    for name in kustomization["resources"]:
        doc = load_yaml(K8S / name)
        docs[doc["kind"]] = doc
    return docs


@pytest.mark.tools
def test_k8s_manifests_validate_against_the_kubernetes_schema() -> None:
    validator = tool("kubernetes-validate", ROOT / ".tools" / "venv" / "bin")
    resources = [str(K8S / name) for name in load_yaml(K8S / "kustomization.yaml")["resources"]]
    result = run([validator, "--strict", "--quiet", *resources])
    assert result.returncode == 0, result.stdout + result.stderr


def test_k8s_deployment_is_a_single_non_root_daemon_with_probes(final_stage: DockerStage) -> None:
    docs = k8s_documents()
    assert {"Deployment", "ConfigMap", "Secret", "Service", "PersistentVolumeClaim"} <= set(docs)
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "Recreate"
    pod = deployment["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == final_stage.last("USER").split(":")[0]
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    volumes = {v["name"]: v for v in pod["volumes"]}
    by_path = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert by_path["/var/lib/hedgerd"]["persistentVolumeClaim"]["claimName"] == \
        docs["PersistentVolumeClaim"]["metadata"]["name"]
    assert by_path["/etc/hedgerd"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    assert by_path["/run/secrets"]["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False, "the SA token would land in /run/secrets"
    assert "/tmp" in by_path, "a writable /tmp with a read-only root"

    service = docs["Service"]["spec"]
    assert service["selector"].items() <= deployment["template"]["metadata"]["labels"].items()
    assert service["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert docs["ConfigMap"]["data"]["hedgerd.toml"] == (DEPLOY / "hedgerd.toml").read_text(), \
        "configmap.yaml drifted from deploy/hedgerd.toml"
    assert not docs["Secret"].get("stringData") and not docs["Secret"].get("data"), \
        "secret.yaml must not ship a working admin token (or any value)"


TOKEN_COMMAND = re.compile(r"openssl rand -(hex|base64) (\d+)")


def test_documented_token_commands_make_tokens_live_mode_accepts() -> None:
    """Every ``openssl rand`` in the deploy files and READMEs makes a token of 32+ characters."""
    files = [ROOT / "README.md", ROOT / "docker-compose.yml", *DEPLOY.rglob("*.md"), *DEPLOY.rglob("*.y*ml")]
    found = 0
    for path in files:
        for kind, count in TOKEN_COMMAND.findall(path.read_text()):
            found += 1
            length = int(count) * 2 if kind == "hex" else math.ceil(int(count) / 3) * 4
            if "grafana" not in path.name:  # Grafana passwords are not admin tokens
                assert length >= MIN_ADMIN_TOKEN_LENGTH, f"{path.relative_to(ROOT)}: openssl rand -{kind} {count}"
    assert found >= 4
    assert "openssl rand -hex 32" in (K8S / "secret.yaml").read_text()
