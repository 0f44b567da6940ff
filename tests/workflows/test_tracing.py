"""Each workflow step is a span: ``WorkflowTracing`` on the real engine and SQLite store, read
back through the OpenTelemetry SDK's in-memory exporter; and the composition root wires it
whenever traces are on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_api import CONFIG, SECRET, served, until
from test_engine import FANOUT, eventually, finished, rec

from conftest import MakeService, specs
from wayport.core.workflow_run import WorkflowStatus
from wayport.telemetry.tracing import Tracing
from wayport.telemetry.workflows import WorkflowTracing

pytestmark = pytest.mark.anyio
T = "default"

FLAKY = {
    "steps": [
        {
            "id": "shaky",
            "tool": {"name": "flaky", "args": {"name": "s", "failures": 1}},
            "retry": {"max_attempts": 2, "backoff": 0.001},
        },
        rec("after", "after", needs="shaky"),
    ],
}
BROKEN = {
    "steps": [{"id": "boom", "tool": {"name": "flaky", "args": {"name": "b", "failures": 5}}}],
}


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def ended(memory: InMemorySpanExporter, *names: str) -> list[ReadableSpan]:
    """The finished spans once those named have ended (a run's span ends just after the
    store records the run finished, which is what ``finished`` reads)."""

    def there() -> bool:
        return set(names) <= {s.name for s in memory.get_finished_spans()}

    await eventually(there, f"spans {names} never ended")
    return list(memory.get_finished_spans())


@pytest.fixture
def exported() -> tuple[Tracing, InMemorySpanExporter]:
    tracing = Tracing()
    memory = InMemorySpanExporter()
    tracing.provider.add_span_processor(SimpleSpanProcessor(memory))
    return tracing, memory


async def test_a_run_and_each_step_are_spans(
    make_service: MakeService,
    side_effects: Path,
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, memory = exported
    service = make_service(specs({"fanout": FANOUT}), observer=WorkflowTracing(tracing))
    await service.start()
    run = await service.start_run(T, "fanout", {"items": ["a", "b"]})
    done = await finished(service, run.id)
    assert done.status is WorkflowStatus.COMPLETED, done.error
    spans = await ended(memory, "workflow fanout")
    (root,) = [s for s in spans if s.name == "workflow fanout"]
    assert root.parent is None
    assert (
        attrs(root).items()
        >= {
            "wayport.workflow.name": "fanout",
            "wayport.workflow.version": done.version,
            "wayport.workflow.run.id": run.id,
            "wayport.workflow.status": "completed",
            "wayport.tenant": T,
        }.items()
    )
    steps = {attrs(s)["wayport.workflow.step.path"]: s for s in spans if s is not root}
    assert set(steps) == {"start", "left", "right", "each", "each[0]", "each[1]", "both"}
    for span in steps.values():
        assert root.context is not None and span.parent is not None
        assert span.parent.span_id == root.context.span_id
        assert span.context is not None and span.context.trace_id == root.context.trace_id
        assert attrs(span)["wayport.workflow.step.status"] == "completed"
        assert span.status.status_code is not StatusCode.ERROR
    left = attrs(steps["left"])
    assert (left["wayport.workflow.step.id"], left["wayport.workflow.step.kind"]) == (
        "left",
        "tool",
    )
    assert left["wayport.workflow.step.attempt"] == 1
    assert attrs(steps["each[1]"])["wayport.workflow.step.id"] == "each"
    assert attrs(steps["both"])["wayport.workflow.step.kind"] == "join"
    assert root.end_time is not None and all(
        s.end_time is not None and s.end_time <= root.end_time for s in steps.values()
    )


async def test_retries_and_failures_are_error_spans(
    make_service: MakeService,
    side_effects: Path,
    exported: tuple[Tracing, InMemorySpanExporter],
) -> None:
    tracing, memory = exported
    service = make_service(
        specs({"flaky": FLAKY, "broken": BROKEN}), observer=WorkflowTracing(tracing)
    )
    await service.start()
    ok = await finished(service, (await service.start_run(T, "flaky", {})).id)
    assert ok.status is WorkflowStatus.COMPLETED, ok.error
    bad = await finished(service, (await service.start_run(T, "broken", {})).id)
    assert bad.status is WorkflowStatus.FAILED
    spans = await ended(memory, "workflow flaky", "workflow broken")
    shaky = sorted(
        (s for s in spans if s.name == "workflow.step shaky"),
        key=lambda s: attrs(s)["wayport.workflow.step.attempt"],
    )
    assert [
        (attrs(s)["wayport.workflow.step.attempt"], attrs(s)["wayport.workflow.step.status"])
        for s in shaky
    ] == [(1, "retry"), (2, "completed")]
    assert shaky[0].status.status_code is StatusCode.ERROR
    assert "s failure 1" in (shaky[0].status.description or "")
    assert shaky[1].status.status_code is StatusCode.UNSET
    (boom,) = [s for s in spans if s.name == "workflow.step boom"]
    assert attrs(boom)["wayport.workflow.step.status"] == "failed"
    assert boom.status.status_code is StatusCode.ERROR
    (failed_run,) = [s for s in spans if s.name == "workflow broken"]
    assert attrs(failed_run)["wayport.workflow.status"] == "failed"
    assert failed_run.status.status_code is StatusCode.ERROR
    (flaky_run,) = [s for s in spans if s.name == "workflow flaky"]
    assert flaky_run.status.status_code is StatusCode.UNSET


async def test_the_composition_root_traces_workflows(tmp_path: Path, side_effects: Path) -> None:
    text = CONFIG.format(state=tmp_path / "state", secret=SECRET)
    async with served(text) as client:
        started = await client.post("/v1/workflows/hello/runs", json={"input": {"name": "Ada"}})
        run_id = started.json()["id"]
        await until(client, run_id, "waiting")
        await client.post(f"/v1/workflow-runs/{run_id}/approve", json={})
        await until(client, run_id, "completed")
        traces = (await client.get("/console/api/traces")).json()["data"]
        (root,) = [t for t in traces if t["name"] == "workflow hello"]
        trace = (await client.get(f"/console/api/traces/{root['trace_id']}")).json()
    names = [s["name"] for s in trace["spans"]]
    assert names[0] == "workflow hello"
    assert sorted(names[1:]) == ["workflow.step greet", "workflow.step log", "workflow.step ok"]
