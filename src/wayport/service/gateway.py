"""The gateway use case: OpenAI-style chat and embeddings served by the model router, with
readiness and usage accounting around it. No HTTP in here; the server translates.

    gateway = Gateway(router=router, state_ok=store.healthy, observer=metrics)
    await gateway.start()
    completion = await gateway.complete(ChatRequest(model="chat", messages=[...]))
    async for chunk in gateway.stream(ChatRequest(model="chat", messages=[...], stream=True)):
        ...
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from wayport.core.clock import SystemClock
from wayport.core.errors import ModelNotFound
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings
from wayport.ports import Clock


class ModelRouter(Protocol):
    """What the gateway needs of ``wayport.models.router.Router``."""

    def models(self) -> list[str]: ...

    def has_model(self, name: str) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def ready(self) -> bool: ...

    def not_ready(self) -> list[str]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]: ...

    def stream_batches(self, request: ChatRequest) -> AsyncIterator[list[Chunk]]: ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings: ...


class UsageObserver(Protocol):
    """Told about every answer's token counts and streaming latency
    (``wayport.telemetry.metrics.Metrics`` is one)."""

    def tokens(self, model: str, prompt: int, completion: int) -> None: ...

    def first_token(self, model: str, seconds: float) -> None: ...


class _NoObserver:
    def tokens(self, model: str, prompt: int, completion: int) -> None:
        pass

    def first_token(self, model: str, seconds: float) -> None:
        pass


def _always_ok() -> bool:
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Readiness:
    ready: bool
    started: bool
    state_ok: bool
    not_ready: tuple[str, ...]  #: deployments the router would not serve from now


class Gateway:
    """``state_ok`` is asked on every readiness probe; it must answer from memory (a flag the
    store keeps), not by doing I/O."""

    def __init__(
        self,
        *,
        router: ModelRouter,
        state_ok: Callable[[], bool] = _always_ok,
        observer: UsageObserver | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._router = router
        self._state_ok = state_ok
        self._observer: UsageObserver = observer if observer is not None else _NoObserver()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._started = False

    async def start(self) -> None:
        await self._router.start()
        self._started = True

    async def close(self) -> None:
        self._started = False
        await self._router.close()

    def models(self) -> list[str]:
        return self._router.models()

    def has_model(self, name: str) -> bool:
        return self._router.has_model(name)

    def ready(self) -> bool:
        return self._started and self._router.ready() and self._state_ok()

    def readiness(self) -> Readiness:
        state_ok = self._state_ok()
        not_ready = tuple(self._router.not_ready())
        ready = self._started and state_ok and self._router.ready()
        return Readiness(ready=ready, started=self._started, state_ok=state_ok, not_ready=not_ready)

    async def complete(self, request: ChatRequest) -> Completion:
        self._require_model(request.model)
        completion = await self._router.complete(request)
        usage = completion.usage
        self._observer.tokens(request.model, usage.prompt_tokens, usage.completion_tokens)
        return completion

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Chunk, None]:
        """Chunks as the router yields them. Errors before the first chunk are raised from the
        first ``__anext__``. Closing this generator (``aclose``) closes the router's stream, which
        frees the upstream connection or model slot."""
        batches = self.stream_batches(request)
        try:
            async for batch in batches:
                for chunk in batch:
                    yield chunk
        finally:
            await batches.aclose()

    async def stream_batches(self, request: ChatRequest) -> AsyncGenerator[list[Chunk], None]:
        """``stream`` in lists of the chunks that arrived together (never empty), for a caller
        that writes them on in one step::

            async for batch in gateway.stream_batches(request):
                await send(b"".join(frame(chunk) for chunk in batch))
        """
        self._require_model(request.model)
        if not request.include_usage:
            # Usage is always asked of the backend, for accounting; the server drops it from
            # the wire when the client did not ask.
            request = dataclasses.replace(request, include_usage=True)
        model, observer, clock = request.model, self._observer, self._clock
        began = clock.now()
        waiting_first = True
        inner = self._router.stream_batches(request)
        try:
            async for batch in inner:
                for chunk in batch:
                    if waiting_first and (chunk.content or chunk.tool_calls):
                        waiting_first = False
                        observer.first_token(model, clock.now() - began)
                    u = chunk.usage
                    if u is not None:
                        observer.tokens(model, u.prompt_tokens, u.completion_tokens)
                yield batch
        finally:
            await _aclose(inner)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        self._require_model(request.model)
        embeddings = await self._router.embed(request)
        self._observer.tokens(request.model, embeddings.usage.prompt_tokens, 0)
        return embeddings

    def _require_model(self, name: str) -> None:
        if not self._router.has_model(name):
            raise ModelNotFound(f"The model {name!r} does not exist", param="model")


async def _aclose(iterator: AsyncIterator[list[Chunk]]) -> None:
    aclose: Callable[[], Awaitable[object]] | None = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()
