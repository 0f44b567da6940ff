"""Schemathesis drives every operation of ``/openapi.json`` against a real server with every
feature on (``tests/server/everything.py``: agents, admin, usage, privacy, channels, workflows,
releases, the console): generated valid and invalid requests must never get a 5xx, and every
answer must match the document. The calls carry the owner key of a tenant created for the
run, so the admin routes are reachable too."""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import checks
from starlette.testclient import TestClient

from .everything import KEY, build_everything

STATE = Path(tempfile.mkdtemp(prefix="wayport-schemathesis-"))
#: operations left out: a stream that stays open while the client listens
NOT_FUZZED = {("GET", "/channels/{name}/events")}
#: Checks not run. The document's schemas describe the shape of a request, not every rule the
#: services check (an expiry in the past, one of ``user`` or ``session``, slugs, a rollout
#: strategy's fields), so schema-valid data may get a 400. Unknown query parameters are
#: ignored on purpose, as HTTP servers and OpenAI's API do (clients of an OpenAI-compatible
#: gateway send extras such as Azure's ``api-version``), so a request whose only fault is an
#: extra query parameter is served (``negative_data_rejection``).
EXCLUDED_CHECKS = [
    checks.positive_data_acceptance,
    checks.negative_data_rejection,
]

# The document the app serves, read in process; the calls go to a real server of an
# identically built app.
_document = TestClient(build_everything(STATE / "doc").app).get("/openapi.json").json()
schema = schemathesis.openapi.from_dict(_document)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, dict[str, str]]]:
    """The server's base URL, and the headers of a fresh tenant's owner key."""
    everything = build_everything(STATE / "live")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        everything.app,
        lifespan="on",
        log_config=None,
        access_log=False,
        ws="none",
        http="httptools",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        made = httpx.post(
            f"{url}/v1/admin/tenants",
            json={"id": "fuzz", "name": "schemathesis"},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
        )
        assert made.status_code == 201, made.text
        owner = made.json()["owner_key"]
        assert owner["role"] == "owner" and owner["tenant"] == "fuzz"
        yield url, {"Authorization": f"Bearer {owner['key']}"}
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
        shutil.rmtree(STATE, ignore_errors=True)
    assert not thread.is_alive()


def test_every_documented_operation_is_fuzzed() -> None:
    operations = {(m.upper(), p) for p, item in _document["paths"].items() for m in item}
    assert operations >= NOT_FUZZED
    assert len(operations - NOT_FUZZED) >= 45  # admin, usage, privacy, channels, workflows …


@schema.exclude(method=[m for m, _ in NOT_FUZZED], path=[p for _, p in NOT_FUZZED]).parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_and_never_5xx(
    served: tuple[str, dict[str, str]], case: schemathesis.Case
) -> None:
    base_url, headers = served
    response = case.call(base_url=base_url, headers=headers)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response, excluded_checks=EXCLUDED_CHECKS)
