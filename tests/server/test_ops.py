"""Liveness, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from wayport.core.identity import Role
from wayport.server.openapi import UNDOCUMENTED, route_docs, served_paths, undocumented
from wayport.server.openapi_base import DocContext
from wayport.server.settings import ServerSettings
from wayport.testing import ScriptedBackend

from .everything import VERSION, build_everything
from .helpers import AUTH, KEY, asgi_client, build_stack, chat

pytestmark = pytest.mark.anyio


async def test_healthz_needs_no_key_and_no_start() -> None:
    async with asgi_client(build_stack().app) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": "9.9.9"}


async def test_readyz_before_and_after_start() -> None:
    stack = build_stack({"chat": ScriptedBackend("c1"), "small": ScriptedBackend("c2")})
    async with asgi_client(stack.app) as client:
        before = await client.get("/readyz")
        await stack.gateway.start()
        after = await client.get("/readyz")
        await stack.gateway.close()
    assert before.status_code == 503
    assert before.json() == {
        "status": "not_ready",
        "not_ready": ["chat", "small"],
        "state_ok": True,
    }
    assert after.status_code == 200
    assert after.json() == {"status": "ready", "not_ready": [], "state_ok": True}


async def test_readyz_names_the_deployment_that_is_not_ready() -> None:
    stack = build_stack({"chat": ScriptedBackend("c1"), "small": ScriptedBackend("c2")})
    await stack.gateway.start()
    await stack.scripted("small").close()
    async with asgi_client(stack.app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["not_ready"] == ["small"]
    await stack.gateway.close()


async def test_readyz_follows_the_state_store() -> None:
    healthy = [True]
    stack = build_stack(state_ok=lambda: healthy[0])
    await stack.gateway.start()
    async with asgi_client(stack.app) as client:
        ok = await client.get("/readyz")
        healthy[0] = False
        broken = await client.get("/readyz")
    await stack.gateway.close()
    assert ok.status_code == 200
    assert broken.status_code == 503
    assert broken.json() == {"status": "not_ready", "not_ready": [], "state_ok": False}
    assert KEY not in broken.text


async def test_metrics_require_the_key() -> None:
    stack = build_stack()
    await stack.gateway.start()
    async with asgi_client(stack.app) as client:
        await client.post("/v1/chat/completions", json=chat(), headers=AUTH)
        await client.post("/v1/chat/completions", json=chat("nope"), headers=AUTH)
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer no"})
        allowed = await client.get("/metrics", headers=AUTH)
    await stack.gateway.close()
    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain")
    text = allowed.text
    assert (
        'wayport_http_requests_total{model="chat",route="/v1/chat/completions",status="200"} 1.0'
        in text
    )
    # An unknown model never becomes a label value: labels stay bounded.
    assert (
        'wayport_http_requests_total{model="",route="/v1/chat/completions",status="404"} 1.0'
        in text
    )
    assert 'model="nope"' not in text
    assert 'wayport_http_requests_total{model="",route="/metrics",status="401"} 2.0' in text
    assert 'wayport_model_attempts_total{deployment="chat",model="chat",outcome="ok"} 1.0' in text
    assert "wayport_http_request_duration_seconds_bucket" in text


async def test_metrics_without_auth_when_configured() -> None:
    settings = ServerSettings(
        api_key=KEY, metrics_require_auth=False, access_log=False, version="1"
    )
    async with asgi_client(build_stack(settings=settings).app) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert "wayport_http_requests_in_flight" in response.text


@pytest.mark.parametrize("enabled", [False, True])
async def test_metrics_404_when_disabled_or_absent(enabled: bool) -> None:
    settings = ServerSettings(api_key=KEY, metrics_enabled=enabled, access_log=False, version="1")
    # Disabled in the settings, or enabled but given no Metrics to serve.
    stack = build_stack(settings=settings, with_metrics=not enabled)
    async with asgi_client(stack.app) as client:
        response = await client.get("/metrics", headers=AUTH)
    assert response.status_code == 404


EXPECTED_OPERATIONS = {
    ("/v1/chat/completions", "post"),
    ("/v1/embeddings", "post"),
    ("/v1/models", "get"),
    ("/v1/models/{model}", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
    ("/openapi.json", "get"),
    ("/v1/responses", "post"),  # the Responses API is served on plain models too
    ("/v1/responses/{id}", "get"),
}


def refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(refs(v) for v in node)) if node else set()
    return set()


async def test_openapi_describes_every_route() -> None:
    async with asgi_client(build_stack().app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    assert doc["info"]["version"] == "9.9.9"
    operations = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert operations == EXPECTED_OPERATIONS
    for path, method in operations:
        op = doc["paths"][path][method]
        assert "200" in op["responses"]
        for response_doc in op["responses"].values():
            assert "x-request-id" in response_doc["headers"]
    chat_op = doc["paths"]["/v1/chat/completions"]["post"]
    assert chat_op["security"] == [{"bearer": []}]
    assert set(chat_op["responses"]) >= {"200", "400", "401", "404", "413", "415", "429", "503"}
    assert set(chat_op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        prefix, _, name = ref.rpartition("/")
        if prefix == "#/components/schemas":
            assert name in schemas, ref
        else:
            assert ref == "#/components/headers/RequestId"
    body = schemas["ChatCompletionBody"]
    assert body["required"] == ["model", "messages"]
    assert body["properties"]["n"]["anyOf"][0]["maximum"] == 1


async def test_openapi_without_key_or_metrics() -> None:
    settings = ServerSettings(api_key=None, metrics_enabled=False, access_log=False, version="1")
    async with asgi_client(build_stack(settings=settings).app) as client:
        doc = (await client.get("/openapi.json")).json()
    assert "/metrics" not in doc["paths"]
    assert "securitySchemes" not in doc["components"]
    assert doc["paths"]["/v1/models"]["get"]["security"] == []


async def fetch_document(app: Any) -> dict[str, Any]:
    async with asgi_client(app) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


async def test_openapi_describes_every_mounted_route_of_the_full_server(tmp_path: Path) -> None:
    """Every route of the real route table (all features on) is in the document with each of
    its methods, except those left out on purpose; nothing else is."""
    everything = build_everything(tmp_path)
    doc = await fetch_document(everything.mounted)
    served = await fetch_document(everything.app)  # what ``wayport serve`` answers
    assert served["paths"] == doc["paths"]
    fragments = route_docs(DocContext())
    expected: set[tuple[str, str]] = set()
    left_out: set[str] = set()
    for route, prefix in everything.mounted.route_table():
        if undocumented(route.name):
            assert route.name not in fragments, route.name
            left_out.add(route.name)
            continue
        assert route.name in fragments, f"{route.name}: no OpenAPI fragment describes it"
        assert all(inner in fragments for inner in route.includes), route.name
        served = served_paths(route, fragments)
        assert served is not None
        documented = {m.upper() for item in served.values() for m in item}
        # every method mounted is an operation of some sub-path: none only for a 405
        assert documented == set(route.methods), route.name
        assert prefix is None or route.paths is not None, route.name
        for path, item in served.items():
            for method in item:
                expected.add((path, method))
                op = doc["paths"][path][method]
                if route.secured:
                    need = route.roles[method.upper()]
                    assert op["x-wayport-role"] == need.label, (path, method)
                    assert op["security"] == [{"bearer": []}], (path, method)
                    assert f"``{need.label}``" in op["description"]
                elif path != "/metrics" and not path.startswith("/channels/{name}/"):
                    assert op["security"] == [], (path, method)
    operations = {(p, m) for p, item in doc["paths"].items() for m in item}
    assert operations == expected
    # every exclusion is used, and only the console is left out
    assert {p for p in UNDOCUMENTED if any(undocumented(n) for n in left_out)} == set(UNDOCUMENTED)
    assert left_out and all(n.startswith("/console") for n in left_out)
    assert len(operations) >= 45


async def test_full_document_is_consistent(tmp_path: Path) -> None:
    doc = await fetch_document(build_everything(tmp_path).mounted)
    assert doc["info"]["version"] == VERSION
    schemas = doc["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)
    for ref in refs(doc):
        prefix, _, name = ref.rpartition("/")
        if prefix == "#/components/schemas":
            assert name in schemas, ref
        else:
            assert ref == "#/components/headers/RequestId"
    for path, item in doc["paths"].items():
        params = {p["name"] for op in item.values() for p in op.get("parameters", ())}
        for name in path.split("{")[1:]:
            assert name.partition("}")[0] in params, path
        for method, op in item.items():
            assert op["summary"], (path, method)
            assert any(s in op["responses"] for s in ("200", "201", "202")), (path, method)
            for status, answer in op["responses"].items():
                assert "x-request-id" in answer["headers"], (path, method, status)
                if status >= "400" and (path, status) != ("/readyz", "503"):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    paths = doc["paths"]
    webhook = paths["/channels/{name}/webhook"]["post"]
    assert webhook["security"] == [] and "signature" in webhook["description"]
    hook = paths["/hooks/workflows/{name}"]["post"]
    assert hook["security"] == [] and "signature" in hook["description"]
    assert paths["/v1/admin/tenants"]["post"]["x-wayport-role"] == Role.OWNER.label
    assert paths["/v1/admin/keys"]["get"]["x-wayport-role"] == Role.ADMIN.label
    assert paths["/v1/usage"]["get"]["x-wayport-role"] == Role.VIEWER.label
    assert paths["/v1/releases"]["post"]["x-wayport-role"] == Role.DEPLOYER.label
    messages = paths["/channels/{name}/messages"]["post"]
    assert messages["x-wayport-role"] == Role.USER.label
    assert messages["security"] == [{"bearer": []}, {}]  # the key, unless the chat is public
    assert set(paths["/channels/{name}/"]["get"]["responses"]["200"]["content"]) == {"text/html"}
    assert schemas["KeyBody"]["properties"]["role"]["type"] == "string"
    assert "WorkflowApproveBody" in schemas and "ApproveBody" in schemas
