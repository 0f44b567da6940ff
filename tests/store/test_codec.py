"""The zstd history codec, and archived history as it lies in the database."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from wayport.core.errors import StoreError
from wayport.core.session import NewMessage, StoredMessage
from wayport.store import open_store
from wayport.store.codec import CODEC, decode_history, encode_history
from wayport.testing import ManualClock

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

json_leaf = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_obj = st.dictionaries(st.text(max_size=8), json_leaf, max_size=4)
optional_text = st.none() | st.text(max_size=30)


@st.composite
def histories(draw: st.DrawFn) -> list[StoredMessage]:
    n = draw(st.integers(0, 12))
    start = draw(st.integers(1, 1000))
    return [
        StoredMessage(
            session_id="s-1",
            seq=start + i,
            role=draw(st.sampled_from(["system", "user", "assistant", "tool"])),
            content=draw(st.none() | st.text(max_size=200) | st.lists(json_obj, max_size=3)),
            name=draw(optional_text),
            tool_calls=tuple(
                {
                    "id": draw(st.text(max_size=10)),
                    "type": "function",
                    "function": {"name": draw(st.text(max_size=10)), "arguments": "{}"},
                }
                for _ in range(draw(st.integers(0, 2)))
            ),
            tool_call_id=draw(optional_text),
            tokens=draw(st.none() | st.integers(0, 100_000)),
            created_at=draw(st.floats(0, 2e9)),
            run_id=draw(optional_text),
            step_no=draw(st.none() | st.integers(0, 1000)),
            idempotency_key=draw(optional_text),
        )
        for i in range(n)
    ]


@given(histories())
def test_history_round_trips(messages: list[StoredMessage]) -> None:
    blob = encode_history(messages)
    assert blob.startswith(ZSTD_MAGIC)
    assert decode_history(CODEC, blob, session_id="s-1") == messages


def test_repetitive_history_compresses_well() -> None:
    messages = [
        StoredMessage(
            session_id="s", seq=i, role="user", content="the same words " * 20, created_at=i
        )
        for i in range(1, 201)
    ]
    raw = sum(len(str(m.content)) for m in messages)
    assert len(encode_history(messages)) < raw / 20


def test_damaged_blobs_and_unknown_codecs_are_store_errors() -> None:
    blob = encode_history([StoredMessage(session_id="s", seq=1, role="user", created_at=1.0)])
    damaged = blob[:-6] + bytes(6)
    with pytest.raises(StoreError, match="damaged"):
        decode_history(CODEC, damaged, session_id="s")
    with pytest.raises(StoreError, match="unknown codec"):
        decode_history("lz4/9", blob, session_id="s")


@pytest.mark.anyio
async def test_archived_history_lies_compressed_in_the_archive(
    sqlite_url: str, clock: ManualClock
) -> None:
    store = await open_store(sqlite_url, now=clock.now)
    s = await store.sessions.create("default", agent="a")
    said = [
        NewMessage(message={"role": "user", "content": f"message {i} " * 10}) for i in range(50)
    ]
    await store.sessions.append("default", s.id, said)
    assert await store.sessions.archive("default", s.id, keep_last=10) == 40

    def stored(conn: sa.Connection) -> tuple[list[int], list[Any]]:
        hot = conn.execute(sa.text("SELECT seq FROM messages ORDER BY seq"))
        cold = conn.execute(
            sa.text("SELECT first_seq, last_seq, message_count, codec, data FROM session_archive")
        )
        return [r.seq for r in hot], list(cold)

    hot, cold = await store.db.read(stored)
    assert hot == list(range(41, 51))
    [(first, last, count, codec, data)] = cold
    assert (first, last, count, codec) == (1, 40, 40, CODEC)
    assert data.startswith(ZSTD_MAGIC)
    assert len(data) < sum(len(str(m.message.get("content"))) for m in said[:40]) / 5
    await store.close()
