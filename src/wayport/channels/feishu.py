"""Feishu / Lark: event subscription (schema 2.0) in, the IM send-message API out.

    channels:
      feishu:
        type: feishu
        credentials:
          app_id: "${FEISHU_APP_ID}"
          app_secret: "${FEISHU_APP_SECRET}"
          verification_token: "${FEISHU_VERIFICATION_TOKEN}"
          encrypt_key: "${FEISHU_ENCRYPT_KEY}"         # optional: encrypted, signed events
        options: {api_base: "https://open.feishu.cn"}  # Lark: https://open.larksuite.com

In: the ``url_verification`` request is answered with its ``challenge``; every request's
verification token (``token``, or ``header.token`` in 2.0 events) must match. With an encrypt
key, bodies are ``{"encrypt": …}``: AES-256-CBC, the key SHA-256(encrypt key), the IV the first
16 bytes of the base64-decoded payload; and events are signed: ``X-Lark-Signature`` =
hex SHA-256 of ``X-Lark-Request-Timestamp + X-Lark-Request-Nonce + encrypt key + raw body``
(within 5 minutes; each nonce is accepted once). ``im.message.receive_v1`` events become
messages whose id is ``header.event_id``, which Feishu keeps when it retries a delivery.

Out: ``POST /open-apis/im/v1/messages?receive_id_type=chat_id`` with a tenant access token
from ``POST /open-apis/auth/v3/tenant_access_token/internal``, cached until shortly before it
expires and fetched anew when Feishu calls it invalid; the outbox item's id is the ``uuid``
Feishu deduplicates a retried send on.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from wayport.channels.base import (
    TOLERANCE,
    ChannelBase,
    ChannelContext,
    check_timestamp,
    decode_json,
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
from wayport.core.errors import (
    BackendRejected,
    BackendUnavailable,
    InvalidRequest,
    UpstreamRateLimited,
)

SIGNATURE, STAMP, NONCE = "x-lark-signature", "x-lark-request-timestamp", "x-lark-request-nonce"
_TOKEN_INVALID = {99991661, 99991663, 99991668}  #: missing, invalid, expired access token
_RATE_LIMITED = {99991400, 230020}


def lark_signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def decrypt(encrypted: str, encrypt_key: str) -> bytes:
    """An ``encrypt`` field's plaintext; ``InvalidRequest`` when it does not decrypt."""
    try:
        raw = base64.b64decode(encrypted, validate=True)
        key = hashlib.sha256(encrypt_key.encode()).digest()
        decryptor = Cipher(algorithms.AES(key), modes.CBC(raw[:16])).decryptor()
        padded = decryptor.update(raw[16:]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise refused("the event does not decrypt with the encrypt key") from exc


class FeishuChannel(ChannelBase):
    max_chars = 10_000  # a text message's request may hold 150 KB

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._app_id = ctx.credential("app_id")
        self._app_secret = ctx.credential("app_secret")
        self._verification = ctx.credential("verification_token")
        self._encrypt_key = ctx.credentials.get("encrypt_key") or None
        self._api = str(ctx.option("api_base", "https://open.feishu.cn")).rstrip("/")
        self._bot_open_id: str | None = ctx.option("bot_open_id", None)
        self._token: tuple[str, float] | None = None
        self._token_lock = asyncio.Lock()

    # ------------------------------------------------------------------ inbound

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        envelope = decode_json(request.body)
        if not isinstance(envelope, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_payload")
        signed = SIGNATURE in request.headers
        if signed and self._encrypt_key is None:
            raise refused("the event is signed but no encrypt key is configured")
        if signed:
            stamp, nonce = request.headers.get(STAMP), request.headers.get(NONCE, "")
            sent_at = check_timestamp(stamp, self._now())
            expected = lark_signature(stamp or "", nonce, self._encrypt_key or "", request.body)
            if not nonce or not same(request.headers[SIGNATURE], expected):
                raise refused()
        if "encrypt" in envelope:
            if self._encrypt_key is None:
                raise refused("the event is encrypted but no encrypt key is configured")
            envelope = decode_json(decrypt(str(envelope["encrypt"]), self._encrypt_key))
            if not isinstance(envelope, dict):
                raise InvalidRequest("the event must be a JSON object", code="invalid_payload")
        header: dict[str, Any] = _dict(envelope.get("header"))
        token = str(header.get("token") or envelope.get("token") or "")
        if not same(token, self._verification):
            raise refused("the verification token does not match")
        if envelope.get("type") == "url_verification":
            return ok_json({"challenge": envelope.get("challenge")})
        if self._encrypt_key is not None and not signed:
            raise refused("events must be signed when an encrypt key is configured")
        message = self._parse(header, _dict(envelope.get("event")))
        answer = ok_json({}, messages=(message,) if message is not None else ())
        if signed:
            nonce_key = f"{request.headers.get(NONCE)}:{request.headers[SIGNATURE]}"
            answer = replace(answer, replay_key=nonce_key, replay_until=sent_at + TOLERANCE)
        return answer

    def _parse(self, header: dict[str, Any], event: dict[str, Any]) -> Inbound | None:
        if header.get("event_type") != "im.message.receive_v1" or not header.get("event_id"):
            return None
        sender, message = event.get("sender") or {}, event.get("message") or {}
        if sender.get("sender_type") != "user":
            return None  # the bot's own messages, and other apps'
        ids = sender.get("sender_id") or {}
        user = ids.get("open_id") or ids.get("user_id") or ids.get("union_id")
        chat = message.get("chat_id")
        if not user or not chat:
            return None
        kind = str(message.get("message_type") or "text")
        text, mentioned = self._content(kind, message)
        group = message.get("chat_type") == "group"
        return Inbound(
            channel=self.name,
            message_id=str(header["event_id"]),
            sender=str(user),
            chat=str(chat),
            chat_kind=ChatKind.GROUP if group else ChatKind.DIRECT,
            thread=message.get("thread_id"),
            account=header.get("tenant_key"),
            text=text,
            mentioned=mentioned,
            attachments=() if kind in ("text", "post") else (Attachment(kind=kind),),
            reply={"message_id": message.get("message_id")},
        )

    def _content(self, kind: str, message: dict[str, Any]) -> tuple[str, bool]:
        try:
            content = json.loads(message.get("content") or "{}")
        except ValueError:
            content = {}
        if not isinstance(content, dict):
            content = {}
        text = str(content.get("text") or "") if kind == "text" else ""
        mentioned = False
        for mention in message.get("mentions") or []:
            key, name = mention.get("key"), mention.get("name") or ""
            open_id = (mention.get("id") or {}).get("open_id")
            if self._bot_open_id is None or open_id == self._bot_open_id:
                mentioned = True
            if key:
                text = text.replace(key, f"@{name}")
        return text.strip(), mentioned

    # ------------------------------------------------------------------ outbound

    async def access_token(self) -> str:
        """The tenant access token, fetched when there is none or it is about to expire."""
        async with self._token_lock:
            if self._token is not None and self._now() < self._token[1]:
                return self._token[0]
            url = f"{self._api}/open-apis/auth/v3/tenant_access_token/internal"
            payload = {"app_id": self._app_id, "app_secret": self._app_secret}
            answer = self._answer(await self.post_json(url, payload, check=False), "token")
            token, expire = answer.get("tenant_access_token"), answer.get("expire")
            if not isinstance(token, str) or not isinstance(expire, int | float):
                raise BackendUnavailable("feishu: the token answer has no tenant_access_token")
            self._token = (token, self._now() + float(expire) - 300.0)
            return token

    async def send(self, message: Outbound) -> Delivered:
        token = await self.access_token()
        url = f"{self._api}/open-apis/im/v1/messages?receive_id_type=chat_id"
        payload: dict[str, Any] = {
            "receive_id": message.chat,
            "msg_type": "text",
            "content": json.dumps({"text": message.text}, ensure_ascii=False),
        }
        if message.key:
            payload["uuid"] = hashlib.sha256(message.key.encode()).hexdigest()[:50]
        response = await self.post_json(
            url, payload, headers={"authorization": f"Bearer {token}"}, check=False
        )
        try:
            answer = self._answer(response, "send")
        except BackendUnavailable:
            self._token = None  # fetched anew by the retry
            raise
        found = _dict(answer.get("data")).get("message_id")
        return Delivered(platform_id=str(found) if found else None)

    def _answer(self, response: Any, what: str) -> dict[str, Any]:
        try:
            answer = decode_json(response.body)
        except InvalidRequest:
            answer = None
        if not isinstance(answer, dict):
            raise BackendUnavailable(f"feishu {what}: answered {response.status}, not JSON")
        code = answer.get("code")
        if code == 0 and response.status < 300:
            return answer
        detail = f"feishu {what}: {code} {answer.get('msg')}"
        if code in _TOKEN_INVALID:
            self._token = None
            raise BackendUnavailable(detail)
        if code in _RATE_LIMITED or response.status == 429:
            raise UpstreamRateLimited(detail)
        if response.status >= 500:
            raise BackendUnavailable(detail)
        raise BackendRejected(detail, code="channel_rejected")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
