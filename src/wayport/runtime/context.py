"""The context engine: builds each turn's window from a byte-bounded cache of hot sessions,
counts tokens per model, and compacts old turns into a rolling summary.

The runner asks for a window before each model call, reports what it stored, and lets the
engine compact after the turn::

    engine = ContextEngine(store=stores.sessions, counter_for=Counters(),
                           summariser_for=summarisers(router.complete))
    window = await engine.window(tenant, sid, agent, [user_msg], context_window=8192)
    ...  # call the model with ``window``, store the turn
    engine.appended(tenant, sid, stored_messages)
    await engine.maybe_compact(tenant, sid, agent, context_window=8192)

A cached session holds only the window-relevant tail of its history (at least a budget's
worth of tokens since the summary), so a turn on a 10,000-message session reads the store
once, not on every turn. The summary's reach is kept in the session metadata under
``wayport.core.context.SUMMARY_SEQ_KEY``. The cache trusts ``appended`` to hear of every new
message: with several replicas, a session must be served by one of them at a time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from wayport.core.agent import AgentSpec
from wayport.core.context import (
    SUMMARY_SEQ_KEY,
    assemble,
    calibrated_ratio,
    clip,
    compaction_cut,
    estimate_tokens,
    history_budget,
    message_text,
    should_compact,
    system_prompt,
)
from wayport.core.errors import BackendError, NotFound
from wayport.core.session import Session, StoredMessage
from wayport.core.types import ChatRequest, Completion, Message
from wayport.ports import Clock, SessionStore

_PAGE = 256  #: messages per history read while filling a cache entry
_ENTRY_BYTES = 1024  #: an entry's own objects (dataclass, lists, key), measured roughly
_MESSAGE_BYTES = 320  #: a cached message's dict, list slots and ints, without its text
_CALL_BYTES = 400  #: one tool call's nested dicts
_WARM_OBSERVATIONS = 32  #: calls a model's estimate learns from before it samples
_SAMPLE_EVERY = 16  #: afterwards, one call in this many recalibrates


class TokenCounter(Protocol):
    """Counts prompt tokens for one model."""

    def count(self, messages: Sequence[Message]) -> int: ...

    def observe(self, estimated: int, reported: int) -> None:
        """Calibrate from a call's usage: ``estimated`` was ``count`` of its prompt,
        ``reported`` the backend's ``prompt_tokens``."""


class Summariser(Protocol):
    """Folds ``messages`` into ``previous_summary`` and returns the new summary."""

    async def summarise(self, previous_summary: str | None, messages: Sequence[Message]) -> str: ...


class EstimatingCounter:
    """A calibrated estimate for models whose tokenizer Wayport does not hold: characters
    over a chars-per-token ratio that moves toward what the backend reports::

        counter = EstimatingCounter(chars_per_token=4.0)
        counter.observe(estimated=100, reported=130)  # the ratio drops: more tokens per char
    """

    def __init__(
        self, *, chars_per_token: float = 4.0, per_message: int = 4, rate: float = 0.3
    ) -> None:
        self.chars_per_token = chars_per_token
        self._per_message = per_message
        self._rate = rate

    def count(self, messages: Sequence[Message]) -> int:
        # ``estimate_tokens(len(message_text(m)), …)`` summed, with the common case (text
        # content, no tool calls) inlined: calibration counts whole prompts
        ratio, ceil = self.chars_per_token, math.ceil
        total = self._per_message * len(messages)
        for m in messages:
            content = m.get("content")
            if type(content) is str and "tool_calls" not in m:
                total += ceil(len(content) / ratio)
            else:
                total += estimate_tokens(len(message_text(m)), ratio, 0)
        return total

    def observe(self, estimated: int, reported: int) -> None:
        self.chars_per_token = calibrated_ratio(
            self.chars_per_token, estimated=estimated, reported=reported, rate=self._rate
        )


class TokenizerCounter:
    """Exact counts from the model's own tokenizer (``LlamaCppBackend.count_tokens``), plus
    a fixed allowance per message for the chat template's framing."""

    def __init__(self, count_text: Callable[[str], int], *, per_message: int = 4) -> None:
        self._count_text = count_text
        self._per_message = per_message

    def count(self, messages: Sequence[Message]) -> int:
        return sum(self._per_message + self._count_text(message_text(m)) for m in messages)

    def observe(self, estimated: int, reported: int) -> None:
        """Nothing to learn: the tokenizer is the model's own."""


