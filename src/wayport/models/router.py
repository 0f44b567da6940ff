"""The model router: maps a public model name to a group of deployments and serves each
request from one of them, with ranking, retries, backoff, fallbacks, circuit breaking and one
overall deadline. The decisions are the pure functions of ``wayport.core.routing``; this module
applies them to live backends.

    router = Router(
        groups=[ModelGroup(name="chat", deployments=(WeightedDeployment(name="vllm-a"),
                                                     WeightedDeployment(name="vllm-b")),
                           fallbacks=("chat-small",)),
                ModelGroup(name="chat-small", deployments=(WeightedDeployment(name="local"),))],
        backends={"vllm-a": a, "vllm-b": b, "local": llama},
        policy=RouterPolicy(strategy=Strategy.LEAST_INFLIGHT, max_retries=2, timeout=60),
    )
    await router.start()
    answer = await router.complete(ChatRequest(model="chat", messages=[...]))
    async for chunk in router.stream(ChatRequest(model="chat", messages=[...], stream=True)):
        ...
    await router.close()

Each group gets ``1 + max_retries`` attempts over its ranked deployments, then the request
moves through the group's fallback plan; a prompt that is too long moves to the
``context_window_fallbacks`` instead. The time left in the deadline is passed to every
backend as ``timeout=`` (backends enforce it); the router checks it between attempts.

``RouterEvents`` hear of every attempt and its outcome (``"ok"`` or the error's class name),
every retry (naming the deployment that failed), every move to another group and every
circuit transition (``"open"``, ``"half_open"``, ``"closed"``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TypeVar

from wayport.core.clock import SystemClock
from wayport.core.errors import BackendTimeout, CircuitOpen, ModelNotFound, WayportError
from wayport.core.routing import (
    Action,
    CircuitState,
    DeploymentStatus,
    DeploymentView,
    ModelGroup,
    RouterPolicy,
    Strategy,
    after_failure,
    backoff_delay,
    circuit_allow,
    circuit_available,
    circuit_failure,
    circuit_release,
    circuit_success,
    context_plan,
    ewma,
    fallback_plan,
    rank,
    validate_groups,
)
from wayport.core.types import ChatRequest, Chunk, Completion, EmbeddingRequest, Embeddings
from wayport.models._router_state import (
    _Deployment,
    _Group,
    _NoEvents,
    aclose,
    call_complete,
    call_embed,
    open_stream,
)
from wayport.ports import Clock, ModelBackend, RouterEvents

__all__ = ["DeploymentStatus", "Router"]

R = TypeVar("R", ChatRequest, EmbeddingRequest)
T = TypeVar("T")


class Router:
    """Serves ``complete``/``stream``/``embed`` for every configured model group.

    Not thread-safe: it belongs to one event loop, whose single thread is why its counters
    need no locks.
    """

    def __init__(
        self,
        *,
        groups: Iterable[ModelGroup],
        backends: Mapping[str, ModelBackend],
        policy: RouterPolicy = RouterPolicy(),  # noqa: B008 - frozen, shared safely
        clock: Clock | None = None,
        events: RouterEvents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Raise ``ConfigError`` when a group names a deployment without a backend, a
        fallback names no group, fallbacks form a cycle, or the policy is out of range."""
        by_name = validate_groups(groups, backends.keys(), policy)
        self._policy = policy
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._events: RouterEvents = events if events is not None else _NoEvents()
        self._rng = rng if rng is not None else random.Random()
        self._deployments = {name: _Deployment(name, b) for name, b in backends.items()}
        self._groups: dict[str, _Group] = {
            g.name: _Group(
                g.name,
                tuple(self._deployments[d.name] for d in g.deployments),
                tuple(d.weight for d in g.deployments),
            )
            for g in by_name.values()
        }
        for name, group in self._groups.items():
            group.plan = tuple(self._groups[n] for n in fallback_plan(by_name, name))
            group.context_plan = tuple(self._groups[n] for n in context_plan(by_name, name))

    # ----------------------------------------------------------------- catalogue and health

    def models(self) -> list[str]:
        """Public model names, in configuration order."""
        return list(self._groups)

    def has_model(self, name: str) -> bool:
        return name in self._groups

    async def start(self) -> None:
        """Start every backend concurrently. If one fails, all are closed again and the
        first failure is raised."""
        results = await asyncio.gather(
            *(d.backend.start() for d in self._deployments.values()), return_exceptions=True
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await asyncio.gather(
                *(d.backend.close() for d in self._deployments.values()),
                return_exceptions=True,
            )
            raise failures[0]

    async def close(self) -> None:
        """Close every backend, even when some fail to close; then raise the first failure."""
        results = await asyncio.gather(
            *(d.backend.close() for d in self._deployments.values()), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def ready(self) -> bool:
        return all(d.backend.ready() for d in self._deployments.values())

    def not_ready(self) -> list[str]:
        return [d.name for d in self._deployments.values() if not d.backend.ready()]

    def deployment_status(self) -> list[DeploymentStatus]:
        return [
            DeploymentStatus(
                name=d.name,
                ready=d.backend.ready(),
                circuit=d.circuit.status,
                consecutive_failures=d.circuit.failures,
                inflight=d.inflight,
                latency_ewma=d.latency,
            )
            for d in self._deployments.values()
        ]

    # ----------------------------------------------------------------- serving

    async def complete(self, request: ChatRequest) -> Completion:
        result, dep = await self._run(self._group(request.model), request, call_complete)
        dep.inflight -= 1
        return result

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        """Chunks of the answer. An unknown model raises ``ModelNotFound`` here, at once;
        everything else is raised while iterating. Failures before the first chunk are
        retried like ``complete``; after it they are raised as they are."""
        return _flatten(self._stream(self._group(request.model), request))

    def stream_batches(self, request: ChatRequest) -> AsyncIterator[list[Chunk]]:
        """``stream``, in lists of the chunks that arrived together (never empty), so that a
        caller can pass them on, and write them, in one step."""
        return self._stream(self._group(request.model), request)

    async def embed(self, request: EmbeddingRequest) -> Embeddings:
        result, dep = await self._run(self._group(request.model), request, call_embed)
        dep.inflight -= 1
        return result

    def _group(self, name: str) -> _Group:
        group = self._groups.get(name)
        if group is None:
            raise ModelNotFound(
                f"The model {name!r} does not exist or you do not have access to it.",
                param="model",
            )
        return group

    async def _stream(self, group: _Group, request: ChatRequest) -> AsyncIterator[list[Chunk]]:
        (first, batches), dep = await self._run(group, request, open_stream)
        try:
            if first is None:
                return
            yield first
            async for batch in batches:
                yield batch
        except WayportError as exc:
            # Past the first chunk nothing is retried, but the deployment is still blamed.
            if exc.retriable:
                self._set_circuit(
                    dep, circuit_failure(dep.circuit, self._policy.circuit, self._clock.now())
                )
            raise
        finally:
            dep.inflight -= 1
            await aclose(batches)

    async def _run(
        self, group: _Group, request: R, call: Callable[[ModelBackend, R, float], Awaitable[T]]
    ) -> tuple[T, _Deployment]:
        """Try ``call`` along the group's plan until it succeeds or the plan says give up.
        On success the deployment is returned still counted in flight: the caller releases
        it (a stream holds it until it ends)."""
        clock, policy, events = self._clock, self._policy, self._events
        deadline = clock.now() + policy.timeout
        plan, index, total = group.plan, 0, 0
        real: WayportError | None = None  # the last error a backend raised
        while True:
            current = plan[index]
            order = self._order(current)
            attempts = 0
            while True:
                dep = self._admit(order, attempts)
                error: WayportError
                if dep is None:
                    error = CircuitOpen(
                        f"model {current.name!r}: every deployment's circuit is open"
                    )
                else:
                    attempts += 1
                    total += 1
                    events.attempt(current.name, dep.name)
                    started = clock.now()
                    dep.inflight += 1
                    try:
                        result = await call(dep.backend, request, deadline - started)
                    except WayportError as exc:
                        dep.inflight -= 1
                        self._failed(current.name, dep, exc, started)
                        error = real = exc
                    except BaseException:
                        dep.inflight -= 1
                        self._set_circuit(dep, circuit_release(dep.circuit))
                        raise
                    else:
                        self._succeeded(current.name, dep, started)
                        return result, dep
                decision = after_failure(
                    error,
                    attempts=attempts,
                    max_retries=policy.max_retries,
                    time_left=deadline - clock.now(),
                    wait=backoff_delay(attempts - 1, policy, self._rng.random(), error.retry_after)
                    if error.retriable
                    else 0.0,
                    can_retry=dep is not None,
                    has_fallback=index + 1 < len(plan),
                    has_context_fallback=bool(current.context_plan),
                )
                action = decision.action
                reason = type(error).__name__
                if action is Action.RETRY:
                    assert dep is not None  # can_retry is False without a deployment
                    events.retry(current.name, dep.name, reason)
                    await clock.sleep(decision.delay)
                    continue
                if action is Action.FALLBACK:
                    index += 1
                elif action is Action.CONTEXT_FALLBACK:
                    plan, index = current.context_plan, 0
                elif action is Action.TIMEOUT:
                    raise BackendTimeout(
                        f"model {group.name!r}: the {policy.timeout:g}s deadline passed after "
                        f"{total} attempt(s); last error: {error.message}"
                    ) from error
                else:
                    # A circuit that opened under our own retries hides the real cause.
                    raise real if dep is None and real is not None else error
                events.fallback(current.name, plan[index].name, reason)
                break

    def _order(self, group: _Group) -> tuple[_Deployment, ...] | list[_Deployment]:
        members = group.members
        if len(members) == 1:
            return members  # nothing to rank; the circuit is checked on admission
        now, circuit = self._clock.now(), self._policy.circuit
        views = [
            DeploymentView(
                name=d.name,
                weight=w,
                inflight=d.inflight,
                latency_ewma=d.latency,
                available=circuit_available(d.circuit, circuit, now),
            )
            for d, w in zip(members, group.weights, strict=True)
        ]
        strategy = self._policy.strategy
        rand = self._rng.random() if strategy is Strategy.WEIGHTED else 0.0
        by_name = group.by_name
        return [by_name[n] for n in rank(views, strategy, rand)]

    def _admit(
        self, order: tuple[_Deployment, ...] | list[_Deployment], attempt: int
    ) -> _Deployment | None:
        """The first deployment from position ``attempt`` on (wrapping around) whose circuit
        lets a request through now, with its probe slot taken."""
        n = len(order)
        now, circuit = self._clock.now(), self._policy.circuit
        for i in range(n):
            dep = order[(attempt + i) % n]
            allowed, state = circuit_allow(dep.circuit, circuit, now)
            if allowed:
                self._set_circuit(dep, state)
                return dep
        return None

    def _succeeded(self, model: str, dep: _Deployment, started: float) -> None:
        seconds = self._clock.now() - started
        dep.latency = ewma(dep.latency, seconds, self._policy.latency_alpha)
        self._set_circuit(dep, circuit_success(dep.circuit, self._policy.circuit))
        self._events.attempt_done(model, dep.name, "ok", seconds)

    def _failed(self, model: str, dep: _Deployment, error: WayportError, started: float) -> None:
        now = self._clock.now()
        # A non-retriable error is the request's fault: the deployment answered, so it counts
        # as alive for the circuit.
        if error.retriable:
            state = circuit_failure(dep.circuit, self._policy.circuit, now)
        else:
            state = circuit_success(dep.circuit, self._policy.circuit)
        self._set_circuit(dep, state)
        self._events.attempt_done(model, dep.name, type(error).__name__, now - started)

    def _set_circuit(self, dep: _Deployment, state: CircuitState) -> None:
        if state.status is not dep.circuit.status:
            self._events.circuit(dep.name, state.status.value)
        dep.circuit = state


async def _flatten(batches: AsyncIterator[list[Chunk]]) -> AsyncIterator[Chunk]:
    try:
        async for batch in batches:
            for chunk in batch:
                yield chunk
    finally:
        await aclose(batches)
