"""``ChannelStore`` on SQL: the channel inbox, outbox and pairing codes.

    store = SqlChannelStore(db)
    entry, new = await store.accept("default", inbound, entry_id="in-…")  # dedup by message id
    await store.enqueue("default", [OutboxItem(id="in-…:0", …)])          # a retry is a no-op
    for item in await store.heads("default"):          # each conversation's oldest item
        await store.settle("default", item.id, OutboxStatus.DELIVERED, attempts=1)

The inbox's ``(tenant, channel, message_id)`` key is what makes a platform's retried delivery
start one run: the second insert finds the first row and returns it. With a ``sealer`` holding
keys, the message payloads (what users said and what was answered) and an outbox item's
reason (a platform's error may echo the message) are sealed at rest, the tenant as associated
data (``wayport.store.sealing``); the inbox keeps the sender in plaintext beside them for
privacy requests. ``claim_nonce`` records a
request signature until it expires, so a replayed request is refused by every replica, also
after a restart; ``sweep_nonces`` deletes the expired ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam as param

from wayport.core.channels import (
    Inbound,
    InboxEntry,
    InboxStatus,
    OutboxItem,
    OutboxStatus,
    PairingCode,
    inbound_from_json,
    inbound_to_json,
    outbound_from_json,
    outbound_to_json,
)
from wayport.core.errors import Conflict, NotFound
from wayport.ports import ChannelStore
from wayport.store.database import Database
from wayport.store.schema import channel_inbox as IN
from wayport.store.schema import channel_nonces as NO
from wayport.store.schema import channel_outbox as OUT
from wayport.store.schema import channel_pairings as PA
from wayport.store.scope import (
    Scope,
    scoped_delete,
    scoped_insert,
    scoped_select,
    scoped_update,
)
from wayport.store.sealing import NO_SEALING, Sealer

IN_PAYLOAD = "channel_inbox.payload"  #: the sealing purposes (associated data)
OUT_PAYLOAD = "channel_outbox.payload"
OUT_REASON = "channel_outbox.reason"

_BY_MESSAGE = scoped_select(IN).where(
    IN.c.channel == param("channel"), IN.c.message_id == param("mid")
)
_INSERT_IN = scoped_insert(IN)
_SET_IN = (
    scoped_update(IN)
    .where(IN.c.id == param("eid"))
    .values(status=param("status"), run_id=param("run_id"), reason=param("reason"))
    .values(updated_at=param("now"))
)
_UNFINISHED_IN = (
    scoped_select(IN)
    .where(IN.c.status.in_([InboxStatus.RECEIVED.value, InboxStatus.STARTED.value]))
    .order_by(IN.c.received_at, IN.c.id)
    .limit(param("limit"))
)
_OUT_IDS = scoped_select(OUT, OUT.c.id).where(OUT.c.id.in_(param("ids", expanding=True)))
_INSERT_OUT = scoped_insert(OUT)
_PENDING = (
    scoped_select(OUT)
    .where(OUT.c.status == OutboxStatus.PENDING.value)
    .order_by(OUT.c.target, OUT.c.id)
    .limit(param("limit"))
)
# each conversation's oldest pending item: ranked and picked from the index alone (no payload
# is read), then only the picked heads' rows are fetched
_RANKED = (
    scoped_select(
        OUT,
        OUT.c.id,
        OUT.c.created_at,
        sa.func.row_number()
        .over(partition_by=(OUT.c.channel, OUT.c.target), order_by=(OUT.c.created_at, OUT.c.id))
        .label("place"),
    )
    .where(OUT.c.status == OutboxStatus.PENDING.value)
    .subquery("ranked")
)
_PICKED = (
    sa.select(_RANKED.c.id, _RANKED.c.created_at)
    .where(_RANKED.c.place == 1)
    .order_by(_RANKED.c.created_at, _RANKED.c.id)
    .limit(param("limit"))
    .subquery("picked")
)
_HEADS = (
    scoped_select(OUT)
    .join(_PICKED, OUT.c.id == _PICKED.c.id)
    .order_by(_PICKED.c.created_at, _PICKED.c.id)
)
_GET_OUT = scoped_select(OUT).where(OUT.c.id == param("oid"))
_SETTLE = (
    scoped_update(OUT)
    .where(OUT.c.id == param("oid"), OUT.c.status == OutboxStatus.PENDING.value)
    .values(
        status=param("status"),
        attempts=param("attempts"),
        next_attempt_at=param("next"),
        reason=param("reason"),
        platform_id=param("platform_id"),
        updated_at=param("now"),
    )
)
_PAIRING = scoped_select(PA).where(PA.c.channel == param("channel"), PA.c.sender == param("sender"))
_PAIRING_CODE = scoped_select(PA).where(
    PA.c.channel == param("channel"), PA.c.code == param("code")
)
_PENDING_PAIRINGS = scoped_select(PA, sa.func.count()).where(
    PA.c.channel == param("channel"), PA.c.approved_at.is_(None), PA.c.expires_at > param("now")
)
_DELETE_PAIRING = scoped_delete(PA).where(
    PA.c.channel == param("channel"), PA.c.sender == param("sender")
)
_INSERT_PAIRING = scoped_insert(PA)
_APPROVE = (
    scoped_update(PA)
    .where(PA.c.channel == param("ch"), PA.c.code == param("pcode"))
    .values(approved_at=param("now"))
)
_NONCE = scoped_select(NO, NO.c.expires_at).where(
    NO.c.channel == param("channel"), NO.c.nonce == param("nonce")
)
_INSERT_NONCE = scoped_insert(NO)
_RENEW_NONCE = (
    scoped_update(NO)
    .where(
        NO.c.channel == param("ch"),
        NO.c.nonce == param("n"),
        NO.c.expires_at <= param("now"),
    )
    .values(expires_at=param("until"))
)
_RELEASE_NONCE = scoped_delete(NO).where(
    NO.c.channel == param("channel"), NO.c.nonce == param("nonce")
)
_SWEEP_NONCES = scoped_delete(NO).where(NO.c.expires_at <= param("now"))


class SqlChannelStore:
    def __init__(
        self, db: Database, *, now: Callable[[], float] = time.time, sealer: Sealer = NO_SEALING
    ) -> None:
        self._db = db
        self._now = now
        self._sealer = sealer

    async def accept(
        self, tenant: str, message: Inbound, *, entry_id: str
    ) -> tuple[InboxEntry, bool]:
        scope, t, sealer = Scope(tenant), self._now(), self._sealer
        key = {"channel": message.channel, "mid": message.message_id}
        row = {
            "id": entry_id,
            "channel": message.channel,
            "message_id": message.message_id,
            "payload": sealer.seal(tenant, IN_PAYLOAD, inbound_to_json(message)),
            "sender": message.sender[:200],
            "status": InboxStatus.RECEIVED.value,
            "received_at": t,
            "updated_at": t,
        }

        def job(conn: sa.Connection) -> tuple[InboxEntry, bool]:
            found = scope.execute(conn, _BY_MESSAGE, key).first()
            if found is not None:
                return _entry(found, sealer), False
            scope.execute(conn, _INSERT_IN, row)
            entry = InboxEntry(
                id=entry_id, message=message, status=InboxStatus.RECEIVED, received_at=t
            )
            return entry, True

        try:
            return await self._db.write(job)
        except Conflict:
            # a concurrent delivery of the same message won the insert: it is stored
            found = await self._db.read(lambda conn: scope.execute(conn, _BY_MESSAGE, key).first())
            if found is None:
                raise
            return _entry(found, sealer), False

    async def set_inbox(
        self,
        tenant: str,
        entry_id: str,
        status: InboxStatus,
        *,
        run_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        scope = Scope(tenant)
        params = {
            "eid": entry_id,
            "status": status.value,
            "run_id": run_id,
            "reason": reason,
            "now": self._now(),
        }

        def job(conn: sa.Connection) -> None:
            if scope.execute(conn, _SET_IN, params).rowcount == 0:
                raise NotFound(f"inbox entry {entry_id} not found")

        await self._db.write(job)

    async def unfinished_inbox(self, tenant: str, *, limit: int = 100) -> list[InboxEntry]:
        scope, sealer = Scope(tenant), self._sealer
        return await self._db.read(
            lambda conn: [
                _entry(r, sealer) for r in scope.execute(conn, _UNFINISHED_IN, {"limit": limit})
            ]
        )

    async def enqueue(self, tenant: str, items: Sequence[OutboxItem]) -> None:
        if not items:
            return
        scope, t, sealer = Scope(tenant), self._now(), self._sealer

        def job(conn: sa.Connection) -> None:
            ids = [i.id for i in items]
            stored = {r.id for r in scope.execute(conn, _OUT_IDS, {"ids": ids})}
            rows = [_outbox_row(tenant, i, t, sealer) for i in items if i.id not in stored]
            if rows:
                scope.execute_many(conn, _INSERT_OUT, rows)

        try:
            await self._db.write(job)
        except Conflict:
            await self._db.write(job)  # raced with a concurrent enqueue: keep what it stored

    async def pending(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        scope, sealer = Scope(tenant), self._sealer
        return await self._db.read(
            lambda conn: [_item(r, sealer) for r in scope.execute(conn, _PENDING, {"limit": limit})]
        )

    async def heads(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        scope, sealer = Scope(tenant), self._sealer
        return await self._db.read(
            lambda conn: [_item(r, sealer) for r in scope.execute(conn, _HEADS, {"limit": limit})]
        )

    async def outbox(self, tenant: str, item_id: str) -> OutboxItem | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> OutboxItem | None:
            row = scope.execute(conn, _GET_OUT, {"oid": item_id}).first()
            return None if row is None else _item(row, self._sealer)

        return await self._db.read(job)

    async def settle(
        self,
        tenant: str,
        item_id: str,
        status: OutboxStatus,
        *,
        attempts: int,
        next_attempt_at: float = 0.0,
        reason: str | None = None,
        platform_id: str | None = None,
    ) -> None:
        scope = Scope(tenant)
        params = {
            "oid": item_id,
            "status": status.value,
            "attempts": attempts,
            "next": next_attempt_at,
            "reason": self._sealer.seal_text(tenant, OUT_REASON, reason),
            "platform_id": platform_id,
            "now": self._now(),
        }

        def job(conn: sa.Connection) -> None:
            if scope.execute(conn, _SETTLE, params).rowcount == 0:
                raise Conflict(f"outbox item {item_id} is not pending")

        await self._db.write(job)

    async def pairing(self, tenant: str, channel: str, sender: str) -> PairingCode | None:
        scope = Scope(tenant)

        def job(conn: sa.Connection) -> PairingCode | None:
            row = scope.execute(conn, _PAIRING, {"channel": channel, "sender": sender}).first()
            return None if row is None else _pairing(row)

        return await self._db.read(job)

    async def pending_pairings(self, tenant: str, channel: str, *, now: float) -> int:
        scope = Scope(tenant)
        return await self._db.read(
            lambda conn: int(
                scope.execute(conn, _PENDING_PAIRINGS, {"channel": channel, "now": now}).scalar()
                or 0
            )
        )

    async def put_pairing(self, tenant: str, code: PairingCode) -> None:
        scope = Scope(tenant)
        row = {
            "channel": code.channel,
            "sender": code.sender,
            "code": code.code,
            "created_at": code.created_at,
            "expires_at": code.expires_at,
            "approved_at": code.approved_at,
        }

        def job(conn: sa.Connection) -> None:
            scope.execute(conn, _DELETE_PAIRING, {"channel": code.channel, "sender": code.sender})
            scope.execute(conn, _INSERT_PAIRING, row)

        await self._db.write(job)

    async def approve_pairing(
        self, tenant: str, channel: str, code: str, *, now: float
    ) -> PairingCode:
        scope = Scope(tenant)
        key = {"channel": channel, "code": code.strip().upper()}

        def job(conn: sa.Connection) -> PairingCode:
            row = scope.execute(conn, _PAIRING_CODE, key).first()
            if row is None or (row.approved_at is None and row.expires_at <= now):
                raise NotFound(f"no pending pairing code {code!r} on channel {channel!r}")
            found = _pairing(row)
            if found.approved_at is None:
                scope.execute(conn, _APPROVE, {"ch": channel, "pcode": key["code"], "now": now})
                found = replace(found, approved_at=now)
            return found

        return await self._db.write(job)

    async def claim_nonce(
        self, tenant: str, channel: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        scope = Scope(tenant)
        key = {"channel": channel, "nonce": nonce[:200]}

        def job(conn: sa.Connection) -> bool:
            found = scope.execute(conn, _NONCE, key).first()
            if found is None:
                scope.execute(conn, _INSERT_NONCE, {**key, "expires_at": expires_at})
                return True
            renew = {"ch": channel, "n": key["nonce"], "now": now, "until": expires_at}
            renewed = scope.execute(conn, _RENEW_NONCE, renew)
            return bool(renewed.rowcount)

        try:
            return await self._db.write(job)
        except Conflict:
            return False  # a concurrent request with the same nonce claimed it first

    async def release_nonce(self, tenant: str, channel: str, nonce: str) -> None:
        scope = Scope(tenant)
        key = {"channel": channel, "nonce": nonce[:200]}

        def job(conn: sa.Connection) -> None:
            scope.execute(conn, _RELEASE_NONCE, key)

        await self._db.write(job)

    async def sweep_nonces(self, tenant: str, *, now: float) -> int:
        scope = Scope(tenant)
        return await self._db.write(
            lambda conn: int(scope.execute(conn, _SWEEP_NONCES, {"now": now}).rowcount or 0)
        )


def _entry(row: sa.Row[Any], sealer: Sealer) -> InboxEntry:
    return InboxEntry(
        id=row.id,
        message=inbound_from_json(sealer.open(row.tenant_id, IN_PAYLOAD, row.payload)),
        status=InboxStatus(row.status),
        received_at=row.received_at,
        run_id=row.run_id,
        reason=row.reason,
    )


def _outbox_row(tenant: str, item: OutboxItem, now: float, sealer: Sealer) -> dict[str, Any]:
    return {
        "id": item.id,
        "channel": item.channel,
        "target": item.target,
        "payload": sealer.seal(tenant, OUT_PAYLOAD, outbound_to_json(item.message)),
        "status": item.status.value,
        "attempts": item.attempts,
        "next_attempt_at": item.next_attempt_at,
        "reason": sealer.seal_text(tenant, OUT_REASON, item.reason),
        "platform_id": item.platform_id,
        "created_at": item.created_at or now,
        "updated_at": now,
    }


def _item(row: sa.Row[Any], sealer: Sealer) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        channel=row.channel,
        target=row.target,
        message=outbound_from_json(sealer.open(row.tenant_id, OUT_PAYLOAD, row.payload)),
        status=OutboxStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        created_at=row.created_at,
        reason=sealer.open_text(row.tenant_id, OUT_REASON, row.reason),
        platform_id=row.platform_id,
    )


def _pairing(row: sa.Row[Any]) -> PairingCode:
    return PairingCode(
        channel=row.channel,
        sender=row.sender,
        code=row.code,
        created_at=row.created_at,
        expires_at=row.expires_at,
        approved_at=row.approved_at,
    )


def _implements_port(store: SqlChannelStore) -> ChannelStore:
    """Never called: type checkers verify here that the store implements the port."""
    return store
