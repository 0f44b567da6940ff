"""The Responses API with the official ``openai`` client, unchanged, over a real uvicorn server
on a real SQLite store: plain models and agents, chains, function tools, streaming, errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI

from wayport.core.agent import AgentSpec
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest, ToolCall
from wayport.models.router import Router
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.gateway import Gateway
from wayport.store import open_store
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

from .helpers import AUTH, KEY, serve

pytestmark = pytest.mark.anyio

WEATHER: ToolCall = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}
WEATHER_TOOL: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def _script(request: ChatRequest) -> Reply:
    """Asked about the weather (last), the model calls the tool; else it greets."""
    if request.messages[-1].get("content") == "weather?":
        return Reply(text="", tool_calls=[WEATHER])
    return Reply("hello there")


class Server:
    def __init__(self, url: str, backend: ScriptedBackend) -> None:
        self.url = url
        self.backend = backend


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    backend = ScriptedBackend("m", _script)
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)
    agents = AgentService(
        catalog=AgentCatalog([AgentSpec(name="helper", model="m", instructions="Be brief.")]),
        model=gateway,
        open_stores=lambda: open_store(None, state_dir=tmp_path),
    )
    settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
    app = create_app(gateway=gateway, settings=settings, agents=agents)
    async with serve(app) as url:
        yield Server(url, backend)


@pytest.fixture
async def client(server: Server) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0) as c:
        yield c


def _said(server: Server, call: int = -1) -> list[tuple[str, Any]]:
    return [(m["role"], m.get("content")) for m in server.backend.calls[call].messages]


async def test_plain_model_answers_with_text_and_usage(server: Server, client: AsyncOpenAI) -> None:
    r = await client.responses.create(model="m", input="hi", instructions="Be kind.")
    assert r.status == "completed"
    assert r.output_text == "hello there"
    assert r.usage is not None and r.usage.output_tokens == 2
    assert r.usage.total_tokens == r.usage.input_tokens + 2
    assert _said(server) == [("system", "Be kind."), ("user", "hi")]


async def test_previous_response_id_continues_a_plain_model_chain(
    server: Server, client: AsyncOpenAI
) -> None:
    first = await client.responses.create(model="m", input="one")
    second = await client.responses.create(model="m", input="two", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert _said(server) == [
        ("user", "one"),
        ("assistant", "hello there"),
        ("user", "two"),
    ]
    fetched = await client.responses.retrieve(second.id)
    assert fetched.output_text == "hello there"
    assert fetched.usage is not None and fetched.usage.output_tokens == 2


async def test_function_call_round_trip(server: Server, client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="m", input="weather?", tools=[WEATHER_TOOL])
    [item] = first.output
    assert item.type == "function_call"
    assert (item.call_id, item.name, item.arguments) == (
        "call_1",
        "get_weather",
        '{"city": "Oslo"}',
    )
    sent_tools = server.backend.calls[-1].tools
    assert sent_tools is not None and sent_tools[0]["function"]["name"] == "get_weather"
    second = await client.responses.create(
        model="m",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == "hello there"
    messages = server.backend.calls[-1].messages
    assert messages[1]["tool_calls"] == [WEATHER]
    assert messages[2] == {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}


async def test_stateless_input_list_with_function_items(
    server: Server, client: AsyncOpenAI
) -> None:
    await client.responses.create(
        model="m",
        store=False,
        input=[
            {"role": "user", "content": "weather?"},
            {"type": "function_call", "call_id": "c9", "name": "get_weather", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c9", "output": "rain"},
        ],
    )
    roles = [m["role"] for m in server.backend.calls[-1].messages]
    assert roles == ["user", "assistant", "tool"]


async def test_agent_chain_is_one_session(server: Server, client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="agent/helper", input="one")
    assert first.output_text == "hello there"
    assert first.id.startswith("resp_run-")
    second = await client.responses.create(
        model="agent/helper", input="two", previous_response_id=first.id
    )
    assert [c for _, c in _said(server)][-3:] == ["one", "hello there", "two"]
    assert second.conversation is not None and first.conversation is not None
    assert second.conversation.id == first.conversation.id
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        r = await http.get(f"/v1/sessions/{first.conversation.id}")
    contents = [m["content"] for m in r.json()["messages"]]
    assert contents == ["one", "hello there", "two", "hello there"]
    fetched = await client.responses.retrieve(first.id)
    assert fetched.status == "completed" and fetched.output_text == "hello there"


async def test_conversation_continues_an_agent_session(server: Server, client: AsyncOpenAI) -> None:
    first = await client.responses.create(model="agent/helper", input="one")
    assert first.conversation is not None
    await client.responses.create(
        model="agent/helper", input="two", extra_body={"conversation": first.conversation.id}
    )
    assert [c for _, c in _said(server)][-3:] == ["one", "hello there", "two"]


async def test_streaming_events_in_order(server: Server, client: AsyncOpenAI) -> None:
    for model in ("m", "agent/helper"):
        events = [
            e async for e in await client.responses.create(model=model, input="hi", stream=True)
        ]
        kinds = [e.type for e in events]
        assert kinds[:5] == [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
        ]
        assert kinds[-4:] == [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert text == "hello there"
        completed = events[-1].response  # type: ignore[union-attr]
        assert completed.output_text == "hello there" and completed.usage is not None


async def test_streamed_function_call(server: Server, client: AsyncOpenAI) -> None:
    stream = await client.responses.create(
        model="m", input="weather?", tools=[WEATHER_TOOL], stream=True
    )
    events = [e async for e in stream]
    done = [e for e in events if e.type == "response.output_item.done"]
    assert done[0].item.type == "function_call"
    assert done[0].item.arguments == '{"city": "Oslo"}'


async def test_unknown_model_and_previous_response_are_404(client: AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="nope", input="hi")
    assert caught.value.body["param"] == "model"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.create(model="agent/nope", input="hi")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.responses.create(model="m", input="hi", previous_response_id="resp_x.3")
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        await client.responses.retrieve("resp_run-missing")


async def test_validation_errors_name_the_field(server: Server) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"model": "m"}, "input"),
        ({"model": "m", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0]"),
        ({"model": "m", "input": "hi", "tools": [{"type": "function"}]}, "tools[0]"),
        ({"model": "m", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ]
    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as http:
        for body, field in bad:
            r = await http.post(
                "/v1/responses",
                content=json.dumps(body),
                headers={"content-type": "application/json"},
            )
            assert r.status_code == 400, r.text
            error = r.json()["error"]
            assert error["param"].startswith(field), error
