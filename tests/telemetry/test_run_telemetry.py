"""Run metrics without traces: completed and failed runs per agent, tool calls with bounded
labels, and the run's tokens charged to its tenant's minute."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.console.conftest import AUTH, config_text, served

pytestmark = pytest.mark.anyio

LIMITED = """\
  limited:
    model: m
    tools: [escalate]
    limits: {max_steps: 1}
telemetry:
  traces: false
"""


async def run(client: httpx.AsyncClient, agent: str, text: str) -> dict[str, object]:
    session = (await client.post("/v1/sessions", json={"agent": agent})).json()
    answer = await client.post(f"/v1/sessions/{session['id']}/runs", json={"input": text})
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def test_runs_and_tool_calls_are_counted_per_agent(tmp_path: Path) -> None:
    async with served(config_text(tmp_path, extra=LIMITED)) as s:
        assert s.runtime.tracing is None
        async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as client:
            assert (await run(client, "support", "plain question"))["status"] == "completed"
            # A tool the model made up: an error result, counted under "unknown".
            assert (await run(client, "support", "launch the rockets"))["status"] == "completed"
            # One model step allowed, and the model wants a tool first: the run fails.
            assert (await run(client, "limited", "a human please"))["status"] == "failed"
            metrics = (await client.get("/metrics")).text
            overview = (await client.get("/console/api/overview")).json()["summary"]

    assert 'wayport_agent_runs_total{agent="support",status="completed"} 2.0' in metrics
    assert 'wayport_agent_runs_total{agent="limited",status="failed"} 1.0' in metrics
    assert 'wayport_tool_calls_total{agent="support",outcome="error",tool="unknown"} 1.0' in metrics
    assert "launch_rockets" not in metrics
    assert 'wayport_agent_run_duration_seconds_count{agent="support"} 2.0' in metrics
    assert overview["runs_completed"] == 2
    assert overview["runs_failed"] == 1
    assert overview["completion_rate"] == pytest.approx(2 / 3)
    assert overview["tokens_out"] > 0
