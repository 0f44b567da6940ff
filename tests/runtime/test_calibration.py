"""The remote-model token estimate learns from the usage backends report: after each model
call the runner hands the prompt it sent and the reported ``prompt_tokens`` back to the context
engine, and the estimate converges on the backend's count."""

from __future__ import annotations

import math

import pytest

from wayport.core.context import message_text
from wayport.core.session import RunStatus
from wayport.core.types import ChatRequest, Usage
from wayport.runtime.context import ContextEngine, Counters, EstimatingCounter, summarisers
from wayport.runtime.runner import Runner
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step
from wayport.testing.stores import MemoryStores

from .conftest import agent, claimed_run, router_for, tools

pytestmark = pytest.mark.anyio

CHARS_PER_TOKEN = 2.0  #: the remote tokenizer: twice as many tokens as the 4.0 default guesses


def remote_count(request: ChatRequest) -> int:
    return sum(math.ceil(len(message_text(m)) / CHARS_PER_TOKEN) for m in request.messages)


def model(request: ChatRequest) -> Step:
    return Reply("noted " * 20, usage=Usage(prompt_tokens=remote_count(request)))


async def test_the_estimate_converges_on_the_reported_prompt_tokens() -> None:
    backend = ScriptedBackend("m", script=model)
    router, stores = router_for(backend), MemoryStores()
    await router.start()
    counters = Counters()

    async def never(request: ChatRequest) -> object:
        raise AssertionError("no compaction expected")

    engine = ContextEngine(
        store=stores.sessions,
        counter_for=counters,
        summariser_for=summarisers(never),  # type: ignore[arg-type]
    )
    runner = Runner(
        model=router, sessions=stores.sessions, runs=stores.runs, tools=tools(), context=engine
    )
    spec = agent(tools=(), instructions="Take notes.")
    counter = counters("m")
    assert isinstance(counter, EstimatingCounter)
    errors: list[float] = []
    session_id: str | None = None
    for turn in range(12):
        run = await claimed_run(
            stores.sessions, stores.runs, f"turn {turn}: " + "lorem ipsum dolor " * 10, session_id
        )
        session_id = run.session_id
        done = await runner.execute(run, spec, emit=lambda e: None, worker="w")
        assert done.run.status is RunStatus.COMPLETED
        sent = backend.calls[-1]
        estimate = counter.count(sent.messages)
        errors.append(abs(estimate - remote_count(sent)) / remote_count(sent))
    assert errors[0] > 0.25  # the uncalibrated guess was far off …
    assert errors[-1] < 0.05  # … and the estimate now lands within 5 % of the backend
    assert counter.chars_per_token == pytest.approx(CHARS_PER_TOKEN, rel=0.1)


async def test_an_exact_tokenizer_is_left_alone() -> None:
    counted: list[str] = []

    def tokenize(text: str) -> int:
        counted.append(text)
        return len(text.split())

    engine = ContextEngine(
        store=MemoryStores().sessions,
        counter_for=Counters(tokenizers={"m": tokenize}),
        summariser_for=summarisers(None),  # type: ignore[arg-type]
    )
    engine.observed(agent(), [{"role": "user", "content": "a b c"}], 99)
    assert counted == []  # no second count of a prompt the model's own tokenizer measured


async def test_a_warm_estimate_recalibrates_on_a_sample_of_calls() -> None:
    """Counting the prompt again costs as much as assembling it: after 32 calls a model's
    estimate learns from one call in 16."""
    counted: list[int] = []

    class Counting(EstimatingCounter):
        def count(self, messages: object) -> int:  # type: ignore[override]
            counted.append(1)
            return super().count(messages)  # type: ignore[arg-type]

    counter = Counting()
    engine = ContextEngine(
        store=MemoryStores().sessions,
        counter_for=lambda model: counter,
        summariser_for=summarisers(lambda r: None),  # type: ignore[arg-type,return-value]
    )
    prompt = [{"role": "user", "content": "hello there"}]
    spec = agent(tools=())
    for _ in range(32 + 16 * 4):
        engine.observed(spec, prompt, 7)  # type: ignore[arg-type]
    assert len(counted) == 32 + 4
