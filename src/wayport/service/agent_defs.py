"""Agent definitions made over the admin API: stored per tenant, read through a small cache.

    defs = AgentDefinitions(catalog, store_for=lambda stores: SqlAgentStore(stores.db),
                            validate=agent_validator(...))     # config: the YAML's own model
    service.definitions = defs                                  # AgentService attaches it
    stored = await defs.put(principal, "support", {"model": "m", "instructions": "…"})
    await defs.delete(principal, "support")

Agents of ``wayport.yaml`` are visible to every tenant and cannot be replaced or deleted here
(409). A tenant's own agents are visible to that tenant only. Every put pins the new version
(``agent_versions``) before it becomes current, so a run already submitted keeps executing the
version it started with; the edit applies to the runs submitted after it.

Code outside the agents API finds an agent through ``tenant_agent`` / ``tenant_agents``, which
read the caller's tenant's own agents first (``catalog.get(name)`` alone sees only the file's)::

    spec = await tenant_agent(service, "support", principal.tenant)   # NotFound for others

**Every replica sees them.** The table is the truth; each process keeps a per-tenant copy,
checked against the table at most every ``ttl`` seconds (``refresh``), dropped at once on this
process's own edits and, with a cluster bus, on every replica's (topic ``agents``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from wayport.core.agent import AgentSpec
from wayport.core.errors import Conflict, NotFound
from wayport.core.identity import Principal
from wayport.ports import AgentStore, Bus, StoredAgent

__all__ = [
    "AGENTS_TOPIC",
    "AgentDefinition",
    "AgentDefinitions",
    "AgentValidator",
    "tenant_agent",
    "tenant_agents",
]

AGENTS_TOPIC = "agents"  #: message: a tenant whose agents changed; replicas drop their copy
AgentValidator = Callable[[str, Mapping[str, Any]], AgentSpec]
"""``(name, body) -> AgentSpec``, validated as an ``agents:`` entry of ``wayport.yaml``;
raises ``InvalidRequest`` (400) naming the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentDefinition:
    spec: AgentSpec
    source: Literal["config", "api"]
    revision: int | None = None  #: API agents: 1 on create, +1 on each replace
    created_at: float | None = None
    updated_at: float | None = None


