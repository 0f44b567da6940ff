"""Raw ASGI plumbing for one request: the headers the server cares about, a size-capped body
reader, and senders for whole JSON responses and server-sent event streams.

Handlers get an ``Exchange`` and answer through it::

    async def hello(ex: Exchange) -> None:
        await ex.respond(200, b'{"hello":"world"}')

It is deliberately small and allocation-light: this is the gateway's hot path.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import Receive, Scope, Send

from wayport.core.errors import PayloadTooLarge, UnsupportedMediaType, WayportError
from wayport.core.identity import LOCAL_OWNER, Principal
from wayport.core.ids import new_id
from wayport.server.errors import Headers, error_body, error_headers

JSON = b"application/json"
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx-style proxies not to hold events back in a buffer.
    (b"x-accel-buffering", b"no"),
]
DONE_EVENT = b"data: [DONE]\n\n"

#: Status recorded for requests whose client went away before the answer (nginx's convention).
CLIENT_CLOSED = 499

NOT_STARTED, STREAMING, FINISHED = 0, 1, 2


class ClientGone(Exception):
    """The client disconnected; there is nobody left to answer."""


def sse_event(payload: bytes) -> bytes:
    return b"data: " + payload + b"\n\n"


class Exchange:
    """One HTTP request and its response. ``route``, ``model`` and ``status`` are filled in as
    the request proceeds, for the access log and metrics."""

    __slots__ = (
        "_id_header",
        "authorization",
        "content_length",
        "content_type",
        "method",
        "model",
        "path",
        "principal",
        "receive",
        "request_id",
        "route",
        "scope",
        "send",
        "state",
        "status",
        "traceparent",
        "tracestate",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.receive = receive
        self.send = send
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.authorization: bytes | None = None
        #: who the request runs as; authentication replaces it before a secured handler runs
        self.principal: Principal = LOCAL_OWNER
        self.content_type: bytes | None = None
        self.content_length: bytes | None = None
        #: W3C trace context, for the server span (``wayport.telemetry.tracing``)
        self.traceparent: bytes | None = None
        self.tracestate: bytes | None = None
        request_id: bytes | None = None
        # One pass over the headers; names arrive lower-cased from the ASGI server.
        for name, value in scope["headers"]:
            if name == b"authorization":
                self.authorization = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"content-length":
                self.content_length = value
            elif name == b"x-request-id":
                request_id = value
            elif name == b"traceparent":
                self.traceparent = value
            elif name == b"tracestate":
                self.tracestate = value
        if request_id is None or _SANE_REQUEST_ID.fullmatch(request_id) is None:
            self.request_id = new_id("req")
            self._id_header = (b"x-request-id", self.request_id.encode())
        else:
            self.request_id = request_id.decode("ascii")
            self._id_header = (b"x-request-id", request_id)
        self.route = "unmatched"
        self.model = ""
        self.status = 0
        self.state = NOT_STARTED

    def require_json(self) -> None:
        """415 unless the body is declared as JSON (``application/json`` or ``…+json``)."""
        ctype = self.content_type
        if ctype is not None:
            mime = ctype.split(b";", 1)[0].strip().lower()
            if mime == JSON or (mime.startswith(b"application/") and mime.endswith(b"+json")):
                return
        raise UnsupportedMediaType("Content-Type must be application/json", param="Content-Type")

    async def read_body(self, limit: int) -> bytes:
        """The whole body, refusing (413) as soon as it would pass ``limit`` bytes: on the
        declared length before reading anything, and while reading a chunked body."""
        if self.content_length is not None:
            try:
                declared = int(self.content_length)
            except ValueError:
                declared = 0  # the ASGI server has already framed the body; count as we read
            if declared > limit:
                raise _too_large(limit)
        parts: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            if not message.get("more_body", False):
                if not parts:
                    return chunk  # the usual case: one message, nothing to join
                parts.append(chunk)
                return b"".join(parts)
            parts.append(chunk)

    async def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = JSON,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        """Send a whole response."""
        self.status = status
        self.state = FINISHED
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    self._id_header,
                    *headers,
                ],
            }
        )
        await self.send({"type": "http.response.body", "body": body})

    async def respond_error(self, exc: WayportError) -> None:
        """Answer with ``exc``: a JSON error before the first byte; once a stream has begun, one
        terminal ``data: {"error": …}`` event (the status line is long gone)."""
        if self.state == NOT_STARTED:
            await self.respond(exc.status, error_body(exc), headers=error_headers(exc))
        elif self.state == STREAMING:
            # The wire said 200 long ago; metrics and the access log record the real outcome.
            self.status = exc.status
            await self.end_stream(sse_event(error_body(exc)))

    async def start_stream(self) -> None:
        self.status = 200
        self.state = STREAMING
        await self.send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, self._id_header],
            }
        )

    async def write(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end_stream(self, data: bytes = b"") -> None:
        self.state = FINISHED
        await self.send({"type": "http.response.body", "body": data, "more_body": False})

    async def wait_disconnect(self) -> None:
        """Return once the client has gone (the request body must have been read)."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                return


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"Request body is larger than {limit} bytes")
