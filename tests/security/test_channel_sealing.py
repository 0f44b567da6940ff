"""Message contents outside sessions sealed at rest, on real SQLite and Postgres: the channel
inbox and outbox payloads and a run's own webhook signing secret never reach the database in
plaintext when keys are configured, read back whole, and ``reencrypt`` moves them to a new key
(and back to plaintext when the keys are dropped)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from wayport.core.channels import Inbound, Outbound, OutboxItem
from wayport.core.errors import StoreError
from wayport.store import SqlStore, open_store
from wayport.store.channels import SqlChannelStore
from wayport.store.outbox import SqlWebhookOutbox
from wayport.store.reseal import reencrypt, tenants
from wayport.store.schema import channel_inbox, channel_outbox, webhook_outbox
from wayport.store.sealing import Sealer, generate_key
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

ASKED = "my IBAN is DE89370400440532013000, move it all"
ANSWERED = "moving 1234.56 EUR from DE89370400440532013000"
HOOK_SECRET = "whsec-run-own-0f3c9a7e"
K1 = generate_key("k1")
K2 = generate_key("k2")
TABLES = (channel_inbox, channel_outbox, webhook_outbox)


@pytest.fixture
async def opened(db_url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    store = await open_store(db_url, now=clock.now)
    try:
        yield store
    finally:
        await store.close()


def channel(store: SqlStore, keys: str | None, clock: ManualClock) -> SqlChannelStore:
    return SqlChannelStore(store.db, now=clock.now, sealer=Sealer.parse(keys))


def hooks(store: SqlStore, keys: str | None, clock: ManualClock) -> SqlWebhookOutbox:
    return SqlWebhookOutbox(store.db, now=clock.now, sealer=Sealer.parse(keys))


async def fill(store: SqlStore, keys: str | None, tenant: str, clock: ManualClock) -> str:
    ch = channel(store, keys, clock)
    inbound = Inbound(channel="tg", message_id="m1", sender="u-42", chat="c-42", text=ASKED)
    entry, new = await ch.accept(tenant, inbound, entry_id="in-0001")
    assert new and entry.message == inbound
    reply = Outbound(channel="tg", chat="c-42", text=ANSWERED)
    item = OutboxItem(id="in-0001:0000", channel="tg", target="c-42#", message=reply)
    await ch.enqueue(tenant, [item])
    session = await store.sessions.create(tenant, agent="a")
    run = await store.runs.create(tenant, session_id=session.id, input={"text": "hi"})
    await hooks(store, keys, clock).arm(
        tenant, run_id=run.id, url="https://example.com/hook", secret=HOOK_SECRET
    )
    return run.id


async def raw(store: SqlStore, tenant: str) -> str:
    """The tenant's rows of the three tables, as the database returns them."""

    def job(conn: sa.Connection) -> str:
        return repr(
            [list(conn.execute(sa.select(t).where(t.c.tenant_id == tenant))) for t in TABLES]
        )

    return await store.db.read(job)


async def read_back(
    store: SqlStore, keys: str | None, tenant: str, run_id: str, clock: ManualClock
) -> None:
    ch = channel(store, keys, clock)
    [entry] = await ch.unfinished_inbox(tenant)
    assert entry.message.text == ASKED and entry.message.sender == "u-42"
    [item] = await ch.pending(tenant)
    assert item.message.text == ANSWERED
    found = await ch.outbox(tenant, "in-0001:0000")
    assert found is not None and found.message.text == ANSWERED
    hook = await hooks(store, keys, clock).get(tenant, run_id)
    assert hook is not None and hook.secret == HOOK_SECRET


async def test_plaintext_never_reaches_the_database(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    run_id = await fill(opened, K1, tenant, clock)
    stored = await raw(opened, tenant)
    for plain in (ASKED, ANSWERED, "DE89370400440532013000", HOOK_SECRET):
        assert plain not in stored
    assert "$sealed" in stored and "wp-sealed:v1:k1:" in stored
    assert "u-42" in stored  # the sender stays findable
    await read_back(opened, K1, tenant, run_id, clock)
    # the tenant is the associated data: another tenant's store cannot open them
    mine = sa.select(channel_inbox.c.payload).where(channel_inbox.c.tenant_id == tenant)
    [row] = await opened.db.read(lambda conn: list(conn.execute(mine)))
    with pytest.raises(StoreError, match=r"channel_inbox\.payload"):
        Sealer.parse(K1).open(f"{tenant}-x", "channel_inbox.payload", row.payload)
    # without the key the rows are refused, not served as ciphertext
    with pytest.raises(StoreError, match="k1"):
        await channel(opened, K2, clock).unfinished_inbox(tenant)


async def test_without_keys_contents_are_plaintext(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    run_id = await fill(opened, None, tenant, clock)
    stored = await raw(opened, tenant)
    assert ASKED in stored and ANSWERED in stored and HOOK_SECRET in stored
    await read_back(opened, None, tenant, run_id, clock)


async def test_reencrypt_covers_channel_and_webhook_rows(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    run_id = await fill(opened, None, tenant, clock)  # written before encryption was on
    other = f"{tenant}-ch"  # a tenant with channel rows only (no session)
    ch = channel(opened, K1, clock)
    await ch.accept(
        other,
        Inbound(channel="tg", message_id="m9", sender="u-9", chat="c-9", text=ASKED),
        entry_id="in-0009",
    )
    assert {tenant, other} <= set(await tenants(opened.db))

    report = await reencrypt(opened.db, Sealer.parse(K1), only_tenants=[tenant])
    assert report.resealed == 4  # the inbox, outbox and webhook rows, and the run's input
    stored = await raw(opened, tenant)
    assert ASKED not in stored and ANSWERED not in stored and HOOK_SECRET not in stored
    await read_back(opened, K1, tenant, run_id, clock)

    rotated = f"{K2},{K1}"
    report = await reencrypt(opened.db, Sealer.parse(rotated), only_tenants=[tenant, other])
    assert report.resealed == 5  # and the other tenant's inbox row
    # no value names k1 any more (checked by its key markers: random ciphertext may well
    # contain the letters "k1")
    after = await raw(opened, tenant)
    assert "'$sealed': 'k1'" not in after and "wp-sealed:v1:k1:" not in after
    assert "'$sealed': 'k2'" in after and "wp-sealed:v1:k2:" in after
    await read_back(opened, K2, tenant, run_id, clock)  # k1 no longer needed
    [entry] = await channel(opened, K2, clock).unfinished_inbox(other)
    assert entry.message.text == ASKED
