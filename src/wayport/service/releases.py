"""Releases: versions of agents, rollouts of a candidate version (canary, blue-green, A/B,
shadow), the version each new run gets, feedback, and the commands a human gives. The pure
controller is ``wayport.core.release``; the reconciler that drives rollouts over time is
``wayport.service.release_reconciler``::

    releases = ReleaseService(agents=agents, store=lambda: SqlReleaseStore(db))
    agents.picker = releases                                # new runs ask it for a version
    await releases.create("default", "support", spec=edited, strategy=canary)
    await releases.command("default", "support", Command.PROMOTE)
    report = await releases.status("default", "support")
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from wayport.core.agent import AgentSpec
from wayport.core.errors import InvalidRequest, NotFound, ReleaseError
from wayport.core.release import (
    TERMINAL,
    AnalysisStep,
    Command,
    Decision,
    EvalStep,
    Kind,
    Notify,
    Observed,
    ResetWindow,
    Signals,
    Strategy,
    assign,
    compare,
    decide,
    evaluate,
    start,
)
from wayport.core.release_codec import state_to_dict, strategy_to_dict
from wayport.core.release_records import Feedback, Picked, Rollout, VersionInfo
from wayport.core.session import DEFAULT_TENANT, Run
from wayport.core.types import Message
from wayport.ports import ReleaseStore
from wayport.service.agent_defs import tenant_agent
from wayport.service.agents import AgentService
from wayport.service.release_shadow import Shadows
from wayport.service.release_signals import SignalCollector

Notifier = Callable[[str, Mapping[str, Any]], Any]

DEFAULT_STRATEGY = Strategy()  #: a canary with no steps: promote at the first tick


class ReleaseService:
    def __init__(
        self,
        *,
        agents: AgentService,
        store: Callable[[], ReleaseStore],
        signals: SignalCollector | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        wall: Callable[[], float] = time.time,
        cache_seconds: float = 1.0,
        notify: Notifier | None = None,
    ) -> None:
        """``store``: the release store (asked for once the agents' stores are open);
        ``strategies``: per agent, from ``wayport.yaml``; ``cache_seconds``: how long a
        replica routes on the rollout it read last (its own changes apply at once)."""
        self.agents = agents
        self._store = store
        self.signals = signals if signals is not None else SignalCollector(replica=_replica())
        self.strategies = dict(strategies or {})
        self.wall = wall
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Rollout | None]] = {}
        self.notify = notify
        self.tenants: set[str] = {DEFAULT_TENANT}  #: the tenants the reconciler looks at
        self.shadows = Shadows(self)
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> ReleaseStore:
        return self._store()

    async def drain(self) -> None:
        """Wait for the shadow runs in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ routing (VersionPicker)

    async def _rollout(self, tenant: str, agent: str) -> Rollout | None:
        now = asyncio.get_running_loop().time()
        cached = self._cache.get((tenant, agent))
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        found = await self.store.rollout(tenant, agent)
        self._cache[(tenant, agent)] = (now, found)
        return found

    def _remember(self, tenant: str, rollout: Rollout) -> None:
        self._cache[(tenant, rollout.state.agent)] = (asyncio.get_running_loop().time(), rollout)

    async def pick(
        self,
        tenant: str,
        agent: AgentSpec,
        *,
        key: str | None,
        pinned: str | None = None,
        preview: str | None = None,
    ) -> Picked:
        rollout = await self._rollout(tenant, agent.name)
        if rollout is None:
            return Picked(spec=agent)
        state = rollout.state
        if state.phase in TERMINAL and agent.version not in (
            state.stable,
            state.previous,
            state.candidate,
        ):
            return Picked(spec=agent)  # the configuration changed after this rollout ended
        wanted = preview is not None and preview in ("1", "true", state.candidate)
        chosen = assign(
            state,
            current=agent.version,
            key=key if key is not None else os.urandom(8).hex(),
            preview=wanted,
            pinned=pinned if rollout.strategy.sticky else None,
        )
        spec = await self._resolve(tenant, agent, chosen.version)
        shadow = None
        if chosen.shadow is not None:
            shadow = await self._resolve(tenant, agent, chosen.shadow)
        return Picked(spec=spec, shadow=shadow)

    async def fallback(self, run: Run, agent: AgentSpec) -> AgentSpec | None:
        tenant = run.tenant_id
        rollout = await self._rollout(tenant, agent.name)
        if rollout is None or rollout.state.phase in TERMINAL:
            return None
        state = rollout.state
        if agent.version != state.candidate or state.stable == state.candidate:
            return None
        stable = await self.agents.versions.get(tenant, agent.name, state.stable)
        if stable is None:
            current = await tenant_agent(self.agents, agent.name, tenant)  # the tenant's own too
            if current.version == state.stable:
                stable = current
                await self.agents.versions.pin(tenant, stable)  # the run resumes on it by version
        if stable is not None:
            self.signals.record_failover(run, agent.name, agent.version, state.stable)
        return stable

    def mirror(self, tenant: str, run: Run, messages: Sequence[Message], shadow: AgentSpec) -> None:
        # the live run's channel, held now: a stateless run is deleted once answered
        live = self.agents.events.open(run.id)
        task = asyncio.create_task(
            self.shadows.mirror(tenant, run, live, list(messages), shadow),
            name=f"shadow-{run.id}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, tenant: str, configured: AgentSpec, version: str) -> AgentSpec:
        if version == configured.version:
            return configured
        found = await self.agents.versions.get(tenant, configured.name, version)
        return found if found is not None else configured

    # ------------------------------------------------------------------ versions

    async def register(self, tenant: str, spec: AgentSpec) -> str:
        """Store a definition (a config file's agent) as a version of its agent."""
        await tenant_agent(self.agents, spec.name, tenant)  # NotFound for an unknown agent
        return await self.agents.versions.pin(tenant, spec)

    async def versions(self, tenant: str, agent: str) -> list[VersionInfo]:
        configured = await tenant_agent(self.agents, agent, tenant)
        await self.agents.versions.pin(tenant, configured)  # the running one is always listed
        return await self.store.versions(tenant, agent)

    async def version(self, tenant: str, agent: str, version: str) -> AgentSpec:
        configured = await tenant_agent(self.agents, agent, tenant)
        if version == configured.version:
            return configured
        found = await self.agents.versions.get(tenant, agent, version)
        if found is None:
            raise NotFound(f"agent {agent!r} has no version {version!r}", code="version_not_found")
        return found

    async def diff(self, tenant: str, agent: str, a: str, b: str) -> dict[str, list[Any]]:
        """The fields that differ between two versions: ``{field: [in a, in b]}``."""
        left = _flat(asdict(await self.version(tenant, agent, a)))
        right = _flat(asdict(await self.version(tenant, agent, b)))
        return {
            key: [left.get(key), right.get(key)]
            for key in sorted(set(left) | set(right))
            if left.get(key) != right.get(key)
        }

    # ------------------------------------------------------------------ rollouts

    async def create(
        self,
        tenant: str,
        agent: str,
        *,
        candidate: str | None = None,
        spec: AgentSpec | None = None,
        strategy: Strategy | None = None,
    ) -> Rollout:
        """Begin a rollout of ``candidate`` (a stored version) or of ``spec`` (stored now).
        Raises ``Conflict`` while another rollout of the agent is in progress."""
        configured = await tenant_agent(self.agents, agent, tenant)
        if spec is not None:
            if spec.name != agent:
                raise InvalidRequest(f"the spec is agent {spec.name!r}, not {agent!r}")
            candidate = await self.agents.versions.pin(tenant, spec)
        if candidate is None:
            raise InvalidRequest("a candidate version or spec is needed", param="candidate")
        await self.version(tenant, agent, candidate)  # NotFound for an unknown version
        await self.agents.versions.pin(tenant, configured)
        stable = await self.current(tenant, configured)
        if candidate == stable:
            raise ReleaseError(f"{candidate} is already the stable version of {agent!r}")
        plan = strategy or self.strategies.get(agent) or DEFAULT_STRATEGY
        now = self.wall()
        decision = start(plan, agent=agent, stable=stable, candidate=candidate, now=now)
        saved = await self.store.put_rollout(
            tenant, decision.state, plan, expected=None, window_start=now, now=now
        )
        self.tenants.add(tenant)
        self._remember(tenant, saved)
        await self._record(tenant, saved, decision, now)
        return saved

    async def current(self, tenant: str, configured: AgentSpec) -> str:
        """The version new sessions get outside a rollout."""
        rollout = await self.store.rollout(tenant, configured.name)
        if rollout is None:
            return configured.version
        state = rollout.state
        if configured.version not in (state.stable, state.previous, state.candidate):
            return configured.version
        return state.stable

    async def command(self, tenant: str, agent: str, command: Command) -> Rollout:
        rollout = await self.store.rollout(tenant, agent)
        if rollout is None:
            raise NotFound(f"agent {agent!r} has no rollout", code="rollout_not_found")
        now = self.wall()
        decision = decide(rollout.strategy, rollout.state, Observed(now=now, command=command))
        if not decision.changed:
            raise ReleaseError(
                f"{command.value}: the rollout of {agent!r} is {rollout.state.phase.value}"
            )
        return await self.apply(tenant, rollout, decision, now)

    async def apply(self, tenant: str, rollout: Rollout, decision: Decision, now: float) -> Rollout:
        """Write the decision (compare-and-set), then record and announce it."""
        reset = any(isinstance(a, ResetWindow) for a in decision.actions)
        saved = await self.store.put_rollout(
            tenant,
            decision.state,
            rollout.strategy,
            expected=rollout.revision,
            window_start=now if reset else rollout.window_start,
            now=now,
        )
        self._remember(tenant, saved)
        await self._record(tenant, saved, decision, now)
        return saved

    async def _record(self, tenant: str, saved: Rollout, decision: Decision, now: float) -> None:
        state = saved.state
        for action in decision.actions:
            if not isinstance(action, Notify):
                continue
            detail = {
                "detail": action.detail,
                "phase": state.phase.value,
                "stable": state.stable,
                "candidate": state.candidate,
                "weight": state.weight,
                "mirror": state.mirror,
                "step": state.step,
            }
            await self.store.add_event(tenant, state.agent, action.event, detail, at=now)
            if self.notify is not None:
                await self.notify(action.event, {"tenant": tenant, "agent": state.agent, **detail})

    # ------------------------------------------------------------------ signals

    async def observe(self, tenant: str, rollout: Rollout, now: float) -> Observed:
        """What the controller sees: both versions' signals over the analysis window."""
        state = rollout.state
        since = self.signals.bucket(rollout.window_start)
        suite = None
        if state.step < len(rollout.strategy.steps):
            step = rollout.strategy.steps[state.step]
            suite = step.suite if isinstance(step, EvalStep) else None
        return Observed(
            now=now,
            candidate=await self._signals(tenant, state.agent, state.candidate, since, suite),
            stable=await self._signals(tenant, state.agent, state.stable, since, None),
        )

    async def _signals(
        self, tenant: str, agent: str, version: str | None, since: float, suite: str | None
    ) -> Signals:
        if version is None:
            return Signals()
        store = self.store
        aggregate = await store.signals(tenant, agent, version, since=since)
        up, down = await store.feedback_counts(tenant, agent, version, since=since)
        latest = await store.latest_eval(tenant, agent, version, suite=suite)
        return aggregate.signals(
            feedback_up=up, feedback_down=down, eval_score=latest.score if latest else None
        )

    async def status(self, tenant: str, agent: str) -> dict[str, Any]:
        """The rollout, both versions' signals, the checks of the current step and their
        values, the A/B comparison and the latest events."""
        await self.signals.flush(self.store)
        rollout = await self.store.rollout(tenant, agent)
        if rollout is None:
            raise NotFound(f"agent {agent!r} has no rollout", code="rollout_not_found")
        observed = await self.observe(tenant, rollout, self.wall())
        events = await self.store.events(tenant, agent, limit=20)
        return {
            "agent": agent,
            "revision": rollout.revision,
            "state": state_to_dict(rollout.state),
            "strategy": strategy_to_dict(rollout.strategy),
            "checks": _checks(rollout.strategy, rollout.state.step, observed),
            "comparison": {
                name: {"candidate": pair[0], "stable": pair[1]}
                for name, pair in compare(observed.candidate, observed.stable).items()
            },
            "events": [{"event": e.event, "at": e.at, **dict(e.detail)} for e in events],
        }

    async def rollouts(self, tenant: str) -> list[Rollout]:
        return await self.store.rollouts(tenant)

    # ------------------------------------------------------------------ feedback

    async def feedback(
        self, tenant: str, run_id: str, *, score: int, comment: str | None = None
    ) -> Feedback:
        if score not in (1, -1):
            raise InvalidRequest("score must be 1 or -1", param="score")
        if comment is not None and len(comment) > 4000:
            raise InvalidRequest("comment: at most 4000 characters", param="comment")
        run = await self.agents.run(run_id, tenant=tenant)  # NotFound across tenants too
        agent = None
        session = await self.agents.stores.sessions.get(tenant, run.session_id)
        if session is not None:
            agent = session.agent
        elif run.id in self.signals.recent:
            agent = self.signals.recent[run.id][0]
        if agent is None:
            raise NotFound(f"the agent of run {run_id!r} is gone", code="run_not_found")
        version = run.agent_version
        failover = run.output.get("failover") if isinstance(run.output, dict) else None
        if isinstance(failover, dict) and isinstance(failover.get("answered_by"), str):
            version = str(failover["answered_by"])  # stable answered after the candidate failed
        made = Feedback(
            run_id=run.id,
            agent=agent,
            version=version,
            score=score,
            comment=comment,
            at=self.wall(),
        )
        await self.store.add_feedback(tenant, made)
        return made


def _checks(strategy: Strategy, step: int, observed: Observed) -> list[dict[str, Any]]:
    analyses = []
    if strategy.guard is not None:
        analyses.append(("guard", strategy.guard))
    steps = strategy.steps
    if strategy.kind is Kind.SHADOW:
        analyses += [("analysis", s.analysis) for s in steps if isinstance(s, AnalysisStep)][:1]
    elif step < len(steps) and isinstance(steps[step], AnalysisStep):
        current = steps[step]
        assert isinstance(current, AnalysisStep)
        analyses.append((f"step {step}", current.analysis))
    out: list[dict[str, Any]] = []
    for where, analysis in analyses:
        verdict, why = evaluate(analysis, observed.candidate, observed.stable)
        for condition in analysis.conditions:
            out.append(
                {
                    "where": where,
                    "check": condition.describe(),
                    "candidate": observed.candidate.value(condition.metric),
                    "stable": observed.stable.value(condition.metric),
                    "holds": condition.holds(observed.candidate, observed.stable),
                    "verdict": verdict.value,
                    "why": why,
                }
            )
    return out


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}{key}."))
        return out
    if isinstance(value, tuple):
        value = list(value)
    return {prefix.rstrip("."): value}


def _replica() -> str:
    return f"{os.uname().nodename}-{os.getpid()}"
