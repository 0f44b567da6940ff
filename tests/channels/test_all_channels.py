"""Every channel, the same three promises (see ``harness.py``): one platform message delivered
five times (the platforms' retries, re-signed where they re-sign) starts one run and sends one
reply through the fake platform; a forged signature is refused; a signed request seen before is
refused as a replay, except where the platform has no replay-bound signature (noted per case).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.server.helpers import serve

from wayport.bootstrap import build
from wayport.channels.webchat import WebChatChannel
from wayport.config.loader import parse_config
from wayport.core.channels import Outbound
from wayport.core.errors import AuthError
from wayport.core.types import ChatRequest
from wayport.models.registry import BackendRegistry
from wayport.service.channels import ChannelSpec
from wayport.testing import Reply, ScriptedBackend
from wayport.testing import fake_platforms_apps as apps
from wayport.testing.fake_platforms import (
    FakePlatforms,
    slack_event,
    slack_headers,
    webhook_headers,
)

from .harness import HOOK_SECRET, SLACK_SECRET, TG_SECRET, Harness, adapter, harness, request

pytestmark = pytest.mark.anyio

Delivery = tuple[bytes, dict[str, str]]
CLIENT = "browser-0123456789abcdef"
TIMES = 5


def _webhook(fake: FakePlatforms) -> list[Delivery]:
    body = json.dumps({"sender": "crm-1", "text": "ping"}).encode()
    now = time.time()
    return [
        (body, webhook_headers(HOOK_SECRET, body, timestamp=now - i, key="order-1"))
        for i in range(TIMES)
    ]


def _webchat(fake: FakePlatforms) -> list[Delivery]:
    body = json.dumps({"client": CLIENT, "text": "ping", "id": "local-1"}).encode()
    return [(body, {"content-type": "application/json"})] * TIMES


def _telegram(fake: FakePlatforms) -> list[Delivery]:
    body = json.dumps(fake.telegram_update(chat_id=42, text="ping")).encode()
    return [(body, {"x-telegram-bot-api-secret-token": TG_SECRET})] * TIMES


def _slack(fake: FakePlatforms) -> list[Delivery]:
    body = slack_event("ping")
    signed = slack_headers(SLACK_SECRET, body)
    retries = [(body, {**signed, "x-slack-retry-num": str(n)}) for n in (1, 2, 3)]
    # the original, Slack's three numbered retries, then the same event signed afresh
    afresh = (body, slack_headers(SLACK_SECRET, body, timestamp=time.time() - 5))
    return [(body, signed), *retries, afresh]


def _discord(fake: FakePlatforms) -> list[Delivery]:
    body, _ = fake.discord_interaction(text="ping")
    now = time.time()
    return [(body, fake.discord_sign(body, timestamp=now - i)) for i in range(TIMES)]


def _dingtalk(fake: FakePlatforms) -> list[Delivery]:
    body, headers = fake.dingtalk_callback(text="ping")
    stamps = [str(int(headers["timestamp"]) - 1000 * i) for i in range(TIMES)]
    return [
        (body, {**headers, "timestamp": s, "sign": apps.dingtalk_sign(apps.DINGTALK_SECRET, s)})
        for s in stamps
    ]


def _feishu(fake: FakePlatforms) -> list[Delivery]:
    # each retry is encrypted and signed afresh (another nonce); the event id stays
    return [fake.feishu_event(text="ping", event_id="ev-7") for _ in range(TIMES)]


def _forge(deliveries: list[Delivery], header: str, value: str) -> Delivery:
    body, headers = deliveries[0]
    return body, {**headers, header: value}


@dataclass(frozen=True)
class Case:
    kind: str
    deliveries: Callable[[FakePlatforms], list[Delivery]]
    replies: Callable[[FakePlatforms], int]
    #: the header a forger cannot compute; ``None``: no signature (web chat: the API key)
    signature: str | None
    #: a signed request seen before is refused; ``False`` where a re-sent request is answered
    #: again and only deduplicated (Telegram's static secret token, which signs nothing)
    replay_refused: bool


CASES = [
    Case("webhook", _webhook, lambda f: len(f.calls("hook")), "x-wayport-signature", True),
    Case("webchat", _webchat, lambda f: 0, None, False),
    Case(
        "telegram",
        _telegram,
        lambda f: len(f.calls("sendMessage")),
        "x-telegram-bot-api-secret-token",
        False,
    ),
    Case("slack", _slack, lambda f: len(f.calls("chat.postMessage")), "x-slack-signature", True),
    Case(
        "discord",
        _discord,
        lambda f: len(f.calls("discord.original")),
        "x-signature-ed25519",
        True,
    ),
    Case("dingtalk", _dingtalk, lambda f: len(f.calls("dingtalk.send")), "sign", True),
    Case("feishu", _feishu, lambda f: len(f.calls("feishu.send")), "x-lark-signature", True),
]
IDS = [c.kind for c in CASES]
SIGNED = [c for c in CASES if c.signature is not None]
REPLAY = [c for c in CASES if c.replay_refused]


def spec(kind: str, fake: FakePlatforms) -> ChannelSpec:
    return ChannelSpec(name=kind, adapter=adapter(kind, kind, fake), agent="assistant")


async def _web_chat_replies(h: Harness) -> list[str]:
    """The messages the browser was sent, read up to a marker sent last."""
    chat = h.service.channel("webchat").adapter
    assert isinstance(chat, WebChatChannel)
    listener = chat.listen(CLIENT)
    assert await anext(listener) == {"type": "ready"}
    try:
        await h.settle()
        await chat.send(Outbound(channel="webchat", chat=CLIENT, text="<end>"))
        texts = []
        while (event := await anext(listener)).get("text") != "<end>":
            if event["type"] == "message":
                texts.append(event["text"])
        return texts
    finally:
        await listener.aclose()


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_five_deliveries_make_one_run_and_one_reply(tmp_path: Path, case: Case) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec(case.kind, fake)]) as h:
        deliveries = case.deliveries(fake)
        assert len(deliveries) == TIMES
        for body, headers in deliveries:
            answer = await h.service.receive(case.kind, request(body, headers))
            assert 200 <= answer.status < 300
        if case.kind == "webchat":
            assert await _web_chat_replies(h) == ["echo: ping"]
        else:
            assert await h.settle() == 1
            assert await h.settle() == 0  # nothing left over for a second pass
            assert case.replies(fake) == 1
        assert len(h.model.calls) == 1
        assert h.model.calls[0].messages[-1]["content"] == "ping"
        assert await h.store.unfinished_inbox("default") == []


@pytest.mark.parametrize("case", SIGNED, ids=[c.kind for c in SIGNED])
async def test_a_forged_signature_is_refused(tmp_path: Path, case: Case) -> None:
    assert case.signature is not None
    async with FakePlatforms() as fake, harness(tmp_path, [spec(case.kind, fake)]) as h:
        deliveries = case.deliveries(fake)
        good = deliveries[0][1][case.signature]
        forged = "0" * len(good) if case.kind != "webhook" else "sha256=" + "0" * 64
        for body, headers in (
            _forge(deliveries, case.signature, forged),
            (deliveries[0][0] + b" ", deliveries[0][1]),  # the body changed under the signature
        ):
            if case.kind in ("telegram", "dingtalk") and body != deliveries[0][0]:
                continue  # a static token, a signed timestamp: neither covers the body
            with pytest.raises(AuthError):
                await h.service.receive(case.kind, request(body, headers))
        assert await h.store.unfinished_inbox("default") == []
        await h.settle()
        assert h.model.calls == [] and case.replies(fake) == 0


@pytest.mark.parametrize("case", REPLAY, ids=[c.kind for c in REPLAY])
async def test_a_replayed_signature_is_refused(tmp_path: Path, case: Case) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec(case.kind, fake)]) as h:
        body, headers = case.deliveries(fake)[0]
        await h.service.receive(case.kind, request(body, headers))
        for _ in range(2):
            with pytest.raises(AuthError, match="replay"):
                await h.service.receive(case.kind, request(body, headers))
        await h.settle()
        assert len(h.model.calls) == 1 and case.replies(fake) == 1


async def test_the_replay_exempt_channel_answers_a_resent_request_without_a_second_run(
    tmp_path: Path,
) -> None:
    """Telegram's header is a static token that signs nothing: the very same request again is
    answered, and the inbox starts no second run."""
    async with FakePlatforms() as fake, harness(tmp_path, [spec("telegram", fake)]) as h:
        for case in (c for c in CASES if c.kind == "telegram"):
            body, headers = case.deliveries(fake)[0]
            for _ in range(3):
                answer = await h.service.receive(case.kind, request(body, headers))
                assert answer.status == 200
        await h.settle()
        assert len(h.model.calls) == 1
        assert len(fake.calls("sendMessage")) == 1


# --- the "done when": one wayport.yaml, a Telegram bot and a Slack app, one agent ------

DONE_WHEN = """\
state_dir: {state}
server: {{access_log: false}}
deployments:
  scripted: {{backend: scripted}}
