"""Completion webhooks: signed, sent through the SSRF guard, durable in the outbox (armed
before the run is answered, delivered after a restart), retried, never re-sent once a 2xx
came back. The receiver is a real aiohttp server that checks the signature as a user's would."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from wayport.core.agent import AgentSpec
from wayport.core.errors import InvalidRequest, PermissionDenied
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import RunStatus
from wayport.core.webhooks import WebhookState
from wayport.models.router import Router
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.webhooks import WebhookDispatcher, WebhookTarget
from wayport.store import SqlStore, open_store
from wayport.store.outbox import SqlWebhookOutbox
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

pytestmark = pytest.mark.anyio

SECRET = "whsec-test-0123456789abcdef"


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0  #: answer 500 to this many deliveries first
    events: list[dict[str, object]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        # what a receiver does, with nothing but the standard library
        parts = dict(p.split("=", 1) for p in request.headers["Wayport-Signature"].split(","))
        expected = hmac.new(
            SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        fresh = abs(time.time() - int(parts["t"])) < 300
        if not (fresh and hmac.compare_digest(expected, parts["v1"])):
            self.bad_signatures += 1
            return web.Response(status=400)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        self.events.append(json.loads(body))
        self.ids.append(request.headers["Wayport-Webhook-Id"])
        self.arrived.set()
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    holder = Receiver()
    app = web.Application()
    app.router.add_post("/hook", holder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    holder.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield holder
    finally:
        await runner.cleanup()


def dispatcher(
    *,
    allow: tuple[str, ...] = ("127.0.0.1/32",),
    arming: Callable[[], float] = time.time,
    **kw: object,
) -> WebhookDispatcher:
    """``arming``: the clock the outbox stamps armed webhooks with (``wall`` in ``kw``: the
    dispatcher's own)."""

    def outbox_for(stores: object) -> SqlWebhookOutbox:
        assert isinstance(stores, SqlStore)
        return SqlWebhookOutbox(stores.db, now=arming)

    return WebhookDispatcher(
        client=GuardedClient(GuardPolicy(allow=allow)),
        outbox_for=outbox_for,
        default_secret=None,
        **kw,  # type: ignore[arg-type]
    )


def service(state: Path, webhooks: WebhookDispatcher, *, text: str = "all done") -> AgentService:
    router = Router(
        groups=[ModelGroup(name="m", deployments=(WeightedDeployment(name="m"),))],
        backends={"m": ScriptedBackend("m", default=Reply(text))},
        policy=RouterPolicy(max_retries=0),
    )

    async def stores() -> Stores:
        return await open_store(None, state_dir=state)

    return AgentService(
        catalog=AgentCatalog([AgentSpec(name="a", model="m")]),
        model=router,
        open_stores=stores,
        webhooks=webhooks,
    )


async def until(condition: object, what: str) -> None:
    async with asyncio.timeout(20):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.01)  # polling a condition, not timing


async def test_a_finished_run_posts_one_signed_event(tmp_path: Path, receiver: Receiver) -> None:
    s = service(tmp_path, dispatcher(poll_every=0.05))
    await s.start()
    try:
        session = await s.create_session("a")
        target = WebhookTarget(url=receiver.url, secret=SECRET)
        run = await s.submit(session.id, [{"role": "user", "content": "hi"}], webhook=target)
        await s.finished(run.id)
        await until(lambda: receiver.events, "delivery")
        [event] = receiver.events
        assert event["type"] == "run.completed"
        assert event["run"]["id"] == run.id  # type: ignore[index]
        assert event["run"]["output"] == {"content": "all done"}  # type: ignore[index]
        # the receiver answers before the dispatcher records the delivery: wait for the record
        async with asyncio.timeout(20):
            while True:
                stored = await s.webhooks.outbox.get("default", run.id)  # type: ignore[union-attr]
                assert stored is not None
                if stored.state is not WebhookState.ARMED:
                    break
                await asyncio.sleep(0.01)  # polling a condition, not timing
        assert stored.state is WebhookState.DELIVERED
        assert SECRET not in repr(stored)
        # a delivered webhook is never sent again, however many passes follow
        for _ in range(3):
            await s.webhooks.deliver_due()  # type: ignore[union-attr]
        assert len(receiver.events) == 1 and receiver.bad_signatures == 0
    finally:
        await s.close()


async def test_failed_deliveries_are_retried_with_backoff(
    tmp_path: Path, receiver: Receiver
) -> None:
    now = [time.time()]  # moved by hand, a few seconds at a time (signatures stay fresh)
    # the outbox arms on this clock too, half a second ahead: due once the test moves it,
    # however long the start took (armed on the wall clock, it was not yet due when a loaded
    # machine took more than that half second to get here)
    hooks = dispatcher(poll_every=3600, wall=lambda: now[0], arming=lambda: now[0] + 0.5)
    receiver.fail_first = 2
    s = service(tmp_path, hooks)
    await s.start()
    try:
        session = await s.create_session("a")
        target = WebhookTarget(url=receiver.url, secret=SECRET)
        run = await s.submit(session.id, [{"role": "user", "content": "hi"}], webhook=target)
        await s.finished(run.id)
        outbox = hooks.outbox
        now[0] += 0.5  # past the arming stamp
        await hooks.deliver_due()
        first = await outbox.get("default", run.id)
        assert first is not None and first.attempts >= 1 and first.state is WebhookState.ARMED
        assert await hooks.deliver_due() == 0  # not due before its backoff has passed
        for _ in range(4):
            now[0] += 5  # past each backoff (1 s, then 2 s)
            await hooks.deliver_due()
        done = await outbox.get("default", run.id)
        assert done is not None and done.state is WebhookState.DELIVERED
        assert done.attempts == 3 and len(receiver.events) == 1
    finally:
        await s.close()


async def test_an_armed_webhook_is_delivered_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    unreachable = dispatcher(allow=("127.0.0.1/32",), poll_every=3600)
    first = service(tmp_path, unreachable)
    await first.start()
    session = await first.create_session("a")
    target = WebhookTarget(url=receiver.url, secret=SECRET)
    run = await first.submit(session.id, [{"role": "user", "content": "hi"}], webhook=target)
    # the process stops as soon as the run is answered, before any delivery pass ran
    await first.finished(run.id)
    await first.webhooks.close()  # type: ignore[union-attr]
    stored = await unreachable.outbox.get("default", run.id)
    assert stored is not None and stored.state is WebhookState.ARMED and stored.attempts == 0
    await first.close()

    second = service(tmp_path, dispatcher(poll_every=0.05))
    await second.start()
    try:
        await until(lambda: receiver.events, "delivery after restart")
        assert receiver.events[0]["run"]["id"] == run.id  # type: ignore[index]
        assert (await second.run(run.id)).status is RunStatus.COMPLETED
    finally:
        await second.close()


async def test_loopback_targets_are_refused_unless_allow_listed(
    tmp_path: Path, receiver: Receiver
) -> None:
    s = service(tmp_path, dispatcher(allow=()))
    await s.start()
    try:
        session = await s.create_session("a")
        with pytest.raises(PermissionDenied):
            await s.submit(
                session.id,
                [{"role": "user", "content": "hi"}],
                webhook=WebhookTarget(url=receiver.url, secret=SECRET),
            )
        with pytest.raises(InvalidRequest):  # nothing to sign with
            await s.submit(
                session.id,
                [{"role": "user", "content": "hi"}],
                webhook=WebhookTarget(url="https://example.com/hook"),
            )
        assert await s.webhooks.deliver_due() == 0  # type: ignore[union-attr]
    finally:
        await s.close()
