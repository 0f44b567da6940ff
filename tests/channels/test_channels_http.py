"""Channels over HTTP, the way a user runs them: ``wayport.yaml`` -> ``build`` -> uvicorn on
loopback, platforms played by ``FakePlatforms``. The issue's "done when": a message to a fake
Telegram, Slack, Discord, DingTalk and Feishu reaches the agent and the reply arrives, across a
restart."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from tests.server.helpers import serve

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.models.registry import BackendRegistry
from wayport.testing import ScriptedBackend
from wayport.testing import fake_platforms_apps as apps
from wayport.testing.fake_platforms import (
    FakePlatforms,
    slack_event,
    slack_headers,
    webhook_headers,
)

from .harness import HOOK_SECRET, SLACK_SECRET, TG_SECRET, echo

pytestmark = pytest.mark.anyio

KEY = "wp-Zq7vRt2LmX9kPw4NcY8bHs6JdF3gTa5E"


def config_text(state: Path, fake: FakePlatforms) -> str:
    return f"""\
state_dir: {state}
server: {{api_key: {KEY}, access_log: false}}
deployments:
  echo: {{backend: echo}}
models:
  m: {{deployments: [echo]}}
agents:
  assistant: {{model: m}}
channels:
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
  hook:
    type: webhook
    credentials: {{secret: "${{HOOK_SECRET}}"}}
    options: {{url: "{fake.hook_url}"}}
    allow_outbound: [127.0.0.1/32]
  chat:
    type: webchat
  discord:
    type: discord
    credentials: {{public_key: "{fake.discord_public_key}"}}
    options: {{api_base: "{fake.discord_base}"}}
    allow_outbound: [127.0.0.1/32]
  dingtalk:
    type: dingtalk
    credentials: {{app_secret: "${{DINGTALK_SECRET}}"}}
    options: {{api_base: "{fake.base}"}}
    allow_outbound: [127.0.0.1/32]
  feishu:
    type: feishu
    credentials:
      app_id: {apps.FEISHU_APP_ID}
      app_secret: "${{FEISHU_SECRET}}"
      verification_token: "${{FEISHU_TOKEN}}"
      encrypt_key: "${{FEISHU_KEY}}"
    options: {{api_base: "{fake.base}"}}
    allow_outbound: [127.0.0.1/32]
