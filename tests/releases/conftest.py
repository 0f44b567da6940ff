"""A release harness: ``AgentService`` on real SQLite with a router over scripted backends,
``ReleaseService`` routing its runs, and a reconciler driven by a manual clock.

Every answer names the version that wrote it: the scripted backends answer with the agent's
instructions (its system message), and each version has its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from wayport.core.agent import AgentSpec, ToolSpec
from wayport.core.errors import BackendUnavailable
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest, Message
from wayport.models.router import Router
from wayport.runtime.fallbacks import FunctionTools
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.release_reconciler import Reconciler
from wayport.service.release_signals import SignalCollector
from wayport.service.releases import ReleaseService
from wayport.store import SqlStore, open_store
from wayport.store.releases import SqlReleaseStore
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Fail, Reply, Step

STABLE = AgentSpec(name="support", model="good", instructions="v1", tools=("charge",))
CHARGE = ToolSpec(name="charge", side_effects=True)


def instructions(request: ChatRequest) -> str:
    for message in request.messages:
        if message["role"] == "system":
            return str(message.get("content"))
    return "?"


def answer(request: ChatRequest) -> Step:
    text = instructions(request)
    if text.startswith("use-tool") and not any(m["role"] == "tool" for m in request.messages):
        call = {"id": "c1", "type": "function", "function": {"name": "charge", "arguments": "{}"}}
        return Reply(text="", tool_calls=[call])  # type: ignore[list-item]
    if any(m["role"] == "tool" for m in request.messages):
        tool = [m for m in request.messages if m["role"] == "tool"][-1]
        return Reply(text=f"{text} after {tool.get('content')}")
    return Reply(text=text)


def user(text: str = "hi") -> list[Message]:
    return [{"role": "user", "content": text}]


class Agents:
    """``AgentService`` on the SQLite file under ``state``: ``spec`` on a router over the
    scripted backends ``good`` (answering with ``answer``) and ``bad`` (down), with the
    ``charge`` tool (``charge_spec``), whose calls ``charged`` records."""

    def __init__(
        self,
        state: Path,
        answer: Callable[[ChatRequest], Step],
        *,
        spec: AgentSpec = STABLE,
        charge_spec: ToolSpec = CHARGE,
    ) -> None:
        self.store: SqlStore | None = None
        self.good = ScriptedBackend("good", answer)
        self.bad = ScriptedBackend("bad", lambda r: Fail(BackendUnavailable("bad is down")))
        self.charged: list[str] = []

        async def charge(arguments: dict[str, object]) -> str:
            self.charged.append("charged")
            return "charged"

        async def stores() -> Stores:
            self.store = await open_store(None, state_dir=state)
            return self.store

        router = Router(
            groups=[
                ModelGroup(name=n, deployments=(WeightedDeployment(name=n),))
                for n in ("good", "bad")
            ],
            backends={"good": self.good, "bad": self.bad},
            policy=RouterPolicy(max_retries=0),
        )
        self.agents = AgentService(
            catalog=AgentCatalog([spec]),
            model=router,
            open_stores=stores,
            tools=FunctionTools({"charge": (charge_spec, charge)}),  # type: ignore[dict-item]
        )

    @property
    def sql(self) -> SqlStore:
        assert self.store is not None
        return self.store


class Env(Agents):
    def __init__(self, state: Path) -> None:
        self.clock = ManualClock(start=1_750_000_000.0)
        self.watch = ManualClock(start=0.0)  #: the signals' monotonic clock (latency, TTFT)
        super().__init__(state, self._answer)
        self.signals = SignalCollector(replica="r1", wall=self.clock.now, monotonic=self.watch.now)
        self.agents.observer = self.signals
        self.releases = ReleaseService(
            agents=self.agents,
            store=lambda: SqlReleaseStore(self.sql.db),
            signals=self.signals,
            wall=self.clock.now,
        )
        self.agents.picker = self.releases
        self.reconciler = Reconciler(self.releases)

    def _answer(self, request: ChatRequest) -> Step:
        if instructions(request).startswith("slow-start"):
            self.watch.advance(2.0)  # before the first token: time to first token 2 s
        return answer(request)

    async def ask(self, who: str | None = None, *, preview: str | None = None) -> str:
        """A stateless call; the answer (which names its version)."""
        done = await self.agents.chat(
            "agent/support", user(), session_id=None, user=who, preview=preview
        )
        assert done.run.status.value == "completed", done.run.error
        output = done.run.output
        assert isinstance(output, dict)
        return str(output["content"])

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        await self.reconciler.tick()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    made = Env(tmp_path)
    await made.good.start()
    await made.bad.start()
    await made.agents.start()
    try:
        yield made
    finally:
        await made.releases.drain()
        await made.agents.close()