class AgentDefinitions:
    def __init__(
        self,
        *,
        store_for: Callable[[Any], AgentStore],
        validate: AgentValidator,
        audit: Any | None = None,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``store_for`` builds the store on the service's opened stores; ``audit``: a
        ``wayport.service.audit.AuditService`` (``agent.put`` / ``agent.delete`` entries)."""
        self._store_for = store_for
        self.validate = validate
        self.audit = audit
        self._ttl = ttl
        self._clock = clock
        self._store: AgentStore | None = None
        self._catalog: Any = None
        self._pin: Callable[[str, AgentSpec], Any] | None = None
        self._bus: Bus | None = None
        self._checked: dict[str, float] = {}  #: tenant -> when its copy was last read

    def attach(
        self,
        stores: Any,
        catalog: Any,
        *,
        pin: Callable[[str, AgentSpec], Any],
        bus: Bus | None = None,
    ) -> None:
        """Called by ``AgentService.start`` with the opened stores; ``pin`` stores a version
        (``AgentVersions.pin``). ``bus``: subscribed to before it starts."""
        self._store = self._store_for(stores)
        self._catalog, self._pin = catalog, pin
        self._checked.clear()
        if bus is not None and self._bus is not bus:
            self._bus = bus
            bus.subscribe(AGENTS_TOPIC, self._forget)

    @property
    def store(self) -> AgentStore:
        if self._store is None:
            raise RuntimeError("AgentService.start() has not been called")
        return self._store

    # ------------------------------------------------------------------ reads

    async def refresh(self, tenant: str, *, force: bool = False) -> None:
        """Load ``tenant``'s agents into the catalog unless its copy is fresh enough."""
        checked = self._checked.get(tenant)
        now = self._clock()
        if not force and checked is not None and now - checked < self._ttl:
            return
        rows = await self.store.list(tenant)
        self._catalog.set_tenant(tenant, {r.spec.name: r.spec for r in rows})
        self._checked[tenant] = now

    async def get(self, tenant: str, name: str) -> AgentDefinition:
        configured = self._catalog.configured(name)
        if configured is not None:
            return AgentDefinition(spec=configured, source="config")
        found = await self.store.get(tenant, name)
        if found is None:
            raise NotFound(
                f"The agent {name!r} does not exist", param="agent", code="agent_not_found"
            )
        return _api(found)

    # ------------------------------------------------------------------ writes

    async def put(
        self, actor: Principal, name: str, body: Mapping[str, Any]
    ) -> tuple[AgentDefinition, bool]:
        """Create or replace ``actor.tenant``'s agent ``name``; the definition and whether it
        was created. Raises ``InvalidRequest`` and ``Conflict`` (an agent of the file)."""
        self._refuse_configured(name)
        spec = self.validate(name, body)
        tenant = actor.tenant
        assert self._pin is not None
        await self._pin(tenant, spec)  # pinned before it can run: runs keep their version
        stored = await self.store.put(tenant, spec)
        await self._changed(tenant)
        if self.audit is not None:
            details = {"version": spec.version, "revision": stored.revision}
            await self.audit.record(actor, "agent.put", target=name, details=details)
        return _api(stored), stored.revision == 1

    async def delete(self, actor: Principal, name: str) -> None:
        """Raises ``Conflict`` (an agent of the file) and ``NotFound``. Runs already
        submitted finish on their pinned version."""
        self._refuse_configured(name)
        tenant = actor.tenant
        if not await self.store.delete(tenant, name):
            raise NotFound(
                f"The agent {name!r} does not exist", param="agent", code="agent_not_found"
            )
        await self._changed(tenant)
        if self.audit is not None:
            await self.audit.record(actor, "agent.delete", target=name)

    def _refuse_configured(self, name: str) -> None:
        if self._catalog.configured(name) is not None:
            raise Conflict(
                f"The agent {name!r} is defined in wayport.yaml; change it there",
                param="agent",
                code="agent_defined_in_config",
            )

    async def _changed(self, tenant: str) -> None:
        await self.refresh(tenant, force=True)
        if self._bus is not None:
            await self._bus.publish(AGENTS_TOPIC, tenant)

    def _forget(self, tenant: str) -> None:
        """Another replica (or this one) changed ``tenant``'s agents: read them again."""
        self._checked.pop(tenant, None)


class _Catalog(Protocol):
    def get(self, name: str, tenant: str | None = None) -> AgentSpec: ...

    def list(self, tenant: str | None = None) -> list[AgentSpec]: ...


class _Agents(Protocol):
    """What ``AgentService`` offers for lookups (this module cannot import it)."""

    @property
    def catalog(self) -> _Catalog: ...

    @property
    def definitions(self) -> AgentDefinitions | None: ...


async def tenant_agent(agents: _Agents, name: str, tenant: str) -> AgentSpec:
    """The agent ``name`` as ``tenant`` sees it: the file's, else the tenant's own (refreshed
    first). Raises ``NotFound``, also for another tenant's agent."""
    if agents.definitions is not None:
        await agents.definitions.refresh(tenant)
    return agents.catalog.get(name, tenant)


async def tenant_agents(agents: _Agents, tenant: str) -> list[AgentSpec]:
    """Every agent ``tenant`` sees: the file's, then its own."""
    if agents.definitions is not None:
        await agents.definitions.refresh(tenant)
    return agents.catalog.list(tenant)


def _api(row: StoredAgent) -> AgentDefinition:
    return AgentDefinition(
        spec=row.spec,
        source="api",
        revision=row.revision,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
