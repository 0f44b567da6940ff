"""The channel routes. Platforms' webhooks are authenticated by the platform's own signature,
checked by the channel's adapter, not by the API key:

    POST /channels/{name}/webhook           a platform's webhook (Telegram, Slack, Discord …)
    GET  /channels/{name}/                  the web chat page (web chat channels)
    POST /channels/{name}/messages          the page's messages   (API key unless public)
    GET  /channels/{name}/events?client=…   the page's replies, as server-sent events (idem)
    POST /v1/channels/{name}/pairings/{code}/approve    (API key) let a pairing sender in

The platform gets its 2xx only after the request's messages are stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import parse_qs

from wayport.channels.webchat import WebChatChannel, valid_client
from wayport.core.channels import WebhookRequest
from wayport.core.errors import InvalidRequest
from wayport.core.identity import Role
from wayport.server.auth import Authenticator, authorize
from wayport.server.errors import MethodNotAllowed, RouteNotFound
from wayport.server.http import Exchange, sse_event
from wayport.server.responses import encode
from wayport.server.webchat import page
from wayport.service.channels import ChannelService

CHANNELS_PREFIX = "/channels/"
ADMIN_PREFIX = "/v1/channels/"
_HTML = b"text/html; charset=utf-8"


class ChannelsApi:
    def __init__(
        self, service: ChannelService, *, auth: Authenticator, max_body_bytes: int
    ) -> None:
        self._service = service
        self._auth = auth
        self._limit = max_body_bytes

    async def inbound(self, ex: Exchange) -> None:
        """Everything under ``/channels/{name}/``."""
        name, _, rest = ex.path[len(CHANNELS_PREFIX) :].partition("/")
        spec = self._service.channel(name)
        adapter = spec.adapter
        if rest == "webhook":
            _allow(ex, "POST")
            await self._webhook(ex, name, rest)
            return
        if not isinstance(adapter, WebChatChannel) or rest not in ("", "messages", "events"):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        if rest == "":
            _allow(ex, "GET")
            await ex.respond(200, page(name, adapter.title), content_type=_HTML)
            return
        if not adapter.public:
            principal = await self._auth.authenticate(ex.authorization)
            authorize(principal, Role.USER, "channels")
            ex.principal = principal
        if rest == "messages":
            _allow(ex, "POST")
            ex.require_json()
            await self._webhook(ex, name, rest)
        else:
            _allow(ex, "GET")
            await self._events(ex, adapter)

    async def _webhook(self, ex: Exchange, name: str, rest: str) -> None:
        request = WebhookRequest(
            method=ex.method,
            path=rest,
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in ex.scope["headers"]},
            query={k: v[-1] for k, v in _query(ex).items()},
            body=await ex.read_body(self._limit),
        )
        answer = await self._service.receive(name, request)
        await ex.respond(answer.status, answer.body, content_type=answer.content_type.encode())

    async def _events(self, ex: Exchange, adapter: WebChatChannel) -> None:
        clients = _query(ex).get("client")
        client = valid_client(clients[-1] if clients else None)
        events = adapter.listen(client)
        await ex.start_stream()

        async def pump() -> None:
            async for event in events:
                await ex.write(sse_event(encode(event)))

        pumping = asyncio.ensure_future(pump())
        gone = asyncio.ensure_future(ex.wait_disconnect())
        try:
            await asyncio.wait({pumping, gone}, return_when=asyncio.FIRST_COMPLETED)
            client_left = gone.done()
        finally:
            for task in (pumping, gone):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await events.aclose()
        if not client_left:
            await ex.end_stream()

    async def admin(self, ex: Exchange) -> None:
        """``/v1/channels/{name}/pairings/{code}/approve``."""
        parts = ex.path[len(ADMIN_PREFIX) :].split("/")
        if len(parts) != 4 or parts[1] != "pairings" or parts[3] != "approve":
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        _allow(ex, "POST")
        approved = await self._service.approve(parts[0], parts[2])
        body = {
            "object": "channel.pairing",
            "channel": approved.channel,
            "sender": approved.sender,
            "approved_at": approved.approved_at,
        }
        await ex.respond(200, encode(body))


def _query(ex: Exchange) -> dict[str, list[str]]:
    try:
        return parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
    except ValueError as exc:
        raise InvalidRequest("the query string cannot be read") from exc


def _allow(ex: Exchange, method: str) -> None:
    if ex.method != method:
        raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=method.encode())
