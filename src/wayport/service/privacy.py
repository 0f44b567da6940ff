"""Privacy requests and retention: export everything about a user or a session, erase it, and
delete sessions idle longer than ``store.retention_days``.

    privacy = PrivacyService(store=lambda: SqlPrivacyStore.of(opened), retention_days=30)
    data = await privacy.export("acme", Subject(user="u-42"))   # JSON-ready dict
    await privacy.erase("acme", Subject(session="sess-1"))
    await privacy.sweep(now=clock.now())                        # one retention pass
    await privacy.start(); …; await privacy.close()             # the periodic sweeper

The tenant is always the caller's: a subject in another tenant is simply not found.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from wayport.core.errors import InvalidRequest, NotFound, WayportError

__all__ = ["DAY", "PrivacyService", "PrivacyStore", "Subject"]

DAY = 86_400.0
_SWEEP_BATCH = 500


class _Erased(Protocol):
    @property
    def sessions(self) -> int: ...

    @property
    def usage_rows(self) -> int: ...

    @property
    def channel_messages(self) -> int: ...


class PrivacyStore(Protocol):
    """What the service needs from a store (``wayport.store.privacy.SqlPrivacyStore``)."""

    async def find_sessions(
        self, tenant: str, *, user: str | None = None, session: str | None = None
    ) -> list[str]: ...

    async def export(
        self, tenant: str, session_ids: Sequence[str], *, user: str | None = None
    ) -> dict[str, Any]: ...

    async def erase(
        self, tenant: str, session_ids: Sequence[str], *, user: str | None = None
    ) -> _Erased: ...

    async def expired(self, tenant: str, *, before: float, limit: int = 500) -> list[str]: ...

    async def tenants(self) -> list[str]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """Whose data: exactly one of a user (``metadata.user`` of sessions) or a session."""

    user: str | None = None
    session: str | None = None

    def __post_init__(self) -> None:
        if (self.user is None) == (self.session is None):
            raise InvalidRequest("give exactly one of user or session", param="user")
        for value in (self.user, self.session):
            if value is not None and not (0 < len(value) <= 200):
                raise InvalidRequest("user and session must be 1 to 200 characters")


class PrivacyService:
    def __init__(
        self,
        *,
        store: Callable[[], PrivacyStore],
        retention_days: float | None = None,
        now: Callable[[], float] = time.time,
        sweep_interval: float = 3600.0,
    ) -> None:
        self._store = store
        self.retention_days = retention_days
        self._now = now
        self._interval = sweep_interval
        self._task: asyncio.Task[None] | None = None
        self._log = structlog.get_logger("wayport.privacy")

    async def export(self, tenant: str, subject: Subject) -> dict[str, Any]:
        store = self._store()
        ids = await store.find_sessions(tenant, user=subject.user, session=subject.session)
        if subject.session is not None and not ids:
            raise NotFound(f"session {subject.session} not found", param="session")
        data = await store.export(tenant, ids, user=subject.user)
        return {"subject": {"user": subject.user, "session": subject.session}, **data}

    async def erase(self, tenant: str, subject: Subject) -> dict[str, int]:
        store = self._store()
        ids = await store.find_sessions(tenant, user=subject.user, session=subject.session)
        if subject.session is not None and not ids:
            raise NotFound(f"session {subject.session} not found", param="session")
        erased = await store.erase(tenant, ids, user=subject.user)
        deleted = {
            "sessions": erased.sessions,
            "usage_rows": erased.usage_rows,
            "channel_messages": erased.channel_messages,
        }
        self._log.info("privacy erase", tenant=tenant, **deleted)
        return deleted

    async def sweep(self, *, now: float | None = None) -> int:
        """Delete every session idle longer than the retention, in all tenants; the number
        deleted (0 when retention is off)."""
        if self.retention_days is None:
            return 0
        before = (self._now() if now is None else now) - self.retention_days * DAY
        store = self._store()
        deleted = 0
        for tenant in await store.tenants():
            while True:
                ids = await store.expired(tenant, before=before, limit=_SWEEP_BATCH)
                if not ids:
                    break
                deleted += (await store.erase(tenant, ids)).sessions
                if len(ids) < _SWEEP_BATCH:
                    break
        if deleted:
            self._log.info("retention sweep", deleted=deleted, days=self.retention_days)
        return deleted

    async def start(self) -> None:
        """Sweep now and then every ``sweep_interval`` seconds (when retention is on)."""
        if self.retention_days is not None and self._task is None:
            self._task = asyncio.create_task(self._keep_sweeping(), name="wayport-retention")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _keep_sweeping(self) -> None:
        while True:
            try:
                await self.sweep()
            except WayportError as exc:  # a store hiccup: try again next round
                self._log.warning("retention sweep failed", error=exc.message)
            await asyncio.sleep(self._interval)
