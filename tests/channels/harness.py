"""A channel service on real parts: the agent service on SQLite, a scripted model, adapters
talking to ``FakePlatforms`` over loopback HTTP, a manual wall clock for ages and backoff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wayport.channels.base import ChannelContext
from wayport.channels.registry import ChannelRegistry
from wayport.core.agent import AgentSpec
from wayport.core.channels import WebhookRequest
from wayport.core.types import ChatRequest
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.ports import ChannelAdapter
from wayport.service.agents import AgentCatalog, AgentService
from wayport.service.channels import ChannelService, ChannelSpec, OutboxPolicy
from wayport.store import SqlStore, open_store
from wayport.store.channels import SqlChannelStore
from wayport.testing import ManualClock, Reply, ScriptedBackend
from wayport.testing import fake_platforms_apps as apps
from wayport.testing.fake_platforms import FakePlatforms

TG_SECRET = "tg-secret-0123456789"
HOOK_SECRET = "hook-secret-0123456789"
SLACK_SECRET = "slack-signing-secret"


def echo(request: ChatRequest) -> Reply:
    return Reply(f"echo: {request.messages[-1]['content']}")


def adapter(kind: str, name: str, fake: FakePlatforms, **options: Any) -> ChannelAdapter:
    credentials = {
        "telegram": {"bot_token": fake.telegram_token, "webhook_secret": TG_SECRET},
        "webhook": {"secret": HOOK_SECRET},
        "slack": {"bot_token": fake.slack_token, "signing_secret": SLACK_SECRET},
        "discord": {"public_key": fake.discord_public_key},
        "dingtalk": {
            "app_secret": apps.DINGTALK_SECRET,
            "access_token": apps.DINGTALK_ROBOT_TOKEN,
            "robot_secret": apps.DINGTALK_ROBOT_SECRET,
        },
        "feishu": {
            "app_id": apps.FEISHU_APP_ID,
            "app_secret": apps.FEISHU_APP_SECRET,
            "verification_token": apps.FEISHU_VERIFICATION,
            "encrypt_key": apps.FEISHU_ENCRYPT_KEY,
        },
    }.get(kind, {})
    defaults = {
        "telegram": {"api_base": fake.telegram_base},
        "webhook": {"url": fake.hook_url},
        "slack": {"api_base": fake.slack_base},
        "discord": {"api_base": fake.discord_base},
        "dingtalk": {"api_base": fake.base},
        "feishu": {"api_base": fake.base},
    }.get(kind, {})
    ctx = ChannelContext(
        name=name,
        http=GuardedClient(GuardPolicy(allow=("127.0.0.1/32",))),
        options={**defaults, **options},
        credentials=credentials,
    )
    return ChannelRegistry.default().create(kind, ctx)


@dataclass
class Harness:
    service: ChannelService
    agents: AgentService
    model: ScriptedBackend
    wall: ManualClock

    @property
    def store(self) -> SqlChannelStore:
        store = self.service.store
        assert isinstance(store, SqlChannelStore)
        return store

    async def settle(self) -> int:
        """Let every message task finish, then make one outbox pass."""
        await self.service.idle()
        return await self.service.dispatch()


@asynccontextmanager
async def harness(
    state: Path,
    specs: list[ChannelSpec],
    *,
    model: ScriptedBackend | None = None,
    wall: ManualClock | None = None,
    outbox: OutboxPolicy | None = None,
    background: bool = False,
) -> AsyncIterator[Harness]:
    model = model or ScriptedBackend("m", echo)
    wall = wall or ManualClock(start=1_750_000_000.0)
    agents = AgentService(
        catalog=AgentCatalog(
            [AgentSpec(name="assistant", model="m"), AgentSpec(name="vip", model="m")]
        ),
        model=model,
        open_stores=lambda: open_store(None, state_dir=state),
    )

    def store() -> SqlChannelStore:
        stores = agents.stores
        assert isinstance(stores, SqlStore)
        return SqlChannelStore(stores.db, now=wall.now)

    service = ChannelService(
        channels=specs, agents=agents, store=store, now=wall.now, outbox=outbox, poll_timeout=5
    )
    await agents.start()
    try:
        await service.start(background=background)
        try:
            yield Harness(service=service, agents=agents, model=model, wall=wall)
        finally:
            await service.close()
    finally:
        await agents.close()


def request(body: bytes, headers: dict[str, str], path: str = "webhook") -> WebhookRequest:
    return WebhookRequest(method="POST", path=path, headers=headers, query={}, body=body)
