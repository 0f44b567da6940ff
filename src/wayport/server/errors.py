"""How errors leave the server: the OpenAI error body, the status of the error class, and the
headers that go with it (``Retry-After``, ``Allow``, ``WWW-Authenticate``).

    status, headers, body = render_error(BackendUnavailable("down", retry_after=2.5))
    # 503, [(b"retry-after", b"3"), …], b'{"error":{"message":"down",…}}'
"""

from __future__ import annotations

import math

from wayport.core.errors import AuthError, InvalidRequest, PayloadTooLarge, WayportError
from wayport.core.redaction import redact
from wayport.server.responses import encode

Headers = list[tuple[bytes, bytes]]


class MethodNotAllowed(InvalidRequest):
    """The route exists but not for this method; ``allow`` lists the methods it takes."""

    status = 405
    default_code = "method_not_allowed"

    def __init__(self, message: str, *, allow: bytes) -> None:
        super().__init__(message)
        self.allow = allow


class RouteNotFound(WayportError):
    status = 404
    type = "not_found_error"
    default_code = "not_found"


class InternalError(WayportError):
    """What a client sees of a bug: a generic message; the details go to the log."""

    default_code = "internal_error"

    def __init__(self, request_id: str) -> None:
        super().__init__(f"Internal server error (request id {request_id})")


def error_body(exc: WayportError) -> bytes:
    body = exc.to_body()
    # an upstream may quote a credential in its error: the client never sees it (security)
    body["error"]["message"] = redact(body["error"]["message"])
    return encode(body)


def error_headers(exc: WayportError) -> Headers:
    headers: Headers = []
    if exc.retry_after is not None and exc.retry_after >= 0:
        # HTTP allows whole seconds only; rounding up never invites a client back too early.
        headers.append((b"retry-after", str(math.ceil(exc.retry_after)).encode()))
    if isinstance(exc, AuthError):
        headers.append((b"www-authenticate", b'Bearer realm="wayport"'))
    elif isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", exc.allow))
    elif isinstance(exc, PayloadTooLarge):
        # The rest of the body is never read; the connection cannot be reused.
        headers.append((b"connection", b"close"))
    return headers
