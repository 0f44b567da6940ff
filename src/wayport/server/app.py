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
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send
from structlog.typing import FilteringBoundLogger

from wayport.core.errors import WayportError
from wayport.server.agents_api import RUNS_PREFIX, SESSIONS_PREFIX, AgentsApi
from wayport.server.auth import ApiKeyAuth
from wayport.server.errors import InternalError, MethodNotAllowed, RouteNotFound
from wayport.server.http import CLIENT_CLOSED, ClientGone, Exchange
from wayport.server.openai_api import MODELS_PREFIX, OpenAIApi
from wayport.server.openapi import build_openapi
from wayport.server.ops import OpsApi
from wayport.server.responses import encode
from wayport.server.responses_api import RESPONSES_PATH, RESPONSES_PREFIX, ResponsesApi
from wayport.server.settings import ServerSettings
from wayport.service.agents import AgentService
from wayport.service.gateway import Gateway
from wayport.service.responses import ResponsesService
from wayport.telemetry.metrics import Metrics

Handler = Callable[[Exchange], Awaitable[None]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    name: str  #: the path template: the ``route`` label of metrics and logs
    methods: frozenset[str]
    handler: Handler
    secured: bool  #: asks for the API key (when one is configured)

    @property
    def allow(self) -> bytes:
        return ", ".join(sorted(self.methods)).encode()


def route(name: str, methods: Iterable[str], handler: Handler, *, secured: bool) -> Route:
    return Route(name=name, methods=frozenset(methods), handler=handler, secured=secured)


class WayportApp:
    """Dispatches by exact path (one dict lookup), then by path prefix."""

    def __init__(
        self,
        *,
        gateway: Gateway,
        routes: Mapping[str, Route],
        prefixes: Iterable[tuple[str, Route]],
        auth: ApiKeyAuth,
        metrics: Metrics | None,
        access_log: bool,
        agents: AgentService | None = None,
    ) -> None:
        self._gateway = gateway
        self._agents = agents
        self._routes = dict(routes)
        self._prefixes = tuple(prefixes)
        self._auth = auth
        self._metrics = metrics
        self._access_log = access_log
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
        try:
            await self._dispatch(ex)
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
                )
            structlog.contextvars.reset_contextvars(**tokens)

    async def _dispatch(self, ex: Exchange) -> None:
        found = self._match(ex.path)
        if found is None:
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        ex.route = found.name
        if ex.method not in found.methods:
            raise MethodNotAllowed(
                f"Method {ex.method} is not allowed on {found.name}", allow=found.allow
            )
        if found.secured:
            self._auth.check(ex.authorization)
        await found.handler(ex)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._gateway.start()
                    if self._agents is not None:
                        await self._agents.start()  # resumes unfinished runs
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    self._log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self._agents is not None:
                        await self._agents.close()  # drains running agent runs first
                    await self._gateway.close()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which exits
                    self._log.exception("shutdown failed")
                    await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(
    *,
    gateway: Gateway,
    settings: ServerSettings,
    metrics: Metrics | None = None,
    agents: AgentService | None = None,
) -> ASGIApp:
    """The whole HTTP surface of the gateway as one ASGI app (lifespan included); with
    ``agents``, the agent routes too (and the app's lifespan starts and drains them)."""
    auth = ApiKeyAuth(settings.api_key)
    served_metrics = metrics if settings.metrics_enabled else None
    metrics_auth = auth if settings.metrics_require_auth and auth.enabled else None
    document = build_openapi(
        version=settings.version,
        models=gateway.models(),
        auth=auth.enabled,
        metrics=served_metrics is not None,
        metrics_auth=metrics_auth is not None,
    )
    agents_api = (
        AgentsApi(agents, max_body_bytes=settings.max_body_bytes) if agents is not None else None
    )
    api = OpenAIApi(
        gateway,
        max_body_bytes=settings.max_body_bytes,
        agent_chat=agents_api.chat_completion if agents_api is not None else None,
    )
    ops = OpsApi(
        gateway,
        version=settings.version,
        metrics=served_metrics,
        metrics_auth=metrics_auth,
        openapi=encode(document),
    )
    routes = [
        route("/v1/chat/completions", ["POST"], api.chat_completions, secured=True),
        route("/v1/embeddings", ["POST"], api.embeddings, secured=True),
        route("/v1/models", ["GET"], api.list_models, secured=True),
        route("/healthz", ["GET"], ops.healthz, secured=False),
        route("/readyz", ["GET"], ops.readyz, secured=False),
        route("/metrics", ["GET"], ops.metrics, secured=False),
        route("/openapi.json", ["GET"], ops.openapi, secured=False),
    ]
    prefixes = [(MODELS_PREFIX, route("/v1/models/{model}", ["GET"], api.get_model, secured=True))]
    responses = ResponsesApi(
        ResponsesService(gateway=gateway, agents=agents), max_body_bytes=settings.max_body_bytes
    )
    routes.append(route(RESPONSES_PATH, ["POST"], responses.create, secured=True))
    prefixes.append(
        (RESPONSES_PREFIX, route("/v1/responses/{id}", ["GET"], responses.get, secured=True))
    )
    if agents_api is not None:
        routes += [
            route("/v1/agents", ["GET"], agents_api.list_agents, secured=True),
            route("/v1/sessions", ["POST"], agents_api.create_session, secured=True),
        ]
        session_methods = ["GET", "POST", "DELETE"]
        prefixes += [
            (
                SESSIONS_PREFIX,
                route("/v1/sessions/{id}", session_methods, agents_api.sessions, secured=True),
            ),
            (RUNS_PREFIX, route("/v1/runs/{id}", ["GET", "POST"], agents_api.runs, secured=True)),
        ]
    return WayportApp(
        gateway=gateway,
        routes={r.name: r for r in routes},
        prefixes=prefixes,
        auth=auth,
        metrics=metrics,
        access_log=settings.access_log,
        agents=agents,
    )
