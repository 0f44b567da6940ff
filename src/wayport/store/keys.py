"""``KeyStore`` on SQL: API keys, stored hashed, always read within their tenant.

store = SqlKeyStore(db)
await store.create(key)                        # key.hash is the SHA-256 of the secret key
found = await store.get("acme", "abcdefghij23")  # the tenant comes from the key's prefix
await store.revoke("acme", "abcdefghij23", at=now)
await store.touch("acme", {"abcdefghij23": now})  # last_used_at, batched by the caller
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.errors import Conflict, NotFound
from wayport.core.identity import ApiKey, Role
from wayport.store.database import Database
from wayport.store.schema import api_keys as K
from wayport.store.scope import Scope, scoped_insert, scoped_select, scoped_update

_BY_ID = K.c.id == param("kid")
_GET = scoped_select(K).where(_BY_ID)
_LIST = scoped_select(K).order_by(K.c.created_at, K.c.id)
_INSERT = scoped_insert(K)
_REVOKE = (
    scoped_update(K)
    .where(_BY_ID, K.c.revoked_at.is_(None))
    .values(revoked_at=param("at"))
    .returning(K)
)
# never moves backwards: a late batch from another replica cannot undo a newer time
_TOUCH = (
    scoped_update(K)
    .where(
        _BY_ID,
        sa.or_(K.c.last_used_at.is_(None), K.c.last_used_at < param("at")),
    )
    .values(last_used_at=param("at"))
)


def key_from_row(row: sa.Row[Any]) -> ApiKey:
    return ApiKey(
        tenant=row.tenant_id,
        id=row.id,
        name=row.name,
        role=Role.parse(row.role),
        scopes=frozenset(row.scopes or ()),
        user=row.user_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        created_by=row.created_by,
        hash=row.hash,
    )


class SqlKeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, key: ApiKey) -> ApiKey:
        """Store ``key`` (its ``hash`` set). Raises ``Conflict`` for a taken id."""
        scope = Scope(key.tenant)
        row = {
            "id": key.id,
            "hash": key.hash,
            "name": key.name,
            "role": key.role.label,
            "scopes": sorted(key.scopes),
            "user_id": key.user,
            "created_by": key.created_by,
            "created_at": key.created_at,
            "expires_at": key.expires_at,
        }

        def job(conn: sa.Connection) -> None:
            scope.execute(conn, _INSERT, row)

        try:
            await self._db.write(job)
        except Conflict as exc:
            raise Conflict(f"API key {key.prefix} already exists") from exc
        return key

    async def get(self, tenant: str, key_id: str) -> ApiKey | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> ApiKey | None:
            row = scope.execute(conn, _GET, {"kid": key_id}).first()
            return None if row is None else key_from_row(row)

        return await self._db.read(job)

    async def list(self, tenant: str) -> list[ApiKey]:
        scope = Scope(tenant)
        return await self._db.read(
            lambda conn: [key_from_row(r) for r in scope.execute(conn, _LIST)]
        )

    async def revoke(self, tenant: str, key_id: str, *, at: float) -> ApiKey:
        """Mark the key revoked at ``at``; a key already revoked keeps its first time.
        Raises ``NotFound``."""
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> ApiKey:
            row = scope.execute(conn, _REVOKE, {"kid": key_id, "at": at}).first()
            if row is None:
                row = scope.execute(conn, _GET, {"kid": key_id}).first()
                if row is None:
                    raise NotFound(f"API key {key_id!r} not found", code="key_not_found")
            return key_from_row(row)

        return await self._db.write(job)

    async def touch(self, tenant: str, used: Mapping[str, float]) -> None:
        """Record when each key was last used (one transaction for the batch)."""
        if not used:
            return
        scope = Scope(tenant)
        rows = [{"kid": kid, "at": at} for kid, at in used.items()]

        def job(conn: sa.Connection) -> None:
            for row in rows:
                scope.execute(conn, _TOUCH, row)

        await self._db.write(job)
