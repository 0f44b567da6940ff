"""The OpenAPI fragments of the agent routes (agents, sessions, runs, approvals) and of the
Responses API. Request bodies come from the msgspec structs the handlers validate with; the
response shapes are written out here and checked against the live server by the schemathesis
suite."""

from __future__ import annotations

from typing import Any

import msgspec

from wayport.core.session import RunStatus
from wayport.server import agents_api, responses_wire
from wayport.server.openapi_base import (
    REF,
    DocContext,
    RouteDoc,
    errors,
    header_param,
    json_content,
    operation,
    response,
)

_REF = REF

_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_INT = {"type": "integer"}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "Agent": {
        "type": "object",
        "required": ["id", "object", "model", "version", "tools", "queue_mode", "scope"],
        "properties": {
            "id": _STRING,
            "object": {"const": "agent"},
            "description": _STRING,
            "model": _STRING,
            "version": _STRING,
            "tools": {"type": "array", "items": _STRING},
            "queue_mode": {"enum": ["enqueue", "reject", "interrupt"]},
            "scope": {"enum": ["session", "stateless"]},
        },
    },
    "AgentDefinition": {
        "type": "object",
        "required": ["id", "object", "model", "version"],
        "properties": {
            "id": _STRING,
            "object": {"const": "agent"},
            "source": {"enum": ["config", "api"]},
            "version": _STRING,
            "model": _STRING,
            "instructions": {"type": ["string", "null"]},
            "tools": {"type": "array", "items": _STRING},
        },
    },
    "AgentList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": _REF.format(name="Agent")}},
        },
    },
    "Session": {
        "type": "object",
        "required": ["id", "object", "agent", "metadata", "message_count", "created_at"],
        "properties": {
            "id": _STRING,
            "object": {"const": "session"},
            "agent": _STRING,
            "agent_version": _STRING,
            "metadata": {"type": "object"},
            "message_count": _INT,
            "created_at": _NUMBER,
            "updated_at": _NUMBER,
            "messages": {
                "type": "array",
                "description": "A page of the history (GET only), oldest first.",
                "items": {
                    "type": "object",
                    "required": ["seq", "role"],
                    "properties": {"seq": _INT, "role": _STRING, "run_id": _STRING},
                },
            },
            "has_more": {"type": "boolean"},
        },
    },
    "SessionDeleted": {
        "type": "object",
        "required": ["id", "object", "deleted"],
        "properties": {"id": _STRING, "object": {"const": "session"}, "deleted": {"const": True}},
    },
    "Run": {
        "type": "object",
        "required": ["id", "object", "session_id", "status", "created_at", "updated_at"],
        "properties": {
            "id": _STRING,
            "object": {"const": "run"},
            "session_id": _STRING,
            "status": {"enum": [s.value for s in RunStatus]},
            "output": {
                "description": 'completed: {"content": …}; requires_approval: '
                '{"pending_approval": [tool calls]}',
            },
            "error": {"type": ["string", "null"]},
            "agent_version": _STRING,
            "attempt": _INT,
            "created_at": _NUMBER,
            "updated_at": _NUMBER,
            "usage": {"$ref": _REF.format(name="UsageBody")},
        },
    },
}

_AGENT_ERRORS = ("400", "401", "403", "404", "409", "413", "415", "429", "500", "502", "503")
_READ = ("401", "403", "404", "500")


def schemas() -> dict[str, Any]:
    _, found = msgspec.json.schema_components(
        [
            agents_api.SessionBody,
            agents_api.RunBody,
            agents_api.ApproveBody,
            responses_wire.ResponsesBody,
            responses_wire.ResponseObject,
        ],
        ref_template=REF,
    )
    found.update(RESPONSE_SCHEMAS)
    _fix_schemas(found)
    return found


def _fix_schemas(schemas: dict[str, Any]) -> None:
    """Where msgspec's generated schema is stricter than what the handlers accept."""
    # ``tools[]`` items decode without their tag; an ``input`` item without ``type`` is a
    # message (the shorthand OpenAI accepts), so the tag is optional there too
    for name in ("FunctionTool", "MessageItem"):
        found = schemas.get(name)
        if found is not None:
            found["required"] = [r for r in found.get("required", ()) if r != "type"]
    items = schemas["ResponsesBody"]["properties"]["input"]["anyOf"][1]["items"]
    items.pop("discriminator", None)  # a message may leave the discriminating tag out


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string", "minLength": 1, "pattern": "^[A-Za-z0-9_-]+$"},
    }


