"""Release routes, in the caller's tenant (viewer reads, deployer changes, user gives feedback):

    GET  /v1/agents/{name}/versions                    the stored versions of an agent
    GET  /v1/agents/{name}/versions/{v}                one version's definition
    GET  /v1/agents/{name}/versions/{a}/diff/{b}       {"changes": {field: [in a, in b]}}
    POST /v1/releases     {"agent", "candidate": version | "spec": {changes}, "strategy"?}
    GET  /v1/releases                                  every rollout
    GET  /v1/releases/{agent}                          status: state, checks, comparison, events
    POST /v1/releases/{agent}/promote|promote_full|abort|rollback
    POST /v1/feedback     {"run_id", "score": 1 | -1, "comment"?}
    POST /v1/runs/{id}/feedback   {"score": 1 | -1, "comment"?}   (mounted by the agents API)

``with_reconciler`` runs the release reconciler for the app's lifetime.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from msgspec import Struct
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wayport.core.errors import InvalidRequest
from wayport.core.release import Command
from wayport.core.release_codec import spec_with, state_to_dict, strategy_from_dict
from wayport.core.release_records import Rollout
from wayport.server.errors import MethodNotAllowed, RouteNotFound
from wayport.server.http import Exchange
from wayport.server.responses import encode
from wayport.server.wire import check, decode_object
from wayport.service.release_reconciler import Reconciler
from wayport.service.releases import ReleaseService

__all__ = [
    "AGENTS_PREFIX",
    "FEEDBACK_PATH",
    "RELEASES_PATH",
    "RELEASES_PREFIX",
    "ReleasesApi",
    "with_reconciler",
]

AGENTS_PREFIX = "/v1/agents/"
RELEASES_PATH = "/v1/releases"
RELEASES_PREFIX = "/v1/releases/"
FEEDBACK_PATH = "/v1/feedback"
COMMANDS = {c.value: c for c in Command}


class ReleaseBody(Struct, forbid_unknown_fields=True):
    agent: str
    candidate: str | None = None
    spec: dict[str, Any] | None = None
    strategy: dict[str, Any] | None = None


class FeedbackBody(Struct, forbid_unknown_fields=True):
    run_id: str
    score: int
    comment: str | None = None


class RunFeedbackBody(Struct, forbid_unknown_fields=True):
    score: int
    comment: str | None = None


def _rollout(rollout: Rollout) -> dict[str, Any]:
    return {"object": "release", "revision": rollout.revision, **state_to_dict(rollout.state)}


def _allow(ex: Exchange, method: str) -> None:
    if ex.method != method:
        raise MethodNotAllowed(f"Method {ex.method} is not allowed", allow=method.encode())


class ReleasesApi:
    def __init__(self, releases: ReleaseService, *, max_body_bytes: int = 1 << 20) -> None:
        self._releases = releases
        self._limit = max_body_bytes

    async def versions(self, ex: Exchange) -> None:
        """``/v1/agents/{name}/versions[/{v}[/diff/{b}]]``."""
        parts = ex.path[len(AGENTS_PREFIX) :].split("/")
        if len(parts) < 2 or parts[1] != "versions" or len(parts) not in (2, 3, 5):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        if len(parts) == 5 and parts[3] != "diff":
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        _allow(ex, "GET")
        tenant, agent = ex.principal.tenant, parts[0]
        releases = self._releases
        if len(parts) == 2:
            found = await releases.versions(tenant, agent)
            data = [{"version": v.version, "created_at": v.created_at} for v in found]
            await ex.respond(200, encode({"object": "list", "agent": agent, "data": data}))
        elif len(parts) == 3:
            spec = await releases.version(tenant, agent, parts[2])
            body = {"object": "agent.version", "version": parts[2], "spec": asdict(spec)}
            await ex.respond(200, encode(body))
        else:
            changes = await releases.diff(tenant, agent, parts[2], parts[4])
            await ex.respond(200, encode({"a": parts[2], "b": parts[4], "changes": changes}))

    async def collection(self, ex: Exchange) -> None:
        """``GET /v1/releases`` lists, ``POST`` begins a rollout."""
        tenant = ex.principal.tenant
        if ex.method == "GET":
            found = await self._releases.rollouts(tenant)
            await ex.respond(200, encode({"object": "list", "data": [_rollout(r) for r in found]}))
            return
        _allow(ex, "POST")
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), ReleaseBody)
        releases = self._releases
        try:
            spec = None
            if body.spec is not None:
                spec = spec_with(releases.agents.catalog.get(body.agent), body.spec)
            strategy = None if body.strategy is None else strategy_from_dict(body.strategy)
        except ValueError as exc:
            raise InvalidRequest(str(exc), code="invalid_value") from exc
        made = await releases.create(
            tenant, body.agent, candidate=body.candidate, spec=spec, strategy=strategy
        )
        await ex.respond(201, encode(_rollout(made)))

    async def release(self, ex: Exchange) -> None:
        """``GET /v1/releases/{agent}`` and ``POST /v1/releases/{agent}/{command}``."""
        agent, _, command = ex.path[len(RELEASES_PREFIX) :].partition("/")
        if not agent or (command and command not in COMMANDS):
            raise RouteNotFound(f"No route {ex.method} {ex.path}")
        tenant = ex.principal.tenant
        if not command:
            _allow(ex, "GET")
            await ex.respond(200, encode(await self._releases.status(tenant, agent)))
            return
        _allow(ex, "POST")
        done = await self._releases.command(tenant, agent, COMMANDS[command])
        await ex.respond(200, encode(_rollout(done)))

    async def feedback(self, ex: Exchange) -> None:
        _allow(ex, "POST")
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), FeedbackBody)
        await self._feedback(ex, body.run_id, body.score, body.comment)

    async def run_feedback(self, ex: Exchange, run_id: str) -> None:
        """``POST /v1/runs/{id}/feedback``."""
        _allow(ex, "POST")
        ex.require_json()
        body = check(decode_object(await ex.read_body(self._limit)), RunFeedbackBody)
        await self._feedback(ex, run_id, body.score, body.comment)

    async def _feedback(self, ex: Exchange, run_id: str, score: int, comment: str | None) -> None:
        made = await self._releases.feedback(
            ex.principal.tenant, run_id, score=score, comment=comment
        )
        answer = {"object": "feedback", "run_id": made.run_id, "version": made.version}
        await ex.respond(200, encode({**answer, "score": made.score}))


def with_reconciler(app: ASGIApp, reconciler: Reconciler) -> ASGIApp:
    """``app`` whose lifespan also runs ``reconciler`` (started once the app's own startup,
    which opens the stores, completed; stopped before it shuts down)."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def receiving() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await reconciler.close()
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await reconciler.start()
            await send(message)

        await app(scope, receiving, sending)

    return wrapped
