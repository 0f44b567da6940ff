"""Channels at work: a platform's message in, an agent run, the reply out through a durable
outbox. No HTTP in here; ``wayport.server.channels_api`` translates.

    service = ChannelService(channels=[ChannelSpec(name="tg", adapter=telegram, agent="assistant")],
                             agents=agent_service, store=lambda: SqlChannelStore(db))
    await service.start()                       # resumes unfinished messages and the outbox
    answer = await service.receive("tg", request)   # verified, parsed, stored: now answer 2xx
    await service.close()

``receive`` returns once every message of the request is in the inbox: the platform's 2xx
means the message survives a crash. A delivery the inbox already holds (a platform's retry)
changes nothing; otherwise a task routes the message (``core.channels.resolve``), applies the
access policy, submits a run whose idempotency key is the inbox entry's id (so a restart that
repeats the step finds the same run), waits for it, and puts the reply, cut to the platform's
limit, into the outbox; ``wayport.service.channels_outbox`` delivers it. A request whose
adapter names a ``replay_key`` (a signature) is refused when that key was claimed before, by
this process or another, before or after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from wayport.core.agent import RunEvent, RunFinished, TextDelta
from wayport.core.channels import (
    AccessPolicy,
    Binding,
    Inbound,
    InboxEntry,
    InboxStatus,
    Outbound,
    OutboxItem,
    OutboxStatus,
    PairingCode,
    Route,
    SessionMode,
    Verdict,
    WebhookAnswer,
    WebhookRequest,
    admit,
    backoff,
    chunk_text,
    new_pairing_code,
    pairing_text,
    resolve,
)
from wayport.core.errors import AuthError, NotFound, WayportError
from wayport.core.session import DEFAULT_TENANT, Run, RunStatus, Session
from wayport.core.types import Message
from wayport.ports import ChannelAdapter, ChannelStore, Clock, PollingAdapter
from wayport.service.channels_outbox import MonotonicClock, OutboxDispatcher, OutboxPolicy

__all__ = ["Agents", "ChannelService", "ChannelSpec", "OutboxPolicy"]

_log = structlog.get_logger("wayport.channels")


class Agents(Protocol):
    """What channels need of ``AgentService``."""

    async def create_session(
        self, agent: str, *, session_id: str | None = None, tenant: str
    ) -> Session: ...

    async def session(self, session_id: str, *, tenant: str) -> Session: ...

    async def submit(
        self,
        session_id: str,
        messages: list[Message],
        *,
        idempotency_key: str | None = None,
        tenant: str,
    ) -> Run: ...

    async def finished(self, run_id: str, *, tenant: str) -> RunFinished: ...

    async def follow(self, run_id: str, *, tenant: str) -> AsyncIterator[RunEvent]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSpec:
    name: str
    adapter: ChannelAdapter
    agent: str  #: the default agent, when no binding matches
    tenant: str = DEFAULT_TENANT
    bindings: tuple[Binding, ...] = ()
    session: SessionMode = SessionMode.CHANNEL_PEER
    access: AccessPolicy = field(default_factory=AccessPolicy)
    stream: bool = False  #: show the answer growing, by edits, where the platform can edit
    stream_interval: float = 1.0  #: seconds between two edits
    poll: bool = False  #: fetch messages (long polling) instead of taking webhooks
    failure_text: str = "Sorry, I could not answer that. Please try again."


class ChannelService:
    def __init__(
        self,
        *,
        channels: Iterable[ChannelSpec],
        agents: Agents,
        store: Callable[[], ChannelStore],
        outbox: OutboxPolicy | None = None,
        now: Callable[[], float] = time.time,
        clock: Clock | None = None,
        poll_timeout: float = 25.0,
    ) -> None:
        """``store`` builds the channel store once the agents' stores are open (at start);
        ``now`` is the wall clock stamped on rows and checked against ages, ``clock`` what
        background loops sleep on."""
        self.channels = {c.name: c for c in channels}
        self._agents = agents
        self._store_factory = store
        self._store: ChannelStore | None = None
        self._now = now
        self._clock: Clock = clock or MonotonicClock()
        self.outbox = OutboxDispatcher(
            channels=self.channels,
            store=lambda: self.store,
            policy=outbox or OutboxPolicy(),
            now=now,
            clock=self._clock,
        )
        self._poll_timeout = poll_timeout
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._started: list[ChannelAdapter] = []

    # ------------------------------------------------------------------ lifecycle

    async def start(self, *, background: bool = True) -> None:
        """Start the adapters, carry on with the messages a previous process left unfinished,
        and (with ``background``) start the outbox dispatcher and the pollers."""
        self._store = self._store_factory()
        try:
            for spec in self.channels.values():
                await spec.adapter.start()
                self._started.append(spec.adapter)
        except BaseException:
            await self._close_adapters()
            raise
        for tenant in {c.tenant for c in self.channels.values()}:
            for entry in await self.store.unfinished_inbox(tenant, limit=10_000):
                found = self.channels.get(entry.message.channel)
                if found is not None:
                    self._spawn(self._handle(found, entry))
        if background:
            self._loops.append(asyncio.create_task(self.outbox.run(), name="wayport-outbox"))
            for spec in self.channels.values():
                if spec.poll and isinstance(spec.adapter, PollingAdapter):
                    task = asyncio.create_task(
                        self._poll_loop(spec), name=f"wayport-poll-{spec.name}"
                    )
                    self._loops.append(task)

    async def close(self) -> None:
        """Stop the loops and the message tasks (what they had not finished resumes at the
        next start), then close the adapters."""
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
        self._tasks.clear()
        await self._close_adapters()
        self._store = None

    async def _close_adapters(self) -> None:
        started, self._started = self._started, []
        for adapter in started:
            with contextlib.suppress(Exception):
                await adapter.close()

    @property
    def store(self) -> ChannelStore:
        if self._store is None:
            raise RuntimeError("ChannelService.start() has not been called")
        return self._store

    def channel(self, name: str) -> ChannelSpec:
        found = self.channels.get(name)
        if found is None:
            raise NotFound(f"The channel {name!r} does not exist", code="channel_not_found")
        return found

    async def idle(self) -> None:
        """Wait until every message task has finished (tests, and draining)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # ------------------------------------------------------------------ inbound

    async def receive(self, name: str, request: WebhookRequest) -> WebhookAnswer:
        """Verify and parse a webhook request, store its messages; what to answer."""
        spec = self.channel(name)
        answer = await spec.adapter.receive(request)
        nonce = answer.replay_key
        if nonce is not None:
            claimed = await self.store.claim_nonce(
                spec.tenant, spec.name, nonce, expires_at=answer.replay_until, now=self._now()
            )
            if not claimed:
                raise AuthError("the request was already received (replay)", code="replay")
        try:
            for message in answer.messages:
                await self.ingest(spec, message)
        except BaseException:
            if nonce is not None:  # not stored: the platform's retry of it must get through
                with contextlib.suppress(Exception):
                    await self.store.release_nonce(spec.tenant, spec.name, nonce)
            raise
        return answer

    @property
    def policy(self) -> OutboxPolicy:
        return self.outbox.policy

    async def dispatch(self) -> int:
        """One pass over the outbox (see ``OutboxDispatcher.dispatch``)."""
        return await self.outbox.dispatch()

    async def ingest(self, spec: ChannelSpec, message: Inbound) -> tuple[InboxEntry, bool]:
        """Store ``message`` (once per platform message id) and start handling it."""
        digest = hashlib.sha256(f"{spec.name}\0{message.message_id}".encode()).hexdigest()
        entry, new = await self.store.accept(spec.tenant, message, entry_id=f"in-{digest[:32]}")
        if new:
            self._spawn(self._handle(spec, entry))
        return entry, new

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle(self, spec: ChannelSpec, entry: InboxEntry) -> None:
        try:
            await self._work(spec, entry)
        except asyncio.CancelledError:
            raise
        except WayportError as exc:
            # left as it is: the next start tries again
            _log.warning(
                "channel message failed", channel=spec.name, entry=entry.id, error=exc.message
            )
        except Exception:  # noqa: BLE001 - a background task's last line: log; resumed at start
            _log.exception("channel message failed", channel=spec.name, entry=entry.id)

    async def _work(self, spec: ChannelSpec, entry: InboxEntry) -> None:
        message, store = entry.message, self.store
        route = resolve(spec.bindings, message, default=spec.agent, session=spec.session)
        run_id = entry.run_id
        if entry.status is InboxStatus.RECEIVED:
            verdict = await self._admit(spec, message, route, entry.id)
            if verdict is not Verdict.ACCEPT:
                await store.set_inbox(
                    spec.tenant, entry.id, InboxStatus.IGNORED, reason=verdict.value
                )
                return
            await self._typing(spec, message)
            session_id = await self._session(route, spec.tenant)
            run = await self._agents.submit(
                session_id, [_user_message(message)], idempotency_key=entry.id, tenant=spec.tenant
            )
            run_id = run.id
            await store.set_inbox(spec.tenant, entry.id, InboxStatus.STARTED, run_id=run_id)
        assert run_id is not None
        first: str | None = None
        if spec.stream and spec.adapter.can_edit:
            first, finished = await self._stream(spec, entry, run_id)
        else:
            finished = await self._agents.finished(run_id, tenant=spec.tenant)
        text = _answer(finished.run, spec.failure_text)
        if text:
            await self.reply(spec, message, text, key=entry.id, edit_first=first)
        await store.set_inbox(spec.tenant, entry.id, InboxStatus.DONE, run_id=run_id)

    async def _session(self, route: Route, tenant: str) -> str:
        try:
            return (await self._agents.session(route.session_key, tenant=tenant)).id
        except NotFound:
            try:
                created = await self._agents.create_session(
                    route.agent, session_id=route.session_key, tenant=tenant
                )
            except WayportError:
                # created meanwhile by a concurrent message of the same conversation
                return (await self._agents.session(route.session_key, tenant=tenant)).id
            return created.id

    async def _admit(self, spec: ChannelSpec, message: Inbound, route: Route, key: str) -> Verdict:
        store, now = self.store, self._now()
        pairing = await store.pairing(spec.tenant, spec.name, message.sender)
        pending = await store.pending_pairings(spec.tenant, spec.name, now=now)
        verdict = admit(
            spec.access,
            message,
            require_mention=route.require_mention,
            pairing=pairing,
            pending=pending,
            now=now,
        )
        code = pairing.code if pairing is not None else None
        if verdict is Verdict.ISSUE_CODE:
            code = new_pairing_code()
            await store.put_pairing(
                spec.tenant,
                PairingCode(
                    channel=spec.name,
                    sender=message.sender,
                    code=code,
                    created_at=now,
                    expires_at=now + spec.access.pairing_ttl,
                ),
            )
        notice = pairing_text(verdict, code)
        if notice is not None:
            await self.reply(spec, message, notice, key=key)
        return verdict

    async def _typing(self, spec: ChannelSpec, message: Inbound) -> None:
        try:
            await spec.adapter.typing(message.chat, message.thread)
        except WayportError as exc:  # a courtesy: never worth failing the message for
            _log.info("typing indicator failed", channel=spec.name, error=exc.message)

    async def _stream(
        self, spec: ChannelSpec, entry: InboxEntry, run_id: str
    ) -> tuple[str | None, RunFinished]:
        """Follow the run, sending the answer so far and editing it as it grows (at most every
        ``stream_interval`` seconds). The edits are best effort; the final text goes through
        the outbox as an edit of the progressive message. That message's platform id is
        recorded as soon as the platform returns it (a delivered outbox item,
        ``<entry>:stream``), so a restart mid-stream goes on editing the same message, and
        its final text replaces it instead of arriving as a second message."""
        message, record_id = entry.message, f"{entry.id}:stream"
        recorded = await self.store.outbox(spec.tenant, record_id)
        sent_id = recorded.platform_id if recorded is not None else None
        text, last = "", 0.0
        limit = spec.adapter.max_chars
        async for event in await self._agents.follow(run_id, tenant=spec.tenant):
            if isinstance(event, RunFinished):
                return sent_id, event
            if not isinstance(event, TextDelta) or len(text) >= limit:
                continue
            text += event.text
            if self._clock.now() - last < spec.stream_interval or not text.strip():
                continue
            last = self._clock.now()
            live = Outbound(
                channel=spec.name,
                chat=message.chat,
                thread=message.thread,
                text=text[: limit - 2] + " …",
                reply=message.reply,
                edit=sent_id,
            )
            try:
                delivered = await spec.adapter.send(live)
            except WayportError as exc:
                _log.info("streaming edit failed", channel=spec.name, error=exc.message)
                continue
            if sent_id is None and delivered.platform_id:
                sent_id = delivered.platform_id
                await self._record_stream(spec, record_id, live, sent_id)
        return sent_id, await self._agents.finished(run_id, tenant=spec.tenant)

    async def _record_stream(
        self, spec: ChannelSpec, record_id: str, live: Outbound, platform_id: str
    ) -> None:
        now = self._now()
        record = OutboxItem(
            id=record_id,
            channel=spec.name,
            target=f"{live.chat}#{live.thread or ''}",
            message=live,
            status=OutboxStatus.DELIVERED,  # never dispatched: a record of what the platform holds
            attempts=1,
            created_at=now,
            next_attempt_at=now,
            platform_id=platform_id,
        )
        try:
            await self.store.enqueue(spec.tenant, [record])
        except WayportError as exc:  # the final edit still targets it in this process
            _log.warning("streamed message not recorded", channel=spec.name, error=exc.message)

    async def reply(
        self,
        spec: ChannelSpec,
        message: Inbound,
        text: str,
        *,
        key: str,
        edit_first: str | None = None,
    ) -> list[OutboxItem]:
        """Queue ``text`` for ``message``'s conversation, cut to the platform's limit; ``key``
        makes the item ids, so queueing the same reply twice queues it once."""
        now = self._now()
        target = f"{message.chat}#{message.thread or ''}"
        items = [
            OutboxItem(
                id=f"{key}:{i:04d}",
                channel=spec.name,
                target=target,
                message=Outbound(
                    channel=spec.name,
                    chat=message.chat,
                    thread=message.thread,
                    text=piece,
                    reply=message.reply,
                    edit=edit_first if i == 0 else None,
                    part=i,
                ),
                created_at=now,
                next_attempt_at=now,
            )
            for i, piece in enumerate(chunk_text(text, spec.adapter.max_chars))
        ]
        await self.store.enqueue(spec.tenant, items)
        self.outbox.wake()
        return items

    async def approve(self, name: str, code: str) -> PairingCode:
        spec = self.channel(name)
        return await self.store.approve_pairing(spec.tenant, spec.name, code, now=self._now())

    async def _poll_loop(self, spec: ChannelSpec) -> None:
        adapter = spec.adapter
        assert isinstance(adapter, PollingAdapter)
        cursor: str | None = None
        failures = 0
        while True:
            try:
                messages, next_cursor = await adapter.poll(cursor, timeout=self._poll_timeout)
                for message in messages:
                    await self.ingest(spec, message)  # stored before the cursor confirms it
                cursor, failures = next_cursor, 0
            except WayportError as exc:
                failures += 1
                _log.warning("polling failed", channel=spec.name, error=exc.message)
                await self._clock.sleep(backoff(failures, base=1.0, cap=60.0))


def _user_message(message: Inbound) -> Message:
    text = message.text
    if message.attachments:
        listed = ", ".join(a.name or a.kind for a in message.attachments)
        text = f"{text}\n[attachments: {listed}]".strip()
    return {"role": "user", "content": text}


def _answer(run: Run, failure_text: str) -> str:
    if run.status is RunStatus.COMPLETED:
        output = run.output
        content = output.get("content") if isinstance(output, dict) else None
        return content if isinstance(content, str) else ""
    if run.status is RunStatus.CANCELLED:
        return ""
    return failure_text
