"""The outbox pass reads each conversation's oldest pending item: a conversation whose platform
keeps failing holds back only its own replies, on real parts (see ``harness.py``); the heads
are ranked from an index and come back unsealed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from wayport.core.channels import Inbound, Outbound, OutboxItem
from wayport.service.channels import ChannelSpec
from wayport.store import open_store
from wayport.store.channels import SqlChannelStore
from wayport.store.schema import channel_outbox
from wayport.store.sealing import Sealer, generate_key
from wayport.testing import ManualClock
from wayport.testing.fake_platforms import FakePlatforms

from .harness import adapter, harness

pytestmark = pytest.mark.anyio

BACKLOG = 600  #: more than one pass reads (500): the old pass saw none of the other chat


def telegram(name: str, fake: FakePlatforms) -> ChannelSpec:
    return ChannelSpec(name=name, adapter=adapter("telegram", name, fake), agent="assistant")


def backlog(now: float) -> list[OutboxItem]:
    """Replies queued for chat 1 on ``tg-a`` a minute ago, oldest first."""
    return [
        OutboxItem(
            id=f"in-a:{n:04d}",
            channel="tg-a",
            target="1#",
            message=Outbound(channel="tg-a", chat="1", text=f"part {n}"),
            created_at=now - 60,
            next_attempt_at=now - 60,
        )
        for n in range(BACKLOG)
    ]


async def test_a_failing_conversation_does_not_hold_back_another(tmp_path: Path) -> None:
    async with (
        FakePlatforms() as down,
        FakePlatforms() as up,
        harness(tmp_path, [telegram("tg-a", down), telegram("tg-b", up)]) as h,
    ):
        down.fail("sendMessage", status=502, times=1000)
        await h.store.enqueue("default", backlog(h.wall.now()))
        for attempt in range(1, 4):
            hello = Inbound(
                channel="tg-b", message_id=f"m{attempt}", sender="42", chat="42", text="hi"
            )
            await h.service.ingest(h.service.channel("tg-b"), hello)
            assert await h.settle() == 1  # chat 42's reply, in the pass that failed chat 1's
            assert [c["chat_id"] for c in up.calls("sendMessage")] == ["42"] * attempt
            head = await h.store.outbox("default", "in-a:0000")
            assert head is not None and head.attempts == attempt
            assert down.faults_left("sendMessage") == 1000 - attempt  # only the head was tried
            h.wall.advance(h.service.outbox.policy.backoff_cap)  # chat 1's head is due again
        assert down.calls("sendMessage") == []
        assert len(await h.store.pending("default", limit=1000)) == BACKLOG


def recorder(sent: list[tuple[str, Any]]) -> Any:
    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        if "row_number" in statement:
            sent.append((statement, parameters))

    return record


async def test_heads_are_ranked_from_an_index_without_a_sort(tmp_path: Path) -> None:
    """On SQLite (whose plans need no statistics): the ranking reads the heads index alone, in
    its order, and only the picked heads' rows are fetched, by primary key."""
    store = await open_store(f"sqlite:///{tmp_path}/wayport.db")
    sent: list[tuple[str, Any]] = []
    sa.event.listen(store.db.engine, "before_cursor_execute", recorder(sent))
    try:
        await SqlChannelStore(store.db).heads("default")
        [(statement, parameters)] = sent
        plan = await store.db.read(
            lambda conn: [
                r[-1] for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
            ]
        )
    finally:
        await store.close()
    steps = " | ".join(plan)
    assert "USING COVERING INDEX ix_channel_outbox_heads (tenant_id=? AND status=?)" in steps
    assert "USING INDEX sqlite_autoindex_channel_outbox_1 (tenant_id=? AND id=?)" in steps
    # two sorts, of heads (picking the oldest, then their rows); none of all the pending rows
    assert steps.count("USE TEMP B-TREE") == 2, steps


async def test_sealed_heads_are_opened(store_url: str, clock: ManualClock, tenant: str) -> None:
    store = await open_store(store_url, now=clock.now)
    try:
        sealed = SqlChannelStore(store.db, now=clock.now, sealer=Sealer.parse(generate_key("k1")))
        await sealed.enqueue(tenant, backlog(clock.now())[:2])
        stored = await store.db.read(
            lambda conn: (
                conn.execute(
                    sa.select(channel_outbox.c.payload).where(channel_outbox.c.tenant_id == tenant)
                )
                .scalars()
                .all()
            )
        )
        assert stored and all("part" not in str(p) for p in stored)
        [head] = await sealed.heads(tenant)
        assert (head.id, head.message.text) == ("in-a:0000", "part 0")
    finally:
        await store.close()
