"""The OpenAPI 3.1 document of every route, generated from the same msgspec structs that
validate requests and encode responses, so document and server cannot drift apart.

    doc = build_openapi(version="0.1.0", models=["chat"], auth=True, metrics=True,
                        metrics_auth=True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from wayport.server import responses as out
from wayport.server import wire

_REF = "#/components/schemas/{name}"
_ERROR_STATUSES = {
    "400": "The request is malformed or names an invalid field (``error.param``).",
    "401": "Missing or invalid API key.",
    "404": "Unknown model.",
    "413": "The body is larger than the server accepts.",
    "415": "The body is not declared as JSON.",
    "429": "Rate limited; see ``Retry-After``.",
    "500": "An unexpected server error.",
    "502": "The upstream model failed.",
    "503": "No deployment can serve the request now; see ``Retry-After``.",
    "504": "The upstream model timed out.",
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(name=ref)}}}


def _response(description: str, content: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "headers": {"x-request-id": {"$ref": "#/components/headers/RequestId"}},
    }
    if content is not None:
        response["content"] = content
    return response


def _errors(*statuses: str) -> dict[str, Any]:
    return {s: _response(_ERROR_STATUSES[s], _json("ErrorBody")) for s in statuses}


def _operation(
    summary: str,
    responses: dict[str, Any],
    *,
    secured: bool,
    body: tuple[str, dict[str, Any]] | None = None,
    parameters: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    op["security"] = [{"bearer": []}] if secured else []
    if body is not None:
        name, example = body
        op["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": _REF.format(name=name)},
                    "example": example,
                }
            },
        }
    if parameters:
        op["parameters"] = parameters
    return op


def build_openapi(
    *,
    version: str,
    models: Sequence[str],
    auth: bool,
    metrics: bool,
    metrics_auth: bool,
) -> dict[str, Any]:
    """``auth``: whether an API key is configured; ``metrics``: whether ``/metrics`` is served;
    ``metrics_auth``: whether it asks for the key."""
    _, schemas = msgspec.json.schema_components(
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
        ],
        ref_template=_REF,
    )
    schemas["EmbeddingsBody"]["properties"]["input"] = wire.EMBEDDINGS_INPUT_SCHEMA
    model = models[0] if models else "model"
    api_errors = ("400", "401", "404", "413", "415", "429", "500", "502", "503", "504")
    sse = {
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
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": _operation(
                "Create a chat completion (whole, or streamed with ``stream: true``)",
                {
                    "200": _response("The completion.", {**_json("ChatCompletion"), **sse}),
                    **_errors(*api_errors),
                },
                secured=auth,
                body=(
                    "ChatCompletionBody",
                    {"model": model, "messages": [{"role": "user", "content": "Hello"}]},
                ),
            )
        },
        "/v1/embeddings": {
            "post": _operation(
                "Create embeddings",
                {
                    "200": _response("The embeddings.", _json("EmbeddingList")),
                    **_errors(*api_errors),
                },
                secured=auth,
                body=("EmbeddingsBody", {"model": model, "input": "Hello"}),
            )
        },
        "/v1/models": {
            "get": _operation(
                "List the models served",
                {"200": _response("The models.", _json("ModelList")), **_errors("401", "500")},
                secured=auth,
            )
        },
        "/v1/models/{model}": {
            "get": _operation(
                "Describe one model",
                {
                    "200": _response("The model.", _json("ModelCard")),
                    **_errors("401", "404", "500"),
                },
                secured=auth,
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
        },
        "/healthz": {
            "get": _operation(
                "Liveness: the process answers",
                {"200": _response("Alive.", _json("Health"))},
                secured=False,
            )
        },
        "/readyz": {
            "get": _operation(
                "Readiness: every deployment and the state store can serve",
                {
                    "200": _response("Ready.", _json("ReadinessBody")),
                    "503": _response("Not ready; lists what is not.", _json("ReadinessBody")),
                },
                secured=False,
            )
        },
        "/openapi.json": {
            "get": _operation(
                "This document",
                {
                    "200": _response(
                        "OpenAPI 3.1.", {"application/json": {"schema": {"type": "object"}}}
                    )
                },
                secured=False,
            )
        },
    }
    if metrics:
        text = {"text/plain": {"schema": {"type": "string"}}}
        paths["/metrics"] = {
            "get": _operation(
                "Prometheus metrics",
                {"200": _response("Text exposition format 0.0.4.", text), **_errors("401")},
                secured=auth and metrics_auth,
            )
        }
    components: dict[str, Any] = {
        "schemas": schemas,
        "headers": {
            "RequestId": {
                "description": "The client's ``x-request-id`` when sane, else a generated one.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    }
    if auth:
        components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Wayport",
            "version": version,
            "description": "An OpenAI-compatible gateway: chat completions, embeddings, models.",
        },
        "paths": paths,
        "components": components,
    }
