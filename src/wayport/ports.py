"""Ports: the protocols that engines and adapters implement. Layers above depend on these,
never on a concrete adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings


class Clock(Protocol):
    """Monotonic time and sleeping; ``wayport.testing.ManualClock`` drives it by hand."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class ModelBackend(Protocol):
    """One deployment of one model: an embedded llama.cpp model, an OpenAI-compatible server,
    Anthropic … Implementations raise only ``wayport.core.errors`` exceptions.

    ``timeout`` is the time left in the caller's overall deadline, in seconds (``None``: no
    deadline); a backend applies the smaller of it and its own configured timeouts.
    """

    name: str

    async def start(self) -> None:
        """Open pools, preload weights. Called once before the first request."""

    async def close(self) -> None:
        """Release everything ``start`` took. Idempotent."""

    def ready(self) -> bool:
        """True when a request would be served without a cold start or a known outage."""

    async def complete(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> Completion: ...

    def stream(self, request: ChatRequest, *, timeout: float | None = None) -> AsyncIterator[Chunk]:
        """Yield chunks as they arrive. Errors before the first chunk are raised from the
        first ``__anext__``; an error mid-way is raised at that point."""

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        """Raise ``Unsupported`` where the backend has no embeddings."""


class RouterEvents(Protocol):
    """What the router reports as it works; telemetry implements it."""

    def attempt(self, model: str, deployment: str) -> None: ...

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None: ...

    def retry(self, model: str, deployment: str, reason: str) -> None: ...

    def fallback(self, from_model: str, to_model: str, reason: str) -> None: ...

    def circuit(self, deployment: str, state: str) -> None: ...
