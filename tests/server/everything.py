"""A server with every feature on, built the way a user gets it: ``wayport.yaml`` (agents,
workflows with a signed webhook, a platform webhook channel and a web chat, the console,
metrics) -> ``bootstrap.build``. ``app`` is the runtime's own ASGI app; ``mounted`` is a
``WayportApp`` created from the same services, for its route table."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from wayport.bootstrap import Runtime, build
from wayport.config.loader import parse_config
from wayport.models.registry import BackendRegistry
from wayport.server.app import Observability, WayportApp, create_app
from wayport.server.settings import ServerSettings
from wayport.service.privacy import PrivacyService
from wayport.store import SqlStore
from wayport.store.privacy import SqlPrivacyStore
from wayport.testing import Reply, ScriptedBackend

KEY = "wp-Ev7rYtH1nGqX9kPw4NcY8bHs6JdF3gTa"
HOOK_SECRET = "hk-Rq5mZt8WvL2pXc7NbY4sGd9FjK3hTa6E"
VERSION = "9.9.9"

CONFIG = """\
state_dir: {state}
server: {{api_key: {key}, access_log: false, metrics: true}}
deployments:
  chat: {{backend: scripted}}
models:
  chat: {{deployments: [chat]}}
agents:
  assistant: {{model: chat}}
workflows:
  hello:
    steps:
      - id: greet
        llm: {{model: chat, prompt: "Say hi"}}
    triggers: {{webhook_secret: {secret}}}
channels:
  hook:
    type: webhook
    credentials: {{secret: {secret}}}
    options: {{url: "http://127.0.0.1:9/unreachable"}}
  web:
    type: webchat
telemetry: {{console: true}}
"""


def _registry() -> BackendRegistry:
    registry = BackendRegistry()
    registry.register(
        "scripted",
        lambda *, name: ScriptedBackend(name, default=Reply("hello"), embeddings=True),
    )
    return registry


@dataclass(frozen=True, slots=True, kw_only=True)
class Everything:
    runtime: Runtime
    app: ASGIApp  #: what ``wayport serve`` serves
    mounted: WayportApp  #: the same services through ``create_app``: its route table


def build_everything(state: Path) -> Everything:
    text = CONFIG.format(state=state, key=KEY, secret=HOOK_SECRET)
    runtime = build(parse_config(text, env={}, backend_kinds={"scripted"}), registry=_registry())
    agents = runtime.agents

    def privacy_store() -> SqlPrivacyStore:
        stores = agents.stores
        assert isinstance(stores, SqlStore)
        return SqlPrivacyStore.of(stores)

    mounted = create_app(
        gateway=runtime.gateway,
        settings=ServerSettings(api_key=KEY, access_log=False, version=VERSION),
        metrics=runtime.metrics,
        agents=agents,
        security=runtime.security,
        privacy=PrivacyService(store=privacy_store),
        channels=runtime.channels,
        observability=Observability(series=runtime.series, console=True),
        metering=runtime.metering,
        workflows=runtime.workflows,
        releases=runtime.releases,
    )
    assert isinstance(mounted, WayportApp)
    return Everything(runtime=runtime, app=runtime.app, mounted=mounted)
