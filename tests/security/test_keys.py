"""API keys on SQLite and Postgres: issuing, checking, revoking, expiry, last use, caching."""

from __future__ import annotations

import os

import pytest

from wayport.core.errors import AuthError, InvalidRequest, NotFound, PermissionDenied
from wayport.core.identity import BOOTSTRAP_KEY_ID, KEY_TOKEN, Principal, Role, parse_token
from wayport.service.keys import KeyService, Security
from wayport.store import SqlStore
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio


def owner(tenant: str) -> Principal:
    return Principal(tenant=tenant, role=Role.OWNER, key_id=BOOTSTRAP_KEY_ID)


async def test_a_created_key_authenticates_as_its_tenant_and_role(
    security: Security, store: SqlStore, tenant: str
) -> None:
    key, token = await security.keys.create(
        owner(tenant), name="ci", role=Role.DEPLOYER, scopes=["chat"], user="u1"
    )
    assert KEY_TOKEN.fullmatch(token) and token.startswith(key.prefix + "_")
    assert parse_token(token) == (tenant, key.id)
    principal = await security.keys.authenticate(token)
    assert principal == Principal(
        tenant=tenant, role=Role.DEPLOYER, key_id=key.id, user="u1", scopes=frozenset({"chat"})
    )
    # only the hash is stored: the secret part of the token appears nowhere in the row
    stored = await store.keys.get(tenant, key.id)
    assert stored is not None and token.rsplit("_", 1)[-1] not in repr(stored)
    assert stored.hash != token and len(stored.hash) == 64


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
        lambda t: t.replace("wp_", "wp-", 1),  # not a key at all
        lambda t: t + "x",  # too long
        lambda t: "wp_other_" + t.split("_", 2)[2],  # another tenant's prefix
        lambda t: "wp_a'; DROP TABLE api_keys; --_abcdefghijkl_" + "x" * 43,
    ],
)
async def test_anything_but_the_exact_key_is_refused(
    security: Security, tenant: str, mangle: object
) -> None:
    _, token = await security.keys.create(owner(tenant), role=Role.USER)
    assert callable(mangle)
    with pytest.raises(AuthError) as caught:
        await security.keys.authenticate(mangle(token))
    assert token not in caught.value.message
    assert (await security.keys.authenticate(token)).tenant == tenant


async def test_revocation_is_immediate_and_audited(security: Security, tenant: str) -> None:
    key, token = await security.keys.create(owner(tenant), role=Role.USER)
    await security.keys.authenticate(token)  # cached now
    revoked = await security.keys.revoke(owner(tenant), key.id)
    assert revoked.revoked_at is not None
    with pytest.raises(AuthError) as caught:
        await security.keys.authenticate(token)
    assert caught.value.code == "api_key_revoked"
    actions = [e.action for e in await security.audit.entries(tenant)]
    assert actions == ["key.create", "key.revoke"]
    with pytest.raises(NotFound):
        await security.keys.revoke(owner(tenant), "zzzzzzzzzzzz")
    with pytest.raises(NotFound):
        await security.keys.revoke(owner("elsewhere"), key.id)  # another tenant's key


async def test_a_replica_drops_its_cache_when_told(
    store: SqlStore, clock: ManualClock, tenant: str
) -> None:
    """Two services on one database stand for two replicas; the broadcast hook tells the
    other one, whose cache would otherwise keep the key for ``cache_ttl``."""
    replica = KeyService(stores=lambda: store, now=clock.now, cache_ttl=60.0)

    class Broadcast:
        def __init__(self) -> None:
            self.sent: list[tuple[str, str]] = []

        async def publish(self, tenant: str, key_id: str) -> None:
            self.sent.append((tenant, key_id))
            replica.forget(tenant, key_id)

    silent = KeyService(stores=lambda: store, now=clock.now, cache_ttl=60.0)
    key, token = await silent.create(owner(tenant), role=Role.USER)
    await replica.authenticate(token)
    await silent.revoke(owner(tenant), key.id)
    # without a broadcast the other replica keeps its cached record until the TTL passes …
    assert (await replica.authenticate(token)).key_id == key.id
    clock.advance(61.0)
    with pytest.raises(AuthError):
        await replica.authenticate(token)

    broadcast = Broadcast()
    loud = KeyService(stores=lambda: store, now=clock.now, revocations=broadcast)
    key2, token2 = await loud.create(owner(tenant), role=Role.USER)
    await replica.authenticate(token2)
    await loud.revoke(owner(tenant), key2.id)
    assert broadcast.sent == [(tenant, key2.id)]
    with pytest.raises(AuthError):  # … with one, at once
        await replica.authenticate(token2)


