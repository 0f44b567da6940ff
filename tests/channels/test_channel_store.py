"""The ``ChannelStore`` contract, in memory, on SQLite and on Postgres: inbox dedup, the outbox,
pairing codes, replay nonces, tenants."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from wayport.core.channels import (
    Inbound,
    InboxStatus,
    Outbound,
    OutboxItem,
    OutboxStatus,
    PairingCode,
)
from wayport.core.errors import Conflict, NotFound
from wayport.ports import ChannelStore
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

MESSAGE = Inbound(channel="tg", message_id="7:1", sender="7", chat="7", text="hi")


def item(
    n: int, *, target: str = "7#", at: float = 0.0, channel: str = "tg", key: str = "in-x"
) -> OutboxItem:
    return OutboxItem(
        id=f"{key}:{n:04d}",
        channel=channel,
        target=target,
        message=Outbound(channel=channel, chat=target.split("#")[0], text=f"part {n}"),
        created_at=at,
        next_attempt_at=at,
    )


def ids(items: list[OutboxItem]) -> list[str]:
    return [i.id for i in items]


async def test_the_same_message_is_accepted_once(channel_store: ChannelStore, tenant: str) -> None:
    store = channel_store
    first, new = await store.accept(tenant, MESSAGE, entry_id="in-1")
    again, new_again = await store.accept(tenant, MESSAGE, entry_id="in-2")
    assert new and not new_again
    assert again.id == first.id == "in-1"
    assert again.message == MESSAGE
    # concurrent deliveries too: one row, one "new"
    other = Inbound(channel="tg", message_id="7:2", sender="7", chat="7", text="yo")
    results = await asyncio.gather(
        *(store.accept(tenant, other, entry_id=f"in-c{i}") for i in range(5))
    )
    assert sum(new for _, new in results) == 1
    assert len({entry.id for entry, _ in results}) == 1


async def test_inbox_status_and_resume_list(channel_store: ChannelStore, tenant: str) -> None:
    store = channel_store
    await store.accept(tenant, MESSAGE, entry_id="in-1")
    await store.set_inbox(tenant, "in-1", InboxStatus.STARTED, run_id="run-1")
    [entry] = await store.unfinished_inbox(tenant)
    assert (entry.status, entry.run_id) == (InboxStatus.STARTED, "run-1")
    await store.set_inbox(tenant, "in-1", InboxStatus.DONE, run_id="run-1")
    assert await store.unfinished_inbox(tenant) == []
    with pytest.raises(NotFound):
        await store.set_inbox(tenant, "in-missing", InboxStatus.DONE)


async def test_outbox_enqueue_is_idempotent_and_ordered(
    channel_store: ChannelStore, tenant: str, clock: ManualClock
) -> None:
    store = channel_store
    await store.enqueue(tenant, [item(1), item(0)])
    await store.enqueue(tenant, [item(0), item(1), item(2)])
    pending = await store.pending(tenant)
    assert [i.id for i in pending] == ["in-x:0000", "in-x:0001", "in-x:0002"]
    await store.settle(tenant, "in-x:0000", OutboxStatus.DELIVERED, attempts=1, platform_id="m1")
    await store.settle(
        tenant, "in-x:0001", OutboxStatus.PENDING, attempts=1, next_attempt_at=9.0, reason="502"
    )
    got = await store.outbox(tenant, "in-x:0001")
    assert got is not None and (got.attempts, got.next_attempt_at, got.reason) == (1, 9.0, "502")
    done = await store.outbox(tenant, "in-x:0000")
    assert done is not None and done.status is OutboxStatus.DELIVERED and done.platform_id == "m1"
    with pytest.raises(Conflict):  # delivered is final
        await store.settle(tenant, "in-x:0000", OutboxStatus.DROPPED, attempts=2)
    await store.enqueue(tenant, [item(0)])  # re-enqueueing a delivered item does not resend it
    assert [i.id for i in await store.pending(tenant)] == ["in-x:0001", "in-x:0002"]


async def test_a_busy_conversation_does_not_hide_another(
    channel_store: ChannelStore, tenant: str
) -> None:
    """600 replies wait in one conversation (its platform is down): the head of another, newer
    and sorting after it, is still read."""
    store = channel_store
    await store.enqueue(tenant, [item(n, target="1#", at=1.0 + n, key="in-a") for n in range(600)])
    await store.enqueue(tenant, [item(0, target="2#", at=5000.0, key="in-b")])
    heads = await store.heads(tenant)
    assert ids(heads) == ["in-a:0000", "in-b:0000"]
    assert heads[1].message == Outbound(channel="tg", chat="2", text="part 0")
    assert ids(await store.heads(tenant, limit=1)) == ["in-a:0000"]  # oldest heads first


async def test_heads_are_each_conversations_oldest_pending_item(
    channel_store: ChannelStore, tenant: str
) -> None:
    store = channel_store
    await store.enqueue(
        tenant,
        [
            item(1, target="7#", at=20.0),  # created before 0001 although its id sorts after
            item(2, target="7#", at=10.0),
            item(3, target="7#", at=10.0),  # same age as 0002: the id decides
            item(4, target="7#", at=5.0, channel="slack"),  # same target, another channel
            item(5, target="8#", at=30.0),
            item(6, target="8#", at=40.0),
        ],
    )
    assert ids(await store.heads(tenant)) == ["in-x:0004", "in-x:0002", "in-x:0005"]
    await store.settle(tenant, "in-x:0002", OutboxStatus.DELIVERED, attempts=1)
    # a head waiting to be retried is still its conversation's head: replies leave in order
    await store.settle(
        tenant, "in-x:0005", OutboxStatus.PENDING, attempts=1, next_attempt_at=99.0, reason="x"
    )
    await store.settle(tenant, "in-x:0004", OutboxStatus.DROPPED, attempts=1, reason="gone")
    heads = await store.heads(tenant)
    assert ids(heads) == ["in-x:0003", "in-x:0005"]
    assert (heads[1].attempts, heads[1].next_attempt_at, heads[1].reason) == (1, 99.0, "x")
    for head in heads:
        await store.settle(tenant, head.id, OutboxStatus.DELIVERED, attempts=1)
    assert ids(await store.heads(tenant)) == ["in-x:0001", "in-x:0006"]


async def test_heads_are_the_tenants_own(channel_store: ChannelStore, tenant: str) -> None:
    store, other = channel_store, tenant + "-b"
    await store.enqueue(tenant, [item(1, at=10.0), item(2, at=20.0)])
    # an older item of the same conversation in another tenant hides nothing and is not shown
    await store.enqueue(other, [item(0, at=1.0), item(9, target="9#", at=2.0)])
    assert ids(await store.heads(tenant)) == ["in-x:0001"]
    assert ids(await store.heads(other)) == ["in-x:0000", "in-x:0009"]
    assert await store.heads(tenant + "-c") == []


async def test_pairing_codes(channel_store: ChannelStore, tenant: str) -> None:
    store = channel_store
    code = PairingCode(channel="tg", sender="7", code="ABCD2345", created_at=0.0, expires_at=100.0)
    await store.put_pairing(tenant, code)
    assert await store.pairing(tenant, "tg", "7") == code
    assert await store.pending_pairings(tenant, "tg", now=50.0) == 1
    assert await store.pending_pairings(tenant, "tg", now=100.0) == 0
    with pytest.raises(NotFound):
        await store.approve_pairing(tenant, "tg", "ABCD2345", now=100.0)  # expired
    approved = await store.approve_pairing(tenant, "tg", "abcd2345", now=60.0)
    assert approved.approved_at == 60.0
    assert (await store.pairing(tenant, "tg", "7")) == approved
    renewed = PairingCode(channel="tg", sender="8", code="ZZZZ2345", created_at=0, expires_at=9)
    await store.put_pairing(tenant, renewed)
    await store.put_pairing(tenant, replace(renewed, code="YYYY2345", expires_at=99.0))
    again = await store.pairing(tenant, "tg", "8")
    assert again is not None and again.code == "YYYY2345"


async def test_tenants_do_not_see_each_other(channel_store: ChannelStore, tenant: str) -> None:
    store = channel_store
    await store.accept(tenant, MESSAGE, entry_id="in-1")
    await store.enqueue(tenant, [item(0)])
    other = tenant + "-b"
    _, new = await store.accept(other, MESSAGE, entry_id="in-1")
    assert new  # the same platform message in another tenant is another message
    assert await store.pending(other) == []
    assert await store.outbox(other, "in-x:0000") is None
    assert len(await store.unfinished_inbox(tenant)) == 1


async def test_nonces_are_claimed_once_until_they_expire(
    channel_store: ChannelStore, tenant: str
) -> None:
    store = channel_store
    assert await store.claim_nonce(tenant, "hook", "sig-1", expires_at=100.0, now=0.0)
    assert not await store.claim_nonce(tenant, "hook", "sig-1", expires_at=200.0, now=50.0)
    assert await store.claim_nonce(tenant, "other", "sig-1", expires_at=100.0, now=0.0)
    assert await store.claim_nonce(tenant + "-b", "hook", "sig-1", expires_at=100.0, now=0.0)
    # expired: claimable again (a sweep may not have run yet)
    assert await store.claim_nonce(tenant, "hook", "sig-1", expires_at=300.0, now=100.0)
    assert not await store.claim_nonce(tenant, "hook", "sig-1", expires_at=400.0, now=299.0)
    await store.release_nonce(tenant, "hook", "sig-1")
    assert await store.claim_nonce(tenant, "hook", "sig-1", expires_at=400.0, now=299.0)
    assert await store.claim_nonce(tenant, "hook", "sig-2", expires_at=150.0, now=0.0)
    # sig-2 and "other"'s sig-1 expired; "hook"'s sig-1 lives to 400
    assert await store.sweep_nonces(tenant, now=200.0) == 2
    assert not await store.claim_nonce(tenant, "hook", "sig-1", expires_at=500.0, now=300.0)
    assert await store.claim_nonce(tenant, "hook", "sig-2", expires_at=500.0, now=300.0)
    results = await asyncio.gather(
        *(store.claim_nonce(tenant, "hook", "race", expires_at=9e9, now=0.0) for _ in range(5))
    )
    assert sum(results) == 1
