"""An in-memory ``AgentStore`` (the admin API's agent definitions), passing the same contract
suite as ``wayport.store.agents.SqlAgentStore``::

    store = MemoryAgentStore(now=clock.now)
    row = await store.put("default", spec)
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wayport.core.agent import AgentSpec
from wayport.ports import AgentStore, StoredAgent
from wayport.store.codec import spec_from_json, spec_to_json
from wayport.store.scope import Scope

__all__ = ["MemoryAgentStore"]


class MemoryAgentStore:
    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._rows: dict[tuple[str, str], StoredAgent] = {}

    async def put(self, tenant: str, spec: AgentSpec) -> StoredAgent:
        key = (Scope(tenant).tenant, spec.name)
        now, earlier = self._now(), self._rows.get(key)
        stored = StoredAgent(
            spec=spec_from_json(spec_to_json(spec)),  # what a database would give back
            revision=1 if earlier is None else earlier.revision + 1,
            created_at=now if earlier is None else earlier.created_at,
            updated_at=now,
        )
        self._rows[key] = stored
        return stored

    async def get(self, tenant: str, name: str) -> StoredAgent | None:
        return self._rows.get((Scope(tenant).tenant, name))

    async def list(self, tenant: str) -> list[StoredAgent]:
        tenant = Scope(tenant).tenant
        return sorted(
            (r for (t, _), r in self._rows.items() if t == tenant), key=lambda r: r.spec.name
        )

    async def delete(self, tenant: str, name: str) -> bool:
        return self._rows.pop((Scope(tenant).tenant, name), None) is not None


def _implements_port(store: MemoryAgentStore) -> AgentStore:
    """Never called: type checkers verify here that the memory store implements the port."""
    return store
