"""API keys and tenants: issuing, checking, listing and revoking keys; creating tenants.

    keys = KeyService(stores=lambda: store, audit=audit)
    key, token = await keys.create(admin, name="ci", role=Role.DEPLOYER)  # token shown once
    principal = await keys.authenticate(token)      # Principal(tenant=…, role=DEPLOYER, …)
    await keys.revoke(admin, key.id)                # refused from the next request on

A key reads ``wp_<tenant>_<key id>_<secret>``: the visible prefix names the tenant and the key,
the secret is 256 random bits. Only the SHA-256 of the whole key is stored; checking one is a
regex, a hash and a constant-time comparison against the cached record (the store is read on
the first use and after ``cache_ttl``). Revoking drops the cached record at once on this
process and tells ``revocations`` (a cross-replica broadcast, e.g. Redis pub/sub, whose
subscribers call ``forget``); other replicas without one notice within ``cache_ttl``.
``last_used_at`` is written in the background, at most once per ``touch_every`` per key.

A well-formed key the store does not hold is remembered as a miss for ``miss_ttl`` seconds (at
most ``miss_cache_size`` of them, least recently used dropped first), so a client retrying a
made-up or deleted key costs no store read per request; issuing a key drops a remembered miss
of its id at once on this process (ids are random, so another replica's miss of a brand-new id
is practically impossible and lasts ``miss_ttl`` at most).
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from wayport.core.errors import (
    AuthError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    WayportError,
)
from wayport.core.identity import (
    KEY_ID,
    ApiKey,
    Principal,
    Role,
    Tenant,
    check_slug,
    hash_token,
    key_prefix,
    parse_token,
)
from wayport.core.session import DEFAULT_TENANT
from wayport.ports import AuditStore, KeyStore, TenantStore
from wayport.service.audit import AuditService

_log = logging.getLogger(__name__)
_SCOPE = re.compile(r"[a-z][a-z0-9_.:/-]{0,63}")
#: The organisation of the default tenant; its owner administers every tenant.
SYSTEM_ORG = "default"


class KeyRevocations(Protocol):
    """Cross-replica invalidation: ``publish`` tells the other replicas, whose subscriber
    calls ``KeyService.forget`` for each message."""

    async def publish(self, tenant: str, key_id: str) -> None: ...


class SecurityStores(Protocol):
    @property
    def keys(self) -> KeyStore: ...

    @property
    def tenants(self) -> TenantStore: ...


class FullStores(SecurityStores, Protocol):
    @property
    def audit(self) -> AuditStore: ...


@dataclass(slots=True)
class _Cached:
    key: ApiKey
    principal: Principal
    loaded_at: float


def new_key_id() -> str:
    return base64.b32encode(secrets.token_bytes(10)).decode().lower()[:12]


def new_token(tenant: str, key_id: str) -> str:
    return f"{key_prefix(tenant, key_id)}_{secrets.token_urlsafe(32)}"


class KeyService:
    def __init__(
        self,
        *,
        stores: Callable[[], SecurityStores],
        audit: AuditService | None = None,
        revocations: KeyRevocations | None = None,
        now: Callable[[], float] = time.time,
        cache_ttl: float = 60.0,
        touch_every: float = 60.0,
        miss_ttl: float = 5.0,
        miss_cache_size: int = 10_000,
        key_ids: Callable[[], str] | None = None,
    ) -> None:
        """``key_ids`` draws the id of a new key (default: 60 random bits)."""
        self._stores = stores
        self._audit = audit
        self.revocations = revocations
        self._now = now
        self._ttl = cache_ttl
        self._touch_every = touch_every
        self._cache: dict[tuple[str, str], _Cached] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self._used: dict[tuple[str, str], float] = {}
        self._flusher: asyncio.Task[None] | None = None
        #: unknown keys -> when the store said so; an LRU of at most ``miss_cache_size``
        self._misses: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._miss_ttl = miss_ttl
        self._miss_size = miss_cache_size
        self._key_ids = key_ids or new_key_id
        self._issued = 0  #: bumped around every insert: a miss read meanwhile is not remembered

    def now(self) -> float:
        """The wall clock keys are stamped and expire by."""
        return self._now()

    # ------------------------------------------------------------------ checking

    async def authenticate(self, token: str) -> Principal:
        """The principal of a valid, unexpired, unrevoked key. Raises ``AuthError``; the
        message never repeats the token."""
        parsed = parse_token(token)
        if parsed is None:
            raise AuthError("Invalid API key")
        now = self._now()
        cached = self._cache.get(parsed)
        if cached is None or now - cached.loaded_at > self._ttl:
            missed = self._misses.get(parsed)
            if missed is not None:
                if now - missed < self._miss_ttl:
                    self._misses.move_to_end(parsed)
                    raise AuthError("Invalid API key")
                del self._misses[parsed]
            cached = await self._load(parsed, now)
        key = cached.key
        if not hmac.compare_digest(key.hash, hash_token(token)):
            raise AuthError("Invalid API key")
        if key.revoked_at is not None:
            raise AuthError("This API key has been revoked", code="api_key_revoked")
        if key.expires_at is not None and now >= key.expires_at:
            raise AuthError("This API key has expired", code="api_key_expired")
        if now - self._touched.get(parsed, float("-inf")) >= self._touch_every:
            self._touched[parsed] = now
            self._used[parsed] = now
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.get_running_loop().create_task(self.flush())
        return cached.principal

    async def _load(self, ref: tuple[str, str], now: float) -> _Cached:
        tenant, key_id = ref
        issued = self._issued
        key = await self._stores().keys.get(tenant, key_id)
        if key is None:
            if issued == self._issued:  # no key was issued while this read was in flight
                self._miss(ref, now)
            raise AuthError("Invalid API key")
        fresh = _Cached(key=key, principal=key.principal(), loaded_at=now)
        held = self._cache.get(ref)
        if held is not None and held.key.revoked_at is not None and key.revoked_at is None:
            return held  # revoked here while this read was in flight: the revocation wins
        self._cache[ref] = fresh
        return fresh

    def _miss(self, ref: tuple[str, str], now: float) -> None:
        self._misses[ref] = now
        self._misses.move_to_end(ref)
        while len(self._misses) > self._miss_size:
            self._misses.popitem(last=False)

    def forget(self, tenant: str, key_id: str) -> None:
        """Drop the cached record (a revocation elsewhere): the next use reads the store."""
        self._cache.pop((tenant, key_id), None)
        self._misses.pop((tenant, key_id), None)

    async def flush(self) -> None:
        """Write the pending last-used times, one batch per tenant."""
        used, self._used = self._used, {}
        by_tenant: dict[str, dict[str, float]] = {}
        for (tenant, key_id), at in used.items():
            by_tenant.setdefault(tenant, {})[key_id] = at
        for tenant, batch in by_tenant.items():
            try:
                await self._stores().keys.touch(tenant, batch)
            except WayportError as exc:
                _log.warning("last-used times of %d keys not written: %s", len(batch), exc.message)

    async def close(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            await asyncio.gather(flusher, return_exceptions=True)
        await self.flush()

    # ------------------------------------------------------------------ managing

    async def create(
        self,
        actor: Principal,
        *,
        name: str = "",
        role: Role = Role.USER,
        scopes: Iterable[str] = (),
        user: str | None = None,
        expires_at: float | None = None,
    ) -> tuple[ApiKey, str]:
        """Issue a key in the actor's tenant, of a role no higher than the actor's (and within
        the actor's scopes, if it has any). Returns the stored key and the token, which is
        shown this once."""
        wanted = frozenset(scopes)
        for scope in wanted:
            if _SCOPE.fullmatch(scope) is None:
                raise InvalidRequest(f"scopes: {scope!r} is not a scope name", param="scopes")
        if role > actor.role:
            raise PermissionDenied(
                f"a {actor.role.label} key cannot create a {role.label} key",
                code="role_too_high",
            )
        if actor.scopes and not (wanted and wanted <= actor.scopes):
            raise PermissionDenied(
                "a key limited to scopes can only create keys within them", param="scopes"
            )
        if expires_at is not None and expires_at <= self._now():
            raise InvalidRequest("expires_at must be in the future", param="expires_at")
        key, token = await self.issue(
            actor.tenant,
            name=name,
            role=role,
            scopes=wanted,
            user=user,
            expires_at=expires_at,
            created_by=actor.key_id,
        )
        if self._audit is not None:
            details = {"name": name, "role": role.label, "scopes": sorted(wanted)}
            await self._audit.record(actor, "key.create", target=key.prefix, details=details)
        return key, token

    async def issue(
        self,
        tenant: str,
        *,
        name: str,
        role: Role,
        scopes: frozenset[str] = frozenset(),
        user: str | None = None,
        expires_at: float | None = None,
        created_by: str | None = None,
    ) -> tuple[ApiKey, str]:
        """Store a new key without checking who asks (the CLI on the store, tenant set-up)."""
        check_slug(tenant, "tenant")
        for _ in range(3):
            key_id = self._key_ids()
            token = new_token(tenant, key_id)
            key = ApiKey(
                tenant=tenant,
                id=key_id,
                name=name,
                role=role,
                scopes=scopes,
                user=user,
                created_at=self._now(),
                expires_at=expires_at,
                created_by=created_by,
                hash=hash_token(token),
            )
            self._issued += 1
            try:
                stored = await self._stores().keys.create(key)
            except Conflict:
                continue  # 60 random bits collided: draw again
            self._issued += 1  # a read in flight since before the insert remembers no miss
            self._misses.pop((tenant, key_id), None)
            return stored, token
        raise Conflict("could not draw a free key id")

    async def list(self, actor: Principal) -> list[ApiKey]:
        return await self._stores().keys.list(actor.tenant)

    async def revoke(self, actor: Principal, key_id: str) -> ApiKey:
        """Revoke a key of the actor's tenant (of a role no higher than the actor's)."""
        if KEY_ID.fullmatch(key_id) is None:
            raise NotFound(f"API key {key_id!r} not found", code="key_not_found")
        keys = self._stores().keys
        found = await keys.get(actor.tenant, key_id)
        if found is None:
            raise NotFound(f"API key {key_id!r} not found", code="key_not_found")
        if found.role > actor.role:
            raise PermissionDenied(
                f"a {actor.role.label} key cannot revoke a {found.role.label} key"
            )
        key = await keys.revoke(actor.tenant, key_id, at=self._now())
        self.revoked(key)
        if self.revocations is not None:
            try:
                await self.revocations.publish(key.tenant, key.id)
            except WayportError as exc:
                _log.warning("revocation of %s not broadcast: %s", key.prefix, exc.message)
        if self._audit is not None:
            await self._audit.record(actor, "key.revoke", target=key.prefix)
        return key

    def revoked(self, key: ApiKey) -> None:
        """Refuse ``key`` from now on in this process (it was revoked in the store)."""
        ref = (key.tenant, key.id)
        self._cache[ref] = _Cached(key=key, principal=key.principal(), loaded_at=self._now())


class TenantService:
    """Tenants are projects inside organisations. The default tenant's owner (the configured
    ``server.api_key``) creates tenants in any organisation and sees them all; the owner of
    another tenant creates projects in its own organisation; admins list their organisation's."""

    def __init__(
        self,
        *,
        stores: Callable[[], SecurityStores],
        keys: KeyService,
        audit: AuditService | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._stores = stores
        self._keys = keys
        self._audit = audit
        self._now = now

    async def org_of(self, tenant: str) -> str:
        found = await self._stores().tenants.get(tenant)
        if found is not None:
            return found.org
        if tenant == DEFAULT_TENANT:
            return SYSTEM_ORG
        raise NotFound(f"tenant {tenant!r} not found", code="tenant_not_found")

    async def create(
        self, actor: Principal, *, tenant_id: str, org: str | None = None, name: str = ""
    ) -> tuple[Tenant, ApiKey, str]:
        """Create a tenant and its first owner key (the token is shown this once)."""
        if actor.role < Role.OWNER:
            raise PermissionDenied("only an owner can create tenants")
        try:
            check_slug(tenant_id, "id")
            actor_org = await self.org_of(actor.tenant)
            org = check_slug(org or actor_org, "org")
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="id") from exc
        if actor.tenant != DEFAULT_TENANT and org != actor_org:
            raise PermissionDenied(f"an owner of org {actor_org!r} cannot create tenants elsewhere")
        tenant = await self._stores().tenants.create(
            Tenant(id=tenant_id, org=org, name=name, created_at=self._now())
        )
        key, token = await self._keys.issue(
            tenant.id, name="owner", role=Role.OWNER, created_by=actor.key_id
        )
        if self._audit is not None:
            details = {"org": org, "name": name, "by_tenant": actor.tenant}
            await self._audit.record(actor, "tenant.create", target=tenant.id, details=details)
            await self._audit.record(
                actor, "tenant.create", tenant=tenant.id, target=tenant.id, details=details
            )
        return tenant, key, token

    async def list(self, actor: Principal) -> builtins.list[Tenant]:
        tenants = self._stores().tenants
        if actor.tenant == DEFAULT_TENANT:
            return await tenants.list()
        return await tenants.list(org=await self.org_of(actor.tenant))

    async def ids(self) -> builtins.list[str]:
        """Every tenant id (for the worker, which claims runs of every tenant)."""
        return [t.id for t in await self._stores().tenants.list()]


@dataclass(frozen=True, slots=True, kw_only=True)
class Security:
    """The security services the server and the CLI use, on one set of stores."""

    keys: KeyService
    tenants: TenantService
    audit: AuditService

    @classmethod
    def build(
        cls,
        stores: Callable[[], FullStores],
        *,
        now: Callable[[], float] = time.time,
        revocations: KeyRevocations | None = None,
    ) -> Security:
        audit = AuditService(lambda: stores().audit, now=now)
        keys = KeyService(stores=stores, audit=audit, revocations=revocations, now=now)
        tenants = TenantService(stores=stores, keys=keys, audit=audit, now=now)
        return cls(keys=keys, tenants=tenants, audit=audit)

    async def close(self) -> None:
        """Write what is pending (last-used times, run trails)."""
        await self.audit.drain()
        await self.keys.close()
