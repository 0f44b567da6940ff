"""Privacy routes (admin role), in the caller's tenant:

    GET    /v1/privacy/export?user=u-42      -> {"subject", "sessions", "runs", "usage"}
    GET    /v1/privacy/export?session=sess-1
    DELETE /v1/privacy/data?user=u-42        -> {"deleted": {"sessions": 3, "usage_rows": 7}}

``with_edges`` puts the network-safety layers around the whole app (forwarded headers from
trusted proxies, CORS when origins are configured) and runs the retention sweeper for the
app's lifetime.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wayport.core.errors import InvalidRequest
from wayport.server.cors import Cors
from wayport.server.http import Exchange
from wayport.server.proxy import ProxyHeaders
from wayport.server.responses import encode
from wayport.service.privacy import PrivacyService, Subject

__all__ = ["PRIVACY_DATA", "PRIVACY_EXPORT", "PrivacyApi", "with_edges"]

PRIVACY_EXPORT = "/v1/privacy/export"
PRIVACY_DATA = "/v1/privacy/data"


def _subject(ex: Exchange) -> Subject:
    query = parse_qs(ex.scope.get("query_string", b"").decode("latin-1"))
    unknown = set(query) - {"user", "session"}
    if unknown:
        raise InvalidRequest(f"unknown query parameter {sorted(unknown)[0]!r}")
    if any(len(v) > 1 for v in query.values()):
        raise InvalidRequest("give each query parameter once")
    return Subject(
        user=query["user"][0] if "user" in query else None,
        session=query["session"][0] if "session" in query else None,
    )


class PrivacyApi:
    def __init__(self, service: PrivacyService) -> None:
        self._service = service

    async def export(self, ex: Exchange) -> None:
        data = await self._service.export(ex.principal.tenant, _subject(ex))
        await ex.respond(200, encode(data))

    async def erase(self, ex: Exchange) -> None:
        deleted = await self._service.erase(ex.principal.tenant, _subject(ex))
        await ex.respond(200, encode({"deleted": deleted}))


def with_edges(
    app: ASGIApp,
    *,
    trusted_proxies: Sequence[str] = (),
    cors_origins: Sequence[str] = (),
    privacy: PrivacyService | None = None,
) -> ASGIApp:
    """``app`` behind the configured edges; nothing is wrapped that is not configured."""
    if privacy is not None and privacy.retention_days is not None:
        app = _Sweeping(app, privacy)
    if cors_origins:
        app = Cors(app, origins=cors_origins)
    if trusted_proxies:
        app = ProxyHeaders(app, trusted=trusted_proxies)
    return app


class _Sweeping:
    """Starts the retention sweeper once the app's own startup completed (the stores are
    open then) and stops it before the app shuts down."""

    def __init__(self, app: ASGIApp, privacy: PrivacyService) -> None:
        self.app = app
        self._privacy = privacy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        privacy = self._privacy

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await privacy.close()
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await privacy.start()
            await send(message)

        await self.app(scope, receiving, sending)
