"""Discord, DingTalk and Feishu/Lark on the channel service (see ``harness.py``): signatures,
the platforms' handshakes, dedup, replies through the fakes' real APIs, replay protection."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from wayport.core.channels import ChatKind
from wayport.core.errors import AuthError, InvalidRequest
from wayport.service.channels import ChannelSpec
from wayport.testing import Reply, ScriptedBackend
from wayport.testing import fake_platforms_apps as apps
from wayport.testing.fake_platforms import FakePlatforms

from .harness import adapter, harness, request

pytestmark = pytest.mark.anyio


def spec(kind: str, fake: FakePlatforms, **options: object) -> ChannelSpec:
    return ChannelSpec(name=kind, adapter=adapter(kind, kind, fake, **options), agent="assistant")


# --- Discord ------------------------------------------------------------------------------------


async def test_discord_ping_command_deferred_reply_and_follow_ups(tmp_path: Path) -> None:
    long = ScriptedBackend("m", lambda _r: Reply("x" * 2500))
    async with FakePlatforms() as fake, harness(tmp_path, [spec("discord", fake)], model=long) as h:
        ping, headers = fake.discord_interaction(kind=1)
        answer = await h.service.receive("discord", request(ping, headers))
        assert json.loads(answer.body) == {"type": 1} and answer.messages == ()

        body, headers = fake.discord_interaction(text="hello", guild="g-1")
        answer = await h.service.receive("discord", request(body, headers))
        assert json.loads(answer.body) == {"type": 5}
        # Discord never redelivers an interaction: the same signed request again is a replay
        with pytest.raises(AuthError, match="replay"):
            await h.service.receive("discord", request(body, headers))
        [message] = answer.messages
        assert (message.text, message.chat_kind, message.account) == (
            "hello",
            ChatKind.GROUP,
            "g-1",
        )
        assert await h.settle() == 1
        assert await h.settle() == 1
        assert len(h.model.calls) == 1
        [original] = fake.calls("discord.original")  # the deferred answer, replaced
        [follow_up] = fake.calls("discord.followup")  # the rest, 2000 characters at most
        assert len(original["content"]) <= 2000 and len(follow_up["content"]) <= 2000
        assert len(original["content"]) + len(follow_up["content"]) == 2500
        assert original["allowed_mentions"] == {"parse": []}


async def test_discord_refuses_bad_signatures_and_stale_timestamps(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("discord", fake)]) as h:
        body, headers = fake.discord_interaction(text="hi")
        tampered = body.replace(b"hi", b"yo")
        stale = fake.discord_sign(body, timestamp=time.time() - 600)
        missing = {"content-type": "application/json"}
        bad_hex = {**headers, "x-signature-ed25519": "zz"}
        for raw, hdrs in ((tampered, headers), (body, stale), (body, missing), (body, bad_hex)):
            with pytest.raises(AuthError):
                await h.service.receive("discord", request(raw, hdrs))
        assert await h.store.unfinished_inbox("default") == []


async def test_discord_expired_token_drops_the_reply(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("discord", fake)]) as h:
        body, headers = fake.discord_interaction(text="hi")
        fake.discord_tokens.clear()  # 15 minutes later: Discord answers 404 Unknown Webhook
        await h.service.receive("discord", request(body, headers))
        assert await h.settle() == 1
        assert await h.store.pending("default") == []  # dropped, not retried
        assert fake.calls("discord.original") == []


# --- DingTalk -----------------------------------------------------------------------------------


async def test_dingtalk_callback_reply_via_session_webhook(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("dingtalk", fake)]) as h:
        body, headers = fake.dingtalk_callback(text="你好")
        answer = await h.service.receive("dingtalk", request(body, headers))
        assert answer.status == 200
        [message] = answer.messages
        assert (message.text, message.sender, message.chat) == ("你好", "staff-1", "cid-staff-1")
        assert await h.settle() == 1
        assert fake.calls("dingtalk.send") == [
            {"msgtype": "text", "text": {"content": "echo: 你好"}}
        ]


async def test_dingtalk_falls_back_to_the_signed_robot_send_api(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        channel = spec("dingtalk", fake, msgtype="markdown")
        async with harness(tmp_path, [channel]) as h:
            body, headers = fake.dingtalk_callback(text="hi", group=True, session_ttl=0)
            await h.service.receive("dingtalk", request(body, headers))
            assert await h.settle() == 1
            assert fake.calls("dingtalk.send") == []
            [sent] = fake.calls("dingtalk.robot_send")
            assert sent == {
                "msgtype": "markdown",
                "markdown": {"title": "Reply", "text": "echo: hi"},
            }


async def test_dingtalk_signature_tolerance_and_replays(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("dingtalk", fake)]) as h:
        forged = fake.dingtalk_callback(text="hi", secret="wrong")
        old = fake.dingtalk_callback(text="hi", timestamp_ms=int((time.time() - 3700) * 1000))
        for body, headers in (forged, old):
            with pytest.raises(AuthError):
                await h.service.receive("dingtalk", request(body, headers))
        within = fake.dingtalk_callback(text="hi", timestamp_ms=int((time.time() - 3000) * 1000))
        await h.service.receive("dingtalk", request(*within))
        # DingTalk's signature covers only the timestamp: the same headers with another body
        # are a replay, refused
        other, _ = fake.dingtalk_callback(text="transfer money")
        with pytest.raises(AuthError, match="replay"):
            await h.service.receive("dingtalk", request(other, within[1]))


async def test_dingtalk_ignores_session_webhooks_off_its_api(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        channel = spec("dingtalk", fake)
        body, headers = fake.dingtalk_callback(text="hi")
        payload = json.loads(body)
        payload["sessionWebhook"] = "https://attacker.example/steal"
        async with harness(tmp_path, [channel]) as h:
            answer = await h.service.receive(
                "dingtalk", request(json.dumps(payload).encode(), headers)
            )
            assert answer.messages[0].reply == {}  # replies take the robot send API instead
            assert await h.settle() == 1
            assert len(fake.calls("dingtalk.robot_send")) == 1


# --- Feishu / Lark ------------------------------------------------------------------------------


async def test_feishu_url_verification_encrypted_and_plain(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("feishu", fake)]) as h:
        challenge = {
            "challenge": "ch-1",
            "token": apps.FEISHU_VERIFICATION,
            "type": "url_verification",
        }
        body, _ = fake.feishu_request(challenge)  # encrypted, as Feishu sends it: no signature
        answer = await h.service.receive("feishu", request(body, {}))
        assert json.loads(answer.body) == {"challenge": "ch-1"}
        wrong = {**challenge, "token": "nope"}
        with pytest.raises(AuthError):
            await h.service.receive("feishu", request(fake.feishu_request(wrong)[0], {}))


async def test_feishu_event_decrypted_deduplicated_and_answered(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("feishu", fake)]) as h:
        first = fake.feishu_event(text="hi", event_id="ev-42")
        retry = fake.feishu_event(text="hi", event_id="ev-42")  # re-encrypted, re-signed
        for body, headers in (first, retry):
            await h.service.receive("feishu", request(body, headers))
        assert await h.settle() == 1
        assert len(h.model.calls) == 1
        [sent] = fake.calls("feishu.send")
        assert sent["receive_id"] == "oc_chat1" and sent["msg_type"] == "text"
        assert json.loads(sent["content"]) == {"text": "echo: hi"}
        assert len(sent["uuid"]) <= 50
        with pytest.raises(AuthError, match="replay"):  # the same signed request again
            await h.service.receive("feishu", request(*first))


async def test_feishu_refuses_unsigned_tampered_and_stale_events(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("feishu", fake)]) as h:
        body, headers = fake.feishu_event(text="hi")
        unsigned = {"content-type": "application/json"}
        tampered = {**headers, "x-lark-request-nonce": "other"}
        stale_body, stale = fake.feishu_event(text="hi", timestamp=time.time() - 600)
        for raw, hdrs in ((body, unsigned), (body, tampered), (stale_body, stale)):
            with pytest.raises(AuthError):
                await h.service.receive("feishu", request(raw, hdrs))
        plain, plain_headers = fake.feishu_event(text="hi", encrypt=False)
        with pytest.raises(AuthError):  # an encrypt key is set: plain events are refused
            await h.service.receive("feishu", request(plain, plain_headers))
        with pytest.raises(InvalidRequest):
            await h.service.receive("feishu", request(b"not json", headers))
        assert await h.store.unfinished_inbox("default") == []


async def test_feishu_token_is_cached_and_renewed_when_revoked(tmp_path: Path) -> None:
    async with FakePlatforms() as fake, harness(tmp_path, [spec("feishu", fake)]) as h:
        for text in ("one", "two"):
            await h.service.receive("feishu", request(*fake.feishu_event(text=text)))
            await h.settle()
        assert len(fake.calls("feishu.send")) == 2
        assert len(fake.calls("feishu.token")) == 1  # cached
        fake.feishu_revoke_tokens()
        await h.service.receive("feishu", request(*fake.feishu_event(text="three")))
        await h.service.idle()
        assert await h.service.dispatch() == 0  # invalid token: retried later
        h.wall.advance(60)
        assert await h.service.dispatch() == 1
        assert len(fake.calls("feishu.token")) == 2
        assert json.loads(fake.calls("feishu.send")[-1]["content"]) == {"text": "echo: three"}
