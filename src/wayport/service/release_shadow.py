"""Shadow traffic: a copy of a turn runs on the candidate in a hidden session of its own; its
answer is recorded next to the one the user got (a ``shadow`` release event) and never sent;
tools with side effects are not executed (the runner answers them "skipped in shadow").

The shadow replays the turn's new messages only (a stateless call's whole conversation), so a
long session's shadow sees less context than the live run did.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wayport.core.agent import AgentSpec
from wayport.core.errors import WayportError
from wayport.core.session import Json, Run, RunStatus
from wayport.core.types import Message
from wayport.runtime.events import RunChannel
from wayport.runtime.runner import run_input

if TYPE_CHECKING:
    from wayport.service.releases import ReleaseService

_log = logging.getLogger(__name__)


class Shadows:
    def __init__(self, releases: ReleaseService) -> None:
        self._releases = releases

    async def mirror(
        self,
        tenant: str,
        run: Run,
        live: RunChannel,
        messages: list[Message],
        shadow: AgentSpec,
    ) -> None:
        try:
            await self._mirror(tenant, run, live, messages, shadow)
        except WayportError as exc:
            _log.warning("shadow run of %s failed: %s", run.id, exc.message)

    async def _mirror(
        self,
        tenant: str,
        run: Run,
        live: RunChannel,
        messages: list[Message],
        shadow: AgentSpec,
    ) -> None:
        agents = self._releases.agents
        stores = agents.stores
        version = await agents.versions.pin(tenant, shadow)
        session = await stores.sessions.create(
            tenant,
            agent=shadow.name,
            agent_version=version,
            metadata={"shadow_of": run.id},
        )
        try:
            payload = run_input(messages)
            assert isinstance(payload, dict)
            payload["shadow"] = True
            mirrored = await stores.runs.create(
                tenant, session_id=session.id, input=payload, agent_version=version
            )
            waiting = agents.events.open(mirrored.id)
            agents.worker.wake()
            theirs = await waiting.wait()
            ours = await live.wait()
            detail: dict[str, Any] = {
                "run_id": run.id,
                "shadow_run_id": mirrored.id,
                "version": run.agent_version,
                "shadow_version": version,
                "status": ours.run.status.value,
                "shadow_status": theirs.run.status.value,
                "answer": _content(ours.run.output),
                "shadow_answer": _content(theirs.run.output),
            }
            detail["same"] = (
                theirs.run.status is RunStatus.COMPLETED
                and detail["answer"] == detail["shadow_answer"]
            )
            await self._releases.store.add_event(
                tenant, shadow.name, "shadow", detail, at=self._releases.wall()
            )
        finally:
            await stores.sessions.delete(tenant, session.id)


def _content(output: Json) -> str | None:
    found = output.get("content") if isinstance(output, dict) else None
    return found if isinstance(found, str) else None
