"""The router engine against scripted backends on a manual clock: retries, backoff,
fallbacks, circuit breaking, ranking, streams, events."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Iterator

import pytest

from wayport.core.errors import (
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ConfigError,
    ContextWindowExceeded,
    ModelNotFound,
    Unsupported,
    UpstreamRateLimited,
)
from wayport.core.routing import (
    CircuitPolicy,
    CircuitStatus,
    ModelGroup,
    RouterPolicy,
    Strategy,
    WeightedDeployment,
)
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings
from wayport.models.router import Router
from wayport.ports import ModelBackend
from wayport.testing import Fail, ManualClock, Reply, ScriptedBackend

pytestmark = pytest.mark.anyio

E503 = BackendUnavailable("upstream is down")


class Recorder:
    """A ``RouterEvents`` that keeps everything it is told, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, ...]] = []

    def attempt(self, model: str, deployment: str) -> None:
        self.log.append(("attempt", model, deployment))

    def attempt_done(self, model: str, deployment: str, outcome: str, seconds: float) -> None:
        self.log.append(("done", model, deployment, outcome))

    def retry(self, model: str, deployment: str, reason: str) -> None:
        self.log.append(("retry", model, deployment, reason))

    def fallback(self, from_model: str, to_model: str, reason: str) -> None:
        self.log.append(("fallback", from_model, to_model, reason))

    def circuit(self, deployment: str, state: str) -> None:
        self.log.append(("circuit", deployment, state))

    def of(self, kind: str) -> list[tuple[str, ...]]:
        return [e for e in self.log if e[0] == kind]


class GateBackend:
    """Holds each ``complete`` until ``release`` is set; records the timeouts it is given and
    whether its streams were closed."""

    def __init__(
        self, name: str, *, released: bool = True, failures: Iterable[Exception] = ()
    ) -> None:
        self.name = name
        self.failures = list(failures)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        if released:
            self.release.set()
        self.timeouts: list[float | None] = []
        self.stream_closed = False

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def ready(self) -> bool:
        return True

    async def complete(self, request: ChatRequest, *, timeout: float | None = None) -> Completion:
        self.timeouts.append(timeout)
        if self.failures:
            raise self.failures.pop(0)
        self.entered.set()
        await self.release.wait()
        return Completion(content=self.name, model=self.name)

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        self.timeouts.append(timeout)
        try:
            for i in range(1000):
                yield Chunk(content=str(i))
        finally:
            self.stream_closed = True

    async def embed(self, request: EmbeddingRequest, *, timeout: float | None = None) -> Embeddings:
        raise Unsupported("no embeddings")


