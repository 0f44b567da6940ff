"""Every sub-path of every prefix route answers a method it does not take with 405 and its own
``Allow`` (not the whole route's), an unknown sub-path with 404, and lets its own methods
through to the handler. The server has every feature on (``everything.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from .everything import KEY, build_everything

AUTH = {"Authorization": f"Bearer {KEY}"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE")

#: a concrete path under each prefix route -> the exact ``Allow`` it must answer
SUB_PATHS = {
    "/v1/models/chat": "GET",
    "/v1/models/org/chat": "GET",  # a model name may hold a slash
    "/v1/responses/resp_1": "GET",
    "/v1/sessions/s1": "DELETE, GET",
    "/v1/sessions/s1/runs": "POST",
    "/v1/runs/r1": "GET",
    "/v1/runs/r1/stream": "GET",
    "/v1/runs/r1/cancel": "POST",
    "/v1/runs/r1/approve": "POST",
    "/v1/runs/r1/feedback": "POST",  # releases, reached through the runs route
    "/v1/admin/keys/k1": "DELETE",
    "/channels/web/": "GET",
    "/channels/web/webhook": "POST",
    "/channels/web/messages": "POST",
    "/channels/web/events": "GET",
    "/v1/channels/hook/pairings/abc/approve": "POST",
    "/v1/workflows/hello/runs": "POST",
    "/v1/workflow-runs/w1": "GET",
    "/v1/workflow-runs/w1/approve": "POST",
    "/v1/workflow-runs/w1/cancel": "POST",
    "/hooks/workflows/hello": "POST",
    "/v1/releases/assistant": "GET",
    "/v1/releases/assistant/promote": "POST",
    "/v1/agents/assistant": "DELETE, GET, PUT",
    "/v1/agents/assistant/versions": "GET",
    "/v1/agents/assistant/versions/v1": "GET",
    "/v1/agents/assistant/versions/v1/diff/v2": "GET",
}
#: answers that stay open (server-sent events): not called with their own method
STREAMS = {("GET", "/channels/web/events")}
UNKNOWN = [
    "/v1/runs/r1/nope",
    "/v1/runs//cancel",
    "/v1/sessions/s1/runs/r1",
    "/v1/sessions/",
    "/v1/workflow-runs/w1/approve/again",
    "/v1/workflows/hello",
    "/v1/releases/assistant/promote/now",
    "/v1/agents/assistant/versions/v1/diff",
    "/v1/channels/hook/pairings/abc",
    "/v1/admin/keys/",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    everything = build_everything(Path(tmp_path_factory.mktemp("allow")))
    with TestClient(everything.app, raise_server_exceptions=False) as started:
        yield started


def wrong_methods() -> list[tuple[str, str, str]]:
    return [
        (method, path, allow)
        for path, allow in SUB_PATHS.items()
        for method in METHODS
        if method not in allow.split(", ")
    ]


@pytest.mark.parametrize(("method", "path", "allow"), wrong_methods())
def test_wrong_method_gets_405_with_the_sub_paths_allow(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, headers=AUTH)
    assert response.status_code == 405, (method, path, response.text)
    assert response.headers["allow"] == allow
    if method != "HEAD":
        assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", sorted(SUB_PATHS))
def test_wrong_method_without_a_key_still_names_the_sub_paths_allow(
    client: TestClient, path: str
) -> None:
    response = client.request("PATCH", path)
    assert response.status_code == 405
    assert response.headers["allow"] == SUB_PATHS[path]


@pytest.mark.parametrize(
    ("method", "path"),
    [(m, p) for p, allow in SUB_PATHS.items() for m in allow.split(", ") if (m, p) not in STREAMS],
)
def test_the_sub_paths_own_methods_reach_the_handler(
    client: TestClient, method: str, path: str
) -> None:
    response = client.request(method, path, headers=AUTH)
    assert response.status_code != 405, (method, path, response.text)
    assert response.status_code < 500, (method, path, response.text)


@pytest.mark.parametrize("path", UNKNOWN)
def test_unknown_sub_path_is_404_and_asks_for_the_key_first(client: TestClient, path: str) -> None:
    for method in ("GET", "POST", "OPTIONS"):
        found = client.request(method, path, headers=AUTH)
        assert found.status_code == 404, (method, path, found.text)
        assert "allow" not in found.headers
        anonymous = client.request(method, path)
        assert anonymous.status_code == 401, (method, path)


def test_unknown_channel_sub_path_is_404(client: TestClient) -> None:
    for method in ("GET", "PUT"):
        assert client.request(method, "/channels/web/nope").status_code == 404


def test_every_documented_path_answers_options_with_its_documented_methods(
    client: TestClient,
) -> None:
    """The document and the dispatch agree on every path, exact and prefix routes alike."""
    doc: dict[str, Any] = client.get("/openapi.json").json()
    assert "/v1/runs/{id}/feedback" in doc["paths"]
    checked = 0
    for template, item in doc["paths"].items():
        path = re.sub(r"\{[^}]+\}", "x1", template)
        response = client.request("OPTIONS", path, headers=AUTH)
        assert response.status_code == 405, (template, response.text)
        assert response.headers["allow"] == ", ".join(sorted(m.upper() for m in item)), template
        checked += 1
    assert checked >= 45
