"""Signing in to the console: the API key travels in a cookie the page's scripts cannot read.

``POST /console/login`` (a form with ``key``) checks the key like any API request and sets
``wayport_console`` (``HttpOnly; SameSite=Strict; Path=/console``, ``Secure`` over HTTPS).
Every console request turns that cookie back into ``Authorization: Bearer <key>`` and is
authenticated afresh, so a revoked key stops working at once. Requests that change something
(``POST``) must also carry ``x-wayport-console: 1``, a header no cross-site form can send, and
an ``Origin`` (when the browser sends one) naming this host.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from wayport.core.errors import AuthError, PermissionDenied
from wayport.core.identity import Principal
from wayport.server.http import Exchange

COOKIE = "wayport_console"
CSRF_HEADER = b"x-wayport-console"
_MAX_KEY = 512

#: Turns an ``Authorization`` header into the caller (raises ``AuthError``).
Authenticate = Callable[[bytes | None], Awaitable[Principal]]


def header(ex: Exchange, name: bytes) -> bytes | None:
    for key, value in ex.scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def cookie_key(ex: Exchange) -> str | None:
    raw = header(ex, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        name, _, value = part.strip().partition("=")
        if name == COOKIE and value:
            return value
    return None


def authorization(ex: Exchange) -> bytes | None:
    """The request's credentials: its own ``Authorization`` header, else the console cookie."""
    if ex.authorization is not None:
        return ex.authorization
    key = cookie_key(ex)
    return None if key is None else b"Bearer " + key.encode("latin-1")


def secure(ex: Exchange) -> bool:
    if ex.scope.get("scheme") == "https":
        return True
    forwarded = header(ex, b"x-forwarded-proto")
    return forwarded is not None and forwarded.strip().lower() == b"https"


def set_cookie(ex: Exchange, key: str) -> tuple[bytes, bytes]:
    attributes = f"{COOKIE}={key}; Path=/console; HttpOnly; SameSite=Strict; Max-Age=43200"
    if secure(ex):
        attributes += "; Secure"
    return (b"set-cookie", attributes.encode("latin-1"))


def clear_cookie() -> tuple[bytes, bytes]:
    attributes = f"{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0"
    return (b"set-cookie", attributes.encode())


def check_same_origin(ex: Exchange, *, require_header: bool) -> None:
    """Refuse (403) a state-changing request that may come from another site."""
    origin = header(ex, b"origin")
    host = header(ex, b"host")
    if origin is not None and host is not None:
        _, _, rest = origin.partition(b"://")
        if rest.rstrip(b"/") != host:
            raise PermissionDenied("Cross-site request refused", code="cross_site")
    if require_header and header(ex, CSRF_HEADER) != b"1":
        raise PermissionDenied(
            "Console requests must carry the x-wayport-console header", code="cross_site"
        )


def login_key(body: bytes) -> str:
    """The ``key`` field of the login form."""
    try:
        form = parse_qs(body.decode("utf-8"), max_num_fields=8)
    except (UnicodeDecodeError, ValueError) as exc:
        raise AuthError("Invalid login form") from exc
    key = (form.get("key") or [""])[0].strip()
    if not key or len(key) > _MAX_KEY or not key.isascii() or not key.isprintable():
        raise AuthError("Invalid API key")
    if any(c in key for c in ";, "):
        raise AuthError("Invalid API key")
    return key
