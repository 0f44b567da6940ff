"""An in-memory ``UsageStore``: passes the same contract suite as the SQL one.

store = MemoryUsageStore()
await store.record([record])
await store.totals("acme", group_by="model")
"""

from __future__ import annotations

from collections.abc import Sequence

from wayport.core.errors import Conflict
from wayport.core.usage import UsageRecord, UsageTotal, totals
from wayport.ports import UsageStore
from wayport.store.scope import Scope


class MemoryUsageStore:
    def __init__(self) -> None:
        self._records: dict[tuple[str, str], UsageRecord] = {}

    async def record(self, records: Sequence[UsageRecord]) -> None:
        keys = [(Scope(r.tenant).tenant, r.id) for r in records]
        if len(set(keys)) != len(keys) or any(k in self._records for k in keys):
            raise Conflict("a usage record with this id is stored already")
        self._records.update(zip(keys, records, strict=True))

    def _select(self, tenant: str, since: float | None, until: float | None) -> list[UsageRecord]:
        Scope(tenant)
        return sorted(
            (
                r
                for (t, _), r in self._records.items()
                if t == tenant
                and (since is None or r.at >= since)
                and (until is None or r.at < until)
            ),
            key=lambda r: (r.at, r.id),
        )

    async def totals(
        self,
        tenant: str,
        *,
        group_by: str,
        since: float | None = None,
        until: float | None = None,
    ) -> list[UsageTotal]:
        return totals(self._select(tenant, since, until), group_by)

    async def records(
        self,
        tenant: str,
        *,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[UsageRecord]:
        return self._select(tenant, since, until)[:limit]


def _implements_port(store: MemoryUsageStore) -> UsageStore:
    """Never called: type checkers verify here that the store implements the port."""
    return store
