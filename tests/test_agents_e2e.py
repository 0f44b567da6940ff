"""Agents end to end, the way a user runs them: configuration -> ``build`` or ``wayport serve``
-> HTTP -> the durable store.

The model test is the issue's "done when": a conversation with the embedded model through
``agent/assistant`` survives a restart of the server on the same state directory.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.core.session import RunStatus
from wayport.core.types import ChatRequest, ToolCall
from wayport.models.registry import BackendRegistry
from wayport.testing import Reply, ScriptedBackend

WAYPORT = str(Path(sys.executable).parent / "wayport")
READY = re.compile(r"ready on (http://127\.0\.0\.1:\d+)")

TOOL_MODULE = '''\
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b
'''


def calculator(*, name: str) -> ScriptedBackend:
    """A plugin model that calls ``add`` once, then answers with the tool's result."""

    def step(request: ChatRequest) -> Reply:
        last = request.messages[-1]
        if last["role"] == "tool":
            return Reply(f"the sum is {last['content']}")
        call: ToolCall = {
            "id": "call-1",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 40}'},
        }
        return Reply("", tool_calls=[call])

    return ScriptedBackend(name, step)


@pytest.mark.anyio
async def test_a_tool_calling_agent_from_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "e2e_tools.py").write_text(TOOL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = BackendRegistry()
    registry.register("calculator", calculator)
    text = f"""\
state_dir: {tmp_path / "state"}
deployments:
  calc: {{backend: calculator}}
models:
  m: {{deployments: [calc]}}
tools:
  add: {{type: python, function: "e2e_tools:add"}}
agents:
  maths:
    model: m
    instructions: Use the add tool.
    tools: [add]
"""
    config = parse_config(text, env={}, backend_kinds=registry.names())
    runtime = build(config, registry=registry)
    await runtime.start()
    try:
        finished = await runtime.agents.chat(
            "agent/maths", [{"role": "user", "content": "2 + 40?"}], session_id="sess-maths"
        )
        history = await runtime.agents.history("sess-maths")
        calc = runtime.backends["calc"]
        assert isinstance(calc, ScriptedBackend)
        first_request = calc.calls[0]
    finally:
        await runtime.aclose()
    assert finished.run.status is RunStatus.COMPLETED
    assert finished.run.output == {"content": "the sum is 42"}
    assert [m.to_message()["role"] for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[2].to_message()["content"] == "42"
    assert first_request.messages[0] == {"role": "system", "content": "Use the add tool."}
    assert first_request.tools is not None
    assert first_request.tools[0]["function"]["name"] == "add"
    assert first_request.tools[0]["function"]["parameters"]["required"] == ["a", "b"]


@pytest.mark.anyio
async def test_readiness_follows_the_store(tmp_path: Path) -> None:
    registry = BackendRegistry()
    registry.register("calculator", calculator)
    text = f"state_dir: {tmp_path}\ndeployments:\n  c: {{backend: calculator}}\n"
    text += "models:\n  m: {deployments: [c]}\n"
    runtime = build(parse_config(text, env={}, backend_kinds=registry.names()), registry=registry)
    assert not runtime.gateway.readiness().state_ok  # the store is not open yet
    await runtime.start()
    try:
        assert runtime.gateway.readiness().state_ok
        assert await runtime.agents.check_store()
        assert (tmp_path / "wayport.db").exists() or any(tmp_path.iterdir())
    finally:
        await runtime.aclose()
    assert not runtime.gateway.readiness().state_ok


# --------------------------------------------------------------------------- embedded model


@asynccontextmanager
async def serve(home: Path) -> AsyncIterator[str]:
    """``wayport serve`` with no configuration file (the defaults), state under ``home``;
    SIGTERM on the way out, and it must exit 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPORT_")}
    env["PYTHONUNBUFFERED"] = "1"
    proc = await asyncio.create_subprocess_exec(
        WAYPORT,
        "serve",
        "--port",
        "0",
        cwd=home,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())
    try:
        base = None
        async for raw in proc.stdout:
            found = READY.search(raw.decode())
            if found:
                base = found.group(1)
                break
        if base is None:
            raise AssertionError("serve exited early:\n" + (await stderr).decode())
        yield base
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait() == 0, (await stderr).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await stderr


async def turn(http: aiohttp.ClientSession, base: str, session_id: str, text: str) -> str:
    body = {
        "model": "agent/assistant",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 24,
    }
    async with http.post(
        f"{base}/v1/chat/completions", json=body, headers={"X-Wayport-Session": session_id}
    ) as resp:
        answer: dict[str, Any] = await resp.json()
        assert resp.status == 200, answer
    content = answer["choices"][0]["message"]["content"]
    assert isinstance(content, str)
    return content


@pytest.mark.model
@pytest.mark.anyio
async def test_a_conversation_with_the_embedded_model_survives_a_restart(tmp_path: Path) -> None:
    session_id = "sess-restart"
    said = ["My name is Ada.", "I like tea.", "What is my name?"]
    async with asyncio.timeout(600):  # a hang guard only
        async with aiohttp.ClientSession() as http:
            async with serve(tmp_path) as base:
                answers = [await turn(http, base, session_id, text) for text in said[:2]]
            async with serve(tmp_path) as base:
                answers.append(await turn(http, base, session_id, said[2]))
                async with http.get(f"{base}/v1/sessions/{session_id}") as resp:
                    assert resp.status == 200
                    session: dict[str, Any] = await resp.json()
    messages = [(m["role"], m["content"]) for m in session["messages"]]
    expected = [m for pair in zip(said, answers, strict=True) for m in pair]
    assert [c for _, c in messages] == expected  # in order, none lost, none twice
    assert [r for r, _ in messages] == ["user", "assistant"] * 3
    assert (tmp_path / ".wayport").is_dir()
