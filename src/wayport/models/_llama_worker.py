"""What runs on the worker threads of :class:`~wayport.models.llamacpp.LlamaCppBackend`.

Everything here touches llama-cpp-python, and everything that does runs off the event loop:

* :class:`SlotLlama` is a ``Llama`` whose token loop reports to the request using it
  (:class:`Control`): prompt and sampled token counts for usage, and a ``stop`` flag checked
  after every sampled token, so a cancelled request frees its slot at the next token;
* :class:`Channel` hands chunks from a worker thread to the event loop, waking the loop only
  when the consumer is actually waiting (a consumer that lags behind gets a batch);
* :func:`run_complete` / :func:`run_stream` are the jobs submitted to the thread pool; they
  translate llama-cpp-python's results into core types and its exceptions into
  ``wayport.core.errors``;
* :class:`Tokenizer` holds the vocabulary alone (a few MB, no weights), so counting tokens
  works while the weights are unloaded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any, cast

import llama_cpp
from llama_cpp import llama_cpp as llama_lib

from wayport.core.errors import (
    BackendError,
    BackendRejected,
    ContextWindowExceeded,
    WayportError,
)
from wayport.core.types import Chunk, Completion, ToolCall, ToolCallDelta, Usage

#: llama-cpp-python silences llama.cpp by pointing the process-wide file descriptors 1 and 2
#: at /dev/null while it loads a model; two loads interleaving on different threads would
#: restore each other's redirection and could leave stderr pointing at /dev/null for good.
FD_REDIRECT_LOCK = threading.Lock()


class Control:
    """Per-request state shared between the event loop (sets ``stop``) and the worker
    (counts tokens). Plain attributes: single writer each, read under the GIL."""

    __slots__ = ("last_token", "prompt_tokens", "sampled", "stop")

    def __init__(self) -> None:
        self.stop = False
        self.prompt_tokens = 0
        self.sampled = 0
        self.last_token = -1


class SlotLlama(llama_cpp.Llama):
    """One slot: its own context and KV cache over the shared, memory-mapped weights."""

    control: Control | None = None

    def generate(
        self, tokens: Sequence[int], *args: Any, **kwargs: Any
    ) -> Generator[int, Sequence[int] | None, None]:
        # The only per-token hook llama-cpp-python's chat path offers; the chat handlers keep
        # ``stopping_criteria`` to themselves. Cost: a generator hop and three attribute
        # writes per token.
        ctl = self.control
        if ctl is None:
            yield from super().generate(tokens, *args, **kwargs)
            return
        ctl.prompt_tokens = len(tokens)
        for token in super().generate(tokens, *args, **kwargs):
            if ctl.stop:
                return
            ctl.sampled += 1
            ctl.last_token = token
            yield token

    def completion_tokens(self, ctl: Control) -> int:
        """Tokens of the answer, counted as llama-cpp-python's own usage does: every sampled
        token except an end-of-generation token that ended the answer."""
        if ctl.sampled and self._is_eog(ctl.last_token):
            return ctl.sampled - 1
        return ctl.sampled

    def _is_eog(self, token: int) -> bool:
        vocab = llama_lib.llama_model_get_vocab(self.model)
        return bool(vocab is not None and llama_lib.llama_vocab_is_eog(vocab, token))


class Tokenizer:
    """The model's vocabulary without its weights: ``count("hi")`` -> ``1``.

    ``llama_tokenize`` only reads the vocabulary, so any thread may call :meth:`count`.
    """

    def __init__(self, path: str) -> None:
        params = llama_lib.llama_model_default_params()
        params.vocab_only = True
        chatter = logging.getLogger("llama-cpp-python")
        if chatter.level == logging.NOTSET:
            # llama-cpp-python relays llama.cpp's log through this logger's level; ERROR is
            # what ``Llama(verbose=False)`` sets, and no Llama may have been built yet.
            chatter.setLevel(logging.ERROR)
        with FD_REDIRECT_LOCK:
            llama_lib.llama_backend_init()
            model = llama_lib.llama_model_load_from_file(path.encode(), params)
        if model is None:
            raise ValueError(f"cannot read the vocabulary of {path}")
        vocab = llama_lib.llama_model_get_vocab(model)
        if vocab is None:
            llama_lib.llama_model_free(model)
            raise ValueError(f"{path} has no vocabulary")
        self._model: Any = model
        self._vocab: Any = vocab

    def count(self, text: str) -> int:
        data = text.encode()
        if not data:
            return 0
        # With no room for tokens llama.cpp answers minus the number it would have written.
        n: int = llama_lib.llama_tokenize(
            self._vocab, data, len(data), cast(Any, None), 0, False, False
        )
        if n == -(2**31):
            raise ValueError("text too long to tokenize")
        return -n if n < 0 else n

    def close(self) -> None:
        if self._model is not None:
            llama_lib.llama_model_free(self._model)
            self._model = self._vocab = None


class Channel:
    """Single-producer (a worker thread), single-consumer (the event loop) chunk hand-off.

    ``put`` wakes the loop only when the consumer is parked in :meth:`get`; a consumer that
    lags behind picks up everything pending in one batch and costs the loop no extra wakeups.
    """

    __slots__ = ("_done", "_error", "_items", "_lock", "_loop", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._items: list[Chunk] = []
        self._waiter: asyncio.Future[None] | None = None
        self._done = False
        self._error: WayportError | None = None

    def put(self, chunk: Chunk) -> None:
        """Worker side."""
        with self._lock:
            self._items.append(chunk)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    def finish(self, error: WayportError | None = None) -> None:
        """Worker side: no more chunks; ``error`` is raised to the consumer after them."""
        with self._lock:
            self._done = True
            self._error = error
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_wake, waiter)

    async def get(self) -> list[Chunk]:
        """Loop side: the chunks pending (at least one), or ``[]`` once the worker finished."""
        while True:
            with self._lock:
                if self._items:
                    items, self._items = self._items, []
                    return items
                if self._done:
                    if self._error is not None:
                        raise self._error
                    return []
                waiter = self._waiter = self._loop.create_future()
            await waiter


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def translate(exc: BaseException) -> WayportError:
    """llama-cpp-python's exceptions in terms of ``wayport.core.errors``."""
    if isinstance(exc, WayportError):
        return exc
    text = str(exc)
    if isinstance(exc, ValueError):
        # llama-cpp-python raises ValueError both for prompts too long and for requests it
        # cannot serve (unknown tool in ``tool_choice``, a template's ``raise_exception``).
        if "context window" in text:  # "Requested tokens (N) exceed context window of M"
            return ContextWindowExceeded(text, param="messages")
        return BackendRejected(f"the embedded model rejected the request: {text}")
    return BackendError(f"the embedded model failed: {type(exc).__name__}: {text}")


