"""The OpenAPI fragments of the OpenAI-compatible routes (chat completions, embeddings,
models) and of the operational ones (health, readiness, metrics, this document)."""

from __future__ import annotations

from typing import Any

import msgspec

from wayport.server import responses as out
from wayport.server import wire
from wayport.server.openapi_base import (
    REF,
    DocContext,
    RouteDoc,
    errors,
    json_content,
    operation,
    response,
)

API_ERRORS = ("400", "401", "403", "404", "413", "415", "429", "500", "502", "503", "504")
_SSE = {
    "text/event-stream": {
        # OpenAPI 3.1: ``schema`` describes one event of the stream.
        "schema": {
            "type": "object",
            "required": ["data"],
            "properties": {
                "event": {"type": "string"},
                "data": {
                    "type": "string",
                    "description": "A ChatCompletionChunk as JSON; then the text "
                    '``[DONE]``. A failure after the first event arrives as one ``{"error": '
                    "…}`` object (an ErrorBody) and ends the stream.",
                },
            },
        }
    }
}


def schemas() -> dict[str, Any]:
    """The wire structs of these routes (and the shared ``ErrorBody`` and ``UsageBody``)."""
    _, found = msgspec.json.schema_components(
        [
            wire.ChatCompletionBody,
            wire.EmbeddingsBody,
            out.ChatCompletion,
            out.ChatCompletionChunk,
            out.ModelList,
            out.ModelCard,
            out.EmbeddingList,
            out.ErrorBody,
            out.Health,
            out.ReadinessBody,
            out.UsageBody,
        ],
        ref_template=REF,
    )
    found["EmbeddingsBody"]["properties"]["input"] = wire.EMBEDDINGS_INPUT_SCHEMA
    return found


def docs(ctx: DocContext) -> dict[str, RouteDoc]:
    model = ctx.model
    found = {
        "/v1/chat/completions": RouteDoc(
            paths={
                "/v1/chat/completions": {
                    "post": operation(
                        "Create a chat completion (whole, or streamed with ``stream: true``)",
                        {
                            "200": response(
                                "The completion.", {**json_content("ChatCompletion"), **_SSE}
                            ),
                            **errors(*API_ERRORS),
                        },
                        body=(
                            "ChatCompletionBody",
                            {"model": model, "messages": [{"role": "user", "content": "Hello"}]},
                        ),
                        description="``model: agent/<name>`` runs an agent instead.",
                    )
                }
            }
        ),
        "/v1/embeddings": RouteDoc(
            paths={
                "/v1/embeddings": {
                    "post": operation(
                        "Create embeddings",
                        {
                            "200": response("The embeddings.", json_content("EmbeddingList")),
                            **errors(*API_ERRORS),
                        },
                        body=("EmbeddingsBody", {"model": model, "input": "Hello"}),
                    )
                }
            }
        ),
        "/v1/models": RouteDoc(
            paths={
                "/v1/models": {
                    "get": operation(
                        "List the models served",
                        {
                            "200": response("The models.", json_content("ModelList")),
                            **errors("401", "403", "500"),
                        },
                    )
                }
            }
        ),
        "/v1/models/{model}": RouteDoc(
            paths={
                "/v1/models/{model}": {
                    "get": operation(
                        "Describe one model",
                        {
                            "200": response("The model.", json_content("ModelCard")),
                            **errors("401", "403", "404", "500"),
                        },
                        parameters=[
                            {
                                "name": "model",
                                "in": "path",
                                "required": True,
                                "schema": {"type": "string"},
                                "example": model,
                            }
                        ],
                    )
                }
            }
        ),
        "/healthz": RouteDoc(
            paths={
                "/healthz": {
                    "get": operation(
                        "Liveness: the process answers",
                        {"200": response("Alive.", json_content("Health"))},
                    )
                }
            }
        ),
        "/readyz": RouteDoc(
            paths={
                "/readyz": {
                    "get": operation(
                        "Readiness: every deployment and the state store can serve",
                        {
                            "200": response("Ready.", json_content("ReadinessBody")),
                            "503": response(
                                "Not ready; lists what is not.", json_content("ReadinessBody")
                            ),
                        },
                    )
                }
            }
        ),
        "/openapi.json": RouteDoc(
            paths={
                "/openapi.json": {
                    "get": operation(
                        "This document",
                        {
                            "200": response(
                                "OpenAPI 3.1.",
                                {"application/json": {"schema": {"type": "object"}}},
                            )
                        },
                    )
                }
            }
        ),
    }
    if ctx.metrics:
        text = {"text/plain": {"schema": {"type": "string"}}}
        found["/metrics"] = RouteDoc(
            paths={
                "/metrics": {
                    "get": operation(
                        "Prometheus metrics",
                        {"200": response("Text exposition format 0.0.4.", text), **errors("401")},
                        description="Asks for the configured ``server.api_key`` (not an issued "
                        "key) unless ``server.metrics_require_auth`` is off.",
                        security=[{"bearer": []}] if ctx.metrics_auth else [],
                    )
                }
            }
        )
    return found
