"""A scriptable model backend for tests and benchmarks: no network, no weights.

    backend = ScriptedBackend("m1", script=[Fail(BackendUnavailable("down")), Reply("hi")])

Each call takes the next step of the script (then repeats ``default``); a callable script is
asked for each request instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass

from wayport.core.errors import Unsupported, WayportError
from wayport.core.types import (
    ChatRequest,
    Chunk,
    Completion,
    EmbeddingRequest,
    Embeddings,
    ToolCall,
    Usage,
)
from wayport.ports import Clock


@dataclass(frozen=True, slots=True)
class Reply:
    text: str = "ok"
    tool_calls: Sequence[ToolCall] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    error: WayportError
    after_chunks: int = 0  #: for streams: chunks sent before the error is raised


Step = Reply | Fail


class ScriptedBackend:
    def __init__(
        self,
        name: str = "scripted",
        script: Iterable[Step] | Callable[[ChatRequest], Step] | None = None,
        *,
        default: Step = Reply(),
        delay: float = 0.0,
        clock: Clock | None = None,
        embeddings: bool = False,
        gate: asyncio.Event | None = None,
        gate_after: int = 1,
    ) -> None:
        self.name = name
        #: streams hold after ``gate_after`` chunks until ``gate`` is set, so a test can act
        #: while a reply is provably mid-stream
        self._gate, self._gate_after = gate, gate_after
        self._fn = script if callable(script) else None
        self._steps: deque[Step] = deque() if callable(script) or script is None else deque(script)
        self._default = default
        self._delay = delay
        self._clock = clock
        self._embeddings = embeddings
        self.calls: list[ChatRequest] = []
        self.started = False
        self.closed = False

    def _next(self, request: ChatRequest) -> Step:
        self.calls.append(request)
        if self._fn is not None:
            return self._fn(request)
        return self._steps.popleft() if self._steps else self._default

    async def _wait(self) -> None:
        if self._delay and self._clock is not None:
            await self._clock.sleep(self._delay)
        elif self._delay:
            await asyncio.sleep(self._delay)

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    def ready(self) -> bool:
        return self.started and not self.closed

    @staticmethod
    def _usage(request: ChatRequest, step: Reply) -> Usage:
        if step.usage is not None:
            return step.usage
        prompt = sum(len(str(m.get("content") or "").split()) for m in request.messages)
        return Usage(prompt_tokens=prompt, completion_tokens=len(step.text.split()))

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        step = self._next(request)
        await self._wait()
        if isinstance(step, Fail):
            raise step.error
        return Completion(
            content=step.text if not step.tool_calls else (step.text or None),
            tool_calls=step.tool_calls,
            finish_reason=step.finish_reason or ("tool_calls" if step.tool_calls else "stop"),
            usage=self._usage(request, step),
            model=self.name,
        )

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        step = self._next(request)
        await self._wait()
        if isinstance(step, Fail):
            for i in range(step.after_chunks):
                yield Chunk(content=f"part{i} ", role="assistant" if i == 0 else None)
            raise step.error
        words = step.text.split(" ") if step.text else []
        for i, word in enumerate(words):
            if self._gate is not None and i == self._gate_after:
                await self._gate.wait()
            yield Chunk(
                content=word if i == len(words) - 1 else word + " ",
                role="assistant" if i == 0 else None,
            )
        if step.tool_calls:
            yield Chunk(
                tool_calls=[
                    {
                        "index": i,
                        "id": c["id"],
                        "type": "function",
                        "function": {
                            "name": c["function"]["name"],
                            "arguments": c["function"]["arguments"],
                        },
                    }
                    for i, c in enumerate(step.tool_calls)
                ]
            )
        yield Chunk(
            finish_reason=step.finish_reason or ("tool_calls" if step.tool_calls else "stop"),
            usage=self._usage(request, step),
        )

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        if not self._embeddings:
            raise Unsupported(f"deployment {self.name!r} does not serve embeddings")
        inputs = [request.input] if isinstance(request.input, str) else list(request.input)
        return Embeddings(
            vectors=[[float(len(str(x))), 1.0, 0.0] for x in inputs],
            usage=Usage(prompt_tokens=len(inputs)),
            model=self.name,
        )
