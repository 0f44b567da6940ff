"""DingTalk robots: the outgoing callback in (an @-mention in a group, or a direct message),
replies through the callback's ``sessionWebhook``, else through the robot send API.

    channels:
      dingtalk:
        type: dingtalk
        credentials:
          app_secret: "${DINGTALK_APP_SECRET}"          # checks the callbacks
          access_token: "${DINGTALK_ROBOT_TOKEN}"        # optional: /robot/send when the
          robot_secret: "${DINGTALK_ROBOT_SECRET}"       #   session webhook has expired
        options: {api_base: "https://oapi.dingtalk.com", msgtype: markdown}

A callback carries ``timestamp`` (milliseconds; at most an hour off) and ``sign`` headers;
``sign`` must be the base64 HMAC-SHA256, keyed with the app secret, of ``"{timestamp}\\n{app
secret}"``, compared in constant time. That signature does not cover the body, so a
signature is accepted once (the service records it until it expires) and a ``sessionWebhook``
is used only under ``api_base``. Replies are ``text`` (or ``markdown``) messages; the robot send
API is signed the same way in its query (``access_token``, ``timestamp``, ``sign``).
A message's id is the callback's ``msgId``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode

from wayport.channels.base import (
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
    ConfigError,
    InvalidRequest,
    UpstreamRateLimited,
)

TOLERANCE = 3600.0  #: DingTalk's: an hour
_TOO_FAST = {130101, 410100}  #: "send too fast" (the robot's 20 messages a minute)
THROTTLED_FOR = 600.0  #: past 20 a minute, DingTalk throttles the robot for 10 minutes


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """base64(HMAC-SHA256(secret, "{timestamp}\\n{secret}"))."""
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


class DingTalkChannel(ChannelBase):
    max_chars = 5000  # text content is capped at 20,000 bytes: 5000 CJK characters fit

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._secret = ctx.credential("app_secret")
        self._token = ctx.credentials.get("access_token")
        self._robot_secret = ctx.credentials.get("robot_secret")
        self._api = str(ctx.option("api_base", "https://oapi.dingtalk.com")).rstrip("/")
        self._msgtype = str(ctx.option("msgtype", "text"))
        if self._msgtype not in ("text", "markdown"):
            raise ConfigError(f"channels.{ctx.name}: options.msgtype is text or markdown")
        self._title = str(ctx.option("title", "Reply"))

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        stamp, given = request.headers.get("timestamp"), request.headers.get("sign", "")
        sent_at = check_timestamp(stamp, self._now(), tolerance=TOLERANCE)
        if not same(given, dingtalk_sign(self._secret, stamp or "")):
            raise refused()
        body = decode_json(request.body)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", code="invalid_payload")
        answer = ok_json({}, messages=(self._parse(body),))
        return replace(answer, replay_key=given, replay_until=sent_at + TOLERANCE)

    def _parse(self, body: dict[str, Any]) -> Inbound:
        msg_id, chat = body.get("msgId"), body.get("conversationId")
        sender = body.get("senderStaffId") or body.get("senderId")
        if not msg_id or not chat or not sender:
            raise InvalidRequest(
                "msgId, conversationId and senderId are required", code="invalid_payload"
            )
        kind = str(body.get("msgtype") or "text")
        found = body.get(kind)
        content: dict[str, Any] = found if isinstance(found, dict) else {}
        text = str(content.get("content") or "").strip() if kind == "text" else ""
        group = str(body.get("conversationType")) == "2"
        reply: dict[str, Any] = {}
        hook = body.get("sessionWebhook")
        if isinstance(hook, str) and hook.startswith(self._api + "/"):
            reply["session_webhook"] = hook
            expires = body.get("sessionWebhookExpiredTime")
            if isinstance(expires, int | float):
                reply["expires_at"] = float(expires) / 1000.0
        return Inbound(
            channel=self.name,
            message_id=str(msg_id),
            sender=str(sender),
            sender_name=body.get("senderNick"),
            chat=str(chat),
            chat_kind=ChatKind.GROUP if group else ChatKind.DIRECT,
            account=body.get("chatbotCorpId"),
            text=text,
            # DingTalk calls a group's robot only when it is @-mentioned
            mentioned=bool(body.get("isInAtList", group)),
            attachments=() if kind == "text" else (Attachment(kind=kind),),
            reply=reply,
        )

    async def send(self, message: Outbound) -> Delivered:
        if self._msgtype == "markdown":
            payload: dict[str, Any] = {
                "msgtype": "markdown",
                "markdown": {"title": self._title, "text": message.text},
            }
        else:
            payload = {"msgtype": "text", "text": {"content": message.text}}
        hook = message.reply.get("session_webhook")
        expires = message.reply.get("expires_at")
        fresh = not isinstance(expires, int | float) or self._now() < float(expires) - 30
        if isinstance(hook, str) and fresh:
            url = hook
        elif self._token and self._robot_secret:
            stamp = str(int(self._now() * 1000))
            query = {
                "access_token": self._token,
                "timestamp": stamp,
                "sign": dingtalk_sign(self._robot_secret, stamp),
            }
            url = f"{self._api}/robot/send?{urlencode(query)}"
        else:
            raise BackendRejected(
                f"channel {self.name!r}: the session webhook expired and no robot token is set",
                code="channel_rejected",
            )
        response = await self.post_json(url, payload)
        answer = decode_json(response.body) if response.body else {}
        code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
        if code in _TOO_FAST:
            raise UpstreamRateLimited(
                f"dingtalk: {answer.get('errmsg')}", retry_after=THROTTLED_FOR
            )
        if code:
            raise BackendRejected(
                f"dingtalk: {code} {answer.get('errmsg')}", code="channel_rejected"
            )
        return Delivered(platform_id=None)