channel_outbox: {{max_age: 3600}}
"""


@asynccontextmanager
async def server(state: Path, fake: FakePlatforms) -> AsyncIterator[httpx.AsyncClient]:
    registry = BackendRegistry()
    registry.register("echo", lambda *, name: ScriptedBackend(name, echo))
    env = {
        "TG_TOKEN": fake.telegram_token,
        "TG_SECRET": TG_SECRET,
        "SLACK_TOKEN": fake.slack_token,
        "SLACK_SECRET": SLACK_SECRET,
        "HOOK_SECRET": HOOK_SECRET,
        "DINGTALK_SECRET": apps.DINGTALK_SECRET,
        "FEISHU_SECRET": apps.FEISHU_APP_SECRET,
        "FEISHU_TOKEN": apps.FEISHU_VERIFICATION,
        "FEISHU_KEY": apps.FEISHU_ENCRYPT_KEY,
    }
    config = parse_config(config_text(state, fake), env=env, backend_kinds=registry.names())
    runtime = build(config, registry=registry)
    async with serve(runtime.app) as url, httpx.AsyncClient(base_url=url) as client:
        yield client


async def test_telegram_and_slack_reach_the_agent_and_survive_a_restart(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        fake.fail("sendMessage", status=502, times=1000)  # Telegram is down for now
        tg_body = json.dumps(fake.telegram_update(chat_id=42, text="from telegram")).encode()
        slack_body = slack_event("from slack")
        async with server(tmp_path, fake) as client:
            tg_headers = {"x-telegram-bot-api-secret-token": TG_SECRET}
            for _ in range(2):
                r = await client.post("/channels/tg/webhook", content=tg_body, headers=tg_headers)
                assert r.status_code == 200, r.text
            r = await client.post(
                "/channels/slack/webhook",
                content=slack_body,
                headers=slack_headers(SLACK_SECRET, slack_body),
            )
            assert r.status_code == 200
            retry = {**slack_headers(SLACK_SECRET, slack_body), "x-slack-retry-num": "1"}
            r = await client.post("/channels/slack/webhook", content=slack_body, headers=retry)
            assert r.status_code == 200
            await fake.wait_for("chat.postMessage")
        assert fake.calls("chat.postMessage") == [{"channel": "D1", "text": "echo: from slack"}]
        assert fake.calls("sendMessage") == []  # still pending in the outbox
        fake.recover()
        async with server(tmp_path, fake):  # the restart: the outbox resumes
            await fake.wait_for("sendMessage")
        assert fake.calls("sendMessage") == [{"chat_id": "42", "text": "echo: from telegram"}]
        assert len(fake.calls("chat.postMessage")) == 1


async def test_webhooks_are_refused_without_a_valid_signature(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, server(tmp_path, fake) as client:
        body = b'{"type": "url_verification", "challenge": "c-123"}'
        r = await client.post(
            "/channels/slack/webhook", content=body, headers=slack_headers(SLACK_SECRET, body)
        )
        assert r.json() == {"challenge": "c-123"}
        stale = slack_headers(SLACK_SECRET, body, timestamp=time.time() - 301)
        r = await client.post("/channels/slack/webhook", content=body, headers=stale)
        assert r.status_code == 401
        forged = slack_headers("not-the-secret", body)
        assert (
            await client.post("/channels/slack/webhook", content=body, headers=forged)
        ).status_code == 401
        r = await client.post("/channels/tg/webhook", content=b"{}")
        assert r.status_code == 401
        r = await client.post("/channels/nope/webhook", content=b"{}")
        assert r.status_code == 404
        r = await client.get("/channels/tg/webhook")
        assert r.status_code == 405


async def test_the_generic_webhook_in_and_out(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, server(tmp_path, fake) as client:
        body = json.dumps({"sender": "crm-1", "text": "ping"}).encode()
        headers = webhook_headers(HOOK_SECRET, body, key="order-1")
        r = await client.post("/channels/hook/webhook", content=body, headers=headers)
        assert r.status_code == 202 and r.json()["id"] == "order-1"
        replay = await client.post("/channels/hook/webhook", content=body, headers=headers)
        assert replay.status_code == 401  # the same signature again: a replay
        resent = webhook_headers(HOOK_SECRET, body, timestamp=time.time() + 1, key="order-1")
        assert (
            await client.post("/channels/hook/webhook", content=body, headers=resent)
        ).status_code == 202
        bad = {**webhook_headers(HOOK_SECRET, body), "x-wayport-signature": "sha256=00"}
        assert (
            await client.post("/channels/hook/webhook", content=body, headers=bad)
        ).status_code == 401
        old = webhook_headers(HOOK_SECRET, body, timestamp=time.time() - 400)
        assert (
            await client.post("/channels/hook/webhook", content=body, headers=old)
        ).status_code == 401
        await fake.wait_for("hook")
        [(sent_headers, sent_body)] = fake.hooks  # one run, one reply for both deliveries
        assert json.loads(sent_body)["text"] == "echo: ping"
        expected = webhook_headers(
            HOOK_SECRET, sent_body, timestamp=float(sent_headers["x-wayport-timestamp"])
        )
        assert sent_headers["x-wayport-signature"] == expected["x-wayport-signature"]
        assert sent_headers["idempotency-key"].startswith("in-")


async def test_web_chat_page_messages_and_events(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, server(tmp_path, fake) as client:
        page = await client.get("/channels/chat/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "/channels/chat/" in page.text
        client_id = "c" * 32
        r = await client.post(
            "/channels/chat/messages", json={"client": client_id, "text": "hi", "id": "1"}
        )
        assert r.status_code == 401  # not public: the API key is asked for
        auth = {"authorization": f"Bearer {KEY}"}
        async with client.stream(
            "GET", f"/channels/chat/events?client={client_id}", headers=auth
        ) as events:
            assert events.status_code == 200
            lines = events.aiter_lines()
            assert json.loads((await anext(lines)).removeprefix("data: ")) == {"type": "ready"}
            r = await client.post(
                "/channels/chat/messages",
                json={"client": client_id, "text": "hi", "id": "1"},
                headers=auth,
            )
            assert r.status_code == 202
            seen = []
            async for line in lines:
                if line.startswith("data: "):
                    seen.append(json.loads(line.removeprefix("data: ")))
                    if seen[-1]["type"] == "message":
                        break
        assert seen[-1]["text"] == "echo: hi"


async def test_discord_dingtalk_feishu_reach_the_agent_and_survive_a_restart(
    tmp_path: Path,
) -> None:
    async with FakePlatforms() as fake:
        for name in ("discord.original", "dingtalk.send", "feishu.send"):
            fake.fail(name, status=502, times=1000)  # the platforms are down for now
        discord = fake.discord_interaction(text="from discord")
        dingtalk = fake.dingtalk_callback(text="from dingtalk")
        feishu = fake.feishu_event(text="from feishu")
        async with server(tmp_path, fake) as client:
            ping = fake.discord_interaction(kind=1)
            r = await client.post("/channels/discord/webhook", content=ping[0], headers=ping[1])
            assert r.json() == {"type": 1}
            r = await client.post(
                "/channels/discord/webhook", content=discord[0], headers=discord[1]
            )
            assert r.status_code == 200 and r.json() == {"type": 5}
            r = await client.post(
                "/channels/dingtalk/webhook", content=dingtalk[0], headers=dingtalk[1]
            )
            assert r.status_code == 200
            challenge = {
                "challenge": "c-9",
                "token": apps.FEISHU_VERIFICATION,
                "type": "url_verification",
            }
            body, _ = fake.feishu_request(challenge)
            r = await client.post("/channels/feishu/webhook", content=body)
            assert r.json() == {"challenge": "c-9"}
            r = await client.post("/channels/feishu/webhook", content=feishu[0], headers=feishu[1])
            assert r.status_code == 200
            forged = {**feishu[1], "x-lark-request-nonce": "forged"}
            r = await client.post("/channels/feishu/webhook", content=feishu[0], headers=forged)
            assert r.status_code == 401
        for name in ("discord.original", "dingtalk.send", "feishu.send"):
            assert fake.calls(name) == []
        fake.recover()
        async with server(tmp_path, fake):  # the restart: inbox and outbox resume
            await fake.wait_for("discord.original")
            await fake.wait_for("dingtalk.send")
            await fake.wait_for("feishu.send")
        assert fake.calls("discord.original")[0]["content"] == "echo: from discord"
        assert fake.calls("dingtalk.send") == [
            {"msgtype": "text", "text": {"content": "echo: from dingtalk"}}
        ]
        [sent] = fake.calls("feishu.send")
        assert json.loads(sent["content"]) == {"text": "echo: from feishu"}


async def test_a_webhook_replay_is_refused_after_a_restart(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        body = json.dumps({"sender": "crm-1", "text": "ping"}).encode()
        headers = webhook_headers(HOOK_SECRET, body, key="order-7")
        async with server(tmp_path, fake) as client:
            r = await client.post("/channels/hook/webhook", content=body, headers=headers)
            assert r.status_code == 202
        async with server(tmp_path, fake) as client:  # another process: the store remembers
            r = await client.post("/channels/hook/webhook", content=body, headers=headers)
            assert r.status_code == 401
            assert "replay" in r.json()["error"]["message"]
            fresh = webhook_headers(HOOK_SECRET, body, timestamp=time.time() + 1, key="order-8")
            r = await client.post("/channels/hook/webhook", content=body, headers=fresh)
            assert r.status_code == 202
