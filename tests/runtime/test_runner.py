from __future__ import annotations

import pytest

from wayport.core.agent import Limits, TextDelta, ToolCalled, ToolReturned
from wayport.core.errors import BackendUnavailable
from wayport.core.session import RunStatus, StepKind
from wayport.core.types import Usage
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Fail, Reply
from wayport.testing.stores import MemoryStores

from .conftest import Events, T, agent, call, claimed_run, make_runner, router_for, tools

pytestmark = pytest.mark.anyio


async def test_tool_call_then_answer_is_checkpointed_and_streamed() -> None:
    backend = ScriptedBackend(
        "m", [Reply("", tool_calls=[call("add", {"a": 2, "b": 3})]), Reply("The sum is 5")]
    )
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "2+3?")
    events = Events()
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(), emit=events, worker="w"
    )
    assert finished.run.status is RunStatus.COMPLETED
    assert finished.run.output == {"content": "The sum is 5"}
    assert registry.calls == [("add", f"{run.id}:2:c1")]
    history = await stores.sessions.history(T, run.session_id)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert history[2].content == "5" and history[2].tool_call_id == "c1"
    steps = await stores.runs.steps(T, run.id)
    assert [s.kind for s in steps] == [StepKind.MODEL, StepKind.TOOL, StepKind.MODEL]
    assert events.kinds() == [
        "ToolCalled",
        "ToolReturned",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "TextDelta",
        "RunFinished",
    ]
    assert "".join(e.text for e in events.seen if isinstance(e, TextDelta)) == "The sum is 5"
    # the second model call saw the instructions, the question, the call and its result
    second = backend.calls[1]
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.tools is not None and second.tools[0]["function"]["name"] == "add"
    assert finished.usage.completion_tokens > 0


async def test_broken_tool_json_gets_an_error_result_and_the_run_continues() -> None:
    backend = ScriptedBackend("m", [Reply("", tool_calls=[call("add", '{"a": 2,')]), Reply("oops")])
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "2+?")
    events = Events()
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(), emit=events
    )
    assert finished.run.status is RunStatus.COMPLETED
    assert registry.calls == []  # never executed
    [returned] = [e for e in events.seen if isinstance(e, ToolReturned)]
    assert returned.result.is_error and "JSON" in returned.result.content
    assert backend.calls[1].messages[-1]["role"] == "tool"


async def test_invalid_arguments_are_never_executed() -> None:
    backend = ScriptedBackend("m", [Reply("", tool_calls=[call("add", {"a": 1})]), Reply("k")])
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "1+?")
    events = Events()
    await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(), emit=events
    )
    assert registry.calls == []
    [returned] = [e for e in events.seen if isinstance(e, ToolReturned)]
    assert returned.result.is_error and "missing" in returned.result.content


async def test_max_steps_fails_the_run_and_leaves_no_call_without_a_result() -> None:
    looping = Reply("", tool_calls=[call("add", {"a": 1, "b": 1})])
    backend = ScriptedBackend("m", default=looping)
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "loop")
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(limits=Limits(max_steps=3)), emit=Events()
    )
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error == "max_steps (3) reached"
    assert len(backend.calls) == 3 and len(registry.calls) == 3
    history = await stores.sessions.history(T, run.session_id)
    assert history[-1].role == "tool"


async def test_max_tool_calls_answers_the_unexecuted_calls_with_errors() -> None:
    two = Reply(
        "", tool_calls=[call("add", {"a": 1, "b": 1}, "x"), call("add", {"a": 2, "b": 2}, "y")]
    )
    backend = ScriptedBackend("m", [two])
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "two")
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(limits=Limits(max_tool_calls=1)), emit=Events()
    )
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error == "max_tool_calls (1) reached"
    assert [k for _, k in registry.calls] == [f"{run.id}:2:x"]
    history = await stores.sessions.history(T, run.session_id)
    assert [(m.role, m.tool_call_id) for m in history[-2:]] == [("tool", "x"), ("tool", "y")]
    assert "not executed" in str(history[-1].content)


async def test_max_tokens_per_run_stops_before_the_next_model_call() -> None:
    heavy = Reply("", tool_calls=[call("add", {"a": 1, "b": 1})], usage=Usage(completion_tokens=50))
    backend = ScriptedBackend("m", [heavy], default=Reply("never"))
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "go")
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(limits=Limits(max_tokens_per_run=40)), emit=Events()
    )
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error == "max_tokens_per_run (40) reached"
    assert len(backend.calls) == 1


async def test_run_timeout_fails_the_run() -> None:
    clock = ManualClock()  # never advanced: the model never answers
    backend = ScriptedBackend("m", delay=1.0, clock=clock)
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "slow")
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(limits=Limits(run_timeout=0.01)), emit=Events()
    )
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error == "run_timeout (0.01s) reached"


async def test_model_failure_fails_the_run_with_the_reason() -> None:
    backend = ScriptedBackend("m", [Fail(BackendUnavailable("upstream down"))])
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "hi")
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run, agent(), emit=Events()
    )
    assert finished.run.status is RunStatus.FAILED
    assert finished.run.error is not None and "upstream down" in finished.run.error


async def test_stop_cancels_at_the_next_safe_point() -> None:
    backend = ScriptedBackend("m", [Reply("", tool_calls=[call("add", {"a": 1, "b": 2})])])
    router, stores, registry = router_for(backend), MemoryStores(), tools()
    await router.start()
    run = await claimed_run(stores.sessions, stores.runs, "hi")
    events = Events()
    finished = await make_runner(router, stores.sessions, stores.runs, registry).execute(
        run,
        agent(),
        emit=events,
        stop=lambda: any(isinstance(e, TextDelta) for e in events.seen) or len(backend.calls) > 0,
    )
    assert finished.run.status is RunStatus.CANCELLED
    assert registry.calls == []
    assert not any(isinstance(e, ToolCalled) for e in events.seen)
    history = await stores.sessions.history(T, run.session_id)
    assert history[-1].role == "tool" and "not executed" in str(history[-1].content)
