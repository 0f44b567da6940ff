"""A run-loop harness: scripted model -> real Router -> Runner over real stores."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from wayport.core.agent import AgentSpec, RunEvent, ToolSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT, Run
from wayport.core.types import Message, ToolCall
from wayport.models.router import Router
from wayport.ports import RunStore, SessionStore
from wayport.runtime.fallbacks import FunctionTools, RecentHistory
from wayport.runtime.runner import Runner, run_input
from wayport.testing import ScriptedBackend

T = DEFAULT_TENANT
ADD = ToolSpec(
    name="add",
    parameters={
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"],
    },
)


async def _add(arguments: Mapping[str, Any]) -> str:
    return str(arguments["a"] + arguments["b"])


def call(name: str, arguments: str | dict[str, Any], id_: str = "c1") -> ToolCall:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def router_for(backend: ScriptedBackend) -> Router:
    return Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": backend},
        policy=RouterPolicy(max_retries=0),
    )


def tools() -> FunctionTools:
    return FunctionTools({"add": (ADD, _add)})


def agent(**changes: Any) -> AgentSpec:
    base: dict[str, Any] = {"name": "calc", "model": "m", "instructions": "Add.", "tools": ("add",)}
    return AgentSpec(**{**base, **changes})


def make_runner(
    router: Router, sessions: SessionStore, runs: RunStore, registry: FunctionTools
) -> Runner:
    return Runner(
        model=router,
        sessions=sessions,
        runs=runs,
        tools=registry,
        context=RecentHistory(sessions),
    )


async def claimed_run(
    sessions: SessionStore, runs: RunStore, text: str, session_id: str | None = None
) -> Run:
    if session_id is None:
        session_id = (await sessions.create(T, agent="calc")).id
    msgs: Sequence[Message] = [{"role": "user", "content": text}]
    run = await runs.create(T, session_id=session_id, input=run_input(msgs))
    [claimed] = await runs.claim(T, worker="w")
    assert claimed.id == run.id
    return claimed


class Events:
    def __init__(self) -> None:
        self.seen: list[RunEvent] = []

    def __call__(self, event: RunEvent) -> None:
        self.seen.append(event)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.seen]
