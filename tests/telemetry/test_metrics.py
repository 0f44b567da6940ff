"""Prometheus metrics: names, labels, router events, isolation between registries."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from wayport.ports import RouterEvents
from wayport.telemetry.metrics import Metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def test_every_name_is_prefixed() -> None:
    names = {name for name, _ in samples(Metrics())}
    assert names
    assert all(n.startswith("wayport_") for n in names)


def test_http_requests() -> None:
    m = Metrics()
    m.request_started()
    m.request_started()
    assert value(m, "wayport_http_requests_in_flight") == 2
    m.request_finished("/v1/chat/completions", "chat", 200, 0.02)
    m.request_finished("/v1/chat/completions", "chat", 200, 0.3)
    assert value(m, "wayport_http_requests_in_flight") == 0
    route = "/v1/chat/completions"
    assert value(m, "wayport_http_requests_total", route=route, model="chat", status="200") == 2
    assert value(m, "wayport_http_request_duration_seconds_count", route=route) == 2
    assert value(m, "wayport_http_request_duration_seconds_bucket", route=route, le="0.025") == 1


def test_tokens_and_first_token() -> None:
    m = Metrics()
    m.tokens("chat", 10, 5)
    m.tokens("chat", 1, 0)
    m.first_token("chat", 0.2)
    assert value(m, "wayport_tokens_total", model="chat", direction="in") == 11
    assert value(m, "wayport_tokens_total", model="chat", direction="out") == 5
    assert value(m, "wayport_time_to_first_token_seconds_count", model="chat") == 1
    assert value(m, "wayport_time_to_first_token_seconds_sum", model="chat") == 0.2


def test_router_events() -> None:
    m = Metrics()
    events: RouterEvents = m  # the router reports straight into the metrics
    events.attempt("chat", "a")
    assert value(m, "wayport_model_attempts_in_flight", deployment="a") == 1
    events.attempt_done("chat", "a", "BackendUnavailable", 0.5)
    events.retry("chat", "a", "BackendUnavailable")
    events.attempt("chat", "b")
    events.attempt_done("chat", "b", "ok", 0.1)
    events.fallback("chat", "small", "BackendTimeout")
    assert value(m, "wayport_model_attempts_in_flight", deployment="a") == 0
    assert (
        value(
            m,
            "wayport_model_attempts_total",
            model="chat",
            deployment="a",
            outcome="BackendUnavailable",
        )
        == 1
    )
    assert value(m, "wayport_model_attempts_total", model="chat", deployment="b", outcome="ok") == 1
    assert (
        value(
            m,
            "wayport_router_retries_total",
            model="chat",
            deployment="a",
            reason="BackendUnavailable",
        )
        == 1
    )
    assert (
        value(
            m,
            "wayport_router_fallbacks_total",
            from_model="chat",
            to_model="small",
            reason="BackendTimeout",
        )
        == 1
    )
    assert (
        value(m, "wayport_model_attempt_duration_seconds_count", model="chat", deployment="a") == 1
    )


def test_circuit_state_is_a_state_set() -> None:
    m = Metrics()
    m.circuit("a", "open")
    assert value(m, "wayport_circuit_state", deployment="a", state="open") == 1
    m.circuit("a", "half_open")
    assert value(m, "wayport_circuit_state", deployment="a", state="open") == 0
    assert value(m, "wayport_circuit_state", deployment="a", state="half_open") == 1
    m.circuit("a", "closed")
    m.circuit("b", "open")
    assert value(m, "wayport_circuit_state", deployment="a", state="half_open") == 0
    assert value(m, "wayport_circuit_state", deployment="a", state="closed") == 1
    assert value(m, "wayport_circuit_state", deployment="b", state="open") == 1


def test_model_load_seconds() -> None:
    m = Metrics()
    m.model_loaded("local", 12.5)
    assert value(m, "wayport_model_load_seconds", deployment="local") == 12.5


def test_registries_are_separate() -> None:
    one, two = Metrics(), Metrics()
    one.tokens("chat", 3, 0)
    assert value(one, "wayport_tokens_total", model="chat", direction="in") == 3
    assert value(two, "wayport_tokens_total", model="chat", direction="in") is None
