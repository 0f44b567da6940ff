"""``chat {model}`` spans around the model router, following the GenAI semantic conventions.

    events = TracedEvents(metrics, deployments={"local": ("llama.cpp", "SmolLM2-135M")})
    router = Router(groups=..., backends=..., events=events)
    gateway = Gateway(router=TracedRouter(router, tracing), observer=metrics)

``TracedRouter`` has the router's shape (``wayport.service.gateway.ModelRouter``): each call
runs inside a ``chat`` (or ``embeddings``) span carrying ``gen_ai.request.model`` and the
token usage. ``TracedEvents`` passes every router event on and, for the attempt that served
the call, names the deployment, its provider and the upstream model on that span.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    Usage,
)
from wayport.ports import RouterEvents
from wayport.telemetry.tracing import Tracing

__all__ = ["TracedEvents", "TracedRouter"]


class _Router(Protocol):
    def models(self) -> list[str]: ...

    def has_model(self, name: str) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def ready(self) -> bool: ...

    def not_ready(self) -> list[str]: ...

    async def complete(self, request: ChatRequest) -> Completion: ...

    def stream_batches(self, request: ChatRequest) -> AsyncIterator[list[Chunk]]: ...

    async def embed(self, request: EmbeddingRequest) -> Embeddings: ...


def _chat_attributes(request: ChatRequest) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": request.model,
    }
    max_tokens = request.param("max_tokens") or request.param("max_completion_tokens")
    if isinstance(max_tokens, int):
        attributes["gen_ai.request.max_tokens"] = max_tokens
    temperature = request.param("temperature")
    if isinstance(temperature, int | float):
        attributes["gen_ai.request.temperature"] = float(temperature)
    return attributes


def _finished(span: Span, usage: Usage | None, finish_reason: str | None) -> None:
    """The span's closing attributes, set in one call (each call takes the span's lock)."""
    attributes: dict[str, Any] = {}
    if usage is not None:
        attributes["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attributes["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if finish_reason is not None:
        attributes["gen_ai.response.finish_reasons"] = (finish_reason,)
    if attributes:
        span.set_attributes(attributes)


class TracedRouter:
    """The router, each call in a span."""

    def __init__(self, router: _Router, tracing: Tracing) -> None:
        self._router = router
        self._tracing = tracing
        self._names: dict[str, str] = {}

    def __getattr__(self, name: str) -> Any:
        # ``deployment_status`` and anything else the router offers beyond the protocol.
        return getattr(self._router, name)

    def models(self) -> list[str]:
        return self._router.models()

    def has_model(self, name: str) -> bool:
        return self._router.has_model(name)

    async def start(self) -> None:
        await self._router.start()

    async def close(self) -> None:
        await self._router.close()

    def ready(self) -> bool:
        return self._router.ready()

    def not_ready(self) -> list[str]:
        return self._router.not_ready()

    async def complete(self, request: ChatRequest) -> Completion:
        tracing = self._tracing
        span, token = tracing.start(
            self._name(request.model), _chat_attributes(request), SpanKind.CLIENT
        )
        try:
            completion = await self._router.complete(request)
            _finished(span, completion.usage, completion.finish_reason)
            return completion
        except BaseException as exc:
            tracing.fail(span, exc)
            raise
        finally:
            tracing.finish(span, token)

    def _name(self, model: str) -> str:
        """``chat {model}``, made once per served model (a bounded set: the router's)."""
        name = self._names.get(model)
        if name is None:
            name = f"chat {model}"
            if self._router.has_model(model):
                self._names[model] = name
        return name

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        return _flatten(self.stream_batches(request))

    def stream_batches(self, request: ChatRequest) -> AsyncIterator[list[Chunk]]:
        inner = self._router.stream_batches(request)  # an unknown model raises here, at once
        span = self._tracing.start_detached(
            self._name(request.model), _chat_attributes(request), SpanKind.CLIENT
        )
        return self._stream(inner, span)

    async def _stream(
        self, inner: AsyncIterator[list[Chunk]], span: Span
    ) -> AsyncIterator[list[Chunk]]:
        # The span is current only around each step of the router's stream: a generator
        # must not hold a context attached across its yields.
        ctx = trace.set_span_in_context(span)
        finish: str | None = None
        usage: Usage | None = None
        try:
            while True:
                token = otel_context.attach(ctx)
                try:
                    batch = await inner.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    otel_context.detach(token)
                for chunk in batch:
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                yield batch
        except BaseException as exc:
            self._tracing.fail(span, exc)
            raise
        finally:
            _finished(span, usage, finish)
            span.end()
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        attributes = {"gen_ai.operation.name": "embeddings", "gen_ai.request.model": request.model}
        name = f"embeddings {request.model}"
        with self._tracing.span(name, attributes, kind=SpanKind.CLIENT) as span:
            result = await self._router.embed(request)
            span.set_attribute("gen_ai.usage.input_tokens", result.usage.prompt_tokens)
            return result


async def _flatten(batches: AsyncIterator[list[Chunk]]) -> AsyncIterator[Chunk]:
    try:
        async for batch in batches:
            for chunk in batch:
                yield chunk
    finally:
        aclose = getattr(batches, "aclose", None)
        if aclose is not None:
            await aclose()


class TracedEvents:
    """Router events passed on to ``inner`` (the metrics), with the serving deployment named
    on the current ``chat`` span. ``deployments``: name -> (provider, upstream model)."""

    def __init__(self, inner: RouterEvents, deployments: Mapping[str, tuple[str, str]]) -> None:
        self._inner = inner
        self._deployments = dict(deployments)
        self._served: dict[str, dict[str, str]] = {}  #: the attributes naming each deployment

    def attempt(self, model: str, deployment: str) -> None:
        self._inner.attempt(model, deployment)

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None:
        self._inner.attempt_done(model, deployment, outcome, seconds)
        span = trace.get_current_span()
        if not span.is_recording():
            return
        if outcome == "ok":
            span.set_attributes(self._served.get(deployment) or self._describe(deployment))
        else:
            span.add_event(
                "attempt_failed",
                {"wayport.deployment": deployment, "error.type": outcome, "duration_s": seconds},
            )

    def _describe(self, deployment: str) -> dict[str, str]:
        provider, upstream = self._deployments.get(deployment, ("", ""))
        attributes = {
            "wayport.deployment": deployment,
            "gen_ai.response.model": upstream or deployment,
        }
        if provider:
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = provider
        self._served[deployment] = attributes
        return attributes

    def retry(self, model: str, deployment: str, reason: str) -> None:
        self._inner.retry(model, deployment, reason)

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self._inner.fallback(from_model, to_model, reason)

    def circuit(self, deployment: str, state: str) -> None:
        self._inner.circuit(deployment, state)
