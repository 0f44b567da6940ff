"""The context engine against real stores (in memory and SQLite): windows, truncation,
compaction with a scripted summariser, the byte-bounded cache, long sessions, archiving."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec, ContextPolicy
from wayport.core.context import SUMMARY_SEQ_KEY
from wayport.core.errors import BackendError, NotFound
from wayport.core.session import UNSET, Json, NewMessage, Session, StoredMessage, Unset
from wayport.core.types import Message, ToolCall
from wayport.ports import SessionStore
from wayport.runtime.context import (
    ContextEngine,
    Counters,
    EstimatingCounter,
    TokenizerCounter,
    summarisers,
)
from wayport.store import open_store
from wayport.testing import ManualClock, MemoryStores, Reply, ScriptedBackend

T0 = 1_750_000_000.0
WINDOW = 10_000  # with the default reserve of 256 tokens: a budget of 9,744


def words(text: str) -> int:
    return len(text.split())


def agent(**policy: int | float | str | None) -> AgentSpec:
    return AgentSpec(
        name="helper",
        model="m",
        instructions="Be brief.",
        context=ContextPolicy(**policy),  # type: ignore[arg-type]
    )


def user(text: str) -> Message:
    return {"role": "user", "content": text}


def assistant(text: str) -> Message:
    return {"role": "assistant", "content": text}


def call(id_: str) -> ToolCall:
    return {"id": id_, "type": "function", "function": {"name": "lookup", "arguments": "{}"}}


class CountingSessions:
    """A real store behind a counter of history reads (what the cache should spare)."""

    def __init__(self, inner: SessionStore) -> None:
        self.inner = inner
        self.history_calls = 0
        self.messages_read = 0

    async def create(
        self,
        tenant: str,
        *,
        agent: str,
        agent_version: str = "",
        metadata: Mapping[str, Json] | None = None,
        session_id: str | None = None,
    ) -> Session:
        return await self.inner.create(
            tenant, agent=agent, agent_version=agent_version, metadata=metadata,
            session_id=session_id,
        )  # fmt: skip

    async def get(self, tenant: str, session_id: str) -> Session | None:
        return await self.inner.get(tenant, session_id)

    async def update(
        self,
        tenant: str,
        session_id: str,
        *,
        agent_version: str | Unset = UNSET,
        summary: str | Unset | None = UNSET,
        pinned: Sequence[str] | Unset = UNSET,
        metadata: Mapping[str, Json] | Unset = UNSET,
    ) -> Session:
        return await self.inner.update(
            tenant, session_id, agent_version=agent_version, summary=summary, pinned=pinned,
            metadata=metadata,
        )  # fmt: skip

    async def delete(self, tenant: str, session_id: str) -> None:
        await self.inner.delete(tenant, session_id)

    async def append(
        self, tenant: str, session_id: str, messages: Sequence[NewMessage]
    ) -> list[StoredMessage]:
        return await self.inner.append(tenant, session_id, messages)

    async def history(
        self, tenant: str, session_id: str, *, after: int = 0, limit: int = 100
    ) -> list[StoredMessage]:
        page = await self.inner.history(tenant, session_id, after=after, limit=limit)
        self.history_calls += 1
        self.messages_read += len(page)
        return page

    async def archive(self, tenant: str, session_id: str, *, keep_last: int = 0) -> int:
        return await self.inner.archive(tenant, session_id, keep_last=keep_last)

    async def idle(self, tenant: str, *, updated_before: float, limit: int = 100) -> list[Session]:
        return await self.inner.idle(tenant, updated_before=updated_before, limit=limit)


class ScriptedSummariser:
    """Summarises by counting: ``summary(n)`` after folding n messages in."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, list[Message]]] = []

    async def summarise(self, previous_summary: str | None, messages: Sequence[Message]) -> str:
        self.calls.append((previous_summary, list(messages)))
        done = int(previous_summary[8:-1]) if previous_summary else 0
        return f"summary({done + len(messages)})"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=T0)