class Counters:
    """``counter_for`` for the engine: one counter per model, made on first use and kept, so
    calibration carries from call to call. Models with a tokenizer count exactly::

        counters = Counters(tokenizers={"smollm2": backend.count_tokens})
        counters("smollm2")  # a TokenizerCounter; any other model gets an EstimatingCounter
    """

    def __init__(
        self,
        *,
        tokenizers: Mapping[str, Callable[[str], int]] | None = None,
        chars_per_token: float = 4.0,
    ) -> None:
        self._tokenizers = dict(tokenizers or {})
        self._chars_per_token = chars_per_token
        self._made: dict[str, TokenCounter] = {}

    def __call__(self, model: str) -> TokenCounter:
        counter = self._made.get(model)
        if counter is None:
            tokenize = self._tokenizers.get(model)
            counter = (
                TokenizerCounter(tokenize)
                if tokenize is not None
                else EstimatingCounter(chars_per_token=self._chars_per_token)
            )
            self._made[model] = counter
        return counter


SUMMARY_INSTRUCTIONS = (
    "You maintain the running summary of a conversation between a user and an assistant. "
    "Merge the summary so far with the new messages into one concise summary: keep facts, "
    "names, decisions, open questions and tool results that may matter later. "
    "Answer with the summary only."
)


class ModelSummariser:
    """A ``Summariser`` backed by a chat model (the runtime passes ``Router.complete``)."""

    def __init__(
        self,
        complete: Callable[[ChatRequest], Awaitable[Completion]],
        model: str,
        *,
        max_tokens: int = 512,
        instructions: str = SUMMARY_INSTRUCTIONS,
    ) -> None:
        self._complete = complete
        self.model = model
        self._max_tokens = max_tokens
        self._instructions = instructions

    async def summarise(self, previous_summary: str | None, messages: Sequence[Message]) -> str:
        lines = [_transcript_line(m) for m in messages]
        so_far = f"Summary so far:\n{previous_summary}\n\n" if previous_summary else ""
        request = ChatRequest(
            model=self.model,
            messages=[
                {"role": "system", "content": self._instructions},
                {"role": "user", "content": so_far + "New messages:\n" + "\n".join(lines)},
            ],
            params={"max_tokens": self._max_tokens, "temperature": 0},
        )
        text = ((await self._complete(request)).content or "").strip()
        if not text:
            raise BackendError(f"summary model {self.model!r} answered with no text")
        return text


def summarisers(
    complete: Callable[[ChatRequest], Awaitable[Completion]], *, max_tokens: int = 512
) -> Callable[[AgentSpec], Summariser]:
    """``summariser_for`` for the engine: the agent's ``summary_model``, else its own model."""

    def summariser_for(agent: AgentSpec) -> Summariser:
        model = agent.context.summary_model or agent.model
        return ModelSummariser(complete, model, max_tokens=max_tokens)

    return summariser_for


def _transcript_line(message: Message) -> str:
    role = message["role"]
    calls = message.get("tool_calls") or ()
    said = message_text({"role": role, "content": message.get("content")})
    made = "; ".join(f"called {c['function']['name']}({c['function']['arguments']})" for c in calls)
    return f"{role}: " + " ".join(part for part in (said, made) if part)


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheStats:
    sessions: int
    bytes: int
    capacity: int
    hits: int
    misses: int
    evictions: int


