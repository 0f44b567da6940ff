"""The reconciler: every ``interval`` seconds, on every replica, load each rollout in progress,
ask the pure controller what to do with the signals observed, and apply its actions with a
compare-and-set on the rollout's revision (the replica that loses the race skips; the winner's
state is what everyone routes on). Tests call ``tick(now)`` with a manual clock::

    reconciler = Reconciler(releases, interval=5.0)
    await reconciler.tick()          # one pass
    await reconciler.start()         # the background loop; ``close()`` stops it

The notification webhook (``WebhookNotifier``) POSTs every transition, signed like run
webhooks (``Wayport-Signature``), through the SSRF-guarded client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from wayport.core.errors import Conflict, WayportError
from wayport.core.release import TERMINAL, decide
from wayport.core.webhooks import SIGNATURE_HEADER, signature_header
from wayport.net.guard import GuardedClient
from wayport.service.releases import ReleaseService

_log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self,
        releases: ReleaseService,
        *,
        interval: float = 5.0,
        notifier: WebhookNotifier | None = None,
    ) -> None:
        """``notifier``: closed with the reconciler (``releases.notify`` calls it)."""
        self.releases = releases
        self.interval = interval
        self._notifier = notifier
        self._task: asyncio.Task[None] | None = None

    async def tick(self, now: float | None = None) -> int:
        """One pass over every rollout in progress; the number of rollouts changed."""
        releases = self.releases
        store = releases.store
        await releases.signals.flush(store)
        now = releases.wall() if now is None else now
        changed = 0
        for tenant in sorted(releases.tenants):
            for rollout in await store.rollouts(tenant):
                if rollout.state.phase in TERMINAL:
                    continue
                observed = await releases.observe(tenant, rollout, now)
                decision = decide(rollout.strategy, rollout.state, observed)
                if decision.state == rollout.state and not decision.actions:
                    continue
                try:
                    await releases.apply(tenant, rollout, decision, now)
                except Conflict:
                    continue  # another replica applied its decision first; it wins
                changed += 1
        return changed

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="wayport-release-reconciler")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._notifier is not None:
            await self._notifier.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except WayportError as exc:
                _log.warning("release reconcile failed: %s", exc.message)


class WebhookNotifier:
    """POSTs ``{"type": "release.<event>", "data": {...}}`` to ``url``, signed with
    ``secret``; a failed delivery is logged, never retried (the events stay in the store)."""

    def __init__(
        self, url: str, *, secret: str | None, client: GuardedClient, timeout: float = 10.0
    ) -> None:
        client.check_url(url)
        self._url = url
        self._secret = secret
        self._client = client
        self._timeout = timeout
        self._started = False

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._client.close()

    def __repr__(self) -> str:
        return f"WebhookNotifier(url={self._url!r})"

    async def __call__(self, event: str, detail: Mapping[str, Any]) -> None:
        now = int(time.time())
        body = msgspec.json.encode({"type": f"release.{event}", "created": now, "data": detail})
        headers = {"Content-Type": "application/json", "User-Agent": "Wayport-Releases/1"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = signature_header(self._secret, body, timestamp=now)
        try:
            if not self._started:
                await self._client.start()
                self._started = True
            response = await self._client.request(
                "POST", self._url, headers=headers, body=body, timeout=self._timeout
            )
        except WayportError as exc:
            _log.warning("release notification failed: %s", exc.message)
            return
        if not 200 <= response.status < 300:
            _log.warning("release notification answered %s", response.status)
