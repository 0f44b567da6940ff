"""Unknown keys are remembered briefly: a well-formed ``wp_`` key the store does not hold costs
one store read per ``miss_ttl``, not one per request; the memory is bounded, and issuing a key
(or ``forget``) drops a remembered miss of its id at once.

The store is the real SQL key store (SQLite and Postgres) behind a counting double that
implements the ``KeyStore`` port."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping

import pytest

from wayport.core.errors import AuthError
from wayport.core.identity import ApiKey, Role, Tenant
from wayport.ports import KeyStore, TenantStore
from wayport.service.keys import KeyService, new_key_id, new_token
from wayport.store import SqlStore
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio


class CountingKeys:
    """A ``KeyStore`` that counts ``get`` and can hold a ``get`` after it has read."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.gets = 0
        self.hold: asyncio.Event | None = None  #: set: reads wait for it before answering
        self.reading = asyncio.Event()

    async def create(self, key: ApiKey) -> ApiKey:
        return await self.inner.create(key)

    async def get(self, tenant: str, key_id: str) -> ApiKey | None:
        self.gets += 1
        found = await self.inner.get(tenant, key_id)
        if self.hold is not None:
            self.reading.set()
            await self.hold.wait()
        return found

    async def list(self, tenant: str) -> list[ApiKey]:
        return await self.inner.list(tenant)

    async def revoke(self, tenant: str, key_id: str, *, at: float) -> ApiKey:
        return await self.inner.revoke(tenant, key_id, at=at)

    async def touch(self, tenant: str, used: Mapping[str, float]) -> None:
        await self.inner.touch(tenant, used)


class Stores:
    def __init__(self, store: SqlStore) -> None:
        self.keys = CountingKeys(store.keys)
        self._tenants = store.tenants

    @property
    def tenants(self) -> TenantStore:
        return self._tenants


class Ids:
    """Key ids to draw, in order (then random ones)."""

    def __init__(self, *ids: str) -> None:
        self._ids: Iterator[str] = iter(ids)

    def __call__(self) -> str:
        return next(self._ids, None) or new_key_id()


def _implements(keys: CountingKeys, stores: Stores) -> tuple[KeyStore, TenantStore]:
    return keys, stores.tenants


@pytest.fixture
def stores(store: SqlStore) -> Stores:
    return Stores(store)


def unknown(tenant: str) -> str:
    return new_token(tenant, new_key_id())


async def _refused(keys: KeyService, token: str) -> None:
    with pytest.raises(AuthError, match="Invalid API key"):
        await keys.authenticate(token)


async def test_an_unknown_key_costs_one_read_per_ttl(
    stores: Stores, clock: ManualClock, tenant: str
) -> None:
    keys = KeyService(stores=lambda: stores, now=clock.now, miss_ttl=5.0)
    token = unknown(tenant)
    for _ in range(20):
        await _refused(keys, token)
    assert stores.keys.gets == 1
    clock.advance(4.9)
    await _refused(keys, token)
    assert stores.keys.gets == 1
    clock.advance(0.2)  # past the TTL: asked again, then remembered again
    await _refused(keys, token)
    await _refused(keys, token)
    assert stores.keys.gets == 2
    # another unknown key is its own miss; a malformed one never reaches the store
    await _refused(keys, unknown(tenant))
    await _refused(keys, "wp_not-a-key")
    assert stores.keys.gets == 3


async def test_issuing_a_key_drops_the_remembered_miss_of_its_id(
    stores: Stores, clock: ManualClock, tenant: str
) -> None:
    await stores.tenants.create(Tenant(id=tenant, org=tenant, created_at=clock.now()))
    key_id = new_key_id()
    keys = KeyService(stores=lambda: stores, now=clock.now, key_ids=Ids(key_id))
    await _refused(keys, new_token(tenant, key_id))  # the id is remembered as unknown
    assert stores.keys.gets == 1
    key, token = await keys.issue(tenant, name="ci", role=Role.USER)
    assert key.id == key_id
    principal = await keys.authenticate(token)  # no clock advance: at once
    assert principal.tenant == tenant and principal.key_id == key_id
    assert stores.keys.gets == 2


async def test_a_miss_read_while_a_key_is_issued_is_not_remembered(
    stores: Stores, clock: ManualClock, tenant: str
) -> None:
    key_id = new_key_id()
    keys = KeyService(stores=lambda: stores, now=clock.now, key_ids=Ids(key_id))
    stores.keys.hold = asyncio.Event()
    early = asyncio.create_task(keys.authenticate(new_token(tenant, key_id)))
    await stores.keys.reading.wait()  # it read "no such key" and has not answered yet
    _, token = await keys.issue(tenant, name="ci", role=Role.USER)
    stores.keys.hold.set()
    with pytest.raises(AuthError):
        await early
    stores.keys.hold = None
    assert (await keys.authenticate(token)).key_id == key_id


async def test_remembered_misses_are_bounded_least_recently_used_first(
    stores: Stores, clock: ManualClock, tenant: str
) -> None:
    keys = KeyService(stores=lambda: stores, now=clock.now, miss_cache_size=3)
    tokens = [unknown(tenant) for _ in range(4)]
    for token in tokens[:3]:
        await _refused(keys, token)
    await _refused(keys, tokens[0])  # used again: now the most recent
    assert stores.keys.gets == 3
    await _refused(keys, tokens[3])  # a fourth: the least recently used (tokens[1]) goes
    assert stores.keys.gets == 4
    for token in (tokens[0], tokens[2], tokens[3]):
        await _refused(keys, token)
    assert stores.keys.gets == 4
    await _refused(keys, tokens[1])
    assert stores.keys.gets == 5


async def test_forget_drops_a_remembered_miss(
    stores: Stores, clock: ManualClock, tenant: str
) -> None:
    keys = KeyService(stores=lambda: stores, now=clock.now)
    token = unknown(tenant)
    await _refused(keys, token)
    await _refused(keys, token)
    assert stores.keys.gets == 1
    ref = (tenant, token.split("_")[2])
    keys.forget(*ref)
    await _refused(keys, token)
    assert stores.keys.gets == 2
