"""`wayport deploy k8s|compose`: manifests generated from wayport.yaml, validated offline against
the Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

from wayport.cli.main import app
from wayport.config.loader import parse_config
from wayport.config.manifests import IN_FLIGHT_METRIC, Target, kubernetes, secret_references

POSTGRES = """\
server:
  api_key: ${WAYPORT_API_KEY}
store:
  url: ${DATABASE_URL}
deployments:
  gpt:
    backend: openai
    base_url: https://api.openai.com/v1
    api_key: ${OPENAI_API_KEY}
    model: gpt-4o-mini
models:
  gpt:
    deployments: [gpt]
"""
SQLITE = "server:\n  port: 8080\n"


def generate(tmp_path: Path, text: str, *args: str) -> list[dict[str, Any]]:
    config = tmp_path / "wayport.yaml"
    config.write_text(text)
    result = CliRunner().invoke(
        app, ["deploy", "k8s", "--config", str(config), "--image", "wayport:0.1.0", *args]
    )
    assert result.exit_code == 0, result.output
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("text", [POSTGRES, SQLITE])
def test_every_manifest_validates_strictly(tmp_path: Path, text: str) -> None:
    version = kubernetes_validate.latest_version()
    for doc in generate(tmp_path, text):
        kubernetes_validate.validate(doc, version, strict=True)


def test_a_postgres_deployment_scales_out(tmp_path: Path) -> None:
    docs = by_kind(generate(tmp_path, POSTGRES, "--replicas", "3"))
    assert set(docs) == {
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "HorizontalPodAutoscaler",
    }
    deployment = docs["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    pod = deployment["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # secrets by reference only: every ${VAR} of the file, never a value
    env = {e["name"]: e for e in container["env"]}
    for name in ("WAYPORT_API_KEY", "DATABASE_URL", "OPENAI_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {
            "name": "wayport-secrets",
            "key": name,
            "optional": name != "WAYPORT_API_KEY",
        }
    assert env["WAYPORT_HOST"]["value"] == "0.0.0.0"
    # the config file travels as written, references and all
    assert docs["ConfigMap"]["data"]["wayport.yaml"] == POSTGRES
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["minReplicas"] == 3
    assert {m["type"] for m in hpa["metrics"]} == {"Resource", "Pods"}
    egress = docs["NetworkPolicy"]["spec"]["egress"][0]["to"][0]["ipBlock"]
    assert egress["except"] == ["169.254.169.254/32"]


def test_sqlite_gets_one_replica_and_a_volume(tmp_path: Path) -> None:
    docs = by_kind(generate(tmp_path, SQLITE, "--replicas", "3"))
    assert "HorizontalPodAutoscaler" not in docs
    assert docs["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteOnce"]
    spec = docs["Deployment"]["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}


def test_the_autoscaler_metric_exists() -> None:
    from wayport.telemetry.metrics import Metrics

    assert IN_FLIGHT_METRIC in Metrics().names()


def test_bad_choices_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(SQLITE)
    result = CliRunner().invoke(
        app, ["deploy", "k8s", "--config", str(config), "--name", "Not_A_Label"]
    )
    assert result.exit_code == 1
    assert "DNS label" in result.stderr
    config.write_text("server: [1, 2]\n")
    result = CliRunner().invoke(app, ["deploy", "k8s", "--config", str(config)])
    assert result.exit_code == 1 and "invalid configuration" in result.stderr


def test_secret_references() -> None:
    assert secret_references("a: ${B}\nc: ${D:-x}\ne: $F\n") == ["B", "D", "WAYPORT_API_KEY"]


def test_compose_runs_postgres_redis_and_wayport(tmp_path: Path) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(POSTGRES)
    result = CliRunner().invoke(app, ["deploy", "compose", "--config", str(config)])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    assert set(doc["services"]) == {"postgres", "redis", "wayport"}
    wayport = doc["services"]["wayport"]
    assert wayport["ports"] == ["127.0.0.1:8080:8080"]  # published on loopback only
    assert wayport["environment"]["OPENAI_API_KEY"] == "${OPENAI_API_KEY}"


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    text = (Path(__file__).parents[2] / "Dockerfile").read_text()
    lines = [line.strip() for line in text.splitlines()]
    assert sum(line.startswith("FROM ") for line in lines) >= 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert any(line.startswith("HEALTHCHECK ") for line in lines)
    assert any("/healthz" in line for line in lines)
    # built portable: the image runs on other CPUs than the builder's
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF"' in text


def test_target_is_a_pure_function_of_the_config() -> None:
    config = parse_config(SQLITE, env={})
    first = kubernetes(SQLITE, config, Target(image="x"))
    assert first == kubernetes(SQLITE, config, Target(image="x"))
