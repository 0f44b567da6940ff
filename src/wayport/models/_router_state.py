"""The router's mutable bookkeeping: one ``_Deployment`` per backend, one ``_Group`` per public
model name, and the per-call adapters the retry loop drives. Private to ``models.router``."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable

from wayport.core.routing import CLOSED, CircuitState
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings
from wayport.ports import ModelBackend


class _Deployment:
    """Live state of one deployment, shared by every group that lists it."""

    __slots__ = ("backend", "circuit", "inflight", "latency", "name")

    def __init__(self, name: str, backend: ModelBackend) -> None:
        self.name = name
        self.backend = backend
        self.circuit: CircuitState = CLOSED
        self.inflight = 0
        self.latency: float | None = None


class _Group:
    """A model group resolved against live deployments. ``plan`` (the group itself, then its
    fallbacks) and ``context_plan`` are filled in once every group exists."""

    __slots__ = ("by_name", "context_plan", "members", "name", "plan", "weights")

    def __init__(self, name: str, members: tuple[_Deployment, ...], weights: tuple[float, ...]):
        self.name = name
        self.members = members
        self.weights = weights
        self.by_name = {d.name: d for d in members}
        self.plan: tuple[_Group, ...] = ()
        self.context_plan: tuple[_Group, ...] = ()


class _NoEvents:
    """``RouterEvents`` that reports nowhere, so the hot path never tests for ``None``."""

    def attempt(self, model: str, deployment: str) -> None:
        pass

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None:
        pass

    def retry(self, model: str, deployment: str, reason: str) -> None:
        pass

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        pass

    def circuit(self, deployment: str, state: str) -> None:
        pass


# Module-level callables for the retry loop: no closure is allocated per request.


async def call_complete(backend: ModelBackend, request: ChatRequest, timeout: float) -> Completion:
    return await backend.complete(request, timeout=timeout)


async def call_embed(
    backend: ModelBackend, request: EmbeddingRequest, timeout: float
) -> Embeddings:
    return await backend.embed(request, timeout=timeout)


Opened = tuple[list[Chunk] | None, AsyncIterator[list[Chunk]]]


def backend_batches(
    backend: ModelBackend, request: ChatRequest, timeout: float
) -> AsyncIterator[list[Chunk]]:
    """The backend's stream as lists of chunks: the backend's own batches when it groups the
    chunks of one read (``stream_batches``, as ``OpenAICompatBackend`` does), else one chunk a
    list."""
    batched: Callable[..., AsyncIterator[list[Chunk]]] | None = getattr(
        backend, "stream_batches", None
    )
    if batched is not None:
        return batched(request, timeout=timeout)
    return _singles(backend.stream(request, timeout=timeout))


async def _singles(chunks: AsyncIterator[Chunk]) -> AsyncGenerator[list[Chunk], None]:
    try:
        async for chunk in chunks:
            yield [chunk]
    finally:
        await aclose(chunks)


async def open_stream(backend: ModelBackend, request: ChatRequest, timeout: float) -> Opened:
    """Start a stream and wait for its first batch of chunks, which is where a stream still
    may be retried elsewhere. ``None`` stands for a stream that ended without any chunk."""
    batches = backend_batches(backend, request, timeout)
    try:
        first = await anext(batches)
    except StopAsyncIteration:
        return None, batches
    except BaseException:
        await aclose(batches)
        raise
    return first, batches


async def aclose(chunks: AsyncIterator[Chunk] | AsyncIterator[list[Chunk]]) -> None:
    """Close a backend stream if it can be closed (async generators can; bare iterators may
    not), so that its connection goes back to the pool at once."""
    if isinstance(chunks, AsyncGenerator):
        await chunks.aclose()
