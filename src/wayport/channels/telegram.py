"""Telegram through the Bot API: webhooks (checked by ``secret_token``) or long polling
(``getUpdates``); replies with ``sendMessage``, progressive edits with ``editMessageText``, the
typing indicator with ``sendChatAction``.

    channels:
      tg:
        type: telegram
        credentials: {bot_token: "${TELEGRAM_BOT_TOKEN}", webhook_secret: "${TG_SECRET}"}
        options: {mode: webhook, username: my_bot, api_base: "https://api.telegram.org"}

Telegram sends the secret given to ``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token``; it is
compared in constant time. A message's id is ``<chat id>:<message id>``, the same whether it
arrives by webhook, by a retried webhook or by polling.
"""

from __future__ import annotations

from typing import Any

import msgspec

from wayport.channels.base import ChannelBase, ChannelContext, decode_json, ok_json, refused, same
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

SECRET_HEADER = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
#: what ``editMessageText`` answers (400) when the new text equals the current one
NOT_MODIFIED = "message is not modified"
_MEDIA = ("photo", "document", "audio", "voice", "video", "sticker")


class TelegramChannel(ChannelBase):
    max_chars = 4096
    can_edit = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        token = ctx.credential("bot_token")
        base = str(ctx.option("api_base", "https://api.telegram.org")).rstrip("/")
        self._api = f"{base}/bot{token}/"
        self._secret = ctx.credentials.get("webhook_secret")
        self._username: str | None = ctx.option("username", None)
        self.polling = ctx.option("mode", "webhook") == "polling"
        self._webhook_url: str | None = ctx.option("webhook_url", None)

    async def start(self) -> None:
        await super().start()
        if self._username is None:
            me = await self.call("getMe", {})
            self._username = str(me.get("username") or "") or None
        if self._webhook_url and not self.polling:
            params: dict[str, Any] = {"url": self._webhook_url, "allowed_updates": ["message"]}
            if self._secret:
                params["secret_token"] = self._secret
            await self.call("setWebhook", params)

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        """One Bot API method; its ``result``, or the error its answer calls for."""
        response = await self._http.request(
            "POST",
            self._api + method,
            headers={"content-type": "application/json"},
            body=_encode(params),
        )
        try:
            answer = decode_json(response.body)
        except Exception as exc:
            raise BackendUnavailable(f"telegram {method}: unreadable answer") from exc
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        code = answer.get("error_code", response.status) if isinstance(answer, dict) else 0
        detail = (
            f"telegram {method}: {answer.get('description') if isinstance(answer, dict) else ''}"
        )
        if code == 429:
            retry = (answer.get("parameters") or {}).get("retry_after")
            raise UpstreamRateLimited(detail, retry_after=float(retry) if retry else None)
        if not isinstance(code, int) or code >= 500:
            raise BackendUnavailable(detail)
        raise BackendRejected(detail, code="channel_rejected")

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        if not self._secret or not same(request.headers.get(SECRET_HEADER, ""), self._secret):
            raise refused("the Telegram secret token does not match")
        message = self.parse_update(decode_json(request.body))
        return ok_json({"ok": True}, messages=(message,) if message is not None else ())

    def parse_update(self, update: Any) -> Inbound | None:
        """The message of an update; None for updates Wayport does not act on."""
        message = update.get("message") if isinstance(update, dict) else None
        if not isinstance(message, dict):
            return None
        chat, sender = message.get("chat") or {}, message.get("from") or {}
        if sender.get("is_bot"):
            return None
        text = message.get("text") or message.get("caption") or ""
        group = chat.get("type") in ("group", "supergroup")
        thread = message.get("message_thread_id") if message.get("is_topic_message") else None
        return Inbound(
            channel=self.name,
            message_id=f"{chat.get('id')}:{message.get('message_id')}",
            sender=str(sender.get("id")),
            sender_name=sender.get("username") or sender.get("first_name"),
            chat=str(chat.get("id")),
            chat_kind=ChatKind.GROUP if group else ChatKind.DIRECT,
            thread=str(thread) if thread is not None else None,
            text=text,
            mentioned=self._mentioned(message, text),
            attachments=tuple(
                Attachment(kind=kind, url=_file_id(message[kind]))
                for kind in _MEDIA
                if kind in message
            ),
            reply={"message_id": message.get("message_id")},
        )

    def _mentioned(self, message: dict[str, Any], text: str) -> bool:
        replied = (message.get("reply_to_message") or {}).get("from") or {}
        if replied.get("is_bot") and replied.get("username") == self._username:
            return True
        return bool(self._username) and f"@{self._username}".lower() in text.lower()

    async def poll(self, cursor: str | None, *, timeout: float) -> tuple[list[Inbound], str | None]:
        params: dict[str, Any] = {"timeout": int(timeout), "allowed_updates": ["message"]}
        if cursor is not None:
            params["offset"] = int(cursor)
        updates = await self.call("getUpdates", params) or []
        found = [m for m in (self.parse_update(u) for u in updates) if m is not None]
        if updates:
            cursor = str(max(int(u["update_id"]) for u in updates) + 1)
        return found, cursor

    async def send(self, message: Outbound) -> Delivered:
        params: dict[str, Any] = {"chat_id": message.chat, "text": message.text}
        if message.edit is not None:
            params["message_id"] = int(message.edit)
            try:
                await self.call("editMessageText", params)
            except BackendRejected as exc:
                # the text is already there: an edit repeated after a restart, or a live edit
                # that already showed the final text
                if NOT_MODIFIED not in exc.message:
                    raise
            return Delivered(platform_id=message.edit)
        if message.thread is not None:
            params["message_thread_id"] = int(message.thread)
        result = await self.call("sendMessage", params)
        return Delivered(
            platform_id=str(result.get("message_id")) if isinstance(result, dict) else None
        )

    async def typing(self, chat: str, thread: str | None) -> None:
        params: dict[str, Any] = {"chat_id": chat, "action": "typing"}
        if thread is not None:
            params["message_thread_id"] = int(thread)
        await self.call("sendChatAction", params)


def _file_id(value: Any) -> str | None:
    if isinstance(value, list) and value:
        value = value[-1]  # photos come in sizes; the last is the largest
    return str(value.get("file_id")) if isinstance(value, dict) else None


def _encode(params: dict[str, Any]) -> bytes:
    return msgspec.json.encode(params)
