"""The composition root: one validated configuration in, one wired runtime out.

    config = load_config("wayport.yaml")
    runtime = build(config)
    # serve runtime.app with uvicorn (its lifespan starts and stops the gateway) …
    # … or use the gateway in process:
    await runtime.start()
    async for chunk in runtime.gateway.stream(request):
        ...
    await runtime.aclose()

With ``runtime.agents`` the agents run in process too (``await runtime.start()`` starts them,
with their store, tools and worker)::

    finished = await runtime.agents.chat("agent/assistant", [{"role": "user", "content": "hi"}],
                                         session_id="sess-1")

Nothing here is global: two runtimes built from two configurations live side by side.
Backends are built through the registry, so this module never names a provider.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from wayport import __version__
from wayport.config.schema import WayportConfig
from wayport.core.errors import ConfigError
from wayport.models.llamacpp import LlamaCppBackend
from wayport.models.registry import BackendRegistry
from wayport.models.router import Router
from wayport.ports import Clock, ColdStartReporting, ModelBackend, SessionStore
from wayport.runtime.context import ContextEngine, Counters, summarisers
from wayport.runtime.tools import ToolRegistry
from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.gateway import Gateway
from wayport.store import SqlStore, open_store
from wayport.telemetry.metrics import Metrics


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    """Everything one Wayport process serves with."""

    config: WayportConfig
    backends: Mapping[str, ModelBackend]
    router: Router
    gateway: Gateway
    agents: AgentService
    metrics: Metrics
    app: ASGIApp

    async def start(self) -> None:
        """Start the backends (load weights, open pools) and the agents (store, tools,
        worker) for in-process use; when serving over HTTP the app's lifespan does this."""
        await self.gateway.start()
        try:
            await self.agents.start()
        except BaseException:
            await self.gateway.close()
            raise

    async def aclose(self) -> None:
        """Drain the agents, then close every backend. Safe to call after the app's
        lifespan already has."""
        try:
            await self.agents.close()
        finally:
            await self.gateway.close()


def build(
    config: WayportConfig,
    *,
    registry: BackendRegistry | None = None,
    clock: Clock | None = None,
) -> Runtime:
    """Wire a runtime from ``config``. Creates ``state_dir``; starts nothing.

    Raises ``ConfigError`` when a backend cannot be built (a plugin that is not installed,
    options its factory does not take), before anything has started.
    """
    _make_state_dir(config.state_dir)
    registry = registry if registry is not None else BackendRegistry.default()
    backends: dict[str, ModelBackend] = {}
    for name, deployment in config.deployments.items():
        try:
            backends[name] = registry.create(
                deployment.backend, name=name, options=deployment.backend_options()
            )
        except ConfigError as exc:
            raise ConfigError(f"deployments.{name}: {exc.message}") from exc
    metrics = Metrics()
    for name, backend in backends.items():
        if isinstance(backend, ColdStartReporting):
            metrics.watch_model_load(name, _load_seconds_of(backend))
    router = Router(
        groups=config.groups(),
        backends=backends,
        policy=config.router.policy(),
        clock=clock,
        events=metrics,
    )
    state_dir = config.state_dir
    gateway = Gateway(
        router=router,
        observer=metrics,
        clock=clock,
        # ``store_ok`` is the agent service's last store ping: readiness does no I/O of its own
        state_ok=lambda: agents.store_ok and os.access(state_dir, os.W_OK | os.X_OK),
    )
    agents = _agents(config, gateway, backends)
    server = config.server
    settings = ServerSettings(
        api_key=server.api_key.get_secret_value() if server.api_key else None,
        max_body_bytes=server.max_body_bytes,
        metrics_enabled=server.metrics,
        metrics_require_auth=server.metrics_require_auth,
        access_log=server.access_log,
        version=__version__,
    )
    app = create_app(gateway=gateway, settings=settings, metrics=metrics, agents=agents)
    return Runtime(
        config=config,
        backends=backends,
        router=router,
        gateway=gateway,
        agents=agents,
        metrics=metrics,
        app=app,
    )


def _agents(
    config: WayportConfig, gateway: Gateway, backends: Mapping[str, ModelBackend]
) -> AgentService:
    """The agent service on the configured store, with the configured tools and a context
    engine that counts with each embedded model's own tokenizer."""
    try:
        registry = ToolRegistry.from_specs(
            [tool.entry(name) for name, tool in config.tools.items()], environ=os.environ
        )
    except ConfigError as exc:
        raise ConfigError(f"tools: {exc.message}") from exc
    specs = config.agent_specs()
    tokenizers: dict[str, Callable[[str], int]] = {}
    for name, model in config.models.items():
        # Exact counts only for a group served by one embedded model: with several
        # deployments a request may land on a model with another tokenizer.
        backend = backends[model.deployments[0].name] if len(model.deployments) == 1 else None
        if isinstance(backend, LlamaCppBackend):
            tokenizers[name] = backend.count_tokens
    counters = Counters(tokenizers=tokenizers)
    summariser_for = summarisers(gateway.complete)
    url, state_dir = config.store.url, config.state_dir

    def context(sessions: SessionStore) -> ContextEngine:
        return ContextEngine(store=sessions, counter_for=counters, summariser_for=summariser_for)

    async def open_stores() -> Stores:
        return await open_store(url, state_dir=state_dir)

    async def ping(stores: Stores) -> None:
        if isinstance(stores, SqlStore):
            await stores.db.ping()

    return AgentService(
        catalog=AgentCatalog(specs),
        model=gateway,
        open_stores=open_stores,
        tools=registry,
        context=context,
        ping=ping,
        drain_timeout=config.server.drain_timeout,
    )


def _load_seconds_of(backend: ColdStartReporting) -> Callable[[], float | None]:
    return lambda: backend.load_seconds


def _make_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir: cannot create {path}: {exc.strerror or exc}") from exc