class FixedRandom(random.Random):
    """``random()`` returns the given values in turn, so weighted choices are exact."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__(0)
        self._values: Iterator[float] = iter(values)

    def random(self) -> float:
        return next(self._values)


def group(
    name: str,
    *deps: str | tuple[str, float],
    fallbacks: tuple[str, ...] = (),
    cw: tuple[str, ...] = (),
) -> ModelGroup:
    return ModelGroup(
        name=name,
        deployments=tuple(
            WeightedDeployment(name=d)
            if isinstance(d, str)
            else WeightedDeployment(name=d[0], weight=d[1])
            for d in deps
        ),
        fallbacks=fallbacks,
        context_window_fallbacks=cw,
    )


def req(model: str = "m", stream: bool = False) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": "hi"}], stream=stream)


def make(
    groups: list[ModelGroup],
    backends: list[ModelBackend],
    clock: ManualClock,
    events: Recorder | None = None,
    rng: random.Random | None = None,
    **policy: object,
) -> Router:
    return Router(
        groups=groups,
        backends={b.name: b for b in backends},
        policy=RouterPolicy(**policy),
        clock=clock,
        events=events,
        rng=rng if rng is not None else random.Random(7),
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(autoadvance=True)


# --------------------------------------------------------------------------- retries


async def test_retries_a_503_then_succeeds(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(E503), Reply("hi there")])
    rec = Recorder()
    router = make([group("m", "a")], [a], clock, rec, backoff_base=0.5)
    answer = await router.complete(req())
    assert answer.content == "hi there"
    assert len(a.calls) == 2
    assert len(clock.slept) == 1 and 0.25 <= clock.slept[0] <= 0.5  # equal jitter
    assert rec.log == [
        ("attempt", "m", "a"),
        ("done", "m", "a", "BackendUnavailable"),
        ("retry", "m", "a", "BackendUnavailable"),
        ("attempt", "m", "a"),
        ("done", "m", "a", "ok"),
    ]
    assert router.deployment_status()[0].inflight == 0


async def test_retry_moves_to_the_next_ranked_deployment(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    b = ScriptedBackend("b", default=Fail(E503))
    router = make(
        [group("m", "a", "b")], [a, b], clock, strategy=Strategy.LEAST_INFLIGHT, max_retries=3
    )
    with pytest.raises(BackendUnavailable):
        await router.complete(req())
    # a, b, then the same ones again: 1 + max_retries attempts in all.
    assert (len(a.calls), len(b.calls)) == (2, 2)
    assert len(clock.slept) == 3
    assert clock.slept[2] >= clock.slept[0]  # exponential


async def test_retry_after_is_honoured(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(UpstreamRateLimited("slow down", retry_after=7.0)), Reply()])
    router = make([group("m", "a")], [a], clock, backoff_max=1.0)
    assert (await router.complete(req())).content == "ok"
    assert clock.slept == [7.0]


async def test_retry_after_beyond_the_deadline_is_not_slept(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(UpstreamRateLimited("slow down", retry_after=90.0))])
    router = make([group("m", "a")], [a], clock, timeout=60.0)
    with pytest.raises(UpstreamRateLimited) as info:
        await router.complete(req())
    assert info.value.retry_after == 90.0  # the client learns when to come back
    assert clock.slept == []
    assert len(a.calls) == 1


async def test_non_retriable_errors_are_raised_at_once(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(BackendRejected("bad tool schema")))
    b = ScriptedBackend("b")
    rec = Recorder()
    router = make([group("m", "a", fallbacks=("f",)), group("f", "b")], [a, b], clock, rec)
    with pytest.raises(BackendRejected, match="bad tool schema"):
        await router.complete(req())
    assert (len(a.calls), len(b.calls)) == (1, 0)
    assert clock.slept == [] and rec.of("retry") == [] and rec.of("fallback") == []


async def test_deadline_exhaustion_raises_backend_timeout(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503), delay=6.0, clock=clock)
    router = make([group("m", "a")], [a], clock, timeout=10.0, max_retries=5)
    with pytest.raises(BackendTimeout, match="10s deadline passed after 2 attempt") as info:
        await router.complete(req())
    assert isinstance(info.value.__cause__, BackendUnavailable)
    assert len(a.calls) == 2


async def test_each_attempt_gets_the_time_left(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503), delay=4.0, clock=clock)
    g = GateBackend("g")
    router = make(
        [group("m", "a", fallbacks=("f",)), group("f", "g")],
        [a, g],
        clock,
        timeout=10.0,
        max_retries=0,
    )
    assert (await router.complete(req())).content == "g"
    assert g.timeouts == [6.0]


# --------------------------------------------------------------------------- fallbacks


async def test_fallbacks_are_tried_in_order(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    b = ScriptedBackend("b", default=Fail(BackendTimeout("slow")))
    c = ScriptedBackend("c", default=Reply("from c"))
    d = ScriptedBackend("d")
    rec = Recorder()
    router = make(
        [
            group("m", "a", fallbacks=("fb1", "fb2", "fb3")),
            group("fb1", "b"),
            group("fb2", "c"),
            group("fb3", "d"),
        ],
        [a, b, c, d],
        clock,
        rec,
        max_retries=1,
    )
    assert (await router.complete(req())).content == "from c"
    assert [len(x.calls) for x in (a, b, c, d)] == [2, 2, 1, 0]
    assert rec.of("fallback") == [
        ("fallback", "m", "fb1", "BackendUnavailable"),
        ("fallback", "fb1", "fb2", "BackendTimeout"),
    ]


async def test_last_error_is_raised_when_every_fallback_failed(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    b = ScriptedBackend("b", default=Fail(BackendTimeout("slow")))
    router = make(
        [group("m", "a", fallbacks=("f",)), group("f", "b")], [a, b], clock, max_retries=0
    )
    with pytest.raises(BackendTimeout, match="slow"):
        await router.complete(req())


async def test_prompt_too_long_goes_to_context_window_fallbacks(clock: ManualClock) -> None:
    small = ScriptedBackend("small", default=Fail(ContextWindowExceeded("too long")))
    backup = ScriptedBackend("backup")
    big = ScriptedBackend("big", default=Reply("big answer"))
    rec = Recorder()
    router = make(
        [
            group("m", "small", fallbacks=("backup",), cw=("big",)),
            group("backup", "backup"),
            group("big", "big"),
        ],
        [small, backup, big],
        clock,
        rec,
    )
    assert (await router.complete(req())).content == "big answer"
    assert [len(x.calls) for x in (small, backup, big)] == [1, 0, 1]
    assert rec.of("fallback") == [("fallback", "m", "big", "ContextWindowExceeded")]
    assert clock.slept == []


async def test_prompt_too_long_without_context_fallback_fails_with_it(clock: ManualClock) -> None:
    small = ScriptedBackend("small", default=Fail(ContextWindowExceeded("too long")))
    big = ScriptedBackend("big", default=Fail(ContextWindowExceeded("still too long")))
    backup = ScriptedBackend("backup")
    router = make(
        [
            group("m", "small", fallbacks=("backup",), cw=("big",)),
            group("big", "big"),
            group("backup", "backup"),
        ],
        [small, big, backup],
        clock,
    )
    with pytest.raises(ContextWindowExceeded, match="still too long") as info:
        await router.complete(req())
    assert info.value.status == 400
    assert [len(x.calls) for x in (small, big, backup)] == [1, 1, 0]


# --------------------------------------------------------------------------- circuit breaker


async def test_circuit_opens_skips_probes_and_closes(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(E503), Fail(E503), Reply("a is back")])
    b = ScriptedBackend("b", default=Reply("b"))
    rec = Recorder()
    router = make(
        [group("m", "a", "b")],
        [a, b],
        clock,
        rec,
        strategy=Strategy.LEAST_INFLIGHT,
        max_retries=1,
        circuit=CircuitPolicy(failure_threshold=2, cooldown=30.0),
    )
    assert (await router.complete(req())).content == "b"  # a failed, retried on b
    assert (await router.complete(req())).content == "b"  # a failed again: circuit opens
    assert rec.of("circuit") == [("circuit", "a", "open")]
    assert router.deployment_status()[0].circuit is CircuitStatus.OPEN

    assert (await router.complete(req())).content == "b"
    assert len(a.calls) == 2  # skipped while open

    clock.advance(30.0)
    assert (await router.complete(req())).content == "a is back"  # the half-open probe
    assert rec.of("circuit") == [
        ("circuit", "a", "open"),
        ("circuit", "a", "half_open"),
        ("circuit", "a", "closed"),
    ]
    assert router.deployment_status()[0].circuit is CircuitStatus.CLOSED


async def test_failed_probe_reopens_and_an_all_open_group_raises_circuit_open(
    clock: ManualClock,
) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    router = make(
        [group("m", "a")],
        [a],
        clock,
        max_retries=0,
        circuit=CircuitPolicy(failure_threshold=1, cooldown=10.0),
    )
    with pytest.raises(BackendUnavailable) as info:
        await router.complete(req())
    assert not isinstance(info.value, CircuitOpen)
    with pytest.raises(CircuitOpen) as circuit:
        await router.complete(req())
    assert circuit.value.status == 503
    assert len(a.calls) == 1
    clock.advance(10.0)
    with pytest.raises(BackendUnavailable):
        await router.complete(req())  # the probe fails: open again, cooldown restarted
    assert len(a.calls) == 2
    clock.advance(9.0)
    with pytest.raises(CircuitOpen):
        await router.complete(req())
    assert len(a.calls) == 2


async def test_open_circuit_falls_back(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    b = ScriptedBackend("b")
    rec = Recorder()
    router = make(
        [group("m", "a", fallbacks=("f",)), group("f", "b")],
        [a, b],
        clock,
        rec,
        max_retries=0,
        circuit=CircuitPolicy(failure_threshold=1),
    )
    await router.complete(req())
    await router.complete(req())
    assert (len(a.calls), len(b.calls)) == (1, 2)
    assert rec.of("fallback")[-1] == ("fallback", "m", "f", "CircuitOpen")


async def test_circuit_opened_by_own_retries_reports_the_real_error(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    router = make(
        [group("m", "a")], [a], clock, max_retries=3, circuit=CircuitPolicy(failure_threshold=2)
    )
    with pytest.raises(BackendUnavailable) as info:
        await router.complete(req())
    assert not isinstance(info.value, CircuitOpen)
    assert len(a.calls) == 2


async def test_rejected_requests_do_not_open_the_circuit(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(BackendRejected("bad")))
    router = make([group("m", "a")], [a], clock, circuit=CircuitPolicy(failure_threshold=1))
    for _ in range(3):
        with pytest.raises(BackendRejected):
            await router.complete(req())
    assert router.deployment_status()[0].circuit is CircuitStatus.CLOSED


async def test_half_open_admits_only_its_probes(clock: ManualClock) -> None:
    a = GateBackend("a", released=False, failures=[E503])
    b = GateBackend("b")
    # Weighted with rand 0.0 always ranks a first; 0.5 is the one backoff jitter.
    rng = FixedRandom([0.0, 0.5, 0.0, 0.0])
    router = make(
        [group("m", "a", "b")],
        [a, b],
        clock,
        rng=rng,
        max_retries=1,
        circuit=CircuitPolicy(failure_threshold=1, cooldown=5.0),
    )
    assert (await router.complete(req())).content == "b"  # a failed and opened
    clock.advance(5.0)
    probe = asyncio.create_task(router.complete(req()))
    await a.entered.wait()
    assert router.deployment_status()[0].circuit is CircuitStatus.HALF_OPEN
    # The only probe slot is taken, so a is passed over although it ranks first.
    assert (await router.complete(req())).content == "b"
    a.release.set()
    assert (await probe).content == "a"
    assert router.deployment_status()[0].circuit is CircuitStatus.CLOSED
    assert [s.inflight for s in router.deployment_status()] == [0, 0]


async def test_a_cancelled_probe_gives_its_slot_back(clock: ManualClock) -> None:
    a = GateBackend("a", released=False, failures=[E503])
    router = make(
        [group("m", "a")],
        [a],
        clock,
        max_retries=0,
        circuit=CircuitPolicy(failure_threshold=1, cooldown=5.0),
    )
    with pytest.raises(BackendUnavailable):
        await router.complete(req())
    clock.advance(5.0)
    probe = asyncio.create_task(router.complete(req()))
    await a.entered.wait()
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert router.deployment_status()[0].inflight == 0
    a.release.set()
    assert (await router.complete(req())).content == "a"  # admitted: the slot was freed
    assert router.deployment_status()[0].circuit is CircuitStatus.CLOSED


# --------------------------------------------------------------------------- ranking


async def test_weighted_choice_follows_the_rng(clock: ManualClock) -> None:
    a, b = ScriptedBackend("a", default=Reply("a")), ScriptedBackend("b", default=Reply("b"))
    # a owns [0, 0.25), b owns [0.25, 1)
    rng = FixedRandom([0.1, 0.3, 0.24, 0.99])
    router = make([group("m", ("a", 1.0), ("b", 3.0))], [a, b], clock, rng=rng)
    answers = [(await router.complete(req())).content for _ in range(4)]
    assert answers == ["a", "b", "a", "b"]


async def test_weighted_spreads_by_weight_with_a_seeded_rng(clock: ManualClock) -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    router = make([group("m", ("a", 1.0), ("b", 3.0))], [a, b], clock, rng=random.Random(42))
    for _ in range(400):
        await router.complete(req())
    assert len(a.calls) + len(b.calls) == 400
    assert 60 <= len(a.calls) <= 140


async def test_least_inflight_avoids_the_busy_deployment(clock: ManualClock) -> None:
    a, b = GateBackend("a", released=False), GateBackend("b")
    router = make([group("m", "a", "b")], [a, b], clock, strategy=Strategy.LEAST_INFLIGHT)
    first = asyncio.create_task(router.complete(req()))
    await a.entered.wait()  # ties go to config order: a
    assert [s.inflight for s in router.deployment_status()] == [1, 0]
    assert (await router.complete(req())).content == "b"
    a.release.set()
    assert (await first).content == "a"
    assert [s.inflight for s in router.deployment_status()] == [0, 0]


async def test_latency_measures_each_then_picks_the_fastest(clock: ManualClock) -> None:
    slow = ScriptedBackend("slow", default=Reply("slow"), delay=2.0, clock=clock)
    fast = ScriptedBackend("fast", default=Reply("fast"), delay=1.0, clock=clock)
    router = make([group("m", "slow", "fast")], [slow, fast], clock, strategy=Strategy.LATENCY)
    answers = [(await router.complete(req())).content for _ in range(4)]
    assert answers == ["slow", "fast", "fast", "fast"]  # unmeasured first, then fastest
    assert [s.latency_ewma for s in router.deployment_status()] == [2.0, 1.0]


# --------------------------------------------------------------------------- streams


async def collect(chunks: AsyncIterator[Chunk]) -> str:
    return "".join(c.content or "" for c in [c async for c in chunks])


async def test_stream_failure_before_the_first_chunk_is_retried(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(E503), Reply("hello streaming world")])
    rec = Recorder()
    router = make([group("m", "a")], [a], clock, rec)
    assert await collect(router.stream(req(stream=True))) == "hello streaming world"
    assert len(a.calls) == 2 and len(rec.of("retry")) == 1
    assert router.deployment_status()[0].inflight == 0


async def test_stream_failure_after_the_first_chunk_is_raised(clock: ManualClock) -> None:
    a = ScriptedBackend("a", [Fail(E503, after_chunks=2)])
    b = ScriptedBackend("b")
    router = make(
        [group("m", "a", fallbacks=("f",)), group("f", "b")],
        [a, b],
        clock,
        circuit=CircuitPolicy(failure_threshold=1),
    )
    got: list[str] = []
    stream = router.stream(req(stream=True))
    with pytest.raises(BackendUnavailable):
        async for chunk in stream:
            got.append(chunk.content or "")
    assert got == ["part0 ", "part1 "]
    assert (len(a.calls), len(b.calls)) == (1, 0)
    status = router.deployment_status()[0]
    assert (status.inflight, status.circuit) == (0, CircuitStatus.OPEN)  # still blamed


async def test_closing_a_stream_early_closes_the_backend_stream(clock: ManualClock) -> None:
    g = GateBackend("g")
    router = make([group("m", "g")], [g], clock, timeout=30.0)
    stream = router.stream(req(stream=True))
    assert isinstance(stream, AsyncIterator)
    first = await anext(stream)
    assert first.content == "0"
    assert router.deployment_status()[0].inflight == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert g.stream_closed
    assert router.deployment_status()[0].inflight == 0
    assert g.timeouts == [30.0]


async def test_stream_falls_back_before_the_first_chunk(clock: ManualClock) -> None:
    a = ScriptedBackend("a", default=Fail(E503))
    b = ScriptedBackend("b", default=Reply("from b"))
    router = make(
        [group("m", "a", fallbacks=("f",)), group("f", "b")], [a, b], clock, max_retries=0
    )
    assert await collect(router.stream(req(stream=True))) == "from b"


# --------------------------------------------------------------------------- the rest


async def test_unknown_model(clock: ManualClock) -> None:
    router = make([group("m", "a")], [ScriptedBackend("a")], clock)
    with pytest.raises(ModelNotFound) as info:
        await router.complete(req("gpt-nope"))
    assert (info.value.status, info.value.param) == (404, "model")
    assert info.value.code == "model_not_found" and "'gpt-nope'" in info.value.message
    with pytest.raises(ModelNotFound):
        await router.embed(EmbeddingRequest(model="gpt-nope", input="x"))
    with pytest.raises(ModelNotFound):
        router.stream(req("gpt-nope", stream=True))  # at once, before any chunk


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ([group("m", "missing")], "deployment 'missing', which has no backend"),
        ([group("m", "a", fallbacks=("nope",))], "lists 'nope' in fallbacks"),
        ([group("m", "a", cw=("nope",))], "lists 'nope' in context_window_fallbacks"),
        ([group("m", "a", fallbacks=("n",)), group("n", "a", fallbacks=("m",))], "m -> n -> m"),
        ([group("m", "a"), group("m", "a")], "defined twice"),
    ],
)
def test_config_validation(groups: list[ModelGroup], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Router(groups=groups, backends={"a": ScriptedBackend("a")})


async def test_catalogue_lifecycle_and_readiness(clock: ManualClock) -> None:
    a, b = ScriptedBackend("a"), ScriptedBackend("b")
    router = make([group("zeta", "a"), group("alpha", "b", "a")], [a, b], clock)
    assert router.models() == ["zeta", "alpha"]
    assert router.has_model("alpha") and not router.has_model("beta")
    assert not router.ready() and router.not_ready() == ["a", "b"]
    await router.start()
    assert a.started and b.started and router.ready() and router.not_ready() == []
    await router.close()
    assert a.closed and b.closed and router.not_ready() == ["a", "b"]


async def test_embed_routes_and_does_not_retry_unsupported(clock: ManualClock) -> None:
    plain = ScriptedBackend("plain")
    vec = ScriptedBackend("vec", embeddings=True)
    router = make([group("chat", "plain"), group("emb", "vec")], [plain, vec], clock)
    result = await router.embed(EmbeddingRequest(model="emb", input=["a", "bb"]))
    assert [list(v) for v in result.vectors] == [[1.0, 1.0, 0.0], [2.0, 1.0, 0.0]]
    with pytest.raises(Unsupported):
        await router.embed(EmbeddingRequest(model="chat", input="x"))
    assert clock.slept == []