class _WallClock:
    """Stores stamp rows with wall time, so idle decisions need it too."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True, eq=False, kw_only=True)
class _Entry:
    """One hot session: its history since the summary from ``first_seq`` on, contiguous."""

    model: str
    max_chars: int  #: the agent's ``tool_result_max_chars`` the cached messages are cut to
    summary: str | None
    pinned: tuple[str, ...]
    summary_seq: int
    first_seq: int
    messages: list[Message] = field(default_factory=list)
    costs: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    tokens: int = 0
    message_bytes: int = 0
    reach: int = 0  #: history tokens kept cached: the largest budget asked for
    system_key: tuple[str, str | None, tuple[str, ...]] | None = None
    system_text: str = ""
    system_tokens: int = 0
    bytes: int = 0
    dropped: bool = False  #: forgotten or evicted: never put back

    @property
    def last_seq(self) -> int:
        return self.first_seq + len(self.messages) - 1

    @property
    def complete(self) -> bool:
        return self.first_seq <= self.summary_seq + 1


class ContextEngine:
    """Context windows for agent turns. ``clock`` is the wall clock the store stamps rows
    with (``archive_idle`` compares against it); ``cache_bytes`` bounds the hot-session cache
    by the approximate size of what it holds, evicting the least recently used sessions."""

    def __init__(
        self,
        *,
        store: SessionStore,
        counter_for: Callable[[str], TokenCounter],
        summariser_for: Callable[[AgentSpec], Summariser],
        cache_bytes: int = 64 * 1024 * 1024,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._counter_for = counter_for
        self._summariser_for = summariser_for
        self._capacity = cache_bytes
        self._clock: Clock = clock or _WallClock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._bytes = 0
        self._observations: dict[str, int] = {}  #: calibration calls seen, per model
        self._hits = self._misses = self._evictions = 0

    async def window(
        self,
        tenant: str,
        session_id: str,
        agent: AgentSpec,
        pending: Sequence[Message],
        *,
        context_window: int,
    ) -> list[Message]:
        """The messages for the model: the system message (instructions, pinned, summary),
        the newest whole history units that fit, then ``pending`` (not stored yet). The
        history messages are the cache's own: read them, do not change them. Raises
        ``NotFound`` for an unknown session."""
        budget = history_budget(agent.context, context_window=context_window, params=agent.params)
        entry = await self._entry(tenant, session_id, agent, reach=budget)
        counter = self._counter_for(agent.model)
        self._refresh_system(entry, agent, counter)
        max_chars = agent.context.tool_result_max_chars
        shown = [clip(m, max_chars) for m in pending]
        messages, _ = assemble(
            system=entry.system_text,
            system_tokens=entry.system_tokens,
            history=entry.messages,
            costs=entry.costs,
            pending=shown,
            pending_tokens=counter.count(shown) if shown else 0,
            budget=budget,
            history_tokens=entry.tokens,  # kept as sum(entry.costs): no walk over the window
        )
        self._settle((tenant, session_id), entry)
        return messages

    def appended(self, tenant: str, session_id: str, messages: Sequence[StoredMessage]) -> None:
        """Keep a cached session in step with what the runner stored. A gap in ``seq`` (a
        message stored elsewhere) drops the session from the cache; the next window reloads."""
        key = (tenant, session_id)
        entry = self._entries.get(key)
        if entry is None:
            return
        counter = self._counter_for(entry.model)
        for stored in sorted(messages, key=lambda m: m.seq):
            if stored.seq <= entry.last_seq:
                continue
            if stored.seq != entry.last_seq + 1:
                self.forget(tenant, session_id)
                return
            self._push(entry, [stored], counter, front=False)
        self._settle(key, entry)

    def observed(self, agent: AgentSpec, prompt: Sequence[Message], prompt_tokens: int) -> None:
        """Calibrate the agent's model's counter from one call: ``prompt`` is the window the
        model was sent, ``prompt_tokens`` what the backend reported for it. An estimate for a
        remote model converges on its tokenizer; an exact counter has nothing to learn (and
        is not asked to count again)."""
        counter = self._counter_for(agent.model)
        if prompt_tokens <= 0 or isinstance(counter, TokenizerCounter):
            return
        # counting the whole prompt again costs as much as assembling it: learn from every
        # call while the estimate is young, then from one call in _SAMPLE_EVERY
        seen = self._observations.get(agent.model, 0) + 1
        self._observations[agent.model] = seen
        if seen > _WARM_OBSERVATIONS and seen % _SAMPLE_EVERY:
            return
        counter.observe(counter.count(prompt), prompt_tokens)

    def forget(self, tenant: str, session_id: str) -> None:
        """Drop a session from the cache (deleted, edited elsewhere, or archived)."""
        entry = self._entries.pop((tenant, session_id), None)
        if entry is not None:
            entry.dropped = True
            self._bytes -= entry.bytes

    async def maybe_compact(
        self, tenant: str, session_id: str, agent: AgentSpec, *, context_window: int
    ) -> bool:
        """Past ``compact_at`` of the budget, fold the turns before the ``keep_recent_turns``
        newest into the rolling summary and store it; True when it did."""
        policy = agent.context
        budget = history_budget(policy, context_window=context_window, params=agent.params)
        key = (tenant, session_id)
        entry = await self._entry(tenant, session_id, agent, reach=budget)
        try:
            return await self._compact(tenant, session_id, entry, agent, budget)
        finally:
            self._settle(key, entry)

    async def _compact(
        self, tenant: str, session_id: str, entry: _Entry, agent: AgentSpec, budget: int
    ) -> bool:
        policy = agent.context
        counter = self._counter_for(agent.model)
        self._refresh_system(entry, agent, counter)
        if not should_compact(policy, used=entry.system_tokens + entry.tokens, budget=budget):
            return False
        older, older_costs = await self._read(tenant, session_id, entry, counter)
        history = older + entry.messages
        costs = older_costs + entry.costs
        cut = compaction_cut(history, policy.keep_recent_turns)
        if cut == 0:
            return False
        summary = entry.summary
        summariser = self._summariser_for(agent)
        for chunk in _chunks(history[:cut], costs[:cut], max(budget // 2, 1)):
            summary = await summariser.summarise(summary, chunk)
        covered = entry.summary_seq + cut
        session = await self._store.get(tenant, session_id)
        if session is None:
            raise NotFound(f"session {session_id} not found", param="session_id")
        metadata = {**session.metadata, SUMMARY_SEQ_KEY: covered}
        await self._store.update(tenant, session_id, summary=summary, metadata=metadata)
        self._drop_front(entry, covered - entry.first_seq + 1)
        entry.first_seq = max(entry.first_seq, covered + 1)
        entry.summary, entry.summary_seq = summary, covered
        return True

    async def archive_idle(
        self, tenant: str, *, idle_for: float, keep_last: int = 0, limit: int = 100
    ) -> list[str]:
        """Compress the history of up to ``limit`` sessions untouched for ``idle_for``
        seconds (all but their ``keep_last`` newest messages) and drop them from the cache;
        return their ids. Call it periodically; each call takes the next batch."""
        before = self._clock.now() - idle_for
        idle = await self._store.idle(tenant, updated_before=before, limit=limit)
        for session in idle:
            await self._store.archive(tenant, session.id, keep_last=keep_last)
            self.forget(tenant, session.id)
        return [s.id for s in idle]

    def stats(self) -> CacheStats:
        return CacheStats(
            sessions=len(self._entries),
            bytes=self._bytes,
            capacity=self._capacity,
            hits=self._hits,
            misses=self._misses,
            evictions=self._evictions,
        )

    # -- the cache ---------------------------------------------------------------------------

    async def _entry(self, tenant: str, session_id: str, agent: AgentSpec, *, reach: int) -> _Entry:
        key = (tenant, session_id)
        entry = self._entries.get(key)
        max_chars = agent.context.tool_result_max_chars
        if entry is not None and (entry.model, entry.max_chars) == (agent.model, max_chars):
            self._hits += 1
            self._entries.move_to_end(key)
        else:
            # another model counts differently: reload rather than mix two tokenizers' counts
            self._misses += 1
            self.forget(tenant, session_id)
            session = await self._store.get(tenant, session_id)
            if session is None:
                raise NotFound(f"session {session_id} not found", param="session_id")
            entry = _new_entry(session, agent)
        if entry.reach < reach:
            entry.reach = reach
            await self._fill(tenant, session_id, entry, agent)
        return entry

    async def _fill(self, tenant: str, session_id: str, entry: _Entry, agent: AgentSpec) -> None:
        """Read older history until the entry holds ``reach`` tokens on a unit boundary, or
        everything since the summary."""
        counter = self._counter_for(agent.model)
        while not entry.complete and (
            entry.tokens < entry.reach or (entry.messages and entry.messages[0]["role"] == "tool")
        ):
            after = max(entry.summary_seq, entry.first_seq - 1 - _PAGE)
            page = await self._store.history(
                tenant, session_id, after=after, limit=entry.first_seq - 1 - after
            )
            if not page or page[-1].seq != entry.first_seq - 1:
                break  # the history shrank under us (deleted); serve what is there
            self._push(entry, page, counter, front=True)

    async def _read(
        self, tenant: str, session_id: str, entry: _Entry, counter: TokenCounter
    ) -> tuple[list[Message], list[int]]:
        """The history since the summary that the entry does not hold (compaction only)."""
        messages: list[Message] = []
        costs: list[int] = []
        after, end = entry.summary_seq, entry.first_seq - 1
        while after < end:
            page = await self._store.history(
                tenant, session_id, after=after, limit=min(_PAGE * 4, end - after)
            )
            if not page:
                break
            for stored in page:
                message, cost, _ = _cached(stored, counter, entry.max_chars)
                messages.append(message)
                costs.append(cost)
            after = page[-1].seq
        return messages, costs

    def _push(
        self, entry: _Entry, stored: Sequence[StoredMessage], counter: TokenCounter, *, front: bool
    ) -> None:
        rows = [_cached(m, counter, entry.max_chars) for m in stored]
        messages = [r[0] for r in rows]
        costs = [r[1] for r in rows]
        sizes = [r[2] for r in rows]
        if front:
            entry.messages[:0], entry.costs[:0], entry.sizes[:0] = messages, costs, sizes
            entry.first_seq = stored[0].seq
        else:
            entry.messages += messages
            entry.costs += costs
            entry.sizes += sizes
        entry.tokens += sum(costs)
        entry.message_bytes += sum(sizes)

    def _drop_front(self, entry: _Entry, count: int) -> None:
        count = min(count, len(entry.messages))
        if count <= 0:
            return
        entry.tokens -= sum(entry.costs[:count])
        entry.message_bytes -= sum(entry.sizes[:count])
        del entry.messages[:count], entry.costs[:count], entry.sizes[:count]
        entry.first_seq += count

    def _trim(self, entry: _Entry) -> None:
        """Drop the oldest whole units while what is left still covers ``reach``."""
        messages, costs = entry.messages, entry.costs
        drop = 0
        tokens = entry.tokens
        while drop < len(messages):
            end = drop + 1
            while end < len(messages) and messages[end]["role"] == "tool":
                end += 1
            unit = sum(costs[drop:end])
            if tokens - unit < entry.reach or end == len(messages):
                break
            tokens -= unit
            drop = end
        self._drop_front(entry, drop)

    def _refresh_system(self, entry: _Entry, agent: AgentSpec, counter: TokenCounter) -> None:
        key = (agent.instructions, entry.summary, entry.pinned)
        if entry.system_key != key:
            entry.system_key = key
            entry.system_text = system_prompt(agent.instructions, entry.pinned, entry.summary)
            system: Message = {"role": "system", "content": entry.system_text}
            entry.system_tokens = counter.count([system]) if entry.system_text else 0

    def _settle(self, key: tuple[str, str], entry: _Entry) -> None:
        """Re-account an entry after a change, make it the most recent, evict to the bound.
        The entry just used goes too when it alone is over the bound."""
        if entry.dropped or self._entries.get(key) not in (None, entry):
            return  # forgotten, evicted or replaced while we awaited
        self._trim(entry)
        size = (
            _ENTRY_BYTES
            + entry.message_bytes
            + len(entry.summary or "")
            + sum(len(p) for p in entry.pinned)
            + len(entry.system_text)
        )
        if key in self._entries:
            self._bytes -= entry.bytes
        entry.bytes = size
        self._entries[key] = entry
        self._entries.move_to_end(key)
        self._bytes += size
        while self._bytes > self._capacity and self._entries:
            _, evicted = self._entries.popitem(last=False)
            evicted.dropped = True
            self._bytes -= evicted.bytes
            self._evictions += 1


def _new_entry(session: Session, agent: AgentSpec) -> _Entry:
    raw = session.metadata.get(SUMMARY_SEQ_KEY)
    covered = raw if isinstance(raw, int) and not isinstance(raw, bool) else 0
    covered = min(max(covered, 0), session.message_count)
    if session.summary is None:
        covered = 0  # a cleared summary covers nothing
    return _Entry(
        model=agent.model,
        max_chars=agent.context.tool_result_max_chars,
        summary=session.summary,
        pinned=session.pinned,
        summary_seq=covered,
        first_seq=session.message_count + 1,
    )


def _cached(
    stored: StoredMessage, counter: TokenCounter, max_chars: int
) -> tuple[Message, int, int]:
    """The message as the window shows it, its tokens and its approximate size in bytes."""
    full = stored.to_message()
    message = clip(full, max_chars)
    if message is full and stored.tokens is not None:
        cost = stored.tokens
    else:
        cost = counter.count([message])
    text = message_text(message)
    size = _MESSAGE_BYTES + len(text) + _CALL_BYTES * len(stored.tool_calls)
    return message, cost, size


def _chunks(
    messages: Sequence[Message], costs: Sequence[int], limit: int
) -> list[Sequence[Message]]:
    """Consecutive slices of at most ``limit`` tokens each (a bigger message goes alone)."""
    out: list[Sequence[Message]] = []
    start = used = 0
    for i, cost in enumerate(costs):
        if i > start and used + cost > limit:
            out.append(messages[start:i])
            start, used = i, 0
        used += cost
    if start < len(messages):
        out.append(messages[start:])
    return out
