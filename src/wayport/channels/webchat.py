"""Web chat in the browser, served by Wayport itself: the page at ``GET /channels/{name}/``
posts messages to ``POST /channels/{name}/messages`` and reads replies from the server-sent
event stream ``GET /channels/{name}/events?client=…``.

A browser names itself with a random client id (128 bits, made by the page); that id is the
peer. Replies reach a browser only while its stream is open: ``send`` fails while it is not, so
the outbox keeps the reply and delivers it when the page reconnects (within the outbox's
maximum age). Unless ``options.public`` is true the routes ask for the API key, like the API.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncGenerator
from typing import Any

from wayport.channels.base import ChannelBase, ChannelContext, decode_json, ok_json
from wayport.core.channels import (
    ChatKind,
    Delivered,
    Inbound,
    Outbound,
    WebhookAnswer,
    WebhookRequest,
)
from wayport.core.errors import BackendUnavailable, InvalidRequest

_CLIENT = re.compile(r"[A-Za-z0-9_-]{16,64}")
_MAX_TEXT = 16_000


def valid_client(client: str | None) -> str:
    if client is None or _CLIENT.fullmatch(client) is None:
        raise InvalidRequest("client: 16 to 64 letters, digits, '-' or '_'", param="client")
    return client


class WebChatChannel(ChannelBase):
    max_chars = 16_000
    can_edit = True

    def __init__(self, ctx: ChannelContext) -> None:
        super().__init__(ctx)
        self.public = bool(ctx.option("public", False))
        self.title = str(ctx.option("title", "Wayport chat"))
        self._listeners: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._ids = itertools.count(1)

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        body = decode_json(request.body)
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object")
        client = valid_client(body.get("client"))
        text, local_id = body.get("text"), body.get("id")
        if not isinstance(text, str) or not text.strip() or len(text) > _MAX_TEXT:
            raise InvalidRequest(f"text: 1 to {_MAX_TEXT} characters", param="text")
        if not isinstance(local_id, str) or not 1 <= len(local_id) <= 64:
            raise InvalidRequest(
                "id: the page's id for the message (1 to 64 characters)", param="id"
            )
        message = Inbound(
            channel=self.name,
            message_id=f"{client}:{local_id}",
            sender=client,
            chat=client,
            chat_kind=ChatKind.DIRECT,
            text=text,
        )
        return ok_json({"accepted": True}, messages=(message,), status=202)

    async def listen(self, client: str) -> AsyncGenerator[dict[str, Any], None]:
        """The events for ``client`` while the caller iterates."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.setdefault(client, set()).add(queue)
        try:
            yield {"type": "ready"}
            while True:
                yield await queue.get()
        finally:
            listeners = self._listeners.get(client, set())
            listeners.discard(queue)
            if not listeners:
                self._listeners.pop(client, None)

    def connected(self, client: str) -> bool:
        return bool(self._listeners.get(client))

    async def send(self, message: Outbound) -> Delivered:
        listeners = self._listeners.get(message.chat)
        if not listeners:
            raise BackendUnavailable(f"web chat {message.chat[:8]}… is not connected")
        platform_id = message.edit or f"m{next(self._ids)}"
        event = {
            "type": "edit" if message.edit else "message",
            "id": platform_id,
            "text": message.text,
        }
        for queue in listeners:
            queue.put_nowait(event)
        return Delivered(platform_id=platform_id)

    async def typing(self, chat: str, thread: str | None) -> None:
        for queue in self._listeners.get(chat, ()):
            queue.put_nowait({"type": "typing"})
