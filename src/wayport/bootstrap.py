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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp

from wayport import __version__
from wayport.channels.base import ChannelContext  # channels
from wayport.channels.registry import ChannelRegistry  # channels
from wayport.config.agent_defs import agent_validator  # agent admin
from wayport.config.schema import WayportConfig
from wayport.config.workflows import build_workflow_service  # workflows
from wayport.core.agent import AgentSpec  # releases
from wayport.core.errors import ConfigError
from wayport.core.ids import new_id  # releases
from wayport.core.types import Usage  # releases
from wayport.models.llamacpp import LlamaCppBackend
from wayport.models.registry import BackendRegistry
from wayport.models.router import Router
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.ports import (
    AgentStore,  # agent admin
    ChannelStore,
    Clock,
    ColdStartReporting,
    Limiter,
    ModelBackend,
    SessionStore,
    WebhookOutbox,
)
from wayport.runtime.context import ContextEngine, Counters, summarisers
from wayport.runtime.limiter import LocalLimiter  # limits and usage
from wayport.runtime.tools import ToolRegistry
from wayport.server.app import Observability, create_app
from wayport.server.releases_api import with_reconciler  # releases
from wayport.server.settings import ServerSettings
from wayport.service.agent_defs import AgentDefinitions  # agent admin
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.channels import ChannelService, ChannelSpec, OutboxPolicy  # channels
from wayport.service.cluster import Cluster  # scale-out
from wayport.service.gateway import Gateway
from wayport.service.keys import Security
from wayport.service.limits import LimitPolicy, LimitsService  # limits and usage
from wayport.service.metering import Metering  # limits and usage
from wayport.service.privacy import PrivacyService
from wayport.service.release_reconciler import Reconciler, WebhookNotifier  # releases
from wayport.service.release_signals import Observers, SignalCollector  # releases
from wayport.service.releases import ReleaseService  # releases
from wayport.service.usage import UsageService  # limits and usage
from wayport.service.webhooks import WebhookDispatcher
from wayport.service.workflows import WorkflowService  # workflows
from wayport.store import SqlStore, open_store, resolve_url
from wayport.store.agents import SqlAgentStore  # agent admin
from wayport.store.budgets import SqlLimiter  # limits and usage
from wayport.store.channels import SqlChannelStore  # channels
from wayport.store.database import Database  # limits and usage
from wayport.store.outbox import SqlWebhookOutbox
from wayport.store.privacy import SqlPrivacyStore
from wayport.store.redis_bus import RedisBus  # scale-out
from wayport.store.redis_limiter import RedisLimiter  # scale-out
from wayport.store.releases import SqlReleaseStore  # releases
from wayport.store.sealing import Sealer
from wayport.store.session_queue import pending_runs  # scale-out
from wayport.store.usage import SqlUsageStore  # limits and usage
from wayport.telemetry.gen_ai import TracedEvents, TracedRouter  # observability
from wayport.telemetry.logging import Redactor  # observability
from wayport.telemetry.metrics import Metrics
from wayport.telemetry.runs import RunTelemetry  # observability
from wayport.telemetry.timeseries import Tee, Timeseries  # observability
from wayport.telemetry.tracing import Tracing  # observability


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
    security: Security | None = None  #: keys, tenants, audit (on the agents' store)
    series: Timeseries | None = None  #: observability: the console's per-minute aggregates
    tracing: Tracing | None = None  #: observability: spans (flush with ``tracing.shutdown()``)
    channels: ChannelService | None = None  #: the configured channels, if any
    metering: Metering | None = None  #: limits, budgets and the usage ledger
    workflows: WorkflowService | None = None  #: durable workflows, when any are configured
    releases: ReleaseService | None = None  #: releases: agent versions and rollouts

    async def start(self) -> None:
        """Start the backends (load weights, open pools) and the agents (store, tools,
        worker) for in-process use; when serving over HTTP the app's lifespan does this."""
        await self.gateway.start()
        try:
            await self.agents.start()
            if self.channels is not None:  # channels
                try:
                    await self.channels.start()
                except BaseException:
                    await self.agents.close()
                    raise
            if self.workflows is not None:  # workflows
                try:
                    await self.workflows.start()
                except BaseException:
                    if self.channels is not None:
                        await self.channels.close()
                    await self.agents.close()
                    raise
        except BaseException:
            await self.gateway.close()
            raise

    async def aclose(self) -> None:
        """Drain the agents, then close every backend. Safe to call after the app's
        lifespan already has."""
        try:
            if self.metering is not None and self.metering.usage is not None:
                await self.metering.usage.close()  # limits and usage: write what is buffered
            if self.workflows is not None:  # workflows
                await self.workflows.close()
            if self.channels is not None:  # channels
                await self.channels.close()
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
    series, tracing = _observability(config)  # observability
    router = Router(
        groups=config.groups(),
        backends=backends,
        policy=config.router.policy(),
        clock=clock,
        events=metrics if tracing is None else TracedEvents(metrics, _providers(config)),
    )
    state_dir = config.state_dir
    gateway = Gateway(
        router=router if tracing is None else TracedRouter(router, tracing),
        observer=Tee(metrics, series),
        clock=clock,
        # ``store_ok`` is the agent service's last store ping: readiness does no I/O of its own
        state_ok=lambda: agents.store_ok and os.access(state_dir, os.W_OK | os.X_OK),
    )
    cluster = _cluster(config)  # scale-out
    agents = _agents(config, gateway, backends, cluster)
    agents.observer = RunTelemetry(metrics=metrics, series=series, tracing=tracing)
    releases, reconciler = _releases(config, agents)  # releases: versions and rollouts
    security = _security(agents, cluster)  # security: keys, tenants, audit on the agents' store
    server = config.server
    settings = ServerSettings(
        api_key=server.api_key.get_secret_value() if server.api_key else None,
        max_body_bytes=server.max_body_bytes,
        metrics_enabled=server.metrics,
        metrics_require_auth=server.metrics_require_auth,
        access_log=server.access_log,
        version=__version__,
        trusted_proxies=tuple(server.trusted_proxies),
        cors_origins=tuple(server.cors_origins),
    )
    privacy = _privacy(config, agents)
    channels = _channels(config, agents)  # channels
    metering = _metering(config, agents, metrics)  # limits and usage
    workflows = build_workflow_service(  # workflows
        config, gateway=gateway, agents=agents, tracing=tracing
    )
    app = create_app(
        releases=releases,  # releases
        workflows=workflows,
        metering=metering,
        channels=channels,
        gateway=gateway,
        settings=settings,
        metrics=metrics,
        agents=agents,
        privacy=privacy,
        security=security,
        observability=Observability(
            series=series,
            tracing=tracing,
            console=config.telemetry.console,
            usage=_ledger(metering),
        ),
    )
    app = with_reconciler(app, reconciler)  # releases: the rollout controller loop
    return Runtime(
        releases=releases,  # releases
        config=config,
        backends=backends,
        router=router,
        gateway=gateway,
        agents=agents,
        metrics=metrics,
        app=app,
        channels=channels,
        security=security,
        metering=metering,
        series=series,
        tracing=tracing,
        workflows=workflows,
    )