def run_complete(
    llm: SlotLlama, ctl: Control, messages: list[Any], llama_args: Mapping[str, Any], name: str
) -> Completion | None:
    """Worker job for ``complete``; ``None`` when the request was stopped from outside."""
    llm.control = ctl
    try:
        raw = llm.create_chat_completion(messages=messages, stream=False, **llama_args)
    except Exception as exc:
        raise translate(exc) from exc
    finally:
        llm.control = None
    if ctl.stop:
        return None
    return completion_from(cast(Mapping[str, Any], raw), name)


def completion_from(raw: Mapping[str, Any], name: str) -> Completion:
    choice = raw["choices"][0]
    message = choice["message"]
    usage = raw.get("usage") or {}
    calls: list[ToolCall] | None = None
    if message.get("tool_calls"):
        calls = [
            {
                "id": str(call["id"]),
                "type": "function",
                "function": {
                    "name": str(call["function"]["name"]),
                    "arguments": str(call["function"]["arguments"]),
                },
            }
            for call in message["tool_calls"]
        ]
    return Completion(
        content=message.get("content"),
        tool_calls=calls,
        finish_reason=choice.get("finish_reason") or ("tool_calls" if calls else "stop"),
        usage=Usage(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
        ),
        model=name,
    )


def run_stream(
    llm: SlotLlama,
    ctl: Control,
    channel: Channel,
    messages: list[Any],
    llama_args: Mapping[str, Any],
) -> None:
    """Worker job for ``stream``: pushes :class:`Chunk`s into ``channel`` until the answer
    ends or ``ctl.stop`` is set, then finishes the channel (with the error, if any)."""
    llm.control = ctl
    error: WayportError | None = None
    try:
        raw = llm.create_chat_completion(messages=messages, stream=True, **llama_args)
        chunks = cast(Iterator[Mapping[str, Any]], raw)
        try:
            _pump(llm, ctl, channel, chunks)
        finally:
            # Finish llama-cpp-python's generators here, on the thread that owns the slot,
            # not later on whichever thread the garbage collector happens to run.
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
        error = translate(exc)
        error.__cause__ = exc
    finally:
        llm.control = None
        channel.finish(error)


def _pump(
    llm: SlotLlama, ctl: Control, channel: Channel, chunks: Iterator[Mapping[str, Any]]
) -> None:
    role: str | None = None
    tool_ids: set[int] = set()
    put = channel.put
    for raw in chunks:
        if ctl.stop:
            return
        choice = raw["choices"][0]
        delta = choice.get("delta") or {}
        finish = choice.get("finish_reason")
        if delta.get("role"):
            role = delta["role"]
        content = delta.get("content")
        calls = _tool_deltas(delta.get("tool_calls"), tool_ids)
        if finish is not None:
            usage = Usage(
                prompt_tokens=ctl.prompt_tokens, completion_tokens=llm.completion_tokens(ctl)
            )
            put(
                Chunk(
                    content=content or None,
                    tool_calls=calls,
                    finish_reason=finish,
                    usage=usage,
                    role=role,
                )
            )
            return
        if content or calls:
            # The role arrives alone in llama-cpp-python's first chunk; it rides on the first
            # chunk with content instead, saving the consumer one wakeup.
            put(Chunk(content=content or None, tool_calls=calls, role=role))
            role = None


def _tool_deltas(raw: Any, seen: set[int]) -> list[ToolCallDelta] | None:
    """llama-cpp-python repeats a call's id and name in every delta; OpenAI clients concatenate
    what they receive, so only the first delta of each call carries them."""
    if not raw:
        return None
    out: list[ToolCallDelta] = []
    for call in raw:
        index = int(call.get("index", 0))
        function = call.get("function") or {}
        delta: ToolCallDelta = {"index": index}
        if index not in seen:
            seen.add(index)
            delta["id"] = str(call.get("id") or f"call_{index}")
            delta["type"] = "function"
            delta["function"] = {
                "name": str(function.get("name", "")),
                "arguments": str(function.get("arguments") or ""),
            }
        else:
            delta["function"] = {"arguments": str(function.get("arguments") or "")}
        out.append(delta)
    return out


def load_slots(path: str, count: int, options: Mapping[str, Any]) -> list[SlotLlama]:
    """``count`` instances over the same file; llama.cpp maps the weights, so the page cache
    holds them once and each slot adds only its KV cache and compute buffers."""
    slots: list[SlotLlama] = []
    try:
        for _ in range(count):
            with FD_REDIRECT_LOCK:
                slots.append(SlotLlama(path, verbose=False, **options))
    except BaseException:
        for slot in slots:
            slot.close()
        raise
    return slots
