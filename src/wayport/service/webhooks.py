"""Run completion webhooks: armed when a run is submitted, POSTed (signed) once it finishes.

    webhooks = WebhookDispatcher(client=GuardedClient(GuardPolicy()), default_secret=None,
                                 outbox_for=lambda stores: SqlWebhookOutbox(stores.db))
    webhooks.check(WebhookTarget(url="https://example.com/hook", secret="whsec"))  # at submit
    await webhooks.arm("default", run.id, target)     # stored with the run, before the answer
    await webhooks.start(stores)                      # the delivery loop (AgentService does it)

**Durable.** The outbox row is written before the client hears of the run, so it exists
before the run can finish; the loop picks up every armed row whose run has finished, whichever
process finished it and whenever (a restart included). A 2xx marks it delivered, and a
delivered row is never sent again; anything else is retried with doubling delays, up to
``MAX_ATTEMPTS``. Delivery is at least once: a crash between the receiver's 2xx and the row's
update sends it again, with the same ``Wayport-Webhook-Id``, for the receiver to drop.

**Safe.** Every POST goes through the SSRF-guarded client (loopback and private targets only
when allow-listed); the secret signs the body and is never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from structlog.typing import FilteringBoundLogger

from wayport.core.errors import InvalidRequest, PermissionDenied, WayportError
from wayport.core.session import Run
from wayport.core.webhooks import (
    EVENT_ID_HEADER,
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    Webhook,
    retry_delay,
    signature_header,
)
from wayport.net.guard import GuardedClient
from wayport.ports import RunStore, WebhookOutbox

__all__ = ["WebhookDispatcher", "WebhookTarget", "webhook_event"]

_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookTarget:
    """Where a run's completion event goes; ``secret``: the run's own signing secret."""

    url: str
    secret: str | None = None

    def __repr__(self) -> str:
        return f"WebhookTarget(url={self.url!r})"


def webhook_event(event_id: str, run: Run, *, created: int) -> dict[str, Any]:
    """The JSON body: ``{"id", "type": "run.<status>", "created", "run": {…}}``."""
    return {
        "id": event_id,
        "object": "event",
        "type": f"run.{run.status.value}",
        "created": created,
        "run": {
            "id": run.id,
            "object": "run",
            "session_id": run.session_id,
            "status": run.status.value,
            "output": run.output,
            "error": run.error,
            "agent_version": run.agent_version,
            "attempt": run.attempt,
            "created_at": run.created_at,
            "updated_at": run.updated_at,
        },
    }


class WebhookDispatcher:
    """Arms and delivers completion webhooks for one tenant's runs (the worker's tenant)."""

    def __init__(
        self,
        *,
        client: GuardedClient,
        outbox_for: Callable[[Any], WebhookOutbox],
        default_secret: str | None = None,
        tenants: Callable[[], list[str]] | None = None,
        poll_every: float = 1.0,
        lease: float = 60.0,
        timeout: float = 10.0,
        max_attempts: int = MAX_ATTEMPTS,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """``outbox_for`` builds the outbox on the opened stores; ``tenants`` lists the
        tenants whose webhooks this process delivers (default: the default tenant)."""
        self._client = client
        self._outbox_for = outbox_for
        self._default_secret = default_secret or None
        self._tenants = tenants or (lambda: ["default"])
        self._poll_every = poll_every
        self._lease = lease
        self._timeout = timeout
        self._max_attempts = max_attempts
        self._wall = wall
        self._outbox: WebhookOutbox | None = None
        self._runs: RunStore | None = None
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._log: FilteringBoundLogger = structlog.get_logger("wayport.webhooks")

    # ------------------------------------------------------------------ submit side

    def check(self, target: WebhookTarget) -> None:
        """Refuse, before anything is stored, a target that could never be delivered: no
        secret to sign with, or a URL the guard refuses without a lookup."""
        if target.secret is None and self._default_secret is None:
            raise InvalidRequest(
                "webhook.secret: a secret is needed to sign the webhook (none is configured)",
                param="webhook.secret",
            )
        try:
            self._client.check_url(target.url)
        except ValueError as exc:  # yarl: a host that is no valid name (IDNA), a bad port
            # refused like any target the guard will not reach (403, as the API documents)
            message = f"webhook.url refused: not a valid URL ({exc})"
            raise PermissionDenied(message, code="webhook_url_invalid") from exc

    async def arm(self, tenant: str, run_id: str, target: WebhookTarget) -> None:
        await self.outbox.arm(tenant, run_id=run_id, url=target.url, secret=target.secret)

    @property
    def outbox(self) -> WebhookOutbox:
        if self._outbox is None:
            raise RuntimeError("WebhookDispatcher.start() has not been called")
        return self._outbox

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self, stores: Any, runs: RunStore, *, tenants: Callable[[], list[str]] | None = None
    ) -> None:
        """Open the outbox on ``stores`` and start delivering; ``tenants`` (the service's
        known tenants) replaces the constructor's list."""
        if tenants is not None:
            self._tenants = tenants
        self._outbox = self._outbox_for(stores)
        self._runs = runs
        await self._client.start()
        self._loop = asyncio.create_task(self._deliver_loop(), name="wayport-webhooks")

    async def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        await self._client.close()

    def wake(self) -> None:
        """A run just finished: look for due webhooks now rather than at the next poll."""
        self._wake.set()

    async def _deliver_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.deliver_due()
            except WayportError as exc:
                self._log.warning("webhook pass failed", error=exc.message)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_every):
                    await self._wake.wait()

    # ------------------------------------------------------------------ delivery

    async def deliver_due(self) -> int:
        """One pass: send every due webhook of finished runs; return how many were tried."""
        tried = 0
        for tenant in self._tenants():
            due = await self.outbox.due(tenant, now=self._wall(), lease=self._lease)
            if due:
                await asyncio.gather(*(self._deliver(hook) for hook in due))
                tried += len(due)
        return tried

    async def _deliver(self, hook: Webhook) -> None:
        assert self._runs is not None
        tenant = hook.tenant_id
        secret = hook.secret or self._default_secret
        run = await self._runs.get(tenant, hook.run_id)
        if run is None or secret is None:
            reason = "run deleted" if run is None else "no signing secret configured"
            await self.outbox.failed(tenant, hook.run_id, error=reason, retry_at=None)
            return
        now = int(self._wall())
        body = _encode(webhook_event(hook.event_id, run, created=now))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Wayport-Webhooks/1",
            SIGNATURE_HEADER: signature_header(secret, body, timestamp=now),
            EVENT_ID_HEADER: hook.event_id,
        }
        try:
            response = await self._client.request(
                "POST", hook.url, headers=headers, body=body, timeout=self._timeout
            )
        except WayportError as exc:
            error = exc.message
        else:
            if 200 <= response.status < 300:
                await self.outbox.delivered(tenant, hook.run_id, now=self._wall())
                self._log.info("webhook delivered", run_id=hook.run_id, status=response.status)
                return
            error = f"the receiver answered {response.status}"
        attempts = hook.attempts + 1
        retry_at = self._wall() + retry_delay(attempts) if attempts < self._max_attempts else None
        self._log.warning(
            "webhook delivery failed", run_id=hook.run_id, attempt=attempts, error=error
        )
        await self.outbox.failed(tenant, hook.run_id, error=error, retry_at=retry_at)
