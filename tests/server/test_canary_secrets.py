"""Canary secrets, planted in the configuration the way operators do (environment variables,
``_FILE`` secrets), never reach a log line, an error body or the database, whatever fails:
an upstream answering 401 that quotes its key, a run failing on it, exceptions quoting it, a
configuration refused for it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from wayport.bootstrap import build
from wayport.config.issues import InvalidConfig
from wayport.config.loader import parse_config
from wayport.core.errors import ConfigError
from wayport.core.redaction import redact
from wayport.testing.fake_upstream import FakeUpstream, Fault

from .helpers import captured_logs, serve

pytestmark = pytest.mark.anyio

ADMIN = "wp-canary-admin-Q7fK2mZpX9vR4tLw8sNc"
UPSTREAM = "upstream-canary-H3jD8qWz5YbN1xKv6mRt"
WEBHOOK = "whsec-canary-T4nB7cXq2LpZ9wJd5kFs"
TOOL = "tool-canary-M8vR3sQk6YtP1zXh4nWb"
FILE_SECRET = "file-canary-R2kW9pLm4XqT7vNz3bJd"
CANARIES = (ADMIN, UPSTREAM, WEBHOOK, TOOL, FILE_SECRET)

CONFIG = """
server: {api_key: "${ADMIN_KEY}"}
state_dir: state
deployments:
  up: {backend: openai, base_url: "%s", model: m, api_key: "${UPSTREAM_KEY}"}
models:
  chat: {deployments: [up]}
webhooks: {secret: "${HOOK_SECRET}"}
tools:
  lookup:
    type: http
    url: https://api.example.com/items/{id}
    headers: {Authorization: "Bearer ${TOOL_TOKEN}", X-Extra: "${EXTRA_TOKEN}"}
"""


def _env(tmp_path: Path) -> dict[str, str]:
    secret_file = tmp_path / "extra_token"
    secret_file.write_text(FILE_SECRET + "\n")
    return {
        "ADMIN_KEY": ADMIN,
        "UPSTREAM_KEY": UPSTREAM,
        "HOOK_SECRET": WEBHOOK,
        "TOOL_TOKEN": TOOL,
        "EXTRA_TOKEN_FILE": str(secret_file),
    }


def _no_canary(text: str) -> None:
    for canary in CANARIES:
        assert canary not in text


async def test_canaries_never_leak(tmp_path: Path) -> None:
    async with FakeUpstream() as fake:
        config = parse_config(
            CONFIG % fake.openai_url, env=_env(tmp_path), base_dir=tmp_path, bind_check=False
        )
        assert config.tools["lookup"].root["headers"]["X-Extra"] == FILE_SECRET  # _FILE read
        runtime = build(config)
        quoted = f"Incorrect API key provided: {UPSTREAM}. Also tried {TOOL} and {FILE_SECRET}"
        # the upstream answers 401 and quotes the key, like real providers do
        fake.script(*[Fault.status(401, message=quoted)] * 50)
        good = {"Authorization": f"Bearer {ADMIN}"}
        bodies: list[str] = []
        with captured_logs() as logs:
            async with serve(runtime.app) as url, httpx.AsyncClient(base_url=url) as client:
                chat = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
                r = await client.post("/v1/chat/completions", json=chat, headers=good)
                assert r.status_code >= 400
                bodies.append(r.text)
                stream = await client.post(
                    "/v1/chat/completions", json={**chat, "stream": True}, headers=good
                )
                bodies.append(stream.text)
                # a wrong key that embeds the real one, and a request id carrying it
                wrong = {"Authorization": f"Bearer x{ADMIN}", "X-Request-Id": WEBHOOK}
                r = await client.post("/v1/chat/completions", json=chat, headers=wrong)
                assert r.status_code == 401
                bodies.append(r.text)  # (the x-request-id header echoes what this client sent)
                # an agent run fails on the upstream: its stored error text quotes the key
                s = await client.post("/v1/sessions", json={"agent": "assistant"}, headers=good)
                assert s.status_code in (200, 201), s.text
                run = await client.post(
                    f"/v1/sessions/{s.json()['id']}/runs", json={"input": "hi"}, headers=good
                )
                bodies.append(run.text)
                assert "failed" in run.text
        assert len(fake.requests) >= 3  # the upstream really was called and refused
        for body in bodies:
            _no_canary(body)
        assert "[REDACTED]" in "".join(bodies)  # masked, not dropped
        _no_canary(logs.text)
        stored = b"".join(p.read_bytes() for p in (tmp_path / "state").rglob("*") if p.is_file())
        assert stored  # the database was written …
        _no_canary(stored.decode("latin-1"))  # … without a canary in it (WAL included)


def test_exception_text_is_redacted_once_registered(tmp_path: Path) -> None:
    parse_config(CONFIG % "http://127.0.0.1:1/v1", env=_env(tmp_path), bind_check=False)
    text = str(RuntimeError(f"crashed holding {UPSTREAM} / {FILE_SECRET} / Bearer {TOOL}"))
    _no_canary(redact(text))


def test_refused_configuration_does_not_quote_the_secret(tmp_path: Path) -> None:
    bad_key = "k1:" + "QUFB" * 5  # valid base64, 15 bytes: refused
    with pytest.raises(InvalidConfig) as refused:
        parse_config(None, env={"WAYPORT_ENCRYPTION_KEYS": bad_key})
    assert "15 bytes" in refused.value.message
    assert "QUFB" not in refused.value.message
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as unreadable:
        parse_config(None, env={"WAYPORT_API_KEY_FILE": str(missing)})
    assert "WAYPORT_API_KEY_FILE" in unreadable.value.message
