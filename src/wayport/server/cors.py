"""CORS: off by default; ``server.cors_origins`` allow-lists the browser origins that may call
the API from their pages.

    app = Cors(app, origins=["https://app.example.com"])

With no origins the app is not wrapped: no ``Access-Control-Allow-Origin`` is ever sent, so
browsers keep other sites' scripts out. With origins, a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an allowed origin is answered here with 204 and the
allowed methods and headers; from any other origin with 403. Actual requests from an allowed
origin get ``Access-Control-Allow-Origin`` (and ``Vary: Origin``) added to their answer; others
get no CORS headers. Credentials are bearer keys, not cookies, so
``Access-Control-Allow-Credentials`` is never sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wayport.core.errors import PermissionDenied
from wayport.server.errors import error_body

__all__ = ["ALLOWED_HEADERS", "ALLOWED_METHODS", "Cors"]

ALLOWED_METHODS = b"GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "x-request-id",
        "idempotency-key",
        "openai-organization",
        "openai-project",
        "openai-beta",
        "x-stainless-arch",
        "x-stainless-lang",
        "x-stainless-os",
        "x-stainless-package-version",
        "x-stainless-runtime",
        "x-stainless-runtime-version",
        "x-stainless-retry-count",
        "x-stainless-timeout",
    }
)
_EXPOSE = b"x-request-id, retry-after"
_MAX_AGE = b"600"


class Cors:
    def __init__(self, app: ASGIApp, *, origins: Iterable[str]) -> None:
        self.app = app
        allowed = list(origins)
        self._any = "*" in allowed
        self._origins = frozenset(o.encode() for o in allowed if o != "*")

    def _allowed(self, origin: bytes) -> bool:
        return self._any or origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin: bytes | None = None
        preflight_method: bytes | None = None
        requested: bytes = b""
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight_method = value
            elif name == b"access-control-request-headers":
                requested = value
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and preflight_method is not None:
            await self._preflight(origin, requested, send)
            return
        if not self._allowed(origin):
            await self.app(scope, receive, send)
            return
        allow = b"*" if self._any else origin

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"access-control-allow-origin", allow),
                    (b"access-control-expose-headers", _EXPOSE),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, origin: bytes, requested: bytes, send: Send) -> None:
        if not self._allowed(origin):
            body = error_body(PermissionDenied("origin not allowed by CORS", code="cors_denied"))
            headers = [(b"content-type", b"application/json"), (b"vary", b"Origin")]
            await _answer(send, 403, headers, body)
            return
        names = [h.strip().lower() for h in requested.decode("latin-1").split(",") if h.strip()]
        granted = ", ".join(n for n in names if n in ALLOWED_HEADERS).encode()
        headers = [
            (b"access-control-allow-origin", b"*" if self._any else origin),
            (b"access-control-allow-methods", ALLOWED_METHODS),
            (b"access-control-max-age", _MAX_AGE),
            (b"vary", b"Origin"),
        ]
        if granted:
            headers.append((b"access-control-allow-headers", granted))
        await _answer(send, 204, headers, b"")


async def _answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