models:
  m: {{deployments: [scripted]}}
agents:
  assistant: {{model: m}}
channels:
  telegram:
    type: telegram
    credentials: {{bot_token: "${{TG_TOKEN}}", webhook_secret: "${{TG_SECRET}}"}}
    options: {{api_base: "{fake.telegram_base}"}}
    agent: assistant
    allow_outbound: [127.0.0.1/32]
  slack:
    type: slack
    credentials: {{bot_token: "${{SLACK_TOKEN}}", signing_secret: "${{SLACK_SECRET}}"}}
    options: {{api_base: "{fake.slack_base}"}}
    agent: assistant
    allow_outbound: [127.0.0.1/32]
"""


def _counting(request: ChatRequest) -> Reply:
    said = [m["content"] for m in request.messages if m["role"] == "user"]
    return Reply(f"{said[-1]} (I have heard: {', '.join(said)})")


async def test_one_agent_talks_on_telegram_and_slack_from_one_config(tmp_path: Path) -> None:
    model = ScriptedBackend("scripted", _counting)
    registry = BackendRegistry()
    registry.register("scripted", lambda *, name: model)
    async with FakePlatforms() as fake:
        env = {
            "TG_TOKEN": fake.telegram_token,
            "TG_SECRET": TG_SECRET,
            "SLACK_TOKEN": fake.slack_token,
            "SLACK_SECRET": SLACK_SECRET,
        }
        text = DONE_WHEN.format(state=tmp_path, fake=fake)
        config = parse_config(text, env=env, backend_kinds=registry.names())
        runtime = build(config, registry=registry)
        async with serve(runtime.app) as url, httpx.AsyncClient(base_url=url) as client:
            tg_headers = {"x-telegram-bot-api-secret-token": TG_SECRET}
            for n, said in enumerate(("hello from telegram", "again from telegram"), 1):
                update = fake.telegram_update(chat_id=42, text=said)
                r = await client.post("/channels/telegram/webhook", json=update, headers=tg_headers)
                assert r.status_code == 200, r.text
                await fake.wait_for("sendMessage", n)
            body = _slack(fake)[0][0].replace(b'"ping"', b'"hello from slack"')
            r = await client.post(
                "/channels/slack/webhook", content=body, headers=slack_headers(SLACK_SECRET, body)
            )
            assert r.status_code == 200, r.text
            await fake.wait_for("chat.postMessage")
    assert [c["text"] for c in fake.calls("sendMessage")] == [
        "hello from telegram (I have heard: hello from telegram)",
        "again from telegram (I have heard: hello from telegram, again from telegram)",
    ]
    # the same agent, another peer: a session of its own, which never saw the Telegram chat
    assert fake.calls("chat.postMessage") == [
        {"channel": "D1", "text": "hello from slack (I have heard: hello from slack)"}
    ]
    assert len(model.calls) == 3
