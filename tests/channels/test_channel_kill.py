"""Killed between the run and the delivery, through the real CLI: ``wayport serve`` (a slow
scripted model as a plugin backend, see ``tests/serving.py``) takes a message from the generic
webhook, Telegram and Slack; the fake platforms refuse the replies, so each run finishes with its
reply waiting in the outbox; the server is SIGKILLed there, the platforms come back, a new
server on the same state delivers each reply exactly once."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from serving import TESTS, kill, plugin_path, serve_env, start_serve, terminate
from wayport.testing.fake_platforms import (
    FakePlatforms,
    slack_event,
    slack_headers,
    webhook_headers,
)

from .harness import HOOK_SECRET, SLACK_SECRET, TG_SECRET

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

DEADLINE = 60.0
REFUSALS = 100_000
#: the platform method that delivers each channel's reply
DELIVERY = {"hook": "hook", "tg": "sendMessage", "slack": "chat.postMessage"}

CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, metrics: false, drain_timeout: 1}}
state_dir: {state}
deployments:
  slow: {{backend: slow-scripted, delay: 0.05}}
models:
  slow: {{deployments: [slow]}}
agents:
  assistant: {{model: slow}}
channels:
  hook:
    type: webhook
    credentials: {{secret: "${{HOOK_SECRET}}"}}
    options: {{url: "{fake.hook_url}"}}
    allow_outbound: [127.0.0.1/32]
  tg:
    type: telegram
    credentials: {{bot_token: "${{TG_TOKEN}}", webhook_secret: "${{TG_SECRET}}"}}
    options: {{api_base: "{fake.telegram_base}", username: wayport_bot}}
    allow_outbound: [127.0.0.1/32]
  slack:
    type: slack
    credentials: {{bot_token: "${{SLACK_TOKEN}}", signing_secret: "${{SLACK_SECRET}}"}}
    options: {{api_base: "{fake.slack_base}"}}
    allow_outbound: [127.0.0.1/32]
channel_outbox: {{max_attempts: 1000000, backoff_base: 0.02, backoff_cap: 0.2}}
"""


class Serve:
    def __init__(self, tmp: Path, fake: FakePlatforms) -> None:
        self.config = tmp / "wayport.yaml"
        self.config.write_text(CONFIG.format(state=tmp / "state", fake=fake))
        self.env = serve_env(
            plugin_path(tmp / "plugins"),
            TESTS,
            HOOK_SECRET=HOOK_SECRET,
            TG_TOKEN=fake.telegram_token,
            TG_SECRET=TG_SECRET,
            SLACK_TOKEN=fake.slack_token,
            SLACK_SECRET=SLACK_SECRET,
        )
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    async def start(self) -> None:
        # in a thread: the fake platforms, on this loop, answer the server while it starts
        deadline = time.monotonic() + DEADLINE
        self.proc, self.url = await anyio.to_thread.run_sync(
            start_serve, self.config, self.env, deadline
        )

    def stop(self) -> int | None:
        return terminate(self.proc, timeout=15)


@pytest.fixture
async def platforms() -> AsyncIterator[FakePlatforms]:
    async with FakePlatforms() as fake:
        yield fake


async def _until(condition: Callable[[], bool], what: str) -> None:
    with anyio.fail_after(DEADLINE):
        while not condition():
            await anyio.sleep(0.01)  # polling a condition, not timing
    assert condition(), what


def _tried(fake: FakePlatforms, method: str) -> Callable[[], bool]:
    """Whether the platform has refused ``method`` at least once (it records no refusals)."""
    return lambda: fake.faults_left(method) < REFUSALS


async def test_a_reply_waiting_at_a_sigkill_is_delivered_once_after_the_restart(
    tmp_path: Path, platforms: FakePlatforms
) -> None:
    fake = platforms
    for method in DELIVERY.values():
        fake.fail(method, status=502, times=REFUSALS)  # the platforms refuse every reply
    server = Serve(tmp_path, fake)
    await server.start()
    try:
        # a server just started, on a loaded machine: more time than httpx's default 5 s
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            hook = json.dumps({"sender": "crm-1", "text": "from the hook"}).encode()
            r = await client.post(
                "/channels/hook/webhook",
                content=hook,
                headers=webhook_headers(HOOK_SECRET, hook, key="order-1"),
            )
            assert r.status_code == 202, r.text
            tg = json.dumps(fake.telegram_update(chat_id=42, text="from telegram")).encode()
            r = await client.post(
                "/channels/tg/webhook",
                content=tg,
                headers={"x-telegram-bot-api-secret-token": TG_SECRET},
            )
            assert r.status_code == 200, r.text
            slack = slack_event("from slack")
            r = await client.post(
                "/channels/slack/webhook",
                content=slack,
                headers=slack_headers(SLACK_SECRET, slack),
            )
            assert r.status_code == 200, r.text
        # each reply was offered and refused at least once: the run is over, the reply is
        # in the outbox, nothing was delivered
        for method in DELIVERY.values():
            await _until(_tried(fake, method), f"{method} tried")
    finally:
        kill(server.proc)
    assert all(fake.calls(m) == [] for m in DELIVERY.values())

    fake.recover()  # the platforms are back
    await server.start()  # the same configuration and state
    try:
        for method in DELIVERY.values():
            await fake.wait_for(method, timeout=DEADLINE)
    finally:
        assert server.stop() == 0  # drains: anything still pending would go out now
    assert [json.loads(body)["text"] for _, body in fake.hooks] == ["answered"]
    assert fake.calls("sendMessage") == [{"chat_id": "42", "text": "answered"}]
    assert fake.calls("chat.postMessage") == [{"channel": "D1", "text": "answered"}]
