"""The deployment files of an active/standby pair (docs/ha.md): the compose profile "ha" and the
two-replica Kubernetes variant in deploy/k8s/ha. Validated as tests/test_deploy.py validates the
single daemon's (docker compose config, kubernetes-validate), and loaded as hedgerd would load them."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest

from hedgerd.config import load_settings
from tests.test_deploy import DEPLOY, ROOT, compose_command, environment, load_yaml, mounts, run, tool

K8S_HA = DEPLOY / "k8s" / "ha"
HA_SERVICES = ("postgres", "venue-sim", "hedgerd-a", "hedgerd-b")


def compose_ha() -> dict[str, Any]:
    result = run([*compose_command(), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yml"),
                  "--profile", "ha", "config"])
    assert result.returncode == 0, result.stdout + result.stderr
    config: dict[str, Any] = load_yaml(result.stdout)
    return config


@pytest.mark.tools
def test_compose_ha_profile_is_a_pair_on_one_postgres_and_stays_out_of_the_demo(tmp_path: Path) -> None:
    config = compose_ha()
    services = config["services"]
    for name in HA_SERVICES:
        assert services[name].get("profiles") == ["ha"], f"{name} must start only with --profile ha"
    for name in ("hedgerd", "prometheus", "grafana"):
        assert not services[name].get("profiles"), f"the demo's {name} must not need a profile"
    a, b = services["hedgerd-a"], services["hedgerd-b"]
    assert environment(a) == environment(b) and mounts(a) == mounts(b), "one config for both instances"
    assert a["ports"] != b["ports"]
    for instance in (a, b):
        assert instance["restart"] == "unless-stopped", "a leader that steps down (exit 75) must be restarted"
        assert instance["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "ports" not in services["postgres"], "the database is reachable from the compose network only"

    env = environment(a)
    empty = tmp_path / "secrets"
    empty.mkdir()
    settings = load_settings(mounts(a)[env["HEDGERD_CONFIG"]], env=env, secrets_dir=empty)
    assert settings.ha.enabled and settings.ha.url is not None and settings.ledger.url is not None
    assert settings.ha.url.get_secret_value() == settings.ledger.url.get_secret_value()
    assert "@postgres:5432/" in settings.ha.url.get_secret_value()
    assert {v.sim_base_url for v in settings.venues} == {"http://venue-sim:8901"}
    assert services["venue-sim"]["command"][:1] == ["venue-sim"]


@pytest.mark.tools
def test_k8s_ha_manifests_validate_against_the_kubernetes_schema() -> None:
    validator = tool("kubernetes-validate", ROOT / ".tools" / "venv" / "bin")
    resources = [str(K8S_HA / name) for name in load_yaml(K8S_HA / "kustomization.yaml")["resources"]]
    result = run([validator, "--strict", "--quiet", *resources])
    assert result.returncode == 0, result.stdout + result.stderr


def k8s_ha_documents() -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in (load_yaml(K8S_HA / name)
                                         for name in load_yaml(K8S_HA / "kustomization.yaml")["resources"])}


def test_k8s_ha_is_two_replicas_that_roll_without_a_gap_and_read_the_urls_as_secrets(tmp_path: Path) -> None:
    docs = k8s_ha_documents()
    assert {"Deployment", "ConfigMap", "Secret", "Service", "PodDisruptionBudget"} <= set(docs)
    assert "PersistentVolumeClaim" not in docs, "the ledger is in PostgreSQL: no volume to share"
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert docs["Service"]["spec"]["selector"].items() <= labels.items()
    pod = spec["template"]["spec"]
    assert pod["affinity"]["podAntiAffinity"], "the replicas belong on different nodes"
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    volumes = {v["name"]: v for v in pod["volumes"]}
    by_path = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    secret = docs["Secret"]
    assert by_path["/run/secrets"]["secret"]["secretName"] == secret["metadata"]["name"]
    assert not secret.get("data") and not secret.get("stringData"), "the Secret ships empty"
    comments = (K8S_HA / "secret.yaml").read_text()
    assert "hedgerd_ha__url" in comments and "hedgerd_ledger__url" in comments

    # The ConfigMap with the Secret's documented keys is a valid live configuration with ha on.
    keys = tmp_path / "secrets"
    keys.mkdir()
    url = "postgresql://hedgerd:pw@db.internal:5432/hedgerd?sslmode=require"
    values = {"hedgerd_admin__token": secrets.token_hex(32), "hedgerd_ha__url": url, "hedgerd_ledger__url": url}
    for venue in ("binance_spot", "binance_usdm"):
        for part in ("api_key", "secret"):
            values[f"hedgerd_credentials__{venue}__{part}"] = f"value-{venue}-{part}"
    for name, value in values.items():
        (keys / name).write_text(value)
    config = tmp_path / "hedgerd.toml"
    config.write_text(docs["ConfigMap"]["data"]["hedgerd.toml"])
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = load_settings(config, env=env, secrets_dir=keys)
    assert settings.mode.value == "live" and settings.ha.enabled
    assert settings.ha.takeover_wait > settings.ha.lease
