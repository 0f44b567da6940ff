"""Durability at the edges of the channel service (see ``harness.py``): a restart in the middle
of a streamed answer, Telegram's refusal of an edit that changes nothing, and Slack's retries
against the durable replay check."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from wayport.core.channels import Outbound
from wayport.core.errors import AuthError
from wayport.core.types import ChatRequest, Chunk
from wayport.service.channels import ChannelSpec
from wayport.testing import Reply, ScriptedBackend
from wayport.testing.fake_platforms import FakePlatforms, slack_event, slack_headers

from .harness import SLACK_SECRET, adapter, harness, request

pytestmark = pytest.mark.anyio

FULL = "one two three four"


class StallingBackend(ScriptedBackend):
    """Streams the first ``before`` words of its answer, then waits forever: the process is
    stopped while the answer is half shown."""

    def __init__(self, before: int) -> None:
        super().__init__("m", default=Reply(FULL))
        self._before = before

    async def stream(
        self, request: ChatRequest, *, timeout: float | None = None
    ) -> AsyncIterator[Chunk]:
        self.calls.append(request)
        for i, word in enumerate(FULL.split()[: self._before]):
            yield Chunk(content=word + " ", role="assistant" if i == 0 else None)
        await asyncio.Event().wait()


def tg(fake: FakePlatforms) -> ChannelSpec:
    return ChannelSpec(
        name="tg",
        adapter=adapter("telegram", "tg", fake),
        agent="assistant",
        stream=True,
        stream_interval=0.0,
    )


async def _webhook(h: object, fake: FakePlatforms) -> None:
    body = json.dumps(fake.telegram_update(chat_id=42, text="count")).encode()
    headers = {"x-telegram-bot-api-secret-token": "tg-secret-0123456789"}
    await h.service.receive("tg", request(body, headers))  # type: ignore[attr-defined]


@pytest.mark.parametrize("shown", [2, 0], ids=["message-shown", "nothing-shown-yet"])
async def test_a_restart_mid_stream_leaves_one_message_with_the_full_text(
    tmp_path: Path, shown: int
) -> None:
    async with FakePlatforms() as fake:
        async with harness(tmp_path, [tg(fake)], model=StallingBackend(shown)) as h:
            await _webhook(h, fake)
            if shown:
                await fake.wait_for("editMessageText", shown - 1)  # "one …", then "one two …"
            else:
                await fake.wait_for("sendChatAction")
            while not h.model.calls:  # the run reached the model and stalls there
                await asyncio.sleep(0)
        assert len(fake.calls("sendMessage")) == (1 if shown else 0)

        full = ScriptedBackend("m", default=Reply(FULL))
        async with harness(tmp_path, [tg(fake)], model=full) as h:  # the run resumes, in full
            await h.service.idle()
            while await h.service.dispatch():
                pass
            assert await h.store.unfinished_inbox("default") == []

        [(chat, message_id)] = list(fake.telegram_texts)
        assert fake.telegram_texts[(chat, message_id)] == FULL
        [sent] = fake.calls("sendMessage")
        assert all(e["message_id"] == message_id for e in fake.calls("editMessageText"))
        if shown:
            assert sent["text"].startswith("one")


async def test_an_edit_that_changes_nothing_counts_as_delivered(tmp_path: Path) -> None:
    async with FakePlatforms() as fake:
        telegram = adapter("telegram", "tg", fake, username="wayport_bot")
        await telegram.start()
        try:
            first = await telegram.send(Outbound(channel="tg", chat="5", text="final"))
            assert first.platform_id is not None
            again = Outbound(channel="tg", chat="5", text="final", edit=first.platform_id)
            assert (await telegram.send(again)).platform_id == first.platform_id
            assert fake.calls("editMessageText") == []  # Telegram refused it: nothing changed
            with pytest.raises(Exception, match="message to edit not found"):
                await telegram.send(Outbound(channel="tg", chat="5", text="x", edit="999"))
        finally:
            await telegram.close()


def _slack_event(ts: str = "1750000000.000100") -> bytes:
    return slack_event("from slack", user="U1", ts=ts)


async def test_slack_retries_pass_the_replay_check_and_start_one_run(tmp_path: Path) -> None:
    """Slack re-sends a delivery it got no quick 2xx for, as it sent it, numbered in
    ``X-Slack-Retry-Num``: each retry is accepted once, also after a restart; the message
    starts one run."""
    body = _slack_event()
    signed = slack_headers(SLACK_SECRET, body, timestamp=time.time())

    def retry(num: str) -> dict[str, str]:
        return {**signed, "x-slack-retry-num": num, "x-slack-retry-reason": "http_timeout"}

    async with FakePlatforms() as fake:
        slack = ChannelSpec(name="slack", adapter=adapter("slack", "slack", fake), agent="vip")
        async with harness(tmp_path, [slack]) as h:
            [message] = (await h.service.receive("slack", request(body, signed))).messages
            assert message.message_id == "D1:1750000000.000100"
            with pytest.raises(AuthError, match="replay"):
                await h.service.receive("slack", request(body, signed))
            answer = await h.service.receive("slack", request(body, retry("1")))
            assert answer.status == 200 and len(answer.messages) == 1
            with pytest.raises(AuthError, match="replay"):
                await h.service.receive("slack", request(body, retry("1")))
            for forged in ("0", "4", "x"):
                with pytest.raises(AuthError, match="retry number"):
                    await h.service.receive("slack", request(body, retry(forged)))
            await h.settle()
        async with harness(tmp_path, [slack]) as h:
            await h.service.receive("slack", request(body, retry("2")))
            with pytest.raises(AuthError, match="replay"):
                await h.service.receive("slack", request(body, retry("1")))
            await h.settle()
            assert len(h.model.calls) == 0  # the retries started nothing in this process
        assert fake.calls("chat.postMessage") == [{"channel": "D1", "text": "echo: from slack"}]