async def test_expiry(security: Security, clock: ManualClock, tenant: str) -> None:
    _, token = await security.keys.create(
        owner(tenant), role=Role.VIEWER, expires_at=clock.now() + 30
    )
    assert (await security.keys.authenticate(token)).role is Role.VIEWER
    clock.advance(30.0)
    with pytest.raises(AuthError) as caught:
        await security.keys.authenticate(token)
    assert caught.value.code == "api_key_expired"
    with pytest.raises(InvalidRequest):
        await security.keys.create(owner(tenant), expires_at=clock.now() - 1)


async def test_no_key_above_the_creators_role_or_scopes(security: Security, tenant: str) -> None:
    admin = Principal(tenant=tenant, role=Role.ADMIN, key_id="k")
    await security.keys.create(admin, role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        await security.keys.create(admin, role=Role.OWNER)
    scoped = Principal(tenant=tenant, role=Role.ADMIN, key_id="k", scopes=frozenset({"chat"}))
    await security.keys.create(scoped, role=Role.USER, scopes=["chat"])
    for scopes in ([], ["chat", "admin"]):
        with pytest.raises(PermissionDenied):
            await security.keys.create(scoped, role=Role.USER, scopes=scopes)
    with pytest.raises(InvalidRequest):
        await security.keys.create(admin, scopes=["Not A Scope!"])
    # and no revoking keys above one's own role
    top, _ = await security.keys.create(owner(tenant), role=Role.OWNER)
    with pytest.raises(PermissionDenied):
        await security.keys.revoke(admin, top.id)


async def test_last_used_is_written_in_batches(
    store: SqlStore, clock: ManualClock, tenant: str
) -> None:
    keys = KeyService(stores=lambda: store, now=clock.now, touch_every=60.0)
    key, token = await keys.create(owner(tenant), role=Role.USER)
    await keys.authenticate(token)
    await keys.close()  # waits for the background write
    first = await store.keys.get(tenant, key.id)
    assert first is not None and first.last_used_at == clock.now()
    clock.advance(10.0)
    await keys.authenticate(token)  # within touch_every: nothing new to write
    await keys.close()
    again = await store.keys.get(tenant, key.id)
    assert again is not None and again.last_used_at == first.last_used_at
    clock.advance(60.0)
    await keys.authenticate(token)
    await keys.close()
    later = await store.keys.get(tenant, key.id)
    assert later is not None and later.last_used_at == clock.now()


async def test_tenants_and_their_first_owner_key(security: Security, clock: ManualClock) -> None:
    system = owner("default")
    suffix = os.urandom(3).hex()
    acme_id = f"acme-prod-{suffix}"
    tenant, key, token = await security.tenants.create(
        system, tenant_id=acme_id, org="acme", name="Acme"
    )
    assert tenant.org == "acme" and key.role is Role.OWNER
    acme_owner = await security.keys.authenticate(token)
    assert acme_owner.tenant == acme_id
    # an owner creates projects inside its own org only
    await security.tenants.create(acme_owner, tenant_id=f"acme-dev-{suffix}")
    with pytest.raises(PermissionDenied):
        await security.tenants.create(acme_owner, tenant_id=f"x-{suffix}", org="globex")
    ids = [t.id for t in await security.tenants.list(acme_owner)]
    assert ids == sorted([acme_id, f"acme-dev-{suffix}"])
    with pytest.raises(PermissionDenied):
        await security.tenants.create(
            Principal(tenant=acme_id, role=Role.ADMIN), tenant_id=f"y-{suffix}"
        )
    with pytest.raises(InvalidRequest):
        await security.tenants.create(system, tenant_id="Bad_Id")
    assert acme_id in await security.tenants.ids()