# BEGIN releases
def _releases(config: WayportConfig, agents: AgentService) -> tuple[ReleaseService, Reconciler]:
    """Releases on the agents' database: new runs ask it for their version, every run's
    outcome feeds its signals, and a reconciler drives the rollouts."""
    section = config.releases
    prices = config.price_table()

    def price(agent: AgentSpec, usage: Usage) -> float:
        found = prices.find(agent.model)
        return found.cost(usage.prompt_tokens, usage.completion_tokens) if found else 0.0

    sealer = _sealer(config)  # security: shadow answers, comments, eval outputs sealed at rest

    def store() -> SqlReleaseStore:
        stores = agents.stores
        if not isinstance(stores, SqlStore):
            raise ConfigError("releases need the SQL store")
        return SqlReleaseStore(stores.db, sealer=sealer)

    notifier = None
    if section.notify is not None:
        secret = section.notify_secret
        notifier = WebhookNotifier(
            section.notify,
            secret=secret.get_secret_value() if secret is not None else None,
            client=GuardedClient(GuardPolicy(allow=tuple(config.server.outbound_allow))),
        )
    signals = SignalCollector(replica=new_id("replica"), price=price)
    releases = ReleaseService(
        agents=agents,
        store=store,
        signals=signals,
        strategies=section.strategies(),
        notify=notifier,
    )
    if agents.observer is not None:
        agents.observer = Observers(agents.observer, signals)
    else:
        agents.observer = signals
    agents.picker = releases
    return releases, Reconciler(releases, interval=section.interval, notifier=notifier)


# END releases


# BEGIN observability
def _observability(config: WayportConfig) -> tuple[Timeseries, Tracing | None]:
    section = config.telemetry
    series = Timeseries(minutes=section.timeseries_minutes)
    if not section.traces:
        return series, None
    tracing = Tracing.create(
        service_name=section.service_name,
        version=__version__,
        otlp_endpoint=section.otlp_endpoint,
        otlp_headers={k: v.get_secret_value() for k, v in section.otlp_headers.items()},
        sample_ratio=section.sample_ratio,
        redact=Redactor(config.secrets()).scrub,
        keep_traces=200 if section.console else 0,  # only the console reads them
    )
    return series, tracing


def _ledger(metering: Metering) -> Callable[[], Awaitable[object]]:
    """The usage ledger for the console, once the store it writes to is open."""

    async def ledger() -> object:
        usage = metering.usage
        return usage if usage is not None and usage.store is not None else None

    return ledger


