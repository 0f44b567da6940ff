"""The ASGI application: a lean router over raw ASGI, authentication, error rendering, request
ids, metrics and the access log, plus the lifespan that starts and closes the gateway.

    app = create_app(gateway=gateway, settings=ServerSettings(api_key=key, version="0.1.0"),
                     metrics=metrics)
    uvicorn.run(app, host="127.0.0.1", port=8080, log_config=None)

Every answer carries ``x-request-id``; every error is an OpenAI error body with the status of
its ``wayport.core.errors`` class; nothing a client sends can produce a 500 — an unexpected
exception is a bug, answered with a generic 500 and logged with the request id.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from wayport.core.errors import WayportError
from wayport.core.identity import Role
from wayport.server import workflows_api as wf  # workflows
from wayport.server.admin_api import AdminApi
from wayport.server.agents_api import AGENT_PREFIX as AGENT_ADMIN_PREFIX  # agent admin
from wayport.server.agents_api import RUNS_PREFIX, SESSIONS_PREFIX, AgentsApi
from wayport.server.auth import ApiKeyAuth, Authenticator, authorize
from wayport.server.channels_api import ADMIN_PREFIX, CHANNELS_PREFIX, ChannelsApi  # channels
from wayport.server.console import CHAT_PATH, Console  # observability
from wayport.server.console_api import ConsoleApi  # observability
from wayport.server.console_workflows import WorkflowConsole  # workflows
from wayport.server.errors import InternalError, MethodNotAllowed, RouteNotFound
from wayport.server.http import CLIENT_CLOSED, ClientGone, Exchange
from wayport.server.openai_api import MODELS_PREFIX, OpenAIApi
from wayport.server.openapi import build_openapi, route_docs, served_paths
from wayport.server.openapi_base import DocContext, RouteDoc
from wayport.server.openapi_releases import RUN_FEEDBACK  # releases
from wayport.server.ops import OpsApi
from wayport.server.privacy_api import PRIVACY_DATA, PRIVACY_EXPORT, PrivacyApi, with_edges
from wayport.server.proxy import client_ip
from wayport.server.releases_api import (  # releases
    AGENTS_PREFIX,
    FEEDBACK_PATH,
    RELEASES_PATH,
    RELEASES_PREFIX,
    ReleasesApi,
)
from wayport.server.responses import encode
from wayport.server.responses_api import RESPONSES_PATH, RESPONSES_PREFIX, ResponsesApi
from wayport.server.settings import ServerSettings
from wayport.server.subpaths import SubPaths
from wayport.server.usage_api import USAGE_PATH, UsageApi  # limits and usage
from wayport.service.agent_defs import tenant_agent, tenant_agents
from wayport.service.agents import AgentService
from wayport.service.channels import ChannelService  # channels
from wayport.service.gateway import Gateway
from wayport.service.keys import Security
from wayport.service.metering import Metering  # limits and usage
from wayport.service.privacy import PrivacyService
from wayport.service.releases import ReleaseService  # releases
from wayport.service.responses import ResponsesService
from wayport.service.usage import UsageService  # limits and usage
from wayport.service.workflows import WorkflowService  # workflows
from wayport.telemetry.metrics import Metrics
from wayport.telemetry.timeseries import RequestRecord, Timeseries  # observability
from wayport.telemetry.tracing import ServerSpan, Tracing  # observability

Handler = Callable[[Exchange], Awaitable[None]]
#: observability: paths kept out of the request series and traces
UNWATCHED = frozenset({"/healthz", "/readyz", "/metrics"})
_Watched = tuple[tuple[RequestRecord, object] | None, ServerSpan | None]
VIEWER, USER, DEVELOPER, DEPLOYER, ADMIN = (
    Role.VIEWER,
    Role.USER,
    Role.DEVELOPER,
    Role.DEPLOYER,
    Role.ADMIN,
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    name: str  #: the path template: the ``route`` label of metrics and logs
    methods: frozenset[str]
    handler: Handler
    secured: bool  #: asks for the API key (when one is configured)
    #: the least role each method needs (secured routes); a method missing here needs owner
    roles: Mapping[str, Role] = field(default_factory=dict)
    scope: str = ""  #: what a key limited to scopes must list: ``/v1/<scope>/…``
    #: prefix routes: the names of the routes reached through this one (their paths too)
    includes: tuple[str, ...] = ()
    #: prefix routes: each sub-path's methods (from the OpenAPI fragments); None: the route's
    paths: SubPaths | None = None

    @property
    def allow(self) -> bytes:
        return ", ".join(sorted(self.methods)).encode()


def route(
    name: str,
    methods: Iterable[str],
    handler: Handler,
    *,
    secured: bool,
    role: Role | Mapping[str, Role] | None = None,
) -> Route:
    """``role``: the least role the route needs, or one per method (RBAC, see
    ``docs/security.md``); every secured route names one (tests/security checks)."""
    allowed = frozenset(methods)
    roles = dict.fromkeys(allowed, role) if isinstance(role, Role) else dict(role or {})
    return Route(
        name=name,
        methods=allowed,
        handler=handler,
        secured=secured,
        roles=roles,
        scope=route_scope(name),
    )


def _deeper(inner: Route) -> Handler:
    """agent admin: ``inner`` reached through the ``/v1/agents/{name}`` route."""

    async def handle(ex: Exchange) -> None:
        ex.route = inner.name
        if ex.method not in inner.methods:
            raise MethodNotAllowed(
                f"Method {ex.method} is not allowed on {inner.name}", allow=inner.allow
            )
        authorize(ex.principal, inner.roles.get(ex.method, Role.OWNER), inner.scope)
        await inner.handler(ex)

    return handle


def _with_paths(found: Route, fragments: Mapping[str, RouteDoc]) -> Route:
    """``found`` with its sub-path table: the paths its OpenAPI fragments describe."""
    served = served_paths(found, fragments)
    return found if served is None else replace(found, paths=SubPaths.of(served))


def route_scope(name: str) -> str:
    """``/v1/chat/completions`` -> ``chat``, ``/v1/admin/keys`` -> ``admin``."""
    parts = [p for p in name.split("/") if p]
    if parts and parts[0] == "v1":
        parts = parts[1:]
    return parts[0] if parts else ""


class WayportApp:
    """Dispatches by exact path (one dict lookup), then by path prefix."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        routes: Mapping[str, Route],
        prefixes: Iterable[tuple[str, Route]],
        auth: Authenticator,
        metrics: Metrics | None,
        access_log: bool,
        agents: AgentService | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
        channels: ChannelService | None = None,
        series: Timeseries | None = None,
        tracing: Tracing | None = None,
        workflows: WorkflowService | None = None,
    ) -> None:
        self._gateway = gateway
        self._series = series  # observability: the console's per-minute charts
        self._tracing = tracing  # observability: HTTP server spans
        self._agents = agents
        self._channels = channels
        self._workflows = workflows  # workflows: started after the agents, closed before
        self._routes = dict(routes)
        self._prefixes = tuple(prefixes)
        self._auth = auth
        self._metrics = metrics
        self._access_log = access_log
        self._on_shutdown = on_shutdown
        self._log: FilteringBoundLogger = structlog.get_logger("wayport.server")
        self._access: FilteringBoundLogger = structlog.get_logger("wayport.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            # No WebSocket routes (yet): refuse the handshake.
            await receive()
            await send({"type": "websocket.close", "code": 1008})

    def route_table(self) -> list[tuple[Route, str | None]]:
        """Every route, with the prefix it is matched by (``None``: the exact path)."""
        exact: list[tuple[Route, str | None]] = [(r, None) for r in self._routes.values()]
        return exact + [(r, prefix) for prefix, r in self._prefixes]

    def _match(self, path: str) -> Route | None:
        found = self._routes.get(path)
        if found is not None:
            return found
        for prefix, candidate in self._prefixes:
            if path.startswith(prefix):
                return candidate
        return None

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        ex = Exchange(scope, receive, send)
        metrics = self._metrics
        if metrics is not None:
            metrics.request_started()
        tokens = structlog.contextvars.bind_contextvars(request_id=ex.request_id)
        found = self._match(ex.path)  # once: the span names it, dispatch runs it
        # observability: None unless the series or tracing is on and the path is watched
        watched = self._watch(ex, found) if self._series or self._tracing else None
        try:
            await self._dispatch(ex, found)
        except ClientGone:
            ex.status = CLIENT_CLOSED
        except WayportError as exc:
            if exc.status >= 500:
                self._log.warning(
                    "request failed", status=exc.status, error_type=exc.type, error=exc.message
                )
            await ex.respond_error(exc)
        except Exception:  # noqa: BLE001 - the last line: a bug must still get an answer
            self._log.exception("unhandled error", path=ex.path)
            await ex.respond_error(InternalError(ex.request_id))
        finally:
            seconds = time.perf_counter() - began
            if metrics is not None:
                metrics.request_finished(ex.route, ex.model, ex.status, seconds)
            if self._access_log:
                self._access.info(
                    "request",
                    method=ex.method,
                    path=ex.path,
                    route=ex.route,
                    model=ex.model or None,
                    status=ex.status,
                    duration_ms=round(seconds * 1000, 3),
                    client=client_ip(ex.scope),  # after trusted-proxy headers (server/proxy.py)
                )
            if watched is not None:
                self._unwatch(ex, watched, seconds)
            structlog.contextvars.reset_contextvars(**tokens)

    # BEGIN observability: request series and HTTP server spans
    def _watch(self, ex: Exchange, found: Route | None) -> _Watched | None:
        path = ex.path
        if path in UNWATCHED or (path.startswith("/console") and path != CHAT_PATH):
            return None  # probes, scrapes and the console's own polling are not traffic
        started = self._series.begin() if self._series is not None else None
        span = None
        if self._tracing is not None:
            # an exact route's path is its template: named at once, nothing to redact
            exact = found is not None and found.name == path
            span = self._tracing.server_span(
                ex.method,
                path,
                route=path if exact else None,
                traceparent=ex.traceparent,
                tracestate=ex.tracestate,
            )
            if started is not None:
                started[0].trace_id = span.trace_id
        return started, span

    def _unwatch(self, ex: Exchange, watched: _Watched, seconds: float) -> None:
        started, span = watched
        tenant = ex.principal.tenant
        if started is not None and self._series is not None:
            self._series.end(
                started,
                tenant=tenant,
                request_id=ex.request_id,
                method=ex.method,
                route=ex.route,
                model=ex.model,
                status=ex.status,
                seconds=seconds,
            )
        if span is not None and self._tracing is not None:
            self._tracing.end_server_span(span, route=ex.route, status=ex.status, tenant=tenant)

    # END observability

    async def _dispatch(self, ex: Exchange, found: Route | None) -> None:
        if found is None:
            if self._auth.enabled:
                # who is not let in learns nothing about which paths exist
                await self._auth.authenticate(ex.authorization)
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        ex.route = found.name
        table = found.paths
        if table is not None:  # a prefix route: the sub-path's own methods and Allow
            served = table.allow(ex.path)
            if served is None:
                if found.secured and self._auth.enabled:
                    await self._auth.authenticate(ex.authorization)
                raise RouteNotFound(f"No route {ex.method} {ex.path}")
            if ex.method not in served[0]:
                raise MethodNotAllowed(
                    f"Method {ex.method} is not allowed on {ex.path}", allow=served[1]
                )
        elif ex.method not in found.methods:
            raise MethodNotAllowed(
                f"Method {ex.method} is not allowed on {found.name}", allow=found.allow
            )
        if found.secured:
            principal = await self._auth.authenticate(ex.authorization)
            authorize(principal, found.roles.get(ex.method, Role.OWNER), found.scope)
            ex.principal = principal
        await found.handler(ex)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._gateway.start()
                    if self._agents is not None:
                        await self._agents.start()  # resumes unfinished runs
                    if self._channels is not None:
                        await self._channels.start()  # resumes the inbox and the outbox
                    if self._workflows is not None:
                        await self._workflows.start()  # resumes unfinished workflow runs
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    self._log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self._on_shutdown is not None:
                        await self._on_shutdown()  # security: last-used times, audit trails
                    if self._workflows is not None:
                        await self._workflows.close()  # runs stay durable; resumed at start
                    if self._channels is not None:
                        await self._channels.close()
                    if self._agents is not None:
                        await self._agents.close()  # drains running agent runs first
                    await self._gateway.close()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    self._log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def _shutdown(
    security: Security | None, usage: UsageService | None
) -> Callable[[], Awaitable[None]] | None:
    """What the lifespan runs first at shutdown: write the buffered usage records, then
    security's own (last-used times, audit trails)."""
    if usage is None:
        return security.close if security is not None else None

    async def close() -> None:
        try:
            await usage.close()
        finally:
            if security is not None:
                await security.close()

    return close


def create_app(
    *,
    gateway: Gateway,
    settings: ServerSettings,
    metrics: Metrics | None = None,
    agents: AgentService | None = None,
    security: Security | None = None,
    privacy: PrivacyService | None = None,
    channels: ChannelService | None = None,
    observability: Observability | None = None,
    metering: Metering | None = None,
    workflows: WorkflowService | None = None,
    releases: ReleaseService | None = None,
) -> ASGIApp:
    """The whole HTTP surface of the gateway as one ASGI app (lifespan included); with
    ``agents``, the agent routes too (and the app's lifespan starts and drains them); with
    ``security``, issued API keys and the admin routes (keys, tenants, audit)."""
    auth = ApiKeyAuth(settings.api_key)
    authenticator = Authenticator(
        settings.api_key, keys=security.keys if security is not None else None
    )
    served_metrics = metrics if settings.metrics_enabled else None
    metrics_auth = auth if settings.metrics_require_auth and auth.enabled else None
    agents_api = (
        AgentsApi(agents, max_body_bytes=settings.max_body_bytes, metering=metering)
        if agents is not None
        else None
    )
    api = OpenAIApi(
        gateway,
        max_body_bytes=settings.max_body_bytes,
        agent_chat=agents_api.chat_completion if agents_api is not None else None,
        metering=metering,
    )
    ops = OpsApi(
        gateway,
        version=settings.version,
        metrics=served_metrics,
        metrics_auth=metrics_auth,
    )
    routes = [
        route("/v1/chat/completions", ["POST"], api.chat_completions, secured=True, role=USER),
        route("/v1/embeddings", ["POST"], api.embeddings, secured=True, role=USER),
        route("/v1/models", ["GET"], api.list_models, secured=True, role=VIEWER),
        route("/healthz", ["GET"], ops.healthz, secured=False),
        route("/readyz", ["GET"], ops.readyz, secured=False),
        route("/metrics", ["GET"], ops.metrics, secured=False),
        route("/openapi.json", ["GET"], ops.openapi, secured=False),
    ]
    prefixes = [
        (
            MODELS_PREFIX,
            route("/v1/models/{model}", ["GET"], api.get_model, secured=True, role=VIEWER),
        )
    ]
    responses = ResponsesApi(
        ResponsesService(gateway=gateway, agents=agents),
        max_body_bytes=settings.max_body_bytes,
        metering=metering,
        agent_of=partial(tenant_agent, agents) if agents is not None else None,
    )
    routes.append(route(RESPONSES_PATH, ["POST"], responses.create, secured=True, role=USER))
    prefixes.append(
        (
            RESPONSES_PREFIX,
            route("/v1/responses/{id}", ["GET"], responses.get, secured=True, role=VIEWER),
        )
    )
    if agents_api is not None:
        routes += [
            route("/v1/agents", ["GET"], agents_api.list_agents, secured=True, role=VIEWER),
            route("/v1/sessions", ["POST"], agents_api.create_session, secured=True, role=USER),
        ]
        # the app answers 405 with each sub-path's own Allow (``Route.paths``)
        prefixes += [
            (
                SESSIONS_PREFIX,
                route(
                    "/v1/sessions/{id}",
                    ["GET", "POST", "DELETE"],
                    agents_api.sessions,
                    secured=True,
                    role={"GET": VIEWER, "POST": USER, "DELETE": USER},
                ),
            ),
            (
                RUNS_PREFIX,
                route(
                    "/v1/runs/{id}",
                    ["GET", "POST"],
                    agents_api.runs,
                    secured=True,
                    role={"GET": VIEWER, "POST": USER},
                ),
            ),
        ]
    # BEGIN security: admin routes (keys, tenants, audit)
    if security is not None:
        admin = AdminApi(security, max_body_bytes=settings.max_body_bytes)
        for spec in admin.table():
            made = route(spec.name, spec.methods, spec.handler, secured=True, role=spec.roles)
            if spec.prefix is None:
                routes.append(made)
            else:
                prefixes.append((spec.prefix, made))
    # END security
    # BEGIN privacy: export and erase a user's or session's data (admin)
    if privacy is not None:
        privacy_api = PrivacyApi(privacy)
        routes += [
            route(PRIVACY_EXPORT, ["GET"], privacy_api.export, secured=True, role=ADMIN),
            route(PRIVACY_DATA, ["DELETE"], privacy_api.erase, secured=True, role=ADMIN),
        ]
    # END privacy
    # BEGIN limits and usage: the usage ledger (viewer and up)
    usage = metering.usage if metering is not None else None
    if usage is not None:
        usage_api = UsageApi(usage)
        routes.append(route(USAGE_PATH, ["GET"], usage_api.get, secured=True, role=VIEWER))
    # END limits and usage
    # BEGIN channels: platform webhooks (signed by the platform) and web chat; admin pairing
    if channels is not None:
        channels_api = ChannelsApi(
            channels, auth=authenticator, max_body_bytes=settings.max_body_bytes
        )
        prefixes += [
            (
                CHANNELS_PREFIX,
                route(
                    "/channels/{name}/{path}", ["GET", "POST"], channels_api.inbound, secured=False
                ),
            ),
            (
                ADMIN_PREFIX,
                route(
                    "/v1/channels/{path}", ["POST"], channels_api.admin, secured=True, role=ADMIN
                ),
            ),
        ]
    # END channels
    # BEGIN workflows: definitions, runs, approvals; signed inbound webhooks
    if workflows is not None:
        wf_api = wf.WorkflowsApi(workflows, max_body_bytes=settings.max_body_bytes)
        routes += [
            route(wf.WORKFLOWS_PATH, ["GET"], wf_api.list_workflows, secured=True, role=VIEWER),
            route(wf.RUNS_PATH, ["GET"], wf_api.list_runs, secured=True, role=VIEWER),
        ]
        prefixes += [
            (
                wf.WORKFLOWS_PREFIX,
                route(
                    "/v1/workflows/{name}/runs", ["POST"], wf_api.workflow, secured=True, role=USER
                ),
            ),
            (
                wf.RUNS_PREFIX,
                route(
                    "/v1/workflow-runs/{id}",
                    ["GET", "POST"],
                    wf_api.runs,
                    secured=True,
                    role={"GET": VIEWER, "POST": USER},
                ),
            ),
            (
                wf.HOOKS_PREFIX,
                route("/hooks/workflows/{name}", ["POST"], wf_api.hook, secured=False),
            ),
        ]
    # END workflows
    # BEGIN releases: versions, rollouts, feedback (viewer reads, deployer changes)
    if releases is not None:
        rel = ReleasesApi(releases, max_body_bytes=settings.max_body_bytes)
        routes += [
            route(
                RELEASES_PATH,
                ["GET", "POST"],
                rel.collection,
                secured=True,
                role={"GET": VIEWER, "POST": DEPLOYER},
            ),
            route(FEEDBACK_PATH, ["POST"], rel.feedback, secured=True, role=USER),
        ]
        if agents_api is not None:  # POST /v1/runs/{id}/feedback (the runs route, role user)
            agents_api.run_feedback = rel.run_feedback
            prefixes = [
                (p, replace(r, includes=(*r.includes, RUN_FEEDBACK)) if p == RUNS_PREFIX else r)
                for p, r in prefixes
            ]
        prefixes += [
            (
                RELEASES_PREFIX,
                route(
                    "/v1/releases/{agent}",
                    ["GET", "POST"],
                    rel.release,
                    secured=True,
                    role={"GET": VIEWER, "POST": DEPLOYER},
                ),
            ),
            (
                AGENTS_PREFIX,
                route(
                    "/v1/agents/{name}/versions", ["GET"], rel.versions, secured=True, role=VIEWER
                ),
            ),
        ]
    # END releases
    # BEGIN agent admin: /v1/agents/{name} (viewer reads; developer puts and deletes). The
    # deeper /v1/agents/{name}/… routes (releases' versions) share the prefix: they are
    # reached through it, each still checked against its own roles
    if agents_api is not None:
        reached: tuple[str, ...] = ()
        for shared in [entry for entry in prefixes if entry[0] == AGENT_ADMIN_PREFIX]:
            prefixes.remove(shared)
            agents_api.deeper = _deeper(shared[1])
            reached += (shared[1].name,)
        admin_roles = {"GET": VIEWER, "PUT": DEVELOPER, "DELETE": DEVELOPER}
        agent_route = route(
            "/v1/agents/{name}", admin_roles, agents_api.agent, secured=True, role=admin_roles
        )
        prefixes.append((AGENT_ADMIN_PREFIX, replace(agent_route, includes=reached)))
    # END agent admin
    # BEGIN observability: the web console (/console)
    obs = observability if observability is not None else Observability()
    if obs.console:
        console = _console(
            obs, gateway, agents, authenticator, api.chat_completions, security, releases
        )
        exact, starts = console.routes()
        routes += [route(path, methods, handler, secured=False) for path, methods, handler in exact]
        prefixes[:0] = [
            (prefix, route(prefix + "…", methods, handler, secured=False))
            for prefix, methods, handler in starts
        ]
    # END observability
    # BEGIN workflows: the console's workflow runs pages (a run as a graph)
    if obs.console:
        wf_pages = WorkflowConsole(workflows=workflows, authenticate=authenticator.authenticate)
        wf_exact, wf_starts = wf_pages.routes()
        routes += [route(p, methods, handler, secured=False) for p, methods, handler in wf_exact]
        prefixes[:0] = [
            (p, route(p + "…", methods, handler, secured=False))
            for p, methods, handler in wf_starts
        ]
    # END workflows
    # each documented prefix route answers 405/404 by its sub-paths (server/subpaths.py)
    fragments = route_docs(DocContext())
    prefixes = [(p, _with_paths(r, fragments)) for p, r in prefixes]
    app = WayportApp(
        gateway=gateway,
        routes={r.name: r for r in routes},
        prefixes=prefixes,
        auth=authenticator,
        metrics=metrics,
        access_log=settings.access_log,
        agents=agents,
        on_shutdown=_shutdown(security, usage),
        channels=channels,
        series=obs.series,
        tracing=obs.tracing,
        workflows=workflows,
    )
    # the OpenAPI document of the routes mounted above (each area's fragment: server/openapi*.py)
    document = build_openapi(
        version=settings.version,
        models=gateway.models(),
        auth=auth.enabled,
        metrics=served_metrics is not None,
        metrics_auth=metrics_auth is not None,
        routes=[r for r, _ in app.route_table()],
    )
    ops.publish_openapi(encode(document))
    # network safety (forwarded headers, CORS) and the retention sweeper: docs/hardening.md
    return with_edges(
        app,
        trusted_proxies=settings.trusted_proxies,
        cors_origins=settings.cors_origins,
        privacy=privacy,
    )


# BEGIN observability: what the console and the request hooks are given
@dataclass(frozen=True, slots=True, kw_only=True)
class Observability:
    series: Timeseries | None = None  #: per-minute aggregates (charts, recent requests)
    tracing: Tracing | None = None  #: HTTP server spans and the recent traces
    console: bool = False  #: serve /console
    usage: Callable[[], Awaitable[object]] | None = None  #: the usage ledger, once open


def _console(
    obs: Observability,
    gateway: Gateway,
    agents: AgentService | None,
    authenticator: Authenticator,
    chat: Handler,
    security: Security | None,
    releases: ReleaseService | None,
) -> Console:
    async def audit() -> object:
        return security.audit if security is not None else None

    async def agent_names(tenant: str) -> list[str]:  # the tenant's own agents too
        return [a.name for a in await tenant_agents(agents, tenant)] if agents is not None else []

    api = ConsoleApi(
        gateway=gateway,
        series=obs.series if obs.series is not None else Timeseries(),
        traces=obs.tracing.recent if obs.tracing is not None else None,
        agents=agents,
        usage=obs.usage,
        audit=audit,
        releases=releases,
    )
    return Console(
        api=api,
        authenticate=authenticator.authenticate,
        chat=chat,
        models=gateway.models,
        agents=agent_names,
        auth_enabled=authenticator.enabled,
    )


# END observability
