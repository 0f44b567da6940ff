"""``wayport_agent_runs_in_flight`` (the autoscaler's signal) counts runs executing here, and
drops back however a run stops: finished, failed or cancelled (a drain cancels)."""

from __future__ import annotations

import pytest

from wayport.core.agent import AgentSpec
from wayport.core.session import Run, RunStatus
from wayport.telemetry.metrics import Metrics
from wayport.telemetry.runs import RunTelemetry

RUN = Run(
    id="r", tenant_id="t", session_id="s", status=RunStatus.RUNNING, created_at=0, updated_at=0
)
AGENT = AgentSpec(name="helper", model="m")


def in_flight(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("wayport_agent_runs_in_flight", {"agent": "helper"})


def test_runs_in_flight_rise_and_fall_however_a_run_ends() -> None:
    metrics = Metrics()
    telemetry = RunTelemetry(metrics=metrics)
    with telemetry.run(RUN, AGENT), telemetry.run(RUN, AGENT):
        assert in_flight(metrics) == 2
    assert in_flight(metrics) == 0
    with pytest.raises(RuntimeError), telemetry.run(RUN, AGENT):
        assert in_flight(metrics) == 1
        raise RuntimeError("the run crashed")
    assert in_flight(metrics) == 0
