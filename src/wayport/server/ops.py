"""Operational routes: liveness, readiness, Prometheus metrics and the OpenAPI document.

``/healthz`` and ``/readyz`` never ask for a key (probes carry none) and say nothing a stranger
could use: deployment names and whether the state store answers, no URLs, no errors.
"""

from __future__ import annotations

from wayport.server.auth import ApiKeyAuth
from wayport.server.errors import RouteNotFound
from wayport.server.http import Exchange
from wayport.server.responses import Health, ReadinessBody, encode
from wayport.service.gateway import Gateway
from wayport.telemetry.metrics import Metrics


class OpsApi:
    def __init__(
        self,
        gateway: Gateway,
        *,
        version: str,
        metrics: Metrics | None,
        metrics_auth: ApiKeyAuth | None,
        openapi: bytes = b"{}",
    ) -> None:
        """``metrics=None``: ``/metrics`` answers 404. ``metrics_auth=None``: no key asked."""
        self._gateway = gateway
        self._metrics = metrics
        self._metrics_auth = metrics_auth
        self._health = encode(Health(version=version))
        self._openapi = openapi

    async def healthz(self, ex: Exchange) -> None:
        await ex.respond(200, self._health)

    async def readyz(self, ex: Exchange) -> None:
        state = self._gateway.readiness()
        body = ReadinessBody(
            status="ready" if state.ready else "not_ready",
            not_ready=list(state.not_ready),
            state_ok=state.state_ok,
        )
        await ex.respond(200 if state.ready else 503, encode(body))

    async def metrics(self, ex: Exchange) -> None:
        if self._metrics is None:
            raise RouteNotFound("Metrics are disabled")
        if self._metrics_auth is not None:
            self._metrics_auth.check(ex.authorization)
        body, content_type = self._metrics.render()
        await ex.respond(200, body, content_type=content_type.encode())

    def publish_openapi(self, document: bytes) -> None:
        """Serve ``document``: set once the app's routes are mounted (it describes them)."""
        self._openapi = document

    async def openapi(self, ex: Exchange) -> None:
        await ex.respond(200, self._openapi)
