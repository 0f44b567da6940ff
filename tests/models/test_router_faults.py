"""Fault injection end to end: the router drives real ``OpenAICompatBackend``s against local
``FakeUpstream`` servers on loopback. Every request ends in success through a retry or a
fallback, or in a clear error of the right class."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest

from wayport.core.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ContextWindowExceeded,
    WayportError,
)
from wayport.core.routing import CircuitPolicy, ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest, Chunk
from wayport.models.openai_compat import OpenAICompatBackend
from wayport.models.router import Router
from wayport.ports import Clock
from wayport.testing import ManualClock
from wayport.testing.fake_upstream import FakeUpstream, Fault

pytestmark = pytest.mark.anyio

ANSWER = "hello from upstream"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rig:
    router: Router
    primary: FakeUpstream  #: serves deployment "a" (groups "solo" and "m")
    backup: FakeUpstream  #: serves "b" (group "backup") and "c" (group "long")
    clock: Clock


def _group(
    name: str, dep: str, fallbacks: tuple[str, ...] = (), cw: tuple[str, ...] = ()
) -> ModelGroup:
    return ModelGroup(
        name=name,
        deployments=(WeightedDeployment(name=dep),),
        fallbacks=fallbacks,
        context_window_fallbacks=cw,
    )


@asynccontextmanager
async def rig(
    *,
    policy: RouterPolicy | None = None,
    clock: Clock | None = None,
    first_byte_timeout: float = 10.0,
    primary_url: str | None = None,
) -> AsyncIterator[Rig]:
    clock = clock if clock is not None else ManualClock(autoadvance=True)
    async with FakeUpstream() as primary, FakeUpstream() as backup:
        primary.reply(text=ANSWER)
        backup.reply(text="from the backup")

        def backend(name: str, url: str, model: str) -> OpenAICompatBackend:
            return OpenAICompatBackend(
                name=name, base_url=url, model=model, first_byte_timeout=first_byte_timeout
            )

        router = Router(
            groups=[
                _group("solo", "a"),
                _group("m", "a", fallbacks=("backup",), cw=("long",)),
                _group("backup", "b"),
                _group("long", "c"),
            ],
            backends={
                "a": backend("a", primary_url or primary.openai_url, "small"),
                "b": backend("b", backup.openai_url, "backup"),
                "c": backend("c", backup.openai_url, "long-context"),
            },
            policy=policy if policy is not None else RouterPolicy(max_retries=2),
            clock=clock,
            rng=random.Random(3),
        )
        await router.start()
        try:
            yield Rig(router=router, primary=primary, backup=backup, clock=clock)
        finally:
            await router.close()


def req(model: str, stream: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}], stream=stream)


async def run_one(router: Router, model: str, stream: bool) -> tuple[str, list[Chunk]]:
    if not stream:
        answer = await router.complete(req(model))
        return answer.content or "", []
    chunks: list[Chunk] = []
    async for chunk in router.stream(req(model, stream=True)):
        chunks.append(chunk)
    return "".join(c.content or "" for c in chunks), chunks


OK = "ok"


@pytest.mark.parametrize(
    ("faults", "stream", "outcome", "upstream_requests"),
    [
        # 5xx bursts: retried while retries last, then the last error
        ([Fault.status(503)], False, OK, 2),
        ([Fault.status(500), Fault.status(502)], False, OK, 3),
        ([Fault.status(503), Fault.status(502), Fault.status(504)], False, BackendUnavailable, 3),
        ([Fault.status(503)], True, OK, 2),
        # 429 with Retry-After (the wait is checked below)
        ([Fault.rate_limit(retry_after=2)], False, OK, 2),
        ([Fault.rate_limit(retry_after_ms=1500)], True, OK, 2),
        # connection reset, hang (first-byte timeout), cut body, invalid JSON
        ([Fault.reset()], False, OK, 2),
        ([Fault.reset()], True, OK, 2),
        ([Fault.hang()], False, OK, 2),
        ([Fault.hang()], True, OK, 2),
        ([Fault.truncate()], False, OK, 2),
        ([Fault.invalid_json()], False, OK, 2),
        ([Fault.reset(), Fault.hang()], False, OK, 3),
        # broken before the first chunk: still retried
        ([Fault.truncate(after_chunks=0)], True, OK, 2),
        ([Fault.invalid_json(after_chunks=0)], True, OK, 2),
        # broken after chunks reached the caller: raised, never retried
        ([Fault.truncate(after_chunks=3)], True, BackendError, 1),
        ([Fault.reset(after_chunks=2)], True, BackendError, 1),
        ([Fault.invalid_json(after_chunks=2)], True, BackendError, 1),
        ([Fault.stream_error(after_chunks=2, http_status=503)], True, BackendError, 1),
        # the request's own fault: raised at once
        ([Fault.status(400, message="bad 'tools'")], False, BackendRejected, 1),
        ([Fault.status(400, code="context_length_exceeded")], True, ContextWindowExceeded, 1),
    ],
)
async def test_fault_ends_in_success_or_the_right_error(
    faults: list[Fault], stream: bool, outcome: str | type[WayportError], upstream_requests: int
) -> None:
    # 1 s: each hang costs that much, and a loaded machine's slow answer is not taken for one
    async with rig(first_byte_timeout=1.0) as r:
        r.primary.script(*faults)
        chunks: list[Chunk] = []
        if outcome == OK:
            text, chunks = await run_one(r.router, "solo", stream)
            assert text == ANSWER
        else:
            assert isinstance(outcome, type)
            with pytest.raises(outcome) as info:
                stream_chunks = r.router.stream(req("solo", stream=True)) if stream else None
                if stream_chunks is None:
                    await r.router.complete(req("solo"))
                else:
                    async for chunk in stream_chunks:
                        chunks.append(chunk)
            assert info.value.status in (400, 429, 502, 503, 504)
            if upstream_requests == 1 and stream and outcome is BackendError:
                assert chunks  # it failed mid-stream, after chunks were passed on
        assert len(r.primary.requests) == upstream_requests
        assert [s.inflight for s in r.router.deployment_status()] == [0, 0, 0]


@pytest.mark.parametrize(
    ("fault", "wait"),
    [(Fault.rate_limit(retry_after=2), 2.0), (Fault.rate_limit(retry_after_ms=1500), 1.5)],
)
async def test_retry_after_from_the_wire_is_waited(fault: Fault, wait: float) -> None:
    clock = ManualClock(autoadvance=True)
    async with rig(clock=clock) as r:
        r.primary.script(fault)
        assert (await r.router.complete(req("solo"))).content == ANSWER
        assert clock.slept == [wait]


async def test_5xx_burst_falls_back_to_the_next_group() -> None:
    async with rig() as r:
        r.primary.script(*[Fault.status(503)] * 3)
        answer = await r.router.complete(req("m"))
        assert answer.content == "from the backup"
        assert (len(r.primary.requests), len(r.backup.requests)) == (3, 1)
        assert r.backup.requests[0].body["model"] == "backup"


async def test_too_long_prompt_goes_to_the_long_context_group() -> None:
    async with rig() as r:
        r.primary.script(Fault.status(400, code="context_length_exceeded"))
        text, _ = await run_one(r.router, "m", stream=True)
        assert text == "from the backup"
        assert len(r.primary.requests) == 1
        assert r.backup.requests[0].body["model"] == "long-context"


async def test_an_upstream_that_is_down_falls_back() -> None:
    async with FakeUpstream() as gone:
        url = gone.openai_url  # closed again below: connections are refused
    async with rig(primary_url=url) as r:
        assert (await r.router.complete(req("m"))).content == "from the backup"
        with pytest.raises(BackendUnavailable, match="cannot connect"):
            await r.router.complete(req("solo"))


async def test_the_overall_deadline_bounds_a_hanging_upstream() -> None:
    from wayport.core.clock import SystemClock

    policy = RouterPolicy(timeout=0.3, max_retries=5)
    async with rig(policy=policy, clock=SystemClock()) as r:
        r.primary.script(Fault.hang())
        with pytest.raises(BackendTimeout, match="deadline") as info:
            await r.router.complete(req("m"))
        assert info.value.status == 504
        # The backend was given the time left and gave up on its own; nothing was retried
        # past the deadline and no fallback was started without time.
        assert (len(r.primary.requests), len(r.backup.requests)) == (1, 0)


async def test_closing_a_stream_early_drops_the_upstream_connection() -> None:
    async with rig() as r:
        r.primary.script(Fault.hang(after_chunks=2))
        stream = r.router.stream(req("solo", stream=True))
        assert isinstance(stream, AsyncIterator)
        await anext(stream)
        await anext(stream)
        await stream.aclose()  # type: ignore[attr-defined]
        await r.primary.wait_disconnects(1)
        assert r.router.deployment_status()[0].inflight == 0


async def test_a_storm_of_mixed_faults_ends_in_success() -> None:
    policy = RouterPolicy(max_retries=2, circuit=CircuitPolicy(failure_threshold=4))
    async with rig(policy=policy, first_byte_timeout=1.0) as r:
        r.primary.script(
            *[
                Fault.status(503),
                Fault.reset(),
                Fault.invalid_json(),
                Fault.rate_limit(retry_after=1),
                Fault.truncate(after_chunks=0),
                Fault.hang(),
            ]
            * 3
        )
        results = await asyncio.gather(
            *(run_one(r.router, "m", stream=i % 2 == 0) for i in range(24))
        )
        assert all(text in (ANSWER, "from the backup") for text, _ in results)
        assert [s.inflight for s in r.router.deployment_status()] == [0, 0, 0]
