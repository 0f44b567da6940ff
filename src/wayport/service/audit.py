"""The audit log: who changed what (admin actions) and how each run decided (its trail).

    audit = AuditService(lambda: store.audit)
    await audit.record(principal, "key.create", target="wp_acme_…", details={"role": "user"})
    async for line in audit.export("acme", fmt="jsonl"):
        ...
    await audit.verify("acme")            # raises ValueError where the chain was tampered with

Every entry is appended to its tenant's hash chain (``wayport.core.identity.audit_hash``), so a
changed or deleted line is detected by ``verify``. Run trails are written off the run's path:
``watch(run, agent)`` gives the worker an event sink that notes each tool call (its name and the
SHA-256 of its arguments, never the arguments themselves) and, once the run finishes, appends
one ``run.finished`` entry with the agent, its version, the model and the tools called.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal

from wayport.core.agent import AgentSpec, RunEvent, RunFinished, ToolCalled
from wayport.core.errors import WayportError
from wayport.core.identity import AuditEntry, Principal, verify_chain
from wayport.core.session import Run
from wayport.ports import AuditStore

_log = logging.getLogger(__name__)
_PAGE = 500
ExportFormat = Literal["jsonl", "csv"]
CSV_COLUMNS = ("seq", "at", "actor", "action", "target", "details", "prev_hash", "hash")


def actor_of(principal: Principal) -> str:
    """How an entry names who acted: the key id (``bootstrap`` for the configured key), or
    ``local`` when authentication is off; with the end user when the key speaks for one."""
    who = principal.key_id or "local"
    return f"{who}:{principal.user}" if principal.user else who


def entry_dict(e: AuditEntry) -> dict[str, Any]:
    return {
        "tenant": e.tenant,
        "seq": e.seq,
        "at": e.at,
        "actor": e.actor,
        "action": e.action,
        "target": e.target,
        "details": dict(e.details),
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }


def hash_arguments(arguments: str) -> str:
    return hashlib.sha256(arguments.encode()).hexdigest()


class AuditService:
    def __init__(
        self, store: Callable[[], AuditStore], *, now: Callable[[], float] = time.time
    ) -> None:
        """``store``: the audit store, looked up at each use (it opens with the database)."""
        self._store = store
        self._now = now
        self._pending: set[asyncio.Task[None]] = set()

    async def record(
        self,
        actor: Principal | None,
        action: str,
        *,
        tenant: str | None = None,
        target: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry to ``tenant``'s log (default: the actor's tenant)."""
        where = tenant if tenant is not None else (actor.tenant if actor is not None else None)
        if where is None:
            raise ValueError("an audit entry needs a tenant")
        return await self._store().append(
            where,
            actor=actor_of(actor) if actor is not None else None,
            action=action,
            target=target,
            details=dict(details or {}),
            at=self._now(),
        )

    async def entries(self, tenant: str, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        return await self._store().list(tenant, after=after, limit=limit)

    async def all_entries(self, tenant: str, *, after: int = 0) -> AsyncIterator[AuditEntry]:
        while True:
            page = await self._store().list(tenant, after=after, limit=_PAGE)
            for entry in page:
                yield entry
            if len(page) < _PAGE:
                return
            after = page[-1].seq

    async def export(self, tenant: str, *, fmt: ExportFormat = "jsonl") -> AsyncIterator[str]:
        """The whole log, oldest first: JSON lines, or CSV with a header row (``details``
        as a JSON column)."""
        if fmt == "csv":
            yield _csv_row(CSV_COLUMNS)
        async for e in self.all_entries(tenant):
            d = entry_dict(e)
            if fmt == "csv":
                d["details"] = json.dumps(d["details"], sort_keys=True)
                yield _csv_row([d[c] for c in CSV_COLUMNS])
            else:
                yield json.dumps(d, sort_keys=True) + "\n"

    async def verify(self, tenant: str) -> int:
        """Check the whole chain; return how many entries it holds. Raises ``ValueError`` at
        the first entry that was changed, removed or inserted."""
        count, prev = 0, None
        async for e in self.all_entries(tenant):
            if prev is None and e.seq != 1:
                raise ValueError(f"audit entry {e.seq}: the entries before it are missing")
            if prev is not None and e.seq != prev.seq + 1:
                raise ValueError(f"audit entry {e.seq}: entry {prev.seq + 1} is missing")
            count += verify_chain([e], prev_hash=prev.hash) if prev else verify_chain([e])
            prev = e
        return count

    # ------------------------------------------------------------------ run trails

    def watch(self, run: Run, agent: AgentSpec) -> Callable[[RunEvent], None]:
        """An event sink for one attempt of ``run``: collects tool calls, and on
        ``RunFinished`` appends the run's decision trail in the background."""
        tools: list[dict[str, Any]] = []

        def sink(event: RunEvent) -> None:
            if isinstance(event, ToolCalled):
                fn = event.call["function"]
                tools.append(
                    {"name": fn["name"], "arguments_sha256": hash_arguments(fn["arguments"])}
                )
            elif isinstance(event, RunFinished):
                details = trail(event, agent, tools)
                task = asyncio.get_running_loop().create_task(self._write_trail(event.run, details))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

        return sink

    async def _write_trail(self, run: Run, details: dict[str, Any]) -> None:
        try:
            await self._store().append(
                run.tenant_id,
                actor=None,
                action="run.finished",
                target=run.id,
                details=details,
                at=self._now(),
            )
        except WayportError as exc:
            # the run is over and stored either way; a lost trail line must be visible
            _log.warning("audit trail of run %s not written: %s", run.id, exc.message)

    async def drain(self) -> None:
        """Wait for the trail entries still being written."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def trail(finished: RunFinished, agent: AgentSpec, tools: list[dict[str, Any]]) -> dict[str, Any]:
    run = finished.run
    return {
        "run_id": run.id,
        "session_id": run.session_id,
        "status": run.status.value,
        "agent": agent.name,
        "agent_version": run.agent_version or agent.version,
        "model": agent.model,
        "tools": list(tools),
        "usage": {
            "prompt_tokens": finished.usage.prompt_tokens,
            "completion_tokens": finished.usage.completion_tokens,
        },
        "error": run.error,
    }


def _csv_row(values: Any) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()
