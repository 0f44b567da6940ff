"""``ChannelStore`` in memory, for tests and the contract suite: the same behaviour as
``wayport.store.channels.SqlChannelStore`` (dedup by platform message id, idempotent enqueue,
ordered pending items, each conversation's oldest, final delivered/dropped states, pairing
codes, replay nonces), per tenant, in one process.

    store = MemoryChannelStore()
    entry, new = await store.accept("default", inbound, entry_id="in-1")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from wayport.core.channels import (
    Inbound,
    InboxEntry,
    InboxStatus,
    OutboxItem,
    OutboxStatus,
    PairingCode,
)
from wayport.core.errors import Conflict, NotFound
from wayport.ports import ChannelStore

__all__ = ["MemoryChannelStore"]


class MemoryChannelStore:
    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._inbox: dict[tuple[str, str], InboxEntry] = {}  #: (tenant, entry id)
        self._by_message: dict[tuple[str, str, str], str] = {}  #: (tenant, channel, mid) -> id
        self._outbox: dict[tuple[str, str], OutboxItem] = {}
        self._pairings: dict[tuple[str, str, str], PairingCode] = {}
        self._nonces: dict[tuple[str, str, str], float] = {}

    async def accept(
        self, tenant: str, message: Inbound, *, entry_id: str
    ) -> tuple[InboxEntry, bool]:
        key = (tenant, message.channel, message.message_id)
        found = self._by_message.get(key)
        if found is not None:
            return self._inbox[(tenant, found)], False
        entry = InboxEntry(
            id=entry_id, message=message, status=InboxStatus.RECEIVED, received_at=self._now()
        )
        self._inbox[(tenant, entry_id)] = entry
        self._by_message[key] = entry_id
        return entry, True

    async def set_inbox(
        self,
        tenant: str,
        entry_id: str,
        status: InboxStatus,
        *,
        run_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        entry = self._inbox.get((tenant, entry_id))
        if entry is None:
            raise NotFound(f"inbox entry {entry_id} not found")
        self._inbox[(tenant, entry_id)] = replace(
            entry, status=status, run_id=run_id, reason=reason
        )

    async def unfinished_inbox(self, tenant: str, *, limit: int = 100) -> list[InboxEntry]:
        open_ = (InboxStatus.RECEIVED, InboxStatus.STARTED)
        found = [e for (t, _), e in self._inbox.items() if t == tenant and e.status in open_]
        return sorted(found, key=lambda e: (e.received_at, e.id))[:limit]

    async def enqueue(self, tenant: str, items: Sequence[OutboxItem]) -> None:
        now = self._now()
        for item in items:
            if (tenant, item.id) not in self._outbox:
                self._outbox[(tenant, item.id)] = replace(item, created_at=item.created_at or now)

    async def pending(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        return sorted(self._pending(tenant), key=lambda i: (i.target, i.id))[:limit]

    async def heads(self, tenant: str, *, limit: int = 500) -> list[OutboxItem]:
        heads: dict[tuple[str, str], OutboxItem] = {}
        for item in sorted(self._pending(tenant), key=lambda i: (i.created_at, i.id)):
            heads.setdefault((item.channel, item.target), item)
        return list(heads.values())[:limit]

    def _pending(self, tenant: str) -> list[OutboxItem]:
        return [
            i
            for (t, _), i in self._outbox.items()
            if t == tenant and i.status is OutboxStatus.PENDING
        ]

    async def outbox(self, tenant: str, item_id: str) -> OutboxItem | None:
        return self._outbox.get((tenant, item_id))

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
        item = self._outbox.get((tenant, item_id))
        if item is None or item.status is not OutboxStatus.PENDING:
            raise Conflict(f"outbox item {item_id} is not pending")
        self._outbox[(tenant, item_id)] = replace(
            item,
            status=status,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            reason=reason,
            platform_id=platform_id,
        )

    async def pairing(self, tenant: str, channel: str, sender: str) -> PairingCode | None:
        return self._pairings.get((tenant, channel, sender))

    async def pending_pairings(self, tenant: str, channel: str, *, now: float) -> int:
        return sum(
            1
            for (t, ch, _), p in self._pairings.items()
            if t == tenant and ch == channel and p.pending(now)
        )

    async def put_pairing(self, tenant: str, code: PairingCode) -> None:
        for key, stored in list(self._pairings.items()):
            same_code = key[:2] == (tenant, code.channel) and stored.code == code.code
            if same_code and stored.sender != code.sender:
                raise Conflict(f"pairing code {code.code} is taken")
        self._pairings[(tenant, code.channel, code.sender)] = code

    async def approve_pairing(
        self, tenant: str, channel: str, code: str, *, now: float
    ) -> PairingCode:
        wanted = code.strip().upper()
        for key, stored in self._pairings.items():
            if key[:2] != (tenant, channel) or stored.code != wanted:
                continue
            if stored.approved_at is None and stored.expires_at <= now:
                break
            if stored.approved_at is None:
                stored = replace(stored, approved_at=now)
                self._pairings[key] = stored
            return stored
        raise NotFound(f"no pending pairing code {code!r} on channel {channel!r}")

    async def claim_nonce(
        self, tenant: str, channel: str, nonce: str, *, expires_at: float, now: float
    ) -> bool:
        key = (tenant, channel, nonce[:200])
        held = self._nonces.get(key)
        if held is not None and held > now:
            return False
        self._nonces[key] = expires_at
        return True

    async def release_nonce(self, tenant: str, channel: str, nonce: str) -> None:
        self._nonces.pop((tenant, channel, nonce[:200]), None)

    async def sweep_nonces(self, tenant: str, *, now: float) -> int:
        expired = [k for k, until in self._nonces.items() if k[0] == tenant and until <= now]
        for key in expired:
            del self._nonces[key]
        return len(expired)


def _implements_port(store: MemoryChannelStore) -> ChannelStore:
    """Never called: type checkers verify here that the store implements the port."""
    return store
