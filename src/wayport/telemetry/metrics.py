"""Prometheus metrics, in a registry of their own (never the global one, so several apps and
tests live side by side).

``Metrics`` is what every layer reports to: the HTTP server (requests, latency, in flight), the
gateway (tokens, time to first token) and the router (it implements ``RouterEvents``)::

    metrics = Metrics()
    router = Router(groups=..., backends=..., events=metrics)
    gateway = Gateway(router=router, observer=metrics)
    app = create_app(gateway=gateway, settings=settings, metrics=metrics)
    body, content_type = metrics.render()

Labelled children are cached, so an observation costs a dict lookup and an add.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)

_M = TypeVar("_M", Counter, Gauge, Histogram)


class _Children(Generic[_M]):
    """A metric's labelled children, looked up by label tuple."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: _M) -> None:
        self._metric: _M = metric
        self._children: dict[tuple[str, ...], _M] = {}

    def get(self, *labels: str) -> _M:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child


class Metrics:
    """All of Wayport's metrics. Names start with ``wayport_``."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        latency_buckets: Sequence[float] = LATENCY_BUCKETS,
        ttft_buckets: Sequence[float] = TTFT_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._requests = _Children(
            Counter(
                "wayport_http_requests",
                "HTTP requests answered, by route, public model and status.",
                ["route", "model", "status"],
                registry=r,
            )
        )
        self._latency = _Children(
            Histogram(
                "wayport_http_request_duration_seconds",
                "Time to answer an HTTP request (for streams: until the last byte).",
                ["route"],
                buckets=latency_buckets,
                registry=r,
            )
        )
        self._in_flight = Gauge(
            "wayport_http_requests_in_flight", "HTTP requests being answered.", registry=r
        )
        self._ttft = _Children(
            Histogram(
                "wayport_time_to_first_token_seconds",
                "Time from a streamed request to its first generated token.",
                ["model"],
                buckets=ttft_buckets,
                registry=r,
            )
        )
        self._tokens = _Children(
            Counter(
                "wayport_tokens",
                "Tokens processed, by public model and direction (in: prompt, out: completion).",
                ["model", "direction"],
                registry=r,
            )
        )
        self._attempts = _Children(
            Counter(
                "wayport_model_attempts",
                "Calls to a deployment, by outcome.",
                ["model", "deployment", "outcome"],
                registry=r,
            )
        )
        self._attempt_seconds = _Children(
            Histogram(
                "wayport_model_attempt_duration_seconds",
                "Time one call to a deployment took.",
                ["model", "deployment"],
                buckets=latency_buckets,
                registry=r,
            )
        )
        self._attempts_in_flight = _Children(
            Gauge(
                "wayport_model_attempts_in_flight",
                "Calls to a deployment not finished yet.",
                ["deployment"],
                registry=r,
            )
        )
        self._retries = _Children(
            Counter(
                "wayport_router_retries",
                "Attempts the router repeated, by the deployment that failed and why.",
                ["model", "deployment", "reason"],
                registry=r,
            )
        )
        self._fallbacks = _Children(
            Counter(
                "wayport_router_fallbacks",
                "Requests handed to a fallback model group.",
                ["from_model", "to_model", "reason"],
                registry=r,
            )
        )
        self._circuit = _Children(
            Gauge(
                "wayport_circuit_state",
                "1 for the state a deployment's circuit breaker is in, 0 for the others.",
                ["deployment", "state"],
                registry=r,
            )
        )
        self._circuit_now: dict[str, str] = {}
        self._load_seconds = _Children(
            Gauge(
                "wayport_model_load_seconds",
                "Seconds the last load of a deployment's model took.",
                ["deployment"],
                registry=r,
            )
        )
        # --- agent runs and tools (observability issue) ---
        self._runs = _Children(
            Counter(
                "wayport_agent_runs",
                "Agent run attempts finished, by agent and status "
                "(completed, failed, cancelled, requires_action).",
                ["agent", "status"],
                registry=r,
            )
        )
        self._run_seconds = _Children(
            Histogram(
                "wayport_agent_run_duration_seconds",
                "Time one attempt of an agent run took, from claim to finish.",
                ["agent"],
                buckets=latency_buckets,
                registry=r,
            )
        )
        self._tool_calls = _Children(
            Counter(
                "wayport_tool_calls",
                "Tool calls agents made, by tool and outcome (ok or error).",
                ["agent", "tool", "outcome"],
                registry=r,
            )
        )
        self._escalations = _Children(
            Counter(
                "wayport_agent_escalations",
                "Runs handed to a human: calls of the built-in escalate tool.",
                ["agent"],
                registry=r,
            )
        )
        # --- end agent runs and tools ---
        # --- scale-out: the autoscaler's signal (docs/scaling.md) ---
        self._runs_in_flight = _Children(
            Gauge(
                "wayport_agent_runs_in_flight",
                "Agent runs executing on this replica now, by agent.",
                ["agent"],
                registry=r,
            )
        )
        # --- end scale-out ---
        # --- usage and cost (wayport.service.usage) ---
        self._usage_tokens = _Children(
            Counter(
                "wayport_usage_tokens",
                "Tokens in the usage ledger, by public model, agent ('' for plain requests) "
                "and direction (in: prompt, out: completion).",
                ["model", "agent", "direction"],
                registry=r,
            )
        )
        self._usage_cost = _Children(
            Counter(
                "wayport_usage_cost_dollars",
                "Cost in US dollars from the price table, by public model and agent.",
                ["model", "agent"],
                registry=r,
            )
        )
        # --- end usage and cost ---

    # HTTP server

    def request_started(self) -> None:
        self._in_flight.inc()

    def request_finished(self, route: str, model: str, status: int, seconds: float) -> None:
        """``model`` must be a served model name (or ``""``): label values stay bounded."""
        self._in_flight.dec()
        self._requests.get(route, model, str(status)).inc()
        self._latency.get(route).observe(seconds)

    # Gateway (``wayport.service.gateway.UsageObserver``)

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self._tokens.get(model, "in").inc(prompt)
        if completion:
            self._tokens.get(model, "out").inc(completion)

    def first_token(self, model: str, seconds: float) -> None:
        self._ttft.get(model).observe(seconds)

    # Router (``wayport.ports.RouterEvents``)

    def attempt(self, model: str, deployment: str) -> None:
        self._attempts_in_flight.get(deployment).inc()

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None:
        self._attempts_in_flight.get(deployment).dec()
        self._attempts.get(model, deployment, outcome).inc()
        self._attempt_seconds.get(model, deployment).observe(seconds)

    def retry(self, model: str, deployment: str, reason: str) -> None:
        self._retries.get(model, deployment, reason).inc()

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self._fallbacks.get(from_model, to_model, reason).inc()

    def circuit(self, deployment: str, state: str) -> None:
        previous = self._circuit_now.get(deployment)
        if previous is not None and previous != state:
            self._circuit.get(deployment, previous).set(0)
        self._circuit_now[deployment] = state
        self._circuit.get(deployment, state).set(1)

    # Model backends

    def model_loaded(self, deployment: str, seconds: float) -> None:
        self._load_seconds.get(deployment).set(seconds)

    def watch_model_load(self, deployment: str, read: Callable[[], float | None]) -> None:
        """Report ``read()`` (the last cold-start time, ``None`` before any load) at each
        scrape, so lazy reloads after an idle unload show up without a push."""
        self._load_seconds.get(deployment).set_function(lambda: read() or 0.0)

    # Agent runs (``wayport.telemetry.runs.RunTelemetry``)

    def run_finished(self, agent: str, status: str, seconds: float) -> None:
        self._runs.get(agent, status).inc()
        self._run_seconds.get(agent).observe(seconds)

    def run_started(self, agent: str) -> None:
        """A run began executing here (scale-out: ``wayport_agent_runs_in_flight``)."""
        self._runs_in_flight.get(agent).inc()

    def run_stopped(self, agent: str) -> None:
        """It stopped here, however: finished, failed, cancelled, handed back or drained."""
        self._runs_in_flight.get(agent).dec()

    def tool_call(self, agent: str, tool: str, ok: bool) -> None:
        """``tool`` must be a configured tool name: label values stay bounded."""
        self._tool_calls.get(agent, tool, "ok" if ok else "error").inc()

    def escalation(self, agent: str) -> None:
        self._escalations.get(agent).inc()

    def names(self) -> set[str]:
        """Every sample name this registry can expose (``_total``, ``_bucket`` … included),
        for checking dashboards and alert rules against it."""
        found: set[str] = set()
        for family in self.registry.collect():
            found.add(family.name)
            kind = family.type
            if kind == "counter":
                found |= {f"{family.name}_total", f"{family.name}_created"}
            elif kind == "histogram":
                found |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
            found |= {sample.name for sample in family.samples}
        return found

    # Usage ledger (``wayport.service.usage.CostObserver``)

    def usage_recorded(
        self, model: str, agent: str, prompt_tokens: int, completion_tokens: int, cost: float
    ) -> None:
        if prompt_tokens:
            self._usage_tokens.get(model, agent, "in").inc(prompt_tokens)
        if completion_tokens:
            self._usage_tokens.get(model, agent, "out").inc(completion_tokens)
        self._usage_cost.get(model, agent).inc(cost)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4