_PROVIDERS = {"llamacpp": "llama.cpp", "openai": "openai", "anthropic": "anthropic"}


def _providers(config: WayportConfig) -> dict[str, tuple[str, str]]:
    """Deployment -> (``gen_ai.provider.name``, upstream model), for the chat spans."""
    found = {}
    for name, deployment in config.deployments.items():
        kind = deployment.backend
        model = getattr(deployment, "model", None)
        found[name] = (_PROVIDERS.get(kind, kind), model if isinstance(model, str) else name)
    return found


# END observability


# BEGIN limits and usage
def _metering(config: WayportConfig, agents: AgentService, metrics: Metrics) -> Metering:
    """Rate limits in process, spend budgets and the usage ledger on the agents' database
    (opened when they start)."""

    def db() -> Database:
        found = agents.stores
        if not isinstance(found, SqlStore):
            raise RuntimeError("budgets and the usage ledger need the SQL store")
        return found.db

    limits = LimitsService(
        policy=LimitPolicy(config.limits.by_scope()),
        prices=config.price_table(),
        limiter=_limiter(config, agents.cluster),  # scale-out: shared through Redis
        budgets=SqlLimiter(db),
        default_max_tokens=config.limits.default_max_tokens,
    )
    return Metering(limits=limits, usage=UsageService(store=SqlUsageStore(db), observer=metrics))


# END limits and usage


# BEGIN security
def _security(agents: AgentService, cluster: Cluster | None = None) -> Security:
    """Keys, tenants and the audit log on the agents' database (opened when they start); the
    worker claims every tenant's runs and each run's decision trail goes to the audit log."""

    def stores() -> SqlStore:
        found = agents.stores
        if not isinstance(found, SqlStore):
            raise RuntimeError("the security stores need the SQL store")
        return found

    revocations = cluster.revocations() if cluster is not None else None  # scale-out
    security = Security.build(stores, revocations=revocations)
    if cluster is not None:
        cluster.on_revoke(security.keys.forget)
    agents.list_tenants = security.tenants.ids
    agents.watch = security.audit.watch
    agents.on_drained.append(security.audit.drain)  # trails of runs finished in the drain
    if agents.definitions is not None:  # agent admin: agent.put / agent.delete entries
        agents.definitions.audit = security.audit
    return security


# END security


