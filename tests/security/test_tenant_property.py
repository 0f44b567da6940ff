"""Cross-tenant access on property-generated pairs: hypothesis draws an owner tenant and an
intruder tenant, the owner creates a session and a run, and every id-bearing route answers 404
to the intruder (and to every tenant for made-up ids) while the owner still sees its own.

The server runs on the test's event loop; hypothesis drives a blocking client from a worker
thread, so each example is real HTTP against the real app on SQLite."""

# ruff: noqa: F811  (`server` is test_http's fixture, taken as an argument)
from __future__ import annotations

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.security.test_http import Server, _tenant_key, server  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TENANTS = ("alpha", "beta", "gamma", "delta")
MADE_UP = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-", min_size=1
).filter(lambda s: s not in (".", ".."))
UNKNOWN_SESSION = "sess-000000000000000000000000"
UNKNOWN_RUN = "run-000000000000000000000000"


def _shape(error: dict[str, object]) -> tuple[object, object]:
    return error["type"], error["code"]


def routes(sid: str, rid: str) -> list[tuple[str, str, dict[str, str] | None]]:
    return [
        ("GET", f"/v1/sessions/{sid}", None),
        ("POST", f"/v1/sessions/{sid}/runs", {"input": "hi"}),
        ("DELETE", f"/v1/sessions/{sid}", None),
        ("GET", f"/v1/runs/{rid}", None),
        ("GET", f"/v1/runs/{rid}/stream", None),
        ("POST", f"/v1/runs/{rid}/cancel", None),
        ("GET", f"/v1/responses/resp_{rid}", None),
    ]


async def test_ids_of_one_tenant_answer_404_to_every_other(server: Server) -> None:
    keys = {t: await _tenant_key(server, t) for t in TENANTS}
    checked: list[tuple[str, str]] = []

    def client(tenant: str) -> httpx.Client:
        headers = {"Authorization": f"Bearer {keys[tenant]}"}
        return httpx.Client(base_url=server.url, headers=headers, timeout=30)

    pairs = st.permutations(TENANTS).map(lambda p: (p[0], p[1]))

    @settings(
        max_examples=25,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(pair=pairs, made_up=MADE_UP)
    def check(pair: tuple[str, str], made_up: str) -> None:
        owner, intruder = pair
        with client(owner) as mine, client(intruder) as theirs:
            sid = mine.post("/v1/sessions", json={"agent": "calc"}).json()["id"]
            run = mine.post(f"/v1/sessions/{sid}/runs", json={"input": "hello"})
            assert run.status_code == 200, run.text
            rid = run.json()["id"]
            nobody = routes(UNKNOWN_SESSION, UNKNOWN_RUN)
            for (method, path, body), (_, absent, _) in zip(routes(sid, rid), nobody, strict=True):
                r = theirs.request(method, path, json=body)
                assert r.status_code == 404, (owner, intruder, method, path, r.text)
                # no oracle: a foreign id reads exactly like one that never existed
                never = theirs.request(method, absent, json=body).json()["error"]
                assert _shape(r.json()["error"]) == _shape(never), (method, path)
            for method, path, body in routes(made_up, made_up):
                for who in (mine, theirs):
                    r = who.request(method, path, json=body)
                    assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert mine.get(f"/v1/sessions/{sid}").status_code == 200
            assert mine.get(f"/v1/runs/{rid}").status_code == 200
        checked.append(pair)

    await anyio.to_thread.run_sync(check)
    assert len(checked) >= 25
    assert len(set(checked)) > 1  # hypothesis did draw different pairs
