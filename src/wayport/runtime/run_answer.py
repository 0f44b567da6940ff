"""One model answer of a run, drained from its stream: the text is emitted as ``TextDelta``
events while it comes, tool-call fragments are joined by index, and the usage is kept.

    answer = await collect(model.stream(request), run.id, emit, step_no)
    answer.text, answer.calls, answer.usage
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from wayport.core.agent import RunEvent, TextDelta
from wayport.core.types import Chunk, ToolCall, Usage

__all__ = ["Answer", "ModelFailed", "collect"]


class ModelFailed(Exception):
    """The model call failed for good; fails the run (store errors propagate instead)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    text: str | None
    calls: list[ToolCall]
    usage: Usage


async def collect(
    chunks: AsyncIterator[Chunk], run_id: str, emit: Callable[[RunEvent], None], step_no: int
) -> Answer:
    """Drain one streamed answer, emitting its text as it comes and joining tool-call
    fragments by index."""
    parts: list[str] = []
    calls: dict[int, dict[str, str]] = {}
    usage = Usage()
    try:
        async for chunk in chunks:
            if chunk.content:
                parts.append(chunk.content)
                emit(TextDelta(run_id=run_id, text=chunk.content))
            for delta in chunk.tool_calls or ():
                slot = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
                if delta.get("id"):
                    slot["id"] = delta["id"]
                function: dict[str, Any] = dict(delta.get("function") or {})
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
            if chunk.usage is not None:
                usage = chunk.usage
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    tool_calls: list[ToolCall] = [
        {
            "id": slot["id"] or f"call_{step_no}_{index}",
            "type": "function",
            "function": {"name": slot["name"], "arguments": slot["arguments"]},
        }
        for index, slot in sorted(calls.items())
    ]
    return Answer(text="".join(parts) if parts else None, calls=tool_calls, usage=usage)
