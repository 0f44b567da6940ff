"""The gateway use case over the real router and scripted backends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import pytest

from wayport.core.errors import BackendUnavailable, ModelNotFound
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest, Chunk, EmbeddingRequest, Usage
from wayport.models.router import Router
from wayport.ports import ModelBackend
from wayport.service.gateway import Gateway
from wayport.testing import Fail, ManualClock, Reply, ScriptedBackend

pytestmark = pytest.mark.anyio


class RecordingObserver:
    def __init__(self) -> None:
        self.tokens_seen: list[tuple[str, int, int]] = []
        self.first_tokens: list[tuple[str, float]] = []

    def tokens(self, model: str, prompt: int, completion: int) -> None:
        self.tokens_seen.append((model, prompt, completion))

    def first_token(self, model: str, seconds: float) -> None:
        self.first_tokens.append((model, seconds))


def gateway_for(
    backends: Mapping[str, ModelBackend],
    *,
    clock: ManualClock | None = None,
    state_ok: list[bool] | None = None,
) -> tuple[Gateway, RecordingObserver]:
    observer = RecordingObserver()
    router = Router(
        groups=[ModelGroup(name=n, deployments=(WeightedDeployment(name=n),)) for n in backends],
        backends=backends,
        policy=RouterPolicy(max_retries=0),
        clock=clock,
    )
    flag = state_ok if state_ok is not None else [True]
    gateway = Gateway(router=router, state_ok=lambda: flag[0], observer=observer, clock=clock)
    return gateway, observer


def ask(model: str = "chat", *, stream: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "hi you"}], stream=stream)


async def test_complete_reports_usage() -> None:
    usage = Usage(prompt_tokens=7, completion_tokens=3)
    gateway, observer = gateway_for({"chat": ScriptedBackend("c", [Reply("yo", usage=usage)])})
    await gateway.start()
    completion = await gateway.complete(ask())
    assert completion.content == "yo"
    assert observer.tokens_seen == [("chat", 7, 3)]
    await gateway.close()


async def test_stream_measures_first_token_and_asks_for_usage() -> None:
    clock = ManualClock(autoadvance=True)
    backend = ScriptedBackend("c", [Reply("one two")], delay=1.5, clock=clock)
    gateway, observer = gateway_for({"chat": backend}, clock=clock)
    await gateway.start()
    chunks = [c async for c in gateway.stream(ask(stream=True))]
    assert [c.content for c in chunks if c.content] == ["one ", "two"]
    assert observer.first_tokens == [("chat", 1.5)]
    assert observer.tokens_seen == [("chat", 2, 2)]
    # The client did not ask for usage, but accounting needs it from the backend.
    assert backend.calls[-1].include_usage is True
    await gateway.close()


async def test_unknown_model() -> None:
    gateway, observer = gateway_for({"chat": ScriptedBackend("c", embeddings=True)})
    await gateway.start()
    with pytest.raises(ModelNotFound):
        await gateway.complete(ask("nope"))
    with pytest.raises(ModelNotFound):
        await anext(gateway.stream(ask("nope", stream=True)))
    with pytest.raises(ModelNotFound):
        await gateway.embed(EmbeddingRequest(model="nope", input="x"))
    assert observer.tokens_seen == []


async def test_errors_pass_through_unchanged() -> None:
    down = BackendUnavailable("down", retry_after=4)
    gateway, observer = gateway_for({"chat": ScriptedBackend("c", [Fail(down), Fail(down)])})
    await gateway.start()
    with pytest.raises(BackendUnavailable) as caught:
        await gateway.complete(ask())
    assert caught.value.retry_after == 4
    with pytest.raises(BackendUnavailable):
        await anext(gateway.stream(ask(stream=True)))
    assert observer.tokens_seen == []


class Tracked(ScriptedBackend):
    def __init__(self) -> None:
        super().__init__("tracked")
        self.stream_closed = False

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        try:
            for word in ("a", "b", "c"):
                yield Chunk(content=word)
        finally:
            self.stream_closed = True


async def test_closing_the_stream_closes_the_backend_stream() -> None:
    backend = Tracked()
    gateway, _ = gateway_for({"chat": backend})
    await gateway.start()
    chunks = gateway.stream(ask(stream=True))
    assert (await anext(chunks)).content == "a"
    assert not backend.stream_closed
    await chunks.aclose()
    assert backend.stream_closed


async def test_embed_reports_prompt_tokens() -> None:
    gateway, observer = gateway_for({"emb": ScriptedBackend("e", embeddings=True)})
    await gateway.start()
    result = await gateway.embed(EmbeddingRequest(model="emb", input=["a", "b", "c"]))
    assert len(result.vectors) == 3
    assert observer.tokens_seen == [("emb", 3, 0)]


async def test_readiness() -> None:
    state = [True]
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    gateway, _ = gateway_for({"chat": a, "small": b}, state_ok=state)
    before = gateway.readiness()
    assert (before.ready, before.started, before.not_ready) == (False, False, ("chat", "small"))
    assert not gateway.ready()

    await gateway.start()
    assert a.started and b.started
    assert gateway.ready()
    assert gateway.readiness().not_ready == ()

    state[0] = False
    assert not gateway.ready()
    assert gateway.readiness().state_ok is False
    state[0] = True

    await b.close()
    assert not gateway.ready()
    assert gateway.readiness().not_ready == ("small",)

    await gateway.close()
    assert a.closed
    assert not gateway.readiness().started


async def test_catalogue() -> None:
    gateway, _ = gateway_for({"chat": ScriptedBackend("a"), "small": ScriptedBackend("b")})
    assert gateway.models() == ["chat", "small"]
    assert gateway.has_model("small")
    assert not gateway.has_model("large")
