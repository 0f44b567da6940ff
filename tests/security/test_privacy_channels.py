"""Privacy requests include channel messages, on real SQLite and Postgres with contents sealed:
the inbox rows a user sent (by sender) or that started a run of their sessions, the outbox rows
answering them, and their pairing codes; exported opened, erased in the same transaction as
the sessions, in the caller's tenant only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from wayport.core.channels import Inbound, InboxStatus, Outbound, OutboxItem, PairingCode
from wayport.service.privacy import PrivacyService, Subject
from wayport.store import SqlStore, open_store
from wayport.store.channels import SqlChannelStore
from wayport.store.privacy import SqlPrivacyStore
from wayport.store.schema import channel_inbox, channel_outbox, channel_pairings
from wayport.store.sealing import Sealer, generate_key
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

SEALER = Sealer.parse(generate_key("k1"))


@pytest.fixture
async def opened(db_url: str, clock: ManualClock) -> AsyncIterator[SqlStore]:
    store = await open_store(db_url, now=clock.now, sealer=SEALER)
    try:
        yield store
    finally:
        await store.close()


async def message(
    ch: SqlChannelStore, tenant: str, entry_id: str, sender: str, *, parts: int = 1
) -> None:
    inbound = Inbound(
        channel="tg", message_id=entry_id, sender=sender, chat=f"c-{sender}", text=f"from {sender}"
    )
    await ch.accept(tenant, inbound, entry_id=entry_id)
    items = [
        OutboxItem(
            id=f"{entry_id}:{i:04d}",
            channel="tg",
            target=f"c-{sender}#",
            message=Outbound(channel="tg", chat=f"c-{sender}", text=f"to {sender} {i}", part=i),
        )
        for i in range(parts)
    ]
    await ch.enqueue(tenant, items)


async def ids(store: SqlStore, tenant: str) -> dict[str, list[str]]:
    def job(conn: sa.Connection) -> dict[str, list[str]]:
        out = {}
        for table, key in (
            (channel_inbox, channel_inbox.c.id),
            (channel_outbox, channel_outbox.c.id),
            (channel_pairings, channel_pairings.c.sender),
        ):
            stmt = sa.select(key).where(table.c.tenant_id == tenant).order_by(key)
            out[table.name] = [str(r[0]) for r in conn.execute(stmt)]
        return out

    return await store.db.read(job)


async def test_channel_messages_are_exported_and_erased_with_the_user(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    ch = SqlChannelStore(opened.db, now=clock.now, sealer=SEALER)
    session = await opened.sessions.create(tenant, agent="a", metadata={"user": "u-42"})
    run = await opened.runs.create(tenant, session_id=session.id, input={"text": "hi"})
    await message(ch, tenant, "in-a", "u-42")  # sent by the user, no run (say, ignored)
    await message(ch, tenant, "in-b", "tg-777", parts=2)  # started the user's session's run
    await ch.set_inbox(tenant, "in-b", InboxStatus.STARTED, run_id=run.id)
    await message(ch, tenant, "in-ab", "u-99")  # another user; its id extends "in-a"
    await message(ch, tenant, "in-c", "u-99")
    for sender in ("u-42", "u-99"):
        code = PairingCode(
            channel="tg", sender=sender, code=f"C{sender[-2:]}", created_at=1.0, expires_at=9e9
        )
        await ch.put_pairing(tenant, code)
    other = f"{tenant}-x"
    await message(ch, other, "in-a", "u-42")  # same ids and sender in another tenant

    service = PrivacyService(store=lambda: SqlPrivacyStore.of(opened, sealer=SEALER))
    export = await service.export(tenant, Subject(user="u-42"))
    assert [r["id"] for r in export["channel_inbox"]] == ["in-a", "in-b"]
    assert [r["message"]["text"] for r in export["channel_inbox"]] == ["from u-42", "from tg-777"]
    assert [r["id"] for r in export["channel_outbox"]] == ["in-a:0000", "in-b:0000", "in-b:0001"]
    assert export["channel_outbox"][2]["message"]["text"] == "to tg-777 1"
    assert [p["sender"] for p in export["channel_pairings"]] == ["u-42"]
    assert all("tenant_id" not in r for r in export["channel_inbox"] + export["channel_outbox"])

    by_session = await service.export(tenant, Subject(session=session.id))
    assert [r["id"] for r in by_session["channel_inbox"]] == ["in-b"]
    assert [r["id"] for r in by_session["channel_outbox"]] == ["in-b:0000", "in-b:0001"]
    assert by_session["channel_pairings"] == []

    nothing = await service.export(other, Subject(user="nobody"))
    assert nothing["channel_inbox"] == nothing["channel_outbox"] == []

    deleted = await service.erase(tenant, Subject(user="u-42"))
    assert deleted == {"sessions": 1, "usage_rows": 0, "channel_messages": 5}
    assert await ids(opened, tenant) == {
        "channel_inbox": ["in-ab", "in-c"],
        "channel_outbox": ["in-ab:0000", "in-c:0000"],
        "channel_pairings": ["u-99"],
    }
    assert await ids(opened, other) == {
        "channel_inbox": ["in-a"],
        "channel_outbox": ["in-a:0000"],
        "channel_pairings": [],
    }


async def test_erasing_a_session_takes_the_messages_of_its_runs(
    opened: SqlStore, tenant: str, clock: ManualClock
) -> None:
    ch = SqlChannelStore(opened.db, now=clock.now, sealer=SEALER)
    session = await opened.sessions.create(tenant, agent="a")
    run = await opened.runs.create(tenant, session_id=session.id, input={"text": "hi"})
    await message(ch, tenant, "in-1", "u-1")
    await ch.set_inbox(tenant, "in-1", InboxStatus.DONE, run_id=run.id)
    await message(ch, tenant, "in-2", "u-1")  # the same sender, no run of this session
    service = PrivacyService(store=lambda: SqlPrivacyStore.of(opened, sealer=SEALER))
    deleted = await service.erase(tenant, Subject(session=session.id))
    assert deleted["sessions"] == 1 and deleted["channel_messages"] == 2
    assert await ids(opened, tenant) == {
        "channel_inbox": ["in-2"],
        "channel_outbox": ["in-2:0000"],
        "channel_pairings": [],
    }
