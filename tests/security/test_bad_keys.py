"""Missing, malformed, revoked and expired keys, and SQL fragments in the bearer value: every one
answers 401 with an OpenAI error body, on a real server over HTTP, and the key table is intact
afterwards (every issued key still works, the listing is unchanged)."""

# ruff: noqa: F811  (`server` is test_http's fixture, taken as an argument)
from __future__ import annotations

import time

import pytest
from tests.security.test_http import BOOTSTRAP, Server, server  # noqa: F401  (the fixture)

from wayport.core.identity import Role

pytestmark = pytest.mark.anyio

SECRET = "A" * 43  #: the shape of a real secret (43 url-safe characters)

#: (label, raw Authorization header or None for no header)
BAD: list[tuple[str, bytes | None]] = [
    ("missing", None),
    ("empty", b""),
    ("scheme only", b"Bearer"),
    ("blank then junk", b"Bearer    x"),
    ("wrong scheme basic", b"Basic " + b"dXNlcjpwYXNz"),
    ("wrong scheme token", f"Token {BOOTSTRAP}".encode()),
    ("no scheme", BOOTSTRAP.encode()),
    ("bootstrap minus a char", f"Bearer {BOOTSTRAP[:-1]}".encode()),
    ("bootstrap plus a char", f"Bearer {BOOTSTRAP}x".encode()),
    ("huge", b"Bearer wp_" + b"a" * 6000),
    ("unicode", "Bearer wp_défault_ключ_🔑".encode()),
    ("tab separated", f"Bearer\t{BOOTSTRAP}".encode()),
    ("wp_ only", b"Bearer wp_"),
    ("wp_ tenant only", b"Bearer wp_default"),
    ("wp_ no secret", b"Bearer wp_default_abcdefghijkl"),
    ("wp_ short id", f"Bearer wp_default_abc_{SECRET}".encode()),
    ("wp_ id with digits 0 1 8 9", f"Bearer wp_default_abcdefgh0189_{SECRET}".encode()),
    ("wp_ upper-case tenant", f"Bearer wp_DEFAULT_abcdefghijkl_{SECRET}".encode()),
    ("wp_ short secret", b"Bearer wp_default_abcdefghijkl_short"),
    ("wp_ long secret", f"Bearer wp_default_abcdefghijkl_{SECRET}A".encode()),
    ("wp_ unknown id", f"Bearer wp_default_abcdefghijkl_{SECRET}".encode()),
    ("wp_ unknown tenant", f"Bearer wp_nobody_abcdefghijkl_{SECRET}".encode()),
    ("sql or", b"Bearer ' OR 1=1 --"),
    ("sql or quoted", b"Bearer wp_default_' OR '1'='1"),
    ("sql drop", b"Bearer wp_default_x'; DROP TABLE api_keys;--_y"),
    ("sql union", b"Bearer wp_default_abcdefghijkl_' UNION SELECT hash FROM api_keys--"),
    ("sql in tenant", f"Bearer wp_a';DELETE FROM api_keys;--_abcdefghijkl_{SECRET}".encode()),
    ("sql comment", b"Bearer wp_default_abcdefghijkl/**/OR/**/1=1"),
    ("sql semicolon", b"Bearer ; DROP TABLE api_keys"),
    ("sql percent", b"Bearer wp_%_%_%"),
]


def _headers(raw: bytes | None) -> dict[str, bytes]:
    return {} if raw is None else {"Authorization": raw}


async def _key_ids(server: Server) -> set[str]:
    async with server.client(server.keys[Role.OWNER]) as owner:
        r = await owner.get("/v1/admin/keys")
        assert r.status_code == 200, r.text
        return {k["id"] for k in r.json()["data"]}


async def _assert_401(server: Server, raw: bytes | None, label: str) -> dict[str, object]:
    async with server.client(None) as anon:
        r = await anon.get("/v1/models", headers=_headers(raw))
        assert r.status_code == 401, (label, r.status_code, r.text)
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"], label
        assert error["type"] and error["code"], (label, error)
        if raw is not None and len(raw) > 12:
            assert raw.decode("utf-8", "replace")[7:] not in r.text, label  # never echoed
        return dict(error)


async def test_bad_keys_are_401_and_the_key_table_is_intact(server: Server) -> None:
    assert len(BAD) >= 30
    before = await _key_ids(server)
    for label, raw in BAD:
        error = await _assert_401(server, raw, label)
        if raw is None:
            assert error["code"] == "missing_api_key"
    # the same bad values on a write route and an agent route are refused before any handler
    async with server.client(None) as anon:
        for label, raw in BAD:
            r = await anon.post("/v1/sessions", json={"agent": "calc"}, headers=_headers(raw))
            assert r.status_code == 401, (label, r.text)
    assert await _key_ids(server) == before
    for role, token in server.keys.items():
        async with server.client(token) as client:
            assert (await client.get("/v1/models")).status_code == 200, role.label


async def test_revoked_key_is_401(server: Server) -> None:
    async with server.client(server.keys[Role.ADMIN]) as admin:
        made = (await admin.post("/v1/admin/keys", json={"role": "user"})).json()
        assert (await admin.delete(f"/v1/admin/keys/{made['id']}")).status_code == 200
    error = await _assert_401(server, f"Bearer {made['key']}".encode(), "revoked")
    assert error["code"] == "api_key_revoked"
    # a revoked key with one character changed is merely invalid, not "revoked"
    forged = made["key"][:-1] + ("A" if made["key"][-1] != "A" else "B")
    assert (await _assert_401(server, f"Bearer {forged}".encode(), "forged"))["code"] != (
        "api_key_revoked"
    )


async def test_expired_key_is_401(server: Server) -> None:
    _, token = await server.security.keys.issue(
        "default", name="old", role=Role.ADMIN, expires_at=time.time() - 1
    )
    error = await _assert_401(server, f"Bearer {token}".encode(), "expired")
    assert error["code"] == "api_key_expired"


async def test_a_valid_key_of_another_shape_in_the_header_still_needs_bearer(
    server: Server,
) -> None:
    token = server.keys[Role.OWNER]
    for raw in (token.encode(), f"Basic {token}".encode(), f"Bearer{token}".encode()):
        await _assert_401(server, raw, raw[:8].decode())
    async with server.client(None) as anon:  # the scheme is case-insensitive
        r = await anon.get("/v1/models", headers={"Authorization": f"bearer {token}"})
        assert r.status_code == 200
