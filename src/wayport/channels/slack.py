"""Slack: the Events API in (signed with the app's signing secret), the Web API out
(``chat.postMessage``; ``chat.update`` for progressive edits).

    channels:
      slack:
        type: slack
        credentials: {bot_token: "${SLACK_BOT_TOKEN}", signing_secret: "${SLACK_SIGNING_SECRET}"}
        options: {bot_user_id: U0BOT}          # else asked of auth.test at start

Every request is checked: ``X-Slack-Request-Timestamp`` within 5 minutes and
``X-Slack-Signature`` = ``v0=`` HMAC-SHA256 of ``v0:{timestamp}:{body}``, compared in constant
time, and accepted once (the service records it until the timestamp is stale). Slack retries a
delivery it got no 2xx for within 3 seconds, at most three times, numbering them in
``X-Slack-Retry-Num`` (with ``X-Slack-Retry-Reason``, e.g. ``http_timeout``); each retry number
is accepted once, even under the original's signature. ``url_verification`` is answered with its
challenge. A message's id is ``<channel>:<ts>``, so a retry, and the ``app_mention`` event sent
beside the ``message`` event, start no second run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from wayport.channels.base import (
    TOLERANCE,
    ChannelBase,
    ChannelContext,
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
from wayport.core.errors import BackendRejected, BackendUnavailable, UpstreamRateLimited

_RETRIABLE = frozenset(
    {"ratelimited", "internal_error", "service_unavailable", "fatal_error", "request_timeout"}
)


RETRY_NUM = "x-slack-retry-num"
MAX_RETRIES = 3  #: Slack retries a failed delivery at most three times


def _retry_number(value: str | None) -> int:
    """0 for a first delivery; 1 to 3 for Slack's retries; anything else is refused."""
    if value is None:
        return 0
    if not value.isdigit() or not 1 <= int(value) <= MAX_RETRIES:
        raise refused("X-Slack-Retry-Num is not a retry number Slack sends")
    return int(value)


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + hmac_hex(secret, b"v0:" + timestamp.encode() + b":" + body)


class SlackChannel(ChannelBase):
    max_chars = 4000
    can_edit = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self._token = ctx.credential("bot_token")
        self._signing = ctx.credential("signing_secret")
        self._api = str(ctx.option("api_base", "https://slack.com/api")).rstrip("/") + "/"
        self._bot_user: str | None = ctx.option("bot_user_id", None)

    async def start(self) -> None:
        await super().start()
        if self._bot_user is None:
            answer = await self.call("auth.test", {})
            self._bot_user = answer.get("user_id")

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        response = await self.post_json(
            self._api + method, params, headers={"authorization": f"Bearer {self._token}"}
        )
        answer = decode_json(response.body)
        if not isinstance(answer, dict):
            raise BackendUnavailable(f"slack {method}: unreadable answer")
        if answer.get("ok") is True:
            return answer
        error = str(answer.get("error") or "unknown")
        if error == "ratelimited":
            raise UpstreamRateLimited(f"slack {method}: {error}")
        if error in _RETRIABLE:
            raise BackendUnavailable(f"slack {method}: {error}")
        raise BackendRejected(f"slack {method}: {error}", code="channel_rejected")

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        stamp = request.headers.get("x-slack-request-timestamp")
        sent_at = check_timestamp(stamp, self._now())
        expected = slack_signature(self._signing, stamp or "", request.body)
        given = request.headers.get("x-slack-signature", "")
        if not same(given, expected):
            raise refused()
        retry = _retry_number(request.headers.get(RETRY_NUM))
        answer = self._answer(decode_json(request.body))
        # A signature is accepted once; Slack's retries (at most three, numbered) may carry the
        # original's signature, so each retry number is a replay key of its own. A retry's
        # message has the original's id: the inbox starts no second run for it.
        key = given if retry == 0 else f"{given}#retry-{retry}"
        return replace(answer, replay_key=key, replay_until=sent_at + TOLERANCE)

    def _answer(self, body: Any) -> WebhookAnswer:
        if not isinstance(body, dict):
            return ok_json({"ok": True})
        if body.get("type") == "url_verification":
            return ok_json({"challenge": body.get("challenge")})
        message = self._parse(body) if body.get("type") == "event_callback" else None
        return ok_json({"ok": True}, messages=(message,) if message is not None else ())

    def _parse(self, body: dict[str, Any]) -> Inbound | None:
        event = body.get("event") or {}
        kind = event.get("type")
        if kind not in ("message", "app_mention") or event.get("subtype") or event.get("bot_id"):
            return None
        user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
        if not user or not channel or not ts or user == self._bot_user:
            return None
        text = str(event.get("text") or "")
        direct = event.get("channel_type") == "im"
        mentioned = kind == "app_mention" or (
            self._bot_user is not None and f"<@{self._bot_user}>" in text
        )
        return Inbound(
            channel=self.name,
            message_id=f"{channel}:{ts}",
            sender=str(user),
            chat=str(channel),
            chat_kind=ChatKind.DIRECT if direct else ChatKind.GROUP,
            thread=event.get("thread_ts"),
            account=body.get("team_id"),
            text=text,
            mentioned=mentioned,
            attachments=tuple(
                Attachment(kind="file", name=f.get("name"), mime=f.get("mimetype"), url=f.get("id"))
                for f in event.get("files") or ()
                if isinstance(f, dict)
            ),
            reply={"ts": ts},
        )

    async def send(self, message: Outbound) -> Delivered:
        if message.edit is not None:
            params = {"channel": message.chat, "ts": message.edit, "text": message.text}
            await self.call("chat.update", params)
            return Delivered(platform_id=message.edit)
        params = {"channel": message.chat, "text": message.text}
        if message.thread is not None:
            params["thread_ts"] = message.thread
        answer = await self.call("chat.postMessage", params)
        return Delivered(platform_id=answer.get("ts"))
