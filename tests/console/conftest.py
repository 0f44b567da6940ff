"""A whole runtime built from configuration (scripted model plugin, real SQLite store, real
uvicorn on a loopback port), for the console and telemetry tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from wayport.bootstrap import Runtime, build
from wayport.config.loader import parse_config
from wayport.core.types import ChatRequest, ToolCall
from wayport.models.registry import BackendRegistry
from wayport.testing import Reply, ScriptedBackend

KEY = "Qv7ZkX2mR9tLwP4nHc8JdYb3Fs6GgTe1Ku5Ao0Wi"
AUTH = {"Authorization": f"Bearer {KEY}"}


def helpdesk(*, name: str) -> ScriptedBackend:
    """A model that escalates when asked for a person, else echoes the last user message."""

    def step(request: ChatRequest) -> Reply:
        last = request.messages[-1]
        if last["role"] == "tool":
            return Reply("A person will follow up.", usage=None)
        text = str(last.get("content") or "")
        if "rockets" in text:
            made_up: ToolCall = {
                "id": "call-rocket",
                "type": "function",
                "function": {"name": "launch_rockets", "arguments": "{}"},
            }
            return Reply("", tool_calls=[made_up])
        if "human" in text and request.tools:
            call: ToolCall = {
                "id": "call-esc",
                "type": "function",
                "function": {"name": "escalate", "arguments": '{"reason": "asked for a human"}'},
            }
            return Reply("", tool_calls=[call])
        return Reply(f"echo: {text}")

    return ScriptedBackend(name, step)


def config_text(state: Path, *, key: str | None = KEY, extra: str = "") -> str:
    server = f"server:\n  api_key: {key}\n" if key else ""
    return f"""\
{server}state_dir: {state}
deployments:
  desk: {{backend: helpdesk}}
models:
  m: {{deployments: [desk]}}
tools:
  escalate: {{type: python, function: "wayport.runtime.tools.escalate:escalate"}}
agents:
  support:
    model: m
    instructions: Help, or escalate.
    tools: [escalate]
{extra}"""


def runtime_for(text: str) -> Runtime:
    registry = BackendRegistry()
    registry.register("helpdesk", helpdesk)
    config = parse_config(text, env={}, backend_kinds=registry.names())
    return build(config, registry=registry)


@dataclass
class Served:
    runtime: Runtime
    url: str


@asynccontextmanager
async def served(
    text: str, prepare: Callable[[Runtime], None] | None = None
) -> AsyncIterator[Served]:
    from tests.server.helpers import serve

    runtime = runtime_for(text)
    if prepare is not None:
        prepare(runtime)
    try:
        async with serve(runtime.app) as url:
            yield Served(runtime=runtime, url=url)
    finally:
        if runtime.tracing is not None:
            # In a thread: the exporter may be posting to a receiver served by this loop.
            await asyncio.to_thread(runtime.tracing.shutdown)
