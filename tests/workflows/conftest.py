from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import workflow_sample_tools as sample

from wayport.core.workflow import parse_workflow
from wayport.core.workflow_run import WorkflowRun
from wayport.runtime.tools import PythonTool, ToolRegistry
from wayport.runtime.workflows import Effects
from wayport.service.workflows import WorkflowCatalog, WorkflowService, WorkflowSpec
from wayport.store.workflows import open_workflow_store


@dataclass(slots=True)
class Recorder:
    """A ``WorkflowObserver`` that keeps what it is told."""

    events: list[tuple[str, str, str]] = field(default_factory=list)

    def step_started(self, run: WorkflowRun, path: str, kind: str, attempt: int) -> None:
        self.events.append(("started", run.id, path))

    def step_finished(
        self,
        run: WorkflowRun,
        path: str,
        kind: str,
        status: str,
        seconds: float,
        error: str | None,
    ) -> None:
        self.events.append((status, run.id, path))

    def run_finished(self, run: WorkflowRun) -> None:
        self.events.append(("run_" + run.status.value, run.id, ""))


@pytest.fixture
def side_effects(tmp_path: Path) -> Iterator[Path]:
    log = tmp_path / "side-effects.log"
    log.touch()
    old = os.environ.get("WAYPORT_WF_SIDE_EFFECTS")
    os.environ["WAYPORT_WF_SIDE_EFFECTS"] = str(log)
    sample.ATTEMPTS.clear()
    yield log
    if old is None:
        del os.environ["WAYPORT_WF_SIDE_EFFECTS"]
    else:
        os.environ["WAYPORT_WF_SIDE_EFFECTS"] = old


def tools() -> ToolRegistry:
    return ToolRegistry(
        [
            PythonTool(sample.record),
            PythonTool(sample.echo),
            PythonTool(sample.flaky),
            PythonTool(sample.lookup_customer),
            PythonTool(sample.send_reply),
        ]
    )


def specs(definitions: dict[str, dict[str, Any]]) -> list[WorkflowSpec]:
    return [WorkflowSpec(definition=parse_workflow(n, d)) for n, d in definitions.items()]


MakeService = Callable[..., WorkflowService]


@pytest.fixture
async def make_service(tmp_path: Path) -> AsyncIterator[MakeService]:
    """Build (not start) services on one SQLite file; all are closed at the end."""
    made: list[WorkflowService] = []

    def make(
        workflows: Iterable[WorkflowSpec],
        *,
        effects: Effects | None = None,
        url: str | None = None,
        **options: Any,
    ) -> WorkflowService:
        async def open_store() -> Any:
            return await open_workflow_store(url, state_dir=tmp_path)

        service = WorkflowService(
            catalog=WorkflowCatalog(workflows),
            open_store=open_store,
            effects=effects or Effects(tools=tools()),
            engine_options={"poll_interval": 0.05, **options.pop("engine", {})},
            **options,
        )
        made.append(service)
        return service

    yield make
    for service in made:
        await service.close()
