"""The channel service end to end on real parts (see ``harness.py``): durability, dedup,
the outbox's retries and ages, access policy, chunking, streaming edits, polling."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from wayport.core.channels import (
    AccessPolicy,
    ChatKind,
    DmPolicy,
    Inbound,
    InboxStatus,
    OutboxStatus,
)
from wayport.core.errors import AuthError
from wayport.service.channels import ChannelSpec, OutboxPolicy
from wayport.testing import ManualClock, Reply, ScriptedBackend
from wayport.testing.fake_platforms import FakePlatforms

from .harness import TG_SECRET, adapter, echo, harness, request

pytestmark = pytest.mark.anyio

TG_HEADERS = {"x-telegram-bot-api-secret-token": TG_SECRET, "content-type": "application/json"}


def tg(fake: FakePlatforms, **kw: object) -> ChannelSpec:
    return ChannelSpec(name="tg", adapter=adapter("telegram", "tg", fake), agent="assistant", **kw)  # type: ignore[arg-type]


async def test_a_message_delivered_three_times_starts_one_run(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        body = json.dumps(fake.telegram_update(chat_id=42, text="hi")).encode()
        for _ in range(3):  # Telegram retries until it gets a 2xx
            answer = await h.service.receive("tg", request(body, TG_HEADERS))
            assert answer.status == 200
        assert await h.settle() == 1
        assert len(h.model.calls) == 1
        assert fake.calls("sendMessage") == [{"chat_id": "42", "text": "echo: hi"}]
        assert fake.calls("sendChatAction") == [{"chat_id": "42", "action": "typing"}]
        assert await h.settle() == 0  # nothing is sent twice
        assert len(fake.calls("sendMessage")) == 1


async def test_a_wrong_secret_token_stores_nothing(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        body = json.dumps(fake.telegram_update(chat_id=42, text="hi")).encode()
        for headers in ({}, {"x-telegram-bot-api-secret-token": "nope"}):
            with pytest.raises(AuthError):
                await h.service.receive("tg", request(body, headers))
        assert await h.store.unfinished_inbox("default") == []
        assert h.model.calls == []


async def test_failed_deliveries_back_off_and_are_never_repeated(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        fake.fail("sendMessage", status=502, times=2)
        await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        assert await h.settle() == 0
        [item] = await h.store.pending("default")
        assert (item.attempts, item.next_attempt_at - h.wall.now()) == (1, 2.0)
        assert await h.service.dispatch() == 0  # not due yet: nothing sent
        h.wall.advance(2)
        assert await h.service.dispatch() == 0
        [item] = await h.store.pending("default")
        assert (item.attempts, item.next_attempt_at - h.wall.now()) == (2, 4.0)
        h.wall.advance(4)
        assert await h.service.dispatch() == 1
        done = await h.store.outbox("default", item.id)
        assert done is not None and done.status is OutboxStatus.DELIVERED and done.attempts == 3
        assert len(fake.calls("sendMessage")) == 1
        h.wall.advance(1000)
        assert await h.service.dispatch() == 0


async def test_rate_limits_wait_at_least_what_the_platform_asks(tmp_path: Path) -> None:
    policy = OutboxPolicy(backoff_base=0.5)
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)], outbox=policy) as h:
        fake.fail("sendMessage", status=429)  # retry_after: 1
        await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        await h.settle()
        [item] = await h.store.pending("default")
        assert item.next_attempt_at - h.wall.now() == 1.0


async def test_replies_older_than_max_age_are_dropped_with_a_reason(tmp_path: Path) -> None:
    policy = OutboxPolicy(max_age=60)
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)], outbox=policy) as h:
        fake.fail("sendMessage", status=503, times=100)
        await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        await h.settle()
        [item] = await h.store.pending("default")
        h.wall.advance(61)
        assert await h.service.dispatch() == 1
        dropped = await h.store.outbox("default", item.id)
        assert dropped is not None
        assert (dropped.status, dropped.reason) == (OutboxStatus.DROPPED, "expired")
        assert fake.calls("sendMessage") == []


async def test_a_refused_message_is_dropped_at_once(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        fake.fail("sendMessage", status=400)
        await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        assert await h.settle() == 1
        assert await h.store.pending("default") == []


async def test_long_answers_leave_in_order_within_the_limit(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(3000))
    model = ScriptedBackend("m", default=Reply(words))
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)], model=model) as h:
        await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        await h.service.idle()
        while await h.service.dispatch():
            pass
        sent = [c["text"] for c in fake.calls("sendMessage")]
        assert len(sent) > 1 and all(len(t) <= 4096 for t in sent)
        assert " ".join(sent).split() == words.split()


async def test_a_stored_message_survives_a_restart(tmp_path: Path) -> None:
    """Acknowledged (in the inbox) but the process died before the run: the next start runs
    it; and a reply still in the outbox at shutdown is delivered after the restart."""
    model = ScriptedBackend("m", echo)
    async with FakePlatforms() as fake:
        async with harness(tmp_path, [tg(fake)], model=model) as h:
            await h.store.accept("default", inbound("m1"), entry_id="in-crashed")
        async with harness(tmp_path, [tg(fake)], model=model) as h:
            await h.service.idle()  # resumed at start
            fake.fail("sendMessage", status=502)
            assert await h.service.dispatch() == 0
        assert fake.calls("sendMessage") == []
        async with harness(tmp_path, [tg(fake)], model=model) as h:
            h.wall.advance(10)
            assert await h.settle() == 1
            assert [c["text"] for c in fake.calls("sendMessage")] == ["echo: hello"]
            assert len(h.model.calls) == 1  # one run across three processes


async def test_pairing_gates_unknown_senders_until_approved(tmp_path: Path) -> None:
    access = AccessPolicy(dm=DmPolicy.PAIRING, max_pending=1)
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake, access=access)]) as h:
        spec = h.service.channel("tg")
        await h.service.ingest(spec, inbound("m1", sender="7"))
        await h.settle()
        [notice] = [c["text"] for c in fake.calls("sendMessage")]
        code = notice.split("pairing code is ")[1][:8]
        assert h.model.calls == []
        await h.service.ingest(spec, inbound("m2", sender="8"))  # a second stranger: full
        await h.settle()
        assert "Too many" in fake.calls("sendMessage")[-1]["text"]
        approved = await h.service.approve("tg", code.lower())
        assert approved.sender == "7"
        await h.service.ingest(spec, inbound("m3", sender="7"))
        await h.settle()
        assert fake.calls("sendMessage")[-1]["text"] == "echo: hello"
        assert len(h.model.calls) == 1


async def test_groups_answer_only_when_mentioned(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        spec = h.service.channel("tg")
        group = {"chat": "-100", "chat_kind": ChatKind.GROUP}
        entry, _ = await h.service.ingest(spec, inbound("g1", **group))
        await h.settle()
        assert h.model.calls == [] and fake.calls("sendMessage") == []
        await h.service.ingest(spec, inbound("g2", mentioned=True, **group))
        await h.settle()
        assert fake.calls("sendMessage") == [{"chat_id": "-100", "text": "echo: hello"}]
        assert await h.store.unfinished_inbox("default") == []
        ignored = entry.id
        assert ignored.startswith("in-")


async def test_streaming_shows_the_answer_growing_by_edits(tmp_path: Path) -> None:
    # the reply holds after its first word until the progressive message is out: without the
    # gate a fast run can finish before the channel follows it, and then (rightly) only the
    # final text is sent
    gate = asyncio.Event()
    model = ScriptedBackend("m", default=Reply("one two three four"), gate=gate)
    async with FakePlatforms() as fake:
        spec = tg(fake, stream=True, stream_interval=0.0)
        async with harness(tmp_path, [spec], model=model) as h:
            await h.service.ingest(h.service.channel("tg"), inbound("m1"))
            await fake.wait_for("sendMessage")
            assert fake.calls("sendMessage")[0]["text"].startswith("one")
            gate.set()
            await h.settle()
        sent = fake.calls("sendMessage")
        edits = fake.calls("editMessageText")
        assert len(sent) == 1 and edits
        assert edits[-1]["text"] == "one two three four"
        assert all(e["message_id"] == edits[0]["message_id"] for e in edits)


async def test_long_polling_fetches_stores_and_answers(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        spec = ChannelSpec(
            name="tg",
            adapter=adapter("telegram", "tg", fake, mode="polling"),
            agent="assistant",
            poll=True,
        )
        async with harness(tmp_path, [spec], background=True, wall=ManualClock(start=1e9)):
            fake.telegram_update(chat_id=5, text="polled")
            fake.telegram_update(chat_id=6, text="again")
            await fake.wait_for("sendMessage", 2)
        texts = sorted(c["text"] for c in fake.calls("sendMessage"))
        assert texts == ["echo: again", "echo: polled"]
        offsets = [c.get("offset") for c in fake.calls("getUpdates")]
        assert offsets[0] is None and offsets[-1] is not None


def inbound(mid: str, **kw: object) -> Inbound:
    base: dict[str, object] = {
        "channel": "tg",
        "message_id": mid,
        "sender": "42",
        "chat": "42",
        "text": "hello",
    }
    base.update(kw)
    return Inbound(**base)  # type: ignore[arg-type]


async def test_inbox_entries_record_their_run(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [tg(fake)]) as h:
        entry, new = await h.service.ingest(h.service.channel("tg"), inbound("m1"))
        assert new and entry.status is InboxStatus.RECEIVED
        await h.settle()
        assert await h.store.unfinished_inbox("default") == []
