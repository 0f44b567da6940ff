"""Kubernetes manifests and a compose file generated from ``wayport.yaml``: a pure function of
the configuration text and a few deployment choices, so ``wayport deploy k8s`` can print them
and the tests can validate them offline.

    docs = kubernetes(text, config, Target(image="ghcr.io/acme/wayport:0.1.0"))

What comes out:

- a ConfigMap holding the configuration file as written, ``${VAR}`` references included;
- a Deployment: non-root, read-only root file system, liveness on ``/healthz``, readiness on
  ``/readyz``, Prometheus scrape annotations, every ``${VAR}`` the file names (plus
  ``WAYPORT_API_KEY``, which a non-loopback bind requires) taken from a Secret by reference —
  never a secret value;
- a Service, a PodDisruptionBudget, a NetworkPolicy (ingress on the HTTP port from the
  namespace, the ingress controller's namespace and the monitoring namespace; egress anywhere but
  the cloud metadata address), and a HorizontalPodAutoscaler on CPU and in-flight agent runs.

A SQLite store is one process on one disk: with it the output is a single replica with a
PersistentVolumeClaim, ``Recreate`` updates and no autoscaler. Several replicas need Postgres.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wayport.config.schema import WayportConfig

#: ``${VAR}`` and ``${VAR:-default}`` references in the configuration text.
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,51}[a-z0-9])?$")
API_KEY_ENV = "WAYPORT_API_KEY"
IN_FLIGHT_METRIC = "wayport_agent_runs_in_flight"
METADATA_ADDRESS = "169.254.169.254/32"
CONFIG_PATH = "/etc/wayport/wayport.yaml"
STATE_PATH = "/var/lib/wayport"


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    image: str
    name: str = "wayport"
    namespace: str = "default"
    replicas: int = 2
    max_replicas: int = 10
    port: int = 8080
    #: the Secret the ``${VAR}`` references come from (its name, not a value)
    secret: str = "wayport-secrets"  # noqa: S105
    ingress_namespace: str = "ingress-nginx"
    monitoring_namespace: str = "monitoring"
    runs_per_replica: int = 16  #: the autoscaler's target of in-flight runs per replica
    cpu_request: str = "500m"
    memory_request: str = "512Mi"
    memory_limit: str = "2Gi"
    storage: str = "5Gi"  #: the SQLite volume, when the store is SQLite

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"name must be a DNS label (a-z, 0-9, -): {self.name!r}")
        if not 1 <= self.replicas <= self.max_replicas:
            raise ValueError("replicas must be at least 1 and at most max_replicas")


def secret_references(text: str) -> list[str]:
    """The environment variables the file reads, sorted, ``WAYPORT_API_KEY`` included."""
    return sorted({*_REFERENCE.findall(text), API_KEY_ENV})


def uses_sqlite(config: WayportConfig) -> bool:
    url = config.store.url
    return url is None or url.startswith("sqlite")


def kubernetes(text: str, config: WayportConfig, target: Target) -> list[dict[str, Any]]:
    """The manifests, in apply order."""
    sqlite = uses_sqlite(config)
    labels = {"app.kubernetes.io/name": "wayport", "app.kubernetes.io/instance": target.name}
    meta = {"name": target.name, "namespace": target.namespace, "labels": labels}
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": meta,
            "data": {"wayport.yaml": text},
        }
    ]
    if sqlite:
        docs.append(_volume_claim(meta, target))
    docs += [
        _deployment(meta, labels, config, target, text, sqlite=sqlite),
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "selector": labels,
                "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": meta,
            "spec": {"selector": {"matchLabels": labels}, "maxUnavailable": 1},
        },
        _network_policy(meta, labels, target),
    ]
    if not sqlite:
        docs.append(_autoscaler(meta, target))
    return docs


def _volume_claim(meta: Mapping[str, Any], target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {**meta, "name": f"{target.name}-state"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": target.storage}},
        },
    }


def _deployment(
    meta: Mapping[str, Any],
    labels: Mapping[str, str],
    config: WayportConfig,
    target: Target,
    text: str,
    *,
    sqlite: bool,
) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "WAYPORT_CONFIG", "value": CONFIG_PATH},
        {"name": "WAYPORT_HOST", "value": "0.0.0.0"},
        {"name": "WAYPORT_PORT", "value": str(target.port)},
    ]
    for name in secret_references(text):
        env.append(
            {
                "name": name,
                # optional: a reference with a default (${VAR:-x}) may be left out of the Secret
                "valueFrom": {
                    "secretKeyRef": {
                        "name": target.secret,
                        "key": name,
                        "optional": name != API_KEY_ENV,
                    }
                },
            }
        )
    probe = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10}
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": target.name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": "/etc/wayport", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - a private emptyDir
    ]
    state = (
        {"persistentVolumeClaim": {"claimName": f"{target.name}-state"}}
        if sqlite
        else {"emptyDir": {}}
    )
    volumes.append({"name": "state", **state})
    mounts.append({"name": "state", "mountPath": STATE_PATH})
    container: dict[str, Any] = {
        "name": "wayport",
        "image": target.image,
        "args": ["serve"],
        "ports": [{"name": "http", "containerPort": target.port, "protocol": "TCP"}],
        "env": env,
        "workingDir": STATE_PATH,
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        # the embedded model loads before /readyz answers 200: give start-up time
        "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
        "resources": {
            "requests": {"cpu": target.cpu_request, "memory": target.memory_request},
            "limits": {"memory": target.memory_limit},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    grace = int(config.server.drain_timeout) + 5
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1 if sqlite else target.replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "Recreate"}
            if sqlite
            else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(target.port),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": grace,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "runAsGroup": 10001,
                        "fsGroup": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def _network_policy(
    meta: Mapping[str, Any], labels: Mapping[str, str], target: Target
) -> dict[str, Any]:
    def namespace(name: str) -> dict[str, Any]:
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}

    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta,
        "spec": {
            "podSelector": {"matchLabels": labels},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {"podSelector": {}},
                        namespace(target.ingress_namespace),
                        namespace(target.monitoring_namespace),
                    ],
                    "ports": [{"protocol": "TCP", "port": target.port}],
                }
            ],
            # defence in depth beside the SSRF guard: never the cloud metadata service
            "egress": [
                {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": [METADATA_ADDRESS]}}]},
                {"to": [{"ipBlock": {"cidr": "::/0"}}]},
            ],
        },
    }


def _autoscaler(meta: Mapping[str, Any], target: Target) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target.name},
            "minReplicas": target.replicas,
            "maxReplicas": target.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
                {
                    # served by a Prometheus adapter from the metric of the same name
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": IN_FLIGHT_METRIC},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": str(target.runs_per_replica),
                        },
                    },
                },
            ],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }


def compose(text: str, *, image: str = "wayport:latest", port: int = 8080) -> dict[str, Any]:
    """A compose file: Postgres, Redis and Wayport, the config mounted read-only."""
    env = {name: f"${{{name}}}" for name in secret_references(text)}
    return {
        "services": {
            "postgres": {
                "image": "postgres:16",
                "environment": {
                    "POSTGRES_USER": "wayport",
                    "POSTGRES_DB": "wayport",
                    "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}",
                },
                "volumes": ["pgdata:/var/lib/postgresql/data"],
                "healthcheck": {
                    "test": ["CMD-SHELL", "pg_isready -U wayport"],
                    "interval": "5s",
                    "retries": 10,
                },
            },
            "redis": {
                "image": "redis:7",
                "command": ["redis-server", "--save", "", "--appendonly", "no"],
                "healthcheck": {"test": ["CMD", "redis-cli", "ping"], "interval": "5s"},
            },
            "wayport": {
                "image": image,
                "command": ["serve"],
                "ports": [f"127.0.0.1:{port}:{port}"],
                "environment": {
                    "WAYPORT_CONFIG": CONFIG_PATH,
                    "WAYPORT_HOST": "0.0.0.0",
                    "WAYPORT_PORT": str(port),
                    **env,
                },
                "volumes": ["./wayport.yaml:/etc/wayport/wayport.yaml:ro"],
                "depends_on": {
                    "postgres": {"condition": "service_healthy"},
                    "redis": {"condition": "service_healthy"},
                },
            },
        },
        "volumes": {"pgdata": {}},
    }
