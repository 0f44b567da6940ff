from __future__ import annotations

from pathlib import Path

import pytest

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.core.errors import ConfigError
from wayport.core.types import ChatRequest
from wayport.models.openai_compat import OpenAICompatBackend
from wayport.models.registry import BackendRegistry
from wayport.testing import Reply, ScriptedBackend
from wayport.testing.fake_upstream import FakeUpstream

UPSTREAM = """\
state_dir: {state}
deployments:
  up:
    backend: openai
    base_url: {url}
    model: upstream-model
models:
  chat: {{deployments: [up]}}
router:
  max_retries: 0
"""


def scripted(*, name: str, text: str = "scripted") -> ScriptedBackend:
    """A plugin factory: keyword options in, a backend out."""
    return ScriptedBackend(name, default=Reply(text))


@pytest.mark.anyio
async def test_build_wires_config_to_a_serving_gateway(tmp_path: Path) -> None:
    async with FakeUpstream() as fake:
        fake.reply(text="hello from upstream")
        state = tmp_path / "state" / "nested"
        config = parse_config(UPSTREAM.format(state=state, url=fake.openai_url), env={})
        runtime = build(config)
        assert state.is_dir()
        assert runtime.config is config
        assert isinstance(runtime.backends["up"], OpenAICompatBackend)
        assert runtime.gateway.models() == ["chat"]
        await runtime.start()
        try:
            request = ChatRequest(model="chat", messages=[{"role": "user", "content": "hi"}])
            completion = await runtime.gateway.complete(request)
        finally:
            await runtime.aclose()
        await runtime.aclose()  # a second close (after the lifespan's) is harmless
    assert completion.content == "hello from upstream"
    assert fake.requests[-1].body["model"] == "upstream-model"
    exposition, _ = runtime.metrics.render()
    # The router reports to the metrics (events=), and so does the gateway (observer=).
    assert b'wayport_model_attempts_total{deployment="up",model="chat",outcome=' in exposition
    assert b'wayport_tokens_total{direction="out",model="chat"}' in exposition


@pytest.mark.anyio
async def test_plugin_kinds_are_built_through_the_registry(tmp_path: Path) -> None:
    registry = BackendRegistry()
    registry.register("scripted", scripted)
    text = (
        f"state_dir: {tmp_path}\n"
        "deployments:\n  s: {backend: scripted, text: from plugin}\n"
        "models:\n  m: {deployments: [s]}\n"
    )
    config = parse_config(text, env={}, backend_kinds=registry.names())
    runtime = build(config, registry=registry)
    await runtime.start()
    try:
        chunks = [
            c.content
            async for c in runtime.gateway.stream(
                ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            )
            if c.content
        ]
    finally:
        await runtime.aclose()
    assert "".join(chunks) == "from plugin"


def test_backend_option_mismatches_name_the_deployment(tmp_path: Path) -> None:
    registry = BackendRegistry()
    registry.register("scripted", scripted)
    text = (
        f"state_dir: {tmp_path}\n"
        "deployments:\n  s: {backend: scripted, colour: red}\n"
        "models:\n  m: {deployments: [s]}\n"
    )
    config = parse_config(text, env={}, backend_kinds=registry.names())
    with pytest.raises(ConfigError, match=r"^deployments.s: backend 'scripted' does not accept"):
        build(config, registry=registry)


def test_an_unwritable_state_dir_is_a_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    config = parse_config(f"state_dir: {blocker / 'state'}\n", env={})
    with pytest.raises(ConfigError, match=r"^state_dir: cannot create"):
        build(config)


def test_runtimes_share_nothing(tmp_path: Path) -> None:
    text = UPSTREAM.format(state=tmp_path, url="http://127.0.0.1:9/v1")
    a = build(parse_config(text, env={}))
    b = build(parse_config(text, env={}))
    assert a.metrics is not b.metrics
    assert a.metrics.registry is not b.metrics.registry
    assert a.backends["up"] is not b.backends["up"]
    assert a.app is not b.app


@pytest.mark.model
@pytest.mark.anyio
async def test_embedded_cold_start_time_is_a_metric_and_readiness_checks_state(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    config = parse_config(f"state_dir: {state}\n", env={})
    runtime = build(config)
    exposition, _ = runtime.metrics.render()
    assert b'wayport_model_load_seconds{deployment="smollm2-local"} 0.0' in exposition
    assert not runtime.gateway.ready()
    await runtime.start()
    try:
        assert runtime.gateway.ready()
        exposition, _ = runtime.metrics.render()
        line = next(
            x
            for x in exposition.decode().splitlines()
            if x.startswith('wayport_model_load_seconds{deployment="smollm2-local"}')
        )
        assert float(line.split()[-1]) > 0
        moved = state.rename(tmp_path / "moved")  # state gone: not ready, whatever the model says
        try:
            assert not runtime.gateway.ready()
        finally:
            moved.rename(state)
        assert runtime.gateway.ready()
    finally:
        await runtime.aclose()
