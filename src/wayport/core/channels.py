"""Channels, the pure part: the one message type every platform's payload becomes
(``channel_types``), the chunking of replies to a platform's size limit (``chunking``), the
routing of a message to an agent and a session and the decisions about who may talk to an
agent (``bindings``). Data in, data out; no I/O. Everything is importable from here.

    >>> [len(p) for p in chunk_text("word " * 20, limit=40)]
    [39, 39, 19]
    >>> route = resolve((Binding(agent="sales", channel="tg"),), Inbound(
    ...     channel="tg", message_id="1", sender="u1", chat="u1", text="hi"), default="assistant")
    >>> route.agent, route.session_key.startswith("ch-")
    ('sales', True)
"""

from __future__ import annotations

from wayport.core.bindings import (
    AccessPolicy,
    Binding,
    DmPolicy,
    PairingCode,
    Route,
    SessionMode,
    Verdict,
    admit,
    new_pairing_code,
    pairing_text,
    resolve,
    session_key,
)
from wayport.core.channel_types import (
    Attachment,
    ChatKind,
    Delivered,
    Inbound,
    InboxEntry,
    InboxStatus,
    Outbound,
    OutboxItem,
    OutboxStatus,
    WebhookAnswer,
    WebhookRequest,
    backoff,
    inbound_from_json,
    inbound_to_json,
    outbound_from_json,
    outbound_to_json,
)
from wayport.core.chunking import chunk_text

__all__ = [
    "AccessPolicy",
    "Attachment",
    "Binding",
    "ChatKind",
    "Delivered",
    "DmPolicy",
    "Inbound",
    "InboxEntry",
    "InboxStatus",
    "Outbound",
    "OutboxItem",
    "OutboxStatus",
    "PairingCode",
    "Route",
    "SessionMode",
    "Verdict",
    "WebhookAnswer",
    "WebhookRequest",
    "admit",
    "backoff",
    "chunk_text",
    "inbound_from_json",
    "inbound_to_json",
    "new_pairing_code",
    "outbound_from_json",
    "outbound_to_json",
    "pairing_text",
    "resolve",
    "session_key",
]
