"""Channels' data: the one message type every platform's payload becomes, what goes out, the
requests adapters verify, and the shapes the inbox and outbox store. ``wayport.core.channels``
re-exports all of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from wayport.core.session import Json


class ChatKind(StrEnum):
    DIRECT = "direct"  #: a one-to-one conversation with the bot
    GROUP = "group"  #: a group, channel or room shared by several people


@dataclass(frozen=True, slots=True, kw_only=True)
class Attachment:
    """What a message carries besides text; metadata only, the bytes stay on the platform."""

    kind: str  #: "image", "file", "audio" …
    name: str | None = None
    mime: str | None = None
    size: int | None = None
    url: str | None = None  #: or a platform file id


@dataclass(frozen=True, slots=True, kw_only=True)
class Inbound:
    """One message from a platform, whatever the platform."""

    channel: str  #: the configured channel's name
    message_id: str  #: the platform's id for it: the same delivery retried has the same one
    sender: str  #: the platform's user id
    chat: str  #: where to answer: the peer (direct) or the group/room id
    text: str
    chat_kind: ChatKind = ChatKind.DIRECT
    thread: str | None = None  #: a thread or topic inside ``chat``
    account: str | None = None  #: the bot account, workspace or team it arrived on
    mentioned: bool = False  #: the bot was mentioned (what group mention gating asks)
    sender_name: str | None = None
    attachments: tuple[Attachment, ...] = ()
    #: what a reply needs beyond ``chat``/``thread`` (a Discord interaction token, a DingTalk
    #: session webhook, the message to reply to)
    reply: Mapping[str, Json] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound:
    """One message to send: already a chunk within the platform's limit."""

    channel: str
    chat: str
    text: str
    thread: str | None = None
    reply: Mapping[str, Json] = field(default_factory=dict)
    edit: str | None = None  #: the platform message id to replace instead of sending anew
    key: str | None = None  #: the outbox item's id: an idempotency key for platforms taking one
    part: int = 0  #: the chunk's number within its reply (Discord edits part 0 into place)


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookRequest:
    """An HTTP request from a platform, as an adapter needs it to verify and parse it."""

    method: str
    path: str  #: what follows ``/channels/{name}/``
    headers: Mapping[str, str]  #: lower-case names
    query: Mapping[str, str]
    body: bytes  #: raw: signatures cover the exact bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookAnswer:
    """What to answer the platform (once the messages are stored), and the messages."""

    messages: tuple[Inbound, ...] = ()
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    #: a key that must never be accepted twice (a request signature): the service records it
    #: in the store, durably and across replicas, until ``replay_until``, and refuses a repeat
    replay_key: str | None = None
    replay_until: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivered:
    platform_id: str | None = None  #: the id of the (last) message the platform stored


class InboxStatus(StrEnum):
    RECEIVED = "received"  #: stored and acknowledged; no run yet
    STARTED = "started"  #: its run is stored (``run_id``)
    DONE = "done"  #: the reply is in the outbox
    IGNORED = "ignored"  #: no run by policy (``reason``)


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxEntry:
    """An accepted inbound message, as stored before the platform got its 2xx."""

    id: str
    message: Inbound
    status: InboxStatus
    received_at: float
    run_id: str | None = None
    reason: str | None = None


class OutboxStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """One message waiting to leave (or gone). Items of one ``target`` leave in ``id`` order."""

    id: str  #: deterministic (inbox id and chunk number), so a retried enqueue is a no-op
    channel: str
    target: str  #: the conversation: chat and thread
    message: Outbound
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    next_attempt_at: float = 0.0
    created_at: float = 0.0
    reason: str | None = None  #: the last failure, or why it was dropped
    platform_id: str | None = None  #: the platform's id of the delivered message


def backoff(attempts: int, *, base: float = 2.0, cap: float = 300.0) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones: 2, 4, 8 … up to cap."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))


# --- stored shapes ------------------------------------------------------------------------------


def inbound_to_json(m: Inbound) -> dict[str, Json]:
    return {
        "channel": m.channel,
        "message_id": m.message_id,
        "sender": m.sender,
        "chat": m.chat,
        "text": m.text,
        "chat_kind": m.chat_kind.value,
        "thread": m.thread,
        "account": m.account,
        "mentioned": m.mentioned,
        "sender_name": m.sender_name,
        "attachments": [
            {"kind": a.kind, "name": a.name, "mime": a.mime, "size": a.size, "url": a.url}
            for a in m.attachments
        ],
        "reply": dict(m.reply),
    }


def inbound_from_json(d: Mapping[str, Json]) -> Inbound:
    attachments = d.get("attachments") or []
    assert isinstance(attachments, list)
    return Inbound(
        channel=str(d["channel"]),
        message_id=str(d["message_id"]),
        sender=str(d["sender"]),
        chat=str(d["chat"]),
        text=str(d.get("text") or ""),
        chat_kind=ChatKind(str(d.get("chat_kind") or "direct")),
        thread=_opt(d.get("thread")),
        account=_opt(d.get("account")),
        mentioned=bool(d.get("mentioned")),
        sender_name=_opt(d.get("sender_name")),
        attachments=tuple(_attachment(a) for a in attachments if isinstance(a, dict)),
        reply=dict(_mapping(d.get("reply"))),
    )


def outbound_to_json(m: Outbound) -> dict[str, Json]:
    return {
        "channel": m.channel,
        "chat": m.chat,
        "text": m.text,
        "thread": m.thread,
        "reply": dict(m.reply),
        "edit": m.edit,
        "part": m.part,
    }


def outbound_from_json(d: Mapping[str, Json]) -> Outbound:
    return Outbound(
        channel=str(d["channel"]),
        chat=str(d["chat"]),
        text=str(d.get("text") or ""),
        thread=_opt(d.get("thread")),
        reply=dict(_mapping(d.get("reply"))),
        edit=_opt(d.get("edit")),
        part=_int(d.get("part")),
    )


def _opt(value: Json) -> str | None:
    return None if value is None else str(value)


def _int(value: Json) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _mapping(value: Json) -> Mapping[str, Json]:
    return value if isinstance(value, dict) else {}


def _attachment(d: Mapping[str, Json]) -> Attachment:
    size = d.get("size")
    return Attachment(
        kind=str(d.get("kind") or "file"),
        name=_opt(d.get("name")),
        mime=_opt(d.get("mime")),
        size=size if isinstance(size, int) else None,
        url=_opt(d.get("url")),
    )
