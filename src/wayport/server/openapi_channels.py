"""The OpenAPI fragments of the channel routes (``channels_api``): platform webhooks, the web
chat page and its message and event routes, and approving a pairing."""

from __future__ import annotations

from typing import Any

from wayport.core.identity import Role
from wayport.server.openapi_base import (
    NUMBER,
    STRING,
    WRITE_ERRORS,
    DocContext,
    RouteDoc,
    errors,
    json_content,
    obj,
    operation,
    path_param,
    query_param,
    response,
)

_NAME = path_param("name", "The channel's name in ``wayport.yaml``.")
_USER = Role.USER.label

SCHEMAS: dict[str, Any] = {
    "WebChatMessage": obj(
        {
            "client": {
                "type": "string",
                "pattern": "^[A-Za-z0-9_-]{16,64}$",
                "description": "The page's own id: its replies come on ``events?client=``.",
            },
            "id": {"type": "string", "minLength": 1, "maxLength": 64},
            "text": {"type": "string", "minLength": 1},
        },
        ["client", "id", "text"],
    ),
    "Accepted": obj({"accepted": {"const": True}}, ["accepted"]),
    "PairingApproved": obj(
        {
            "object": {"const": "channel.pairing"},
            "channel": STRING,
            "sender": STRING,
            "approved_at": NUMBER,
        },
        ["object", "channel", "sender", "approved_at"],
    ),
}


def schemas() -> dict[str, Any]:
    return SCHEMAS


_PLATFORM_BODY = {
    "required": True,
    "description": "The platform's own payload (JSON or form-encoded, as the platform sends).",
    "content": {
        "application/json": {"schema": {"type": "object"}},
        "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
    },
}
_ANY_ANSWER = {
    "application/json": {"schema": {}},
    "text/plain": {"schema": STRING},
}


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    del ctx
    webchat_auth = (
        f"Needs an API key of the {_USER} role (scope ``channels``) unless the channel is "
        "configured ``public: true``."
    )
    return {
        "/channels/{name}/{path}": RouteDoc(
            paths={
                "/channels/{name}/webhook": {
                    "post": operation(
                        "A messaging platform's webhook (Telegram, Slack, Discord, …)",
                        {
                            "200": response(
                                "Accepted; the body is what the platform expects.", _ANY_ANSWER
                            ),
                            "202": response("Accepted.", _ANY_ANSWER),
                            **errors("400", "401", "403", "404", "405", "413", "429", "500"),
                        },
                        description="Unauthenticated by API key: the channel's adapter verifies "
                        "the platform's own signature or secret token (Telegram's secret "
                        "header, Slack's signing secret, Discord's Ed25519 signature, …) and a "
                        "replayed request is refused. The platform gets its 2xx only after the "
                        "request's messages are stored.",
                        request_body=_PLATFORM_BODY,
                        parameters=[_NAME],
                    )
                },
                "/channels/{name}/": {
                    "get": operation(
                        "The web chat page of a web chat channel",
                        {
                            "200": response("The page.", {"text/html": {"schema": STRING}}),
                            **errors("404", "405", "500"),
                        },
                        parameters=[_NAME],
                    )
                },
                "/channels/{name}/messages": {
                    "post": operation(
                        "Send a message from the web chat page",
                        {
                            "202": response(
                                "Stored; the reply comes as an event.", json_content("Accepted")
                            ),
                            **errors(*WRITE_ERRORS),
                        },
                        description=webchat_auth,
                        body=(
                            "WebChatMessage",
                            {"client": "c0ffee-page-0123456789", "id": "1", "text": "Hello"},
                        ),
                        parameters=[_NAME],
                        security=[{"bearer": []}, {}],
                        role=_USER,
                    )
                },
                "/channels/{name}/events": {
                    "get": operation(
                        "The web chat page's replies, as server-sent events",
                        {
                            "200": response(
                                'Events, one JSON object each, first ``{"type": "ready"}``.',
                                {
                                    "text/event-stream": {
                                        "schema": {"type": "object", "properties": {"data": STRING}}
                                    }
                                },
                            ),
                            **errors("400", "401", "403", "404", "405", "500"),
                        },
                        description=webchat_auth,
                        parameters=[
                            _NAME,
                            query_param(
                                "client",
                                {"type": "string", "pattern": "^[A-Za-z0-9_-]{16,64}$"},
                                "The page's id, as sent with its messages.",
                            ),
                        ],
                        security=[{"bearer": []}, {}],
                        role=_USER,
                    )
                },
            }
        ),
        "/v1/channels/{path}": RouteDoc(
            paths={
                "/v1/channels/{name}/pairings/{code}/approve": {
                    "post": operation(
                        "Let a sender in: approve the pairing code it was given",
                        {
                            "200": response(
                                "The approved pairing.", json_content("PairingApproved")
                            ),
                            **errors("400", "401", "403", "404", "409", "429", "500"),
                        },
                        parameters=[_NAME, path_param("code", "The pairing code.")],
                    )
                }
            }
        ),
    }
