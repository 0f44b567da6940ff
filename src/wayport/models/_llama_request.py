"""A :class:`~wayport.core.types.ChatRequest` turned into llama-cpp-python's arguments.

Validation happens here, on the event loop, before the request waits for a slot, so a bad
parameter fails fast as :class:`~wayport.core.errors.BackendRejected` naming the parameter::

    args = GenerationArgs.from_request(request)
    llm.create_chat_completion(messages=prompt_messages(request), **args.llama_kwargs())

Parameters the client did not send are left out, so llama-cpp-python's defaults apply
(temperature 0.2, top_p 0.95, no token limit beyond the context window).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wayport.core.errors import BackendRejected, Unsupported
from wayport.core.types import ChatRequest, Message


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationArgs:
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  #: llama.cpp extra
    min_p: float | None = None  #: llama.cpp extra
    repeat_penalty: float | None = None  #: llama.cpp extra
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    max_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logit_bias: Mapping[int, float] | None = None
    response_format: Mapping[str, Any] | None = None  #: llama-cpp-python's shape
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None

    @classmethod
    def from_request(cls, request: ChatRequest) -> GenerationArgs:
        p = request.param
        n = p("n")
        if n is not None and n != 1:
            raise Unsupported("the embedded model returns one choice per request", param="n")
        limit = p("max_completion_tokens")
        if limit is None:
            limit = p("max_tokens")
        return cls(
            temperature=_number(p("temperature"), "temperature", 0.0, 2.0),
            top_p=_number(p("top_p"), "top_p", 0.0, 1.0),
            top_k=_integer(p("top_k"), "top_k", 0),
            min_p=_number(p("min_p"), "min_p", 0.0, 1.0),
            repeat_penalty=_number(p("repeat_penalty"), "repeat_penalty", 0.0, math.inf),
            presence_penalty=_number(p("presence_penalty"), "presence_penalty", -2.0, 2.0),
            frequency_penalty=_number(p("frequency_penalty"), "frequency_penalty", -2.0, 2.0),
            max_tokens=_integer(limit, "max_tokens", 1),
            stop=_stop(p("stop")),
            seed=_integer(p("seed"), "seed", None),
            logit_bias=_logit_bias(p("logit_bias")),
            response_format=_response_format(p("response_format")),
            tools=list(request.tools) if request.tools else None,
            tool_choice=request.tool_choice if request.tools else None,
        )

    def llama_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``Llama.create_chat_completion``; only what was set."""
        out: dict[str, Any] = {}
        for name in (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "repeat_penalty",
            "presence_penalty",
            "frequency_penalty",
            "max_tokens",
            "seed",
            "response_format",
            "tool_choice",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.stop:
            out["stop"] = list(self.stop)
        if self.logit_bias:
            out["logit_bias"] = dict(self.logit_bias)
        if self.tools:
            out["tools"] = [dict(tool) for tool in self.tools]
        return out


def prompt_messages(request: ChatRequest) -> list[Message]:
    """The messages as chat templates expect them: text content, never ``None``.

    Templates concatenate ``message['content']`` as a string, so an assistant turn that only
    called tools (``content: None``) and text given as a list of parts are flattened; other
    parts (images …) pass through for chat handlers that understand them.
    """
    out: list[Message] = []
    for message in request.messages:
        content = message.get("content")
        if isinstance(content, str):
            out.append(message)
            continue
        fixed: Message = {**message}
        if content is None:
            fixed["content"] = ""
        elif all(part.get("type") == "text" for part in content):
            fixed["content"] = "".join(str(part.get("text", "")) for part in content)
        out.append(fixed)
    return out


def prompt_text(messages: Sequence[Message]) -> list[str]:
    """The text of every message: counting its tokens gives a lower bound of the prompt."""
    return [c for m in messages if isinstance(c := m.get("content"), str) and c]


def _number(value: Any, name: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise BackendRejected(f"{name} must be a number", param=name)
    if not low <= value <= high:
        raise BackendRejected(f"{name} must be between {low} and {high}", param=name)
    return float(value)


def _integer(value: Any, name: str, low: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BackendRejected(f"{name} must be an integer", param=name)
    if low is not None and value < low:
        raise BackendRejected(f"{name} must be at least {low}", param=name)
    return value


def _stop(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list | tuple) and all(isinstance(s, str) for s in value):
        return tuple(s for s in value if s)
    raise BackendRejected("stop must be a string or a list of strings", param="stop")


def _logit_bias(value: Any) -> dict[int, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise BackendRejected("logit_bias must map token ids to numbers", param="logit_bias")
    try:
        return {int(k): float(v) for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise BackendRejected(
            "logit_bias must map token ids to numbers", param="logit_bias"
        ) from exc


def _response_format(value: Any) -> dict[str, Any] | None:
    """OpenAI's ``json_object`` and ``json_schema`` formats as llama-cpp-python's grammar
    options (``{"type": "json_object", "schema": …}``); ``text`` needs nothing."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        out: dict[str, Any] = {"type": "json_object"}
        if isinstance(value.get("schema"), Mapping):
            out["schema"] = dict(value["schema"])
        return out
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise BackendRejected(
                "response_format.json_schema.schema must be an object", param="response_format"
            )
        return {"type": "json_object", "schema": dict(schema)}
    raise BackendRejected(
        "response_format.type must be text, json_object or json_schema", param="response_format"
    )
