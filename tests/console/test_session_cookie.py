"""The console's sign-in helpers: what a login form may carry, and how the cookie becomes the
request's credentials."""

from __future__ import annotations

from typing import Any

import pytest

from wayport.core.errors import AuthError, PermissionDenied
from wayport.server.console import session
from wayport.server.http import Exchange


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b""}


async def _send(message: Any) -> None:
    pass


def exchange(*headers: tuple[bytes, bytes], scheme: str = "http") -> Exchange:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/console/login",
        "scheme": scheme,
        "headers": list(headers),
        "query_string": b"",
    }
    return Exchange(scope, _receive, _send)


def test_the_login_form_key_is_checked_before_use() -> None:
    assert session.login_key(b"key=abc123-_.~XYZ") == "abc123-_.~XYZ"
    assert session.login_key(b"key=%20padded%20&other=1") == "padded"
    for bad in (
        b"",
        b"key=",
        b"key=a%3Bb",
        b"key=a%2Cb",
        b"key=two%20words",
        b"key=%C3%A9t%C3%A9",
        b"key=" + b"x" * 600,
        b"key=%00",
    ):
        with pytest.raises(AuthError):
            session.login_key(bad)


def test_the_cookie_stands_in_for_the_header_and_never_overrides_it() -> None:
    ex = exchange((b"cookie", b"other=1; wayport_console=k3y; x=2"))
    assert session.authorization(ex) == b"Bearer k3y"
    ex = exchange((b"authorization", b"Bearer header-key"), (b"cookie", b"wayport_console=k3y"))
    assert session.authorization(ex) == b"Bearer header-key"
    assert session.authorization(exchange()) is None
    assert session.authorization(exchange((b"cookie", b"wayport_console="))) is None


def test_the_cookie_is_secure_over_https_and_behind_a_tls_proxy() -> None:
    plain = session.set_cookie(exchange(), "k")[1].decode()
    assert "Secure" not in plain and "HttpOnly" in plain and "SameSite=Strict" in plain
    assert "Secure" in session.set_cookie(exchange(scheme="https"), "k")[1].decode()
    proxied = exchange((b"x-forwarded-proto", b"https"))
    assert "Secure" in session.set_cookie(proxied, "k")[1].decode()


def test_cross_site_writes_are_refused() -> None:
    same = exchange(
        (b"origin", b"http://127.0.0.1:8080"),
        (b"host", b"127.0.0.1:8080"),
        (b"x-wayport-console", b"1"),
    )
    session.check_same_origin(same, require_header=True)
    with pytest.raises(PermissionDenied):
        session.check_same_origin(
            exchange((b"origin", b"https://evil.example"), (b"host", b"127.0.0.1:8080")),
            require_header=False,
        )
    with pytest.raises(PermissionDenied):
        session.check_same_origin(
            exchange((b"origin", b"null"), (b"host", b"127.0.0.1:8080")), require_header=False
        )
    with pytest.raises(PermissionDenied):  # no console header
        session.check_same_origin(exchange((b"host", b"127.0.0.1:8080")), require_header=True)
