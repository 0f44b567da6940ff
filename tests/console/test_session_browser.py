"""The console's session browser over real HTTP and a real SQLite store: every session (with or
without messages), newest first, a page at a time, filtered by agent."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from tests.console.conftest import AUTH, config_text, served

from wayport.server.console import SECURITY_HEADERS

pytestmark = pytest.mark.anyio

TWO_AGENTS = "  triage:\n    model: m\n    instructions: Sort the mail.\n"


async def listing(client: httpx.AsyncClient, query: str) -> dict[str, object]:
    answer = await client.get(f"/console/api/sessions?{query}")
    assert answer.status_code == 200, answer.text
    body: dict[str, object] = answer.json()
    return body


async def test_pages_through_every_session_newest_first_and_filters_by_agent(
    tmp_path: Path,
) -> None:
    async with (
        served(config_text(tmp_path, extra=TWO_AGENTS)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        made: dict[str, str] = {}
        for agent in ["support"] * 5 + ["triage"] * 2:
            created = await client.post("/v1/sessions", json={"agent": agent})
            assert created.status_code == 201, created.text
            made[created.json()["id"]] = agent
        # an older session with messages comes back to the top once it is used again
        first = next(iter(made))
        ran = await client.post(f"/v1/sessions/{first}/runs", json={"input": "hi again"})
        assert ran.status_code == 200, ran.text

        seen: list[dict[str, object]] = []
        pages, query = 0, "limit=3"
        while True:
            body = await listing(client, query)
            pages += 1
            data = body["data"]
            assert isinstance(data, list)
            seen += data
            if body["next"] is None:
                break
            assert len(data) == 3
            query = str(httpx.QueryParams({"limit": 3, "before": body["next"]}))
        everything = await listing(client, "limit=200")

        triage = await listing(client, "agent=triage")
        support_page = await listing(client, "agent=support&limit=4")
        support_rest = await listing(
            client, str(httpx.QueryParams({"agent": "support", "before": support_page["next"]}))
        )
        nobody = await listing(client, "agent=nobody")

    assert pages == 3
    ids = [str(x["id"]) for x in seen]
    assert sorted(ids) == sorted(made)  # every session, each once, even without messages
    assert ids == [x["id"] for x in everything["data"]]  # type: ignore[attr-defined]
    assert ids[0] == first
    order = [(x["updated_at"], x["id"]) for x in seen]
    assert order == sorted(order, reverse=True)
    assert seen[0]["messages"] == 2  # the user's message and the reply
    assert everything["next"] is None

    assert [x["id"] for x in triage["data"]] == [i for i in ids if made[i] == "triage"]  # type: ignore[attr-defined]
    assert triage["next"] is None
    support = [x["id"] for x in [*support_page["data"], *support_rest["data"]]]  # type: ignore[misc]
    assert support == [i for i in ids if made[i] == "support"]
    assert support_rest["next"] is None
    assert nobody == {"data": [], "next": None}


async def test_bad_cursors_and_filters_are_refused(tmp_path: Path) -> None:
    async with (
        served(config_text(tmp_path)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        answers = [
            await client.get("/console/api/sessions", params=params)
            for params in (
                {"before": "yesterday"},
                {"before": "nan:sess-1"},
                {"before": "inf:sess-1"},
                {"before": "1750000000.0:"},
                {"agent": "a" * 301},
                {"limit": "0"},
            )
        ]
        fine = await client.get("/console/api/sessions", params={"before": "1750000000.5:s-1"})
    assert [a.status_code for a in answers] == [400] * len(answers)
    assert all(a.json()["error"]["message"] for a in answers)
    assert fine.status_code == 200
    assert fine.json() == {"data": [], "next": None}


async def test_the_page_offers_the_agent_filter_and_pager_with_the_security_headers(
    tmp_path: Path,
) -> None:
    async with (
        served(config_text(tmp_path, extra=TWO_AGENTS)) as s,
        httpx.AsyncClient(base_url=s.url, headers=AUTH) as client,
    ):
        page = await client.get("/console/sessions", params={"agent": "triage"})
        workflows = await client.get("/console/workflows")
    assert page.status_code == 200
    assert '<form id="sessions-filter" method="get" action="/console/sessions">' in page.text
    assert '<option value="triage">triage</option>' in page.text
    assert '<option value="support">support</option>' in page.text
    assert 'id="sessions-older"' in page.text
    assert 'id="sessions-newest"' in page.text
    for response in (page, workflows):
        assert response.status_code == 200
        for name, value in SECURITY_HEADERS:
            assert response.headers[name.decode()] == value.decode()