_SSE = {"text/event-stream": {"schema": {"type": "object", "properties": {"data": _STRING}}}}


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    """The Responses API (always mounted) and the agent routes (mounted with agents)."""
    return {
        "/v1/responses": RouteDoc(
            paths={
                "/v1/responses": {
                    "post": operation(
                        "Create a response (OpenAI Responses API; streamed with ``stream: true``)",
                        {
                            "200": response(
                                "The response.", {**json_content("ResponseObject"), **_SSE}
                            ),
                            **errors(*_AGENT_ERRORS, "504"),
                        },
                        body=("ResponsesBody", {"model": ctx.model, "input": "Hello"}),
                    )
                }
            }
        ),
        "/v1/responses/{id}": RouteDoc(
            paths={
                "/v1/responses/{id}": {
                    "get": operation(
                        "Retrieve a stored response",
                        {
                            "200": response("The response.", json_content("ResponseObject")),
                            **errors(*_READ),
                        },
                        parameters=[_path_param("id", "The response id.")],
                    )
                }
            }
        ),
        "/v1/agents": RouteDoc(
            paths={
                "/v1/agents": {
                    "get": operation(
                        "List the agents",
                        {
                            "200": response("The agents.", json_content("AgentList")),
                            **errors("401", "403", "500"),
                        },
                    )
                }
            }
        ),
        "/v1/sessions": RouteDoc(
            paths={
                "/v1/sessions": {
                    "post": operation(
                        "Create a session with an agent",
                        {
                            "201": response("The session.", json_content("Session")),
                            **errors(*_AGENT_ERRORS),
                        },
                        body=("SessionBody", {"agent": "assistant"}),
                    )
                }
            }
        ),
        # releases: ``/v1/agents/{name}/versions…`` and ``/v1/runs/{id}/feedback`` are reached
        # through these routes when mounted (``Route.includes``; ``openapi_releases``)
        "/v1/agents/{name}": RouteDoc(paths={"/v1/agents/{name}": _agent_admin()}),
        "/v1/sessions/{id}": RouteDoc(paths=_session_paths()),
        "/v1/runs/{id}": RouteDoc(paths=_run_paths()),
    }


def _session_paths() -> dict[str, Any]:
    session = [_path_param("id", "The session id.")]
    return {
        "/v1/sessions/{id}": {
            "get": operation(
                "A session and a page of its history (``after``, ``limit``)",
                {
                    "200": response("The session.", json_content("Session")),
                    **errors("400", *_READ),
                },
                parameters=[
                    *session,
                    {
                        "name": "after",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": 2**62},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
            ),
            "delete": operation(
                "Delete a session, its history and its runs",
                {
                    "200": response("Deleted.", json_content("SessionDeleted")),
                    **errors(*_READ),
                },
                parameters=session,
            ),
        },
        "/v1/sessions/{id}/runs": {
            "post": operation(
                "Start a run: ``mode`` wait (200 when finished), background (202), stream "
                "(SSE); optional signed completion ``webhook``; ``Idempotency-Key`` header",
                {
                    "200": response(
                        "The finished (or paused) run.", {**json_content("Run"), **_SSE}
                    ),
                    "202": response("The queued run (background).", json_content("Run")),
                    **errors(*_AGENT_ERRORS),
                },
                body=("RunBody", {"input": "Hello", "mode": "background"}),
                parameters=[
                    *session,
                    header_param("Idempotency-Key", "A retried request returns the first run."),
                ],
            ),
        },
    }


def _run_paths() -> dict[str, Any]:
    run = [_path_param("id", "The run id.")]
    return {
        "/v1/runs/{id}": {
            "get": operation(
                "A run",
                {"200": response("The run.", json_content("Run")), **errors(*_READ)},
                parameters=run,
            )
        },
        "/v1/runs/{id}/stream": {
            "get": operation(
                "The run's events (SSE); a finished run sends its last one",
                {"200": response("Events.", _SSE), **errors(*_READ)},
                parameters=run,
            )
        },
        "/v1/runs/{id}/cancel": {
            "post": operation(
                "Cancel a run (at its next safe point)",
                {"200": response("The run.", json_content("Run")), **errors(*_READ)},
                parameters=run,
            )
        },
        "/v1/runs/{id}/approve": {
            "post": operation(
                "Approve or deny the tool calls a ``requires_approval`` run waits on",
                {
                    "200": response("The run, queued again.", json_content("Run")),
                    **errors("400", "401", "403", "404", "409", "413", "415", "500"),
                },
                body=("ApproveBody", {"approve": True, "reason": "checked"}),
                parameters=run,
            )
        },
    }


def _agent_admin() -> dict[str, Any]:
    name = [_path_param("name", "The agent's name.")]
    agent = {"200": response("The agent's definition.", json_content("AgentDefinition"))}
    return {
        "get": operation(
            "An agent's definition (from wayport.yaml, or put over the API)",
            {**agent, **errors(*_READ)},
            parameters=name,
        ),
        "put": operation(
            "Define or replace an agent of the tenant",
            {
                **agent,
                "201": response("Created.", json_content("AgentDefinition")),
                **errors(*_AGENT_ERRORS, "405"),
            },
            request_body={
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"type": "object"},
                        "example": {"model": "chat", "instructions": "Be brief."},
                    }
                },
            },
            parameters=name,
            description="The body: the agent's fields as in ``wayport.yaml``.",
        ),
        "delete": operation(
            "Delete an agent defined over the API",
            {
                "200": response(
                    "Deleted.",
                    {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["id", "object", "deleted"],
                                "properties": {
                                    "id": _STRING,
                                    "object": {"const": "agent"},
                                    "deleted": {"const": True},
                                },
                            }
                        }
                    },
                ),
                **errors(*_READ, "405", "409"),
            },
            parameters=name,
        ),
    }
