"""The generic signed webhook, in and out.

Inbound, ``POST /channels/{name}/webhook`` with::

    X-Wayport-Timestamp: 1750000000                 (seconds; at most 5 minutes off)
    X-Wayport-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>
    Idempotency-Key: order-42-msg-1                  (a retried delivery repeats it)

    {"sender": "user-1", "text": "hi", "chat": "user-1", "thread": null,
     "group": false, "mentioned": false, "attachments": [{"kind": "image", "url": "…"}]}

Signatures are compared in constant time; a signature seen within the tolerance is refused as
a replay (the service records it in the store, so every replica refuses it, also after a
restart), and the idempotency key (else the ``id`` field, else the signature) is the message
id the inbox deduplicates on. Outbound replies are POSTed to ``options.url`` signed the same
way, with the outbox item's id as ``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import msgspec

from wayport.channels.base import (
    TOLERANCE,
    ChannelBase,
    ChannelContext,
    check_status,
    check_timestamp,
    decode_json,
    hmac_hex,
    ok_json,
    refused,
    same,
)
from wayport.core.channels import (
    Attachment,
    ChatKind,
    Delivered,
    Inbound,
    Outbound,
    WebhookAnswer,
    WebhookRequest,
)
from wayport.core.errors import InvalidRequest

SIGNATURE = "x-wayport-signature"
TIMESTAMP = "x-wayport-timestamp"
IDEMPOTENCY = "idempotency-key"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Wayport-Signature`` value for ``body`` sent at ``timestamp``."""
    return "sha256=" + hmac_hex(secret, timestamp.encode() + b"." + body)


class WebhookChannel(ChannelBase):
    max_chars = 8000

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._secret = ctx.credential("secret")
        self._url: str | None = ctx.option("url", None)

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        if request.method != "POST":
            raise InvalidRequest("webhooks are POSTed", code="method_not_allowed")
        now = self._now()
        stamp = request.headers.get(TIMESTAMP)
        sent_at = check_timestamp(stamp, now)
        given = request.headers.get(SIGNATURE, "")
        if not same(given, sign(self._secret, stamp or "", request.body)):
            raise refused()
        body = decode_json(request.body)
        message = self._parse(body, request.headers.get(IDEMPOTENCY), given)
        answer = ok_json(
            {"accepted": True, "id": message.message_id}, messages=(message,), status=202
        )
        # past the tolerance the timestamp check refuses it anyway: no need to remember longer
        return replace(answer, replay_key=given, replay_until=sent_at + TOLERANCE)

    def _parse(self, body: Any, key: str | None, signature: str) -> Inbound:
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_payload")
        sender, text = body.get("sender"), body.get("text")
        if not isinstance(sender, str) or not sender or not isinstance(text, str):
            raise InvalidRequest(
                '"sender" and "text" (strings) are required', code="invalid_payload"
            )
        message_id = key or body.get("id") or hashlib.sha256(signature.encode()).hexdigest()
        group = bool(body.get("group"))
        chat = body.get("chat") or sender
        attachments = body.get("attachments") or []
        if not isinstance(attachments, list):
            raise InvalidRequest('"attachments" must be a list', code="invalid_payload")
        return Inbound(
            channel=self.name,
            message_id=str(message_id)[:200],
            sender=sender,
            chat=str(chat),
            text=text,
            chat_kind=ChatKind.GROUP if group else ChatKind.DIRECT,
            thread=_opt(body.get("thread")),
            account=_opt(body.get("account")),
            mentioned=bool(body.get("mentioned")),
            sender_name=_opt(body.get("sender_name")),
            attachments=tuple(
                Attachment(
                    kind=str(a.get("kind") or "file"),
                    name=_opt(a.get("name")),
                    mime=_opt(a.get("mime")),
                    size=a.get("size") if isinstance(a.get("size"), int) else None,
                    url=_opt(a.get("url")),
                )
                for a in attachments
                if isinstance(a, dict)
            ),
        )

    async def send(self, message: Outbound) -> Delivered:
        if self._url is None:
            raise InvalidRequest(f"channel {self.name!r} has no options.url to reply to")
        payload = {
            "channel": self.name,
            "chat": message.chat,
            "thread": message.thread,
            "text": message.text,
        }
        body = msgspec.json.encode(payload)
        stamp = str(int(self._now()))
        key = message.key or ""
        headers = {
            "content-type": "application/json",
            TIMESTAMP: stamp,
            SIGNATURE: sign(self._secret, stamp, body),
            **({"idempotency-key": key} if key else {}),
        }
        response = await self._http.request("POST", self._url, headers=headers, body=body)
        check_status(response, self.name)
        return Delivered(platform_id=key or None)


def _opt(value: object) -> str | None:
    return None if value is None else str(value)
