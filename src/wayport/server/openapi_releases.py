"""The OpenAPI fragments of the release routes: agent versions and their diff, rollouts and
the commands a human gives, and feedback on runs. Request bodies come from the msgspec structs
``wayport.server.releases_api`` validates with."""

from __future__ import annotations

from typing import Any

import msgspec

from wayport.core.release import Command
from wayport.server import releases_api
from wayport.server.openapi_base import (
    READ_ERRORS,
    REF,
    WRITE_ERRORS,
    DocContext,
    RouteDoc,
    errors,
    json_content,
    operation,
    path_param,
    response,
)

_STRING = {"type": "string"}
_OBJECT: dict[str, Any] = {"type": "object"}

RESPONSE_SCHEMAS: dict[str, Any] = {
    "Release": {
        "type": "object",
        "required": ["object", "revision", "agent", "phase"],
        "properties": {
            "object": {"const": "release"},
            "revision": {"type": "integer"},
            "agent": _STRING,
            "phase": _STRING,
            "stable": _STRING,
            "candidate": {"type": ["string", "null"]},
            "weight": {"type": "number"},
        },
    },
    "ReleaseList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {"type": "array", "items": {"$ref": REF.format(name="Release")}},
        },
    },
    "ReleaseStatus": {
        "type": "object",
        "required": ["agent", "revision", "state", "strategy", "checks", "comparison", "events"],
        "properties": {
            "agent": _STRING,
            "revision": {"type": "integer"},
            "state": _OBJECT,
            "strategy": _OBJECT,
            "checks": {"type": "array", "items": _OBJECT},
            "comparison": _OBJECT,
            "events": {"type": "array", "items": _OBJECT},
        },
    },
    "AgentVersions": {
        "type": "object",
        "required": ["object", "agent", "data"],
        "properties": {
            "object": {"const": "list"},
            "agent": _STRING,
            "data": {"type": "array", "items": _OBJECT},
        },
    },
    "AgentVersion": {
        "type": "object",
        "required": ["object", "version", "spec"],
        "properties": {"object": {"const": "agent.version"}, "version": _STRING, "spec": _OBJECT},
    },
    "AgentVersionDiff": {
        "type": "object",
        "required": ["a", "b", "changes"],
        "properties": {"a": _STRING, "b": _STRING, "changes": _OBJECT},
    },
    "Feedback": {
        "type": "object",
        "required": ["object", "run_id", "version", "score"],
        "properties": {
            "object": {"const": "feedback"},
            "run_id": _STRING,
            "version": _STRING,
            "score": {"type": "integer"},
        },
    },
}


def schemas() -> dict[str, Any]:
    _, found = msgspec.json.schema_components(
        [releases_api.ReleaseBody, releases_api.FeedbackBody, releases_api.RunFeedbackBody],
        ref_template=REF,
    )
    found.update(RESPONSE_SCHEMAS)
    return found


_AGENT = path_param("agent", "The agent's name.")
_NAME = path_param("name", "The agent's name.")
RUN_FEEDBACK = "/v1/runs/{id}/feedback"  #: the route name the app includes in the runs route


def _version(name: str) -> dict[str, Any]:
    return path_param(name, "A version of the agent (a content hash).")


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    ok = response
    return {
        releases_api.RELEASES_PATH: RouteDoc(
            paths={
                "/v1/releases": {
                    "get": operation(
                        "Every rollout",
                        {
                            "200": ok("The rollouts.", json_content("ReleaseList")),
                            **errors(*READ_ERRORS),
                        },
                    ),
                    "post": operation(
                        "Begin a rollout of a candidate version",
                        {
                            "201": ok("The rollout.", json_content("Release")),
                            **errors(*WRITE_ERRORS),
                        },
                        body=(
                            "ReleaseBody",
                            {"agent": "support", "spec": {"instructions": "Be brief."}},
                        ),
                    ),
                }
            }
        ),
        releases_api.FEEDBACK_PATH: RouteDoc(
            paths={
                "/v1/feedback": {
                    "post": operation(
                        "Thumbs up or down on a run, counted for the version that answered",
                        {"200": ok("Recorded.", json_content("Feedback")), **errors(*WRITE_ERRORS)},
                        body=("FeedbackBody", {"run_id": "run-1", "score": 1}),
                    )
                }
            }
        ),
        # reached through the ``/v1/runs/{id}`` route (``Route.includes``)
        RUN_FEEDBACK: RouteDoc(
            paths={
                RUN_FEEDBACK: {
                    "post": operation(
                        "Thumbs up or down on this run, counted for the version that answered",
                        {"200": ok("Recorded.", json_content("Feedback")), **errors(*WRITE_ERRORS)},
                        body=("RunFeedbackBody", {"score": 1, "comment": "helpful"}),
                        parameters=[path_param("id", "The run id.")],
                    )
                }
            }
        ),
        "/v1/releases/{agent}": RouteDoc(
            paths={
                "/v1/releases/{agent}": {
                    "get": operation(
                        "A rollout's status: state, checks and both versions' signals",
                        {
                            "200": ok("The status.", json_content("ReleaseStatus")),
                            **errors(*READ_ERRORS),
                        },
                        parameters=[_AGENT],
                    )
                },
                "/v1/releases/{agent}/{command}": {
                    "post": operation(
                        "Promote, promote fully, abort or roll back a rollout",
                        {
                            "200": ok("The rollout.", json_content("Release")),
                            **errors(*WRITE_ERRORS),
                        },
                        parameters=[
                            _AGENT,
                            {
                                "name": "command",
                                "in": "path",
                                "required": True,
                                "schema": {"enum": sorted(c.value for c in Command)},
                            },
                        ],
                    )
                },
            }
        ),
        "/v1/agents/{name}/versions": RouteDoc(
            paths={
                "/v1/agents/{name}/versions": {
                    "get": operation(
                        "The stored versions of an agent",
                        {
                            "200": ok("The versions.", json_content("AgentVersions")),
                            **errors(*READ_ERRORS),
                        },
                        parameters=[_NAME],
                    )
                },
                "/v1/agents/{name}/versions/{version}": {
                    "get": operation(
                        "One version's definition",
                        {
                            "200": ok("The version.", json_content("AgentVersion")),
                            **errors(*READ_ERRORS),
                        },
                        parameters=[_NAME, _version("version")],
                    )
                },
                "/v1/agents/{name}/versions/{a}/diff/{b}": {
                    "get": operation(
                        "The fields that differ between two versions",
                        {
                            "200": ok("The changes.", json_content("AgentVersionDiff")),
                            **errors(*READ_ERRORS),
                        },
                        parameters=[_NAME, _version("a"), _version("b")],
                    )
                },
            }
        ),
    }