@pytest.fixture(params=["memory", "sqlite"])
async def store(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[CountingSessions]:
    if request.param == "memory":
        yield CountingSessions(MemoryStores(now=clock.now).sessions)
        return
    sql = await open_store(state_dir=tmp_path, now=clock.now)
    try:
        yield CountingSessions(sql.sessions)
    finally:
        await sql.close()


def engine_on(
    store: SessionStore,
    summariser: ScriptedSummariser | None = None,
    *,
    cache_bytes: int = 64 * 1024 * 1024,
    clock: ManualClock | None = None,
) -> ContextEngine:
    scripted = summariser or ScriptedSummariser()
    return ContextEngine(
        store=store,
        counter_for=Counters(tokenizers={"m": words}),
        summariser_for=lambda _agent: scripted,
        cache_bytes=cache_bytes,
        clock=clock,
    )


async def conversation(store: SessionStore, turns: int, words_each: int = 10) -> str:
    s = await store.create("default", agent="helper")
    body = " ".join(["w"] * (words_each - 1))
    batch = []
    for i in range(turns):
        batch += [
            NewMessage(message=user(f"q{i} {body}")),
            NewMessage(message=assistant(f"a{i} {body}")),
        ]
    for start in range(0, len(batch), 1000):
        await store.append("default", s.id, batch[start : start + 1000])
    return s.id


def contents(window: Sequence[Message]) -> list[str]:
    return [str(m.get("content"))[:3].strip() for m in window]


# --------------------------------------------------------------------------- windows


@pytest.mark.anyio
async def test_window_is_instructions_then_history_then_pending(store: CountingSessions) -> None:
    sid = await conversation(store, 2)
    window = await engine_on(store).window(
        "default", sid, agent(), [user("now")], context_window=WINDOW
    )
    roles = [m["role"] for m in window]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    assert window[0].get("content") == "Be brief."
    assert contents(window)[1:] == ["q0", "a0", "q1", "a1", "now"]


@pytest.mark.anyio
async def test_window_keeps_only_the_newest_whole_units_that_fit(store: CountingSessions) -> None:
    sid = await conversation(store, 1)
    call_msg: Message = {"role": "assistant", "content": None, "tool_calls": [call("c1")]}
    result: Message = {"role": "tool", "tool_call_id": "c1", "content": "x " * 30}
    await store.append(
        "default",
        sid,
        [NewMessage(message=m) for m in [user("q1"), call_msg, result, assistant("done")]],
    )
    # instructions 2+4, pending 1+4, "done" 1+4, the call and its 30-word result 5+34: 55 in all
    tight = agent(budget_tokens=54)
    window = await engine_on(store).window(
        "default", sid, tight, [user("now")], context_window=WINDOW
    )
    assert [m["role"] for m in window] == ["system", "assistant", "user"]
    roomy = agent(budget_tokens=60)
    window = await engine_on(store).window(
        "default", sid, roomy, [user("now")], context_window=WINDOW
    )
    assert [m["role"] for m in window] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


@pytest.mark.anyio
async def test_pending_tool_results_keep_the_stored_call_with_them(store: CountingSessions) -> None:
    sid = await conversation(store, 3)
    call_msg: Message = {"role": "assistant", "content": None, "tool_calls": [call("c1")]}
    await store.append("default", sid, [NewMessage(message=call_msg)])
    pending: list[Message] = [{"role": "tool", "tool_call_id": "c1", "content": "ok"}]
    window = await engine_on(store).window(
        "default", sid, agent(budget_tokens=1), pending, context_window=WINDOW
    )
    assert [m["role"] for m in window] == ["system", "assistant", "tool"]


@pytest.mark.anyio
async def test_large_tool_results_are_cut_in_context_but_whole_in_store(
    store: CountingSessions,
) -> None:
    sid = await conversation(store, 1)
    big = "HEAD " + "body " * 5000 + "TAIL"
    call_msg: Message = {"role": "assistant", "content": None, "tool_calls": [call("c1")]}
    result: Message = {"role": "tool", "tool_call_id": "c1", "content": big}
    await store.append("default", sid, [NewMessage(message=call_msg), NewMessage(message=result)])
    window = await engine_on(store).window(
        "default", sid, agent(tool_result_max_chars=200), [], context_window=WINDOW
    )
    shown = window[-1].get("content")
    assert isinstance(shown, str)
    assert shown.startswith("HEAD ") and shown.endswith("TAIL")
    assert f"{len(big) - 200} characters cut" in shown
    stored = await store.history("default", sid, after=3)
    assert stored[0].content == big
    pending = await engine_on(store).window(
        "default", sid, agent(tool_result_max_chars=200), [result], context_window=WINDOW
    )
    assert pending[-1].get("content") == shown


@pytest.mark.anyio
async def test_unknown_session_is_not_found(store: CountingSessions) -> None:
    with pytest.raises(NotFound):
        await engine_on(store).window("default", "sess_nope", agent(), [], context_window=WINDOW)


# --------------------------------------------------------------------------- compaction


@pytest.mark.anyio
async def test_compaction_folds_old_turns_into_a_stored_summary(store: CountingSessions) -> None:
    sid = await conversation(store, 10)  # 20 messages of 14 tokens each: 280
    summariser = ScriptedSummariser()
    engine = engine_on(store, summariser)
    policy = agent(budget_tokens=300, compact_at=0.5, keep_recent_turns=3)
    assert await engine.maybe_compact("default", sid, policy, context_window=WINDOW)
    session = await store.get("default", sid)
    assert session is not None
    assert session.summary == "summary(14)"
    assert session.metadata[SUMMARY_SEQ_KEY] == 14
    folded = [m for _, batch in summariser.calls for m in batch]
    assert contents(folded) == [f"{r}{i}" for i in range(7) for r in "qa"]
    calls = len(summariser.calls)
    for engine_ in (engine, engine_on(store)):  # the cached one and a cold one agree
        window = await engine_.window("default", sid, policy, [user("now")], context_window=WINDOW)
        assert window[0].get("content") == (
            "Be brief.\n\nSummary of the earlier conversation:\nsummary(14)"
        )
        assert contents(window)[1:] == ["q7", "a7", "q8", "a8", "q9", "a9", "now"]
    # under the threshold now (instructions and summary 11, history 84): nothing to do
    assert not await engine.maybe_compact("default", sid, policy, context_window=WINDOW)
    assert len(summariser.calls) == calls


@pytest.mark.anyio
async def test_compaction_rolls_the_summary_forward_in_budget_sized_chunks(
    store: CountingSessions,
) -> None:
    sid = await conversation(store, 20)
    summariser = ScriptedSummariser()
    engine = engine_on(store, summariser)
    policy = agent(budget_tokens=100, compact_at=0.8, keep_recent_turns=2)
    await store.update("default", sid, metadata={"owner": "ada"})
    assert await engine.maybe_compact("default", sid, policy, context_window=WINDOW)
    # 36 messages of 14 tokens in chunks of at most 50 tokens: three messages each
    assert [len(batch) for _, batch in summariser.calls] == [3] * 12
    assert [prev for prev, _ in summariser.calls][:3] == [None, "summary(3)", "summary(6)"]
    session = await store.get("default", sid)
    assert session is not None
    assert session.summary == "summary(36)"
    assert session.metadata == {"owner": "ada", SUMMARY_SEQ_KEY: 36}


@pytest.mark.anyio
async def test_no_compaction_under_the_threshold_or_without_old_turns(
    store: CountingSessions,
) -> None:
    sid = await conversation(store, 3)
    summariser = ScriptedSummariser()
    engine = engine_on(store, summariser)
    assert not await engine.maybe_compact("default", sid, agent(), context_window=WINDOW)
    few = agent(budget_tokens=10, keep_recent_turns=3)  # over, but every turn is recent
    assert not await engine.maybe_compact("default", sid, few, context_window=WINDOW)
    assert summariser.calls == []
    session = await store.get("default", sid)
    assert session is not None and session.summary is None


@pytest.mark.anyio
async def test_model_summariser_asks_the_summary_model() -> None:
    backend = ScriptedBackend("small", script=[Reply("They met."), Reply("  ")])
    summariser = summarisers(backend.complete)(
        AgentSpec(name="a", model="big", context=ContextPolicy(summary_model="small"))
    )
    calls: list[Message] = [{"role": "assistant", "content": None, "tool_calls": [call("c1")]}]
    got = await summariser.summarise("Earlier: hello.", [user("hi there"), *calls])
    assert got == "They met."
    [request] = backend.calls
    assert request.model == "small"
    prompt = str(request.messages[-1].get("content"))
    assert "Earlier: hello." in prompt
    assert "user: hi there" in prompt
    assert "assistant: called lookup({})" in prompt
    with pytest.raises(BackendError):
        await summariser.summarise(None, [user("hi")])
    default = summarisers(backend.complete)(AgentSpec(name="a", model="big"))
    assert getattr(default, "model", None) == "big"


# --------------------------------------------------------------------------- counting


def test_estimating_counter_moves_toward_the_reported_usage() -> None:
    counter = EstimatingCounter(chars_per_token=4.0, per_message=0)
    prompt = [user("x" * 400)]
    assert counter.count(prompt) == 100
    for _ in range(20):
        counter.observe(counter.count(prompt), 200)
    assert counter.count(prompt) == pytest.approx(200, abs=2)
    counter.observe(0, 50)  # a backend that reports nothing teaches nothing
    assert counter.count(prompt) == pytest.approx(200, abs=2)


def test_counters_keep_one_counter_per_model() -> None:
    counters = Counters(tokenizers={"local": words})
    assert isinstance(counters("local"), TokenizerCounter)
    assert counters("local").count([user("a b c")]) == 3 + 4
    remote = counters("remote")
    assert isinstance(remote, EstimatingCounter)
    remote.observe(10, 20)
    assert counters("remote") is remote
    assert counters("other") is not remote


@pytest.mark.model
def test_tokenizer_counter_uses_the_embedded_model_tokenizer() -> None:
    from wayport.models.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(name="local", preload=False)
    text = "naïve café, how are you today?"
    counter = TokenizerCounter(backend.count_tokens, per_message=0)
    assert counter.count([user(text)]) == backend.count_tokens(text) > 0


# --------------------------------------------------------------------------- the cache


@pytest.mark.anyio
async def test_a_10000_message_session_is_read_once_not_per_turn(
    store: CountingSessions,
) -> None:
    sid = await conversation(store, 5000)
    engine = engine_on(store)
    policy = agent(budget_tokens=2000)
    first = await engine.window("default", sid, policy, [user("now")], context_window=WINDOW)
    calls, read = store.history_calls, store.messages_read
    assert read < 1000  # the tail a 2,000-token budget needs, not 10,000 messages
    assert contents(first)[-3:] == ["q49", "a49", "now"]
    for turn in range(20):
        pending = [user(f"t{turn}")]
        window = await engine.window("default", sid, policy, pending, context_window=WINDOW)
        assert contents(window)[-1] == f"t{turn}"
        stored = await store.append(
            "default", sid, [NewMessage(message=m) for m in [*pending, assistant(f"r{turn}")]]
        )
        engine.appended("default", sid, stored)
    last = await engine.window("default", sid, policy, [], context_window=WINDOW)
    assert contents(last)[-2:] == ["t19", "r19"]
    assert (store.history_calls, store.messages_read) == (calls, read)
    assert engine.stats().sessions == 1
    assert engine.stats().hits == 21 and engine.stats().misses == 1


@pytest.mark.anyio
async def test_the_cache_stays_within_its_byte_bound_evicting_the_least_recent(
    store: CountingSessions,
) -> None:
    sids = [await conversation(store, 5, words_each=100) for _ in range(30)]
    engine = engine_on(store, cache_bytes=40_000)
    for sid in sids:
        await engine.window("default", sid, agent(), [], context_window=WINDOW)
        assert engine.stats().bytes <= 40_000
    stats = engine.stats()
    assert 0 < stats.sessions < 30
    assert stats.evictions == 30 - stats.sessions
    reads = store.history_calls
    await engine.window("default", sids[-1], agent(), [], context_window=WINDOW)  # still hot
    assert store.history_calls == reads
    await engine.window("default", sids[0], agent(), [], context_window=WINDOW)  # evicted
    assert store.history_calls == reads + 1
    before = engine.stats()
    engine.forget("default", sids[0])
    after = engine.stats()
    assert after.sessions == before.sessions - 1
    assert 0 < after.bytes < before.bytes


@pytest.mark.anyio
async def test_a_session_bigger_than_the_cache_is_served_but_not_kept(
    store: CountingSessions,
) -> None:
    sid = await conversation(store, 5, words_each=100)
    engine = engine_on(store, cache_bytes=1000)
    window = await engine.window("default", sid, agent(), [], context_window=WINDOW)
    assert len(window) == 11
    assert engine.stats().sessions == 0 and engine.stats().bytes == 0


@pytest.mark.anyio
async def test_a_gap_in_appended_messages_reloads_the_session(store: CountingSessions) -> None:
    sid = await conversation(store, 2)
    engine = engine_on(store)
    await engine.window("default", sid, agent(), [], context_window=WINDOW)
    elsewhere = await store.append("default", sid, [NewMessage(message=user("by another"))])
    mine = await store.append("default", sid, [NewMessage(message=user("mine"))])
    engine.appended("default", sid, mine)  # seq 6 after 4: one was missed
    assert engine.stats().sessions == 0
    window = await engine.window("default", sid, agent(), [], context_window=WINDOW)
    assert contents(window)[-2:] == ["by", "min"]
    engine.appended("default", sid, elsewhere)  # old news: ignored
    assert engine.stats().sessions == 1


@pytest.mark.anyio
async def test_another_model_recounts_the_session(store: CountingSessions) -> None:
    sid = await conversation(store, 2)
    engine = engine_on(store)
    await engine.window("default", sid, agent(), [], context_window=WINDOW)
    other = AgentSpec(name="helper", model="remote", instructions="Be brief.")
    window = await engine.window("default", sid, other, [], context_window=WINDOW)
    assert len(window) == 5
    assert engine.stats().misses == 2


# --------------------------------------------------------------------------- archiving


@pytest.mark.anyio
async def test_idle_sessions_are_archived_and_still_served(
    store: CountingSessions, clock: ManualClock
) -> None:
    old = await conversation(store, 3)
    clock.advance(3600)
    fresh = await conversation(store, 3)
    engine = engine_on(store, clock=clock)
    await engine.window("default", old, agent(), [], context_window=WINDOW)
    clock.advance(60)
    assert await engine.archive_idle("default", idle_for=600) == [old]
    assert engine.stats().sessions == 0  # cold sessions leave the cache
    session = await store.get("default", old)
    assert session is not None and session.cold
    still = await store.get("default", fresh)
    assert still is not None and not still.cold
    window = await engine.window("default", old, agent(), [user("back")], context_window=WINDOW)
    assert contents(window)[1:] == ["q0", "a0", "q1", "a1", "q2", "a2", "bac"]
    assert await engine.archive_idle("default", idle_for=600) == []
