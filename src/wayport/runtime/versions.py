"""Pinned agent definitions: a run executes the definition it started with (its
``agent_version``), whatever the agent looks like when the run resumes.

    versions = AgentVersions(store.runs)
    version = await versions.pin(tenant, spec)  # stored once per version, then cached
    run = await runs.create(tenant, session_id=sid, agent_version=version, …)
    ...
    spec = await versions.get(tenant, "support", run.agent_version)  # None: never pinned

``AgentSpec.version`` hashes the whole definition on every access; ``pin`` remembers it per
definition object, so a turn pays neither the hash nor the store after the first of a version.
"""

from __future__ import annotations

from collections import OrderedDict

from wayport.core.agent import AgentSpec
from wayport.ports import RunStore

_Key = tuple[str, str, str]  # tenant, agent, version


class AgentVersions:
    """A bounded cache over ``RunStore.pin_agent`` / ``pinned_agent``."""

    def __init__(self, runs: RunStore, *, capacity: int = 1024) -> None:
        self._runs = runs
        self._capacity = capacity
        self._specs: OrderedDict[_Key, AgentSpec] = OrderedDict()
        # by object identity; the spec is held, so its id cannot be reused while cached
        self._hashes: OrderedDict[int, tuple[AgentSpec, str]] = OrderedDict()

    def version(self, spec: AgentSpec) -> str:
        """``spec.version``, hashed once per definition object."""
        known = self._hashes.get(id(spec))
        if known is not None and known[0] is spec:
            return known[1]
        version = spec.version
        self._hashes[id(spec)] = (spec, version)
        if len(self._hashes) > self._capacity:
            self._hashes.popitem(last=False)
        return version

    async def pin(self, tenant: str, spec: AgentSpec) -> str:
        """Store ``spec`` under its version (once per version and process); return the
        version."""
        version = self.version(spec)
        key = (tenant, spec.name, version)
        if key in self._specs:
            self._specs.move_to_end(key)
            return version
        await self._runs.pin_agent(tenant, spec)
        self._remember(key, spec)
        return version

    async def get(self, tenant: str, agent: str, version: str) -> AgentSpec | None:
        """The definition pinned under ``version``, ``None`` if it never was."""
        key = (tenant, agent, version)
        found = self._specs.get(key)
        if found is not None:
            self._specs.move_to_end(key)
            return found
        found = await self._runs.pinned_agent(tenant, agent, version)
        if found is not None:
            self._remember(key, found)
        return found

    def _remember(self, key: _Key, spec: AgentSpec) -> None:
        self._specs[key] = spec
        if len(self._specs) > self._capacity:
            self._specs.popitem(last=False)
