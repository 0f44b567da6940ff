"""Schemathesis drives every operation of ``/openapi.json`` against a real server: generated
valid and invalid requests must never get a 5xx, and every answer must match the document."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from wayport.testing import ScriptedBackend

from .helpers import AUTH, Stack, build_stack


def _stack() -> Stack:
    return build_stack({"chat": ScriptedBackend("chat-1", embeddings=True)})


# The document the app serves, read in process; the calls go to a real server of an
# identically built app.
schema = schemathesis.openapi.from_dict(
    TestClient(_stack().app).get("/openapi.json", headers=AUTH).json()
)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    stack = _stack()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    config = uvicorn.Config(
        stack.app, lifespan="on", log_config=None, access_log=False, ws="none", http="httptools"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        sock.close()
    assert not thread.is_alive()


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_and_never_5xx(base_url: str, case: schemathesis.Case) -> None:
    response = case.call(base_url=base_url, headers=AUTH)
    assert response.status_code < 500, (case.method, case.path, response.text)
    case.validate_response(response)