def _agents(
    config: WayportConfig,
    gateway: Gateway,
    backends: Mapping[str, ModelBackend],
    cluster: Cluster | None = None,
) -> AgentService:
    """The agent service on the configured store, with the configured tools and a context
    engine that counts with each embedded model's own tokenizer."""
    try:
        registry = ToolRegistry.from_specs(
            [tool.entry(name) for name, tool in config.tools.items()],
            environ=os.environ,
            client=GuardedClient(GuardPolicy(allow=tuple(config.server.outbound_allow))),
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

    sealer = _sealer(config)

    async def open_stores() -> Stores:
        opened = await open_store(url, state_dir=state_dir, sealer=sealer)
        opened.runs.exclusive_sessions = cluster is not None  # scale-out
        return opened

    async def ping(stores: Stores) -> None:
        if isinstance(stores, SqlStore):
            await stores.db.ping()

    service = AgentService(
        webhooks=_webhooks(config),
        catalog=AgentCatalog(specs),
        model=gateway,
        open_stores=open_stores,
        tools=registry,
        context=context,
        ping=ping,
        drain_timeout=config.server.drain_timeout,
        cluster=cluster,  # scale-out
    )
    # agent admin: tenants' own agents in the agents table, validated as the file's entries
    service.definitions = AgentDefinitions(store_for=_agent_store, validate=agent_validator(config))
    return service


def _agent_store(stores: object) -> AgentStore:  # agent admin
    if not isinstance(stores, SqlStore):
        raise ConfigError("agent definitions need the SQL store")
    return SqlAgentStore(stores.db)


# --- scale-out (docs/scaling.md) ------------------------------------------------------------
def _cluster(config: WayportConfig) -> Cluster | None:
    """Replicas on Postgres claim runs as one of many; Redis (when configured) carries run
    events, cancellations and key revocations between them. SQLite: a single node."""
    on_postgres = resolve_url(config.store.url, state_dir=config.state_dir).drivername.startswith(
        "postgresql"
    )
    redis = config.redis
    bus = (
        RedisBus(redis.url.get_secret_value(), prefix=redis.key_prefix)
        if redis.url is not None
        else None
    )
    if not on_postgres and bus is None:
        return None
    return Cluster(
        bus=bus,
        heartbeat_every=config.cluster.heartbeat_interval,
        stale_after=config.cluster.stale_after,
        pending=pending_runs,  # session queues count every replica's runs
        # closed with the cluster, after the runs drained
        limiter=_limiter(config) if redis.url is not None else None,
    )


def _limiter(config: WayportConfig, cluster: Cluster | None = None) -> Limiter:
    if cluster is not None and isinstance(cluster.limiter, RedisLimiter):
        return cluster.limiter
    if config.redis.url is None:
        return LocalLimiter()
    return RedisLimiter(config.redis.url.get_secret_value(), prefix=config.redis.key_prefix)


# --- end scale-out ---------------------------------------------------------------------------


# --- run completion webhooks -----------------------------------------------------------------
def _webhooks(config: WayportConfig) -> WebhookDispatcher:
    """Signed completion webhooks through the SSRF guard (``server.outbound_allow`` opens
    private targets), kept in the SQL store's outbox."""
    section = config.webhooks
    secret = (
        section.secret.get_secret_value()
        if section.secret is not None
        else os.environ.get("WAYPORT_WEBHOOK_SECRET") or None
    )

    def outbox_for(stores: object) -> WebhookOutbox:
        if not isinstance(stores, SqlStore):
            raise ConfigError("webhooks need the SQL store")
        return SqlWebhookOutbox(stores.db, sealer=_sealer(config))  # security: sealed at rest

    return WebhookDispatcher(
        client=GuardedClient(GuardPolicy(allow=tuple(config.server.outbound_allow))),
        outbox_for=outbox_for,
        default_secret=secret,
        poll_every=section.poll_interval,
        timeout=section.timeout,
        max_attempts=section.max_attempts,
    )


# --- end run completion webhooks -------------------------------------------------------------


# --- privacy and encryption at rest (docs/privacy.md) ---------------------------------------
def _sealer(config: WayportConfig) -> Sealer:
    keys = config.store.encryption_keys
    return Sealer.parse(keys.get_secret_value() if keys is not None else None)


def _privacy(config: WayportConfig, agents: AgentService) -> PrivacyService:
    """Export/erase and the retention sweeper, on the agents' SQL store once it is open."""
    sealer = _sealer(config)

    def store() -> SqlPrivacyStore:
        stores = agents.stores
        if not isinstance(stores, SqlStore):
            raise ConfigError("privacy requests need the SQL store")
        return SqlPrivacyStore.of(stores, sealer=sealer)

    return PrivacyService(store=store, retention_days=config.store.retention_days)


# --- end privacy -----------------------------------------------------------------------------


# --- channels ----------------------------------------------------------------------------------
def _channels(config: WayportConfig, agents: AgentService) -> ChannelService | None:
    """The configured channels' adapters (through the channel registry) and the service that
    runs them, on the agents' SQL store."""
    if not config.channels:
        return None
    known = [spec.name for spec in config.agent_specs()]
    kinds = ChannelRegistry.default()
    specs: list[ChannelSpec] = []
    for name, channel in config.channels.items():
        agent = channel.agent or known[0]
        for wanted in (agent, *(b.agent for b in channel.bindings)):
            if wanted not in known:
                raise ConfigError(f"channels.{name}: no agent named {wanted!r}")
        allow = (*config.server.outbound_allow, *channel.allow_outbound)
        context = ChannelContext(
            name=name,
            http=GuardedClient(GuardPolicy(allow=tuple(allow))),
            options=channel.options,
            credentials=channel.plain_credentials(),
        )
        try:
            adapter = kinds.create(channel.type, context)
        except ConfigError as exc:
            raise ConfigError(f"channels.{name}: {exc.message}") from exc
        specs.append(
            ChannelSpec(
                name=name,
                adapter=adapter,
                agent=agent,
                tenant=channel.tenant,
                bindings=channel.binding_specs(name),
                session=channel.session,
                access=channel.access(),
                stream=channel.stream,
                poll=channel.options.get("mode") == "polling",
            )
        )

    sealer = _sealer(config)  # security: channel payloads sealed at rest

    def store() -> ChannelStore:
        stores = agents.stores
        if not isinstance(stores, SqlStore):
            raise ConfigError("channels need the SQL store")
        return SqlChannelStore(stores.db, sealer=sealer)  # security: sealed at rest

    outbox = config.channel_outbox
    return ChannelService(
        channels=specs,
        agents=agents,
        store=store,
        outbox=OutboxPolicy(
            max_age=outbox.max_age,
            max_attempts=outbox.max_attempts,
            backoff_base=outbox.backoff_base,
            backoff_cap=outbox.backoff_cap,
        ),
    )


# --- end channels --------------------------------------------------------------------------------


def _load_seconds_of(backend: ColdStartReporting) -> Callable[[], float | None]:
    return lambda: backend.load_seconds


def _make_state_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"state_dir: cannot create {path}: {exc.strerror or exc}") from exc
