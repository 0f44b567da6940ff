"""Encryption at rest on real SQLite and Postgres: the database never holds the plaintext, old
keys keep opening old rows, ``reencrypt`` moves everything to the new key, and a wrong or
missing key (or a row copied into another tenant) is a clear ``StoreError``."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
import sqlalchemy as sa

from wayport.core.errors import ConfigError, StoreError
from wayport.core.session import NewMessage, RunStatus, StepKind
from wayport.store import SqlStore, open_store
from wayport.store.reseal import reencrypt
from wayport.store.schema import messages, runs, sessions
from wayport.store.sealing import NO_SEALING, Sealer, generate_key
from wayport.testing import ManualClock

pytestmark = pytest.mark.anyio

SECRET = "my card number is 4111-1111-1111-1111"
TOOL_RESULT = "balance: 1234.56 EUR on account DE89370400440532013000"
SUMMARY = "the user disclosed their card number"
K1 = generate_key("k1")
K2 = generate_key("k2")


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("fresh_postgres"))
    return f"sqlite+aiosqlite:///{tmp_path}/wayport.db"


@pytest.fixture
def tenant() -> str:
    return f"t-{os.urandom(4).hex()}"


async def _open(url: str, keys: str | None, clock: ManualClock) -> SqlStore:
    return await open_store(url, now=clock.now, sealer=Sealer.parse(keys))


async def _fill(store: SqlStore, tenant: str) -> tuple[str, str]:
    s = await store.sessions.create(tenant, agent="a", metadata={"user": "u1"})
    await store.sessions.append(
        tenant, s.id, [NewMessage(message={"role": "user", "content": SECRET})]
    )
    run = await store.runs.create(tenant, session_id=s.id, input={"text": SECRET})
    [claimed] = await store.runs.claim(tenant, worker="w")
    assert claimed.id == run.id
    call = {"id": "c1", "type": "function", "function": {"name": "bal", "arguments": "{}"}}
    await store.runs.record_step(
        tenant,
        run.id,
        step_no=1,
        kind=StepKind.TOOL,
        payload={"result": TOOL_RESULT},
        messages=[
            NewMessage(message={"role": "assistant", "content": None, "tool_calls": [call]}),
            NewMessage(message={"role": "tool", "tool_call_id": "c1", "content": TOOL_RESULT}),
        ],
        worker="w",
    )
    await store.runs.transition(tenant, run.id, RunStatus.COMPLETED, output={"text": SECRET})
    await store.sessions.update(tenant, s.id, summary=SUMMARY)
    return s.id, run.id


async def _raw(store: SqlStore) -> str:
    """Every stored value of the sealed tables, as the database returns it."""

    def job(conn: sa.Connection) -> str:
        parts = []
        for table in (sessions, messages, runs, sa.table("run_steps", sa.column("payload"))):
            for row in conn.execute(sa.select(sa.text("*")).select_from(table)):
                parts.append(repr(tuple(row)))
        for row in conn.execute(sa.text("SELECT data FROM session_archive")):
            parts.append(bytes(row[0]).decode("latin-1"))
        return "\n".join(parts)

    return await store.db.read(job)


async def _read_all(store: SqlStore, tenant: str, sid: str, rid: str) -> list[object]:
    history = await store.sessions.history(tenant, sid)
    session = await store.sessions.get(tenant, sid)
    run = await store.runs.get(tenant, rid)
    steps = await store.runs.steps(tenant, rid)
    assert session is not None and run is not None
    return [
        [m.content for m in history],
        history[1].tool_calls[0]["id"],
        session.summary,
        run.input,
        run.output,
        steps[0].payload,
    ]


EXPECTED = [
    [SECRET, None, TOOL_RESULT],
    "c1",
    SUMMARY,
    {"text": SECRET},
    {"text": SECRET},
    {"result": TOOL_RESULT},
]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_750_000_000.0)


async def test_plaintext_never_reaches_the_database(
    url: str, tenant: str, clock: ManualClock
) -> None:
    store = await _open(url, K1, clock)
    try:
        sid, rid = await _fill(store, tenant)
        assert await store.sessions.archive(tenant, sid, keep_last=1) == 2
        raw = await _raw(store)
        assert tenant in raw  # the rows are there …
        for plain in (SECRET, TOOL_RESULT, SUMMARY, "4111", '"bal"'):
            assert plain not in raw  # … but not their contents
        assert await _read_all(store, tenant, sid, rid) == EXPECTED
    finally:
        await store.close()


async def test_without_keys_contents_are_plaintext(
    url: str, tenant: str, clock: ManualClock
) -> None:
    store = await _open(url, None, clock)
    try:
        sid, rid = await _fill(store, tenant)
        assert SECRET in await _raw(store)
        assert await _read_all(store, tenant, sid, rid) == EXPECTED
    finally:
        await store.close()


async def test_rotation_keeps_old_rows_readable_then_reencrypts(
    url: str, tenant: str, clock: ManualClock
) -> None:
    old = await _open(url, K1, clock)
    sid, rid = await _fill(old, tenant)
    await old.sessions.archive(tenant, sid, keep_last=1)
    await old.close()

    rotated = await _open(url, f"{K2},{K1}", clock)
    try:
        assert await _read_all(rotated, tenant, sid, rid) == EXPECTED  # k1 rows still open
        seen: list[tuple[str, int]] = []
        report = await reencrypt(
            rotated.db,
            Sealer.parse(f"{K2},{K1}"),
            batch=1,
            only_tenants=[tenant],
            progress=lambda table, n: seen.append((table, n)),
        )
        assert report.resealed == report.scanned == 5  # one row per table after archiving
        assert {t for t, _ in seen} == {
            "messages",
            "runs",
            "run_steps",
            "sessions",
            "session_archive",
        }
        again = await reencrypt(rotated.db, Sealer.parse(f"{K2},{K1}"), only_tenants=[tenant])
        assert again.resealed == 0  # idempotent: all current now
    finally:
        await rotated.close()

    only_new = await _open(url, K2, clock)  # k1 dropped: everything must open with k2 alone
    try:
        assert await _read_all(only_new, tenant, sid, rid) == EXPECTED
    finally:
        await only_new.close()


async def test_wrong_or_missing_key_is_a_clear_error(
    url: str, tenant: str, clock: ManualClock
) -> None:
    store = await _open(url, K1, clock)
    sid, _ = await _fill(store, tenant)
    await store.close()
    wrong = "k1:" + base64.b64encode(os.urandom(32)).decode()
    for keys, expected in (
        (wrong, "does not open with key 'k1'"),
        (K2, "does not hold"),
        (None, "does not hold"),
    ):
        other = await _open(url, keys, clock)
        try:
            with pytest.raises(StoreError, match=expected):
                await other.sessions.history(tenant, sid)
        finally:
            await other.close()


async def test_row_copied_to_another_tenant_does_not_open(
    url: str, tenant: str, clock: ManualClock
) -> None:
    store = await _open(url, K1, clock)
    try:
        sid, _ = await _fill(store, tenant)
        thief = f"{tenant}-x"
        await store.sessions.create(thief, agent="a", session_id=sid)

        def copy(conn: sa.Connection) -> None:
            row = conn.execute(
                sa.select(messages).where(messages.c.tenant_id == tenant, messages.c.seq == 1)
            ).one()
            conn.execute(sa.insert(messages).values({**row._mapping, "tenant_id": thief}))
            conn.execute(
                sa.update(sessions).where(sessions.c.tenant_id == thief).values(message_count=1)
            )

        await store.db.write(copy)
        with pytest.raises(StoreError, match="another tenant"):
            await store.sessions.history(thief, sid)
    finally:
        await store.close()


def test_key_parsing_errors_never_quote_the_key() -> None:
    material = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(ConfigError, match="16 bytes") as short:
        Sealer.parse(f"k1:{material}")
    assert material not in short.value.message
    with pytest.raises(ConfigError, match="not kid:base64key"):
        Sealer.parse("justakey")
    with pytest.raises(ConfigError, match="not valid base64"):
        Sealer.parse("k1:@@@notbase64")
    with pytest.raises(ConfigError, match="twice"):
        Sealer.parse(f"{K1},{K1}")
    assert Sealer.parse("") is NO_SEALING and not NO_SEALING.enabled
    assert Sealer.parse(f"{K2},{K1}").active == "k2"
