"""HTTP tools against a real loopback API through the guarded client."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from wayport.core.errors import ConfigError, PermissionDenied
from wayport.net import GuardedClient, GuardPolicy
from wayport.runtime.tools import HttpTool, HttpToolConfig

pytestmark = pytest.mark.anyio

ENV = {"ITEMS_TOKEN": "tok-123"}


def tool(api: Any, guard: GuardedClient, **overrides: Any) -> HttpTool:
    fields: dict[str, Any] = {
        "name": "get_item",
        "url": f"{api.url}/items/{{id}}",
        "headers": {"Authorization": "Bearer ${ITEMS_TOKEN}"},
    }
    return HttpTool(HttpToolConfig(**{**fields, **overrides}), client=guard, environ=ENV)


async def test_get_fills_and_encodes_the_template(api: Any, guard: GuardedClient) -> None:
    result = await tool(api, guard).call({"id": "a/b c"}, idempotency_key="k-1", timeout=5)
    assert not result.is_error
    assert msgspec.json.decode(result.content) == {"id": "a/b c", "ok": True}
    [seen] = api.seen
    assert seen["raw_path"] == "/items/a%2Fb%20c"
    assert seen["headers"]["authorization"] == "Bearer tok-123"
    assert seen["headers"]["idempotency-key"] == "k-1"


async def test_post_sends_remaining_arguments_as_json(api: Any, guard: GuardedClient) -> None:
    params = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "qty": {"type": "integer"}},
        "required": ["id"],
    }
    t = tool(api, guard, method="POST", parameters=params)
    assert t.spec.side_effects
    result = await t.call({"id": "7", "qty": 3}, idempotency_key="k-2", timeout=5)
    assert not result.is_error
    [seen] = api.seen
    assert (seen["method"], msgspec.json.decode(seen["body"])) == ("POST", {"qty": 3})
    assert seen["headers"]["content-type"] == "application/json"


async def test_get_sends_remaining_arguments_as_query(api: Any, guard: GuardedClient) -> None:
    params = {"type": "object", "properties": {"id": {}, "fields": {}, "n": {}}}
    t = tool(api, guard, parameters=params)
    assert not t.spec.side_effects
    await t.call({"id": "1", "fields": "name", "n": 2}, idempotency_key="k", timeout=5)
    assert api.seen[0]["query"] == {"fields": "name", "n": "2"}


async def test_http_error_status_is_an_error_result(api: Any, guard: GuardedClient) -> None:
    result = await tool(api, guard).call({"id": "missing"}, idempotency_key="k", timeout=5)
    assert result.is_error
    assert result.content.startswith("HTTP 404")


async def test_missing_secret_is_a_config_error(api: Any, guard: GuardedClient) -> None:
    with pytest.raises(ConfigError, match="ITEMS_TOKEN"):
        HttpTool(
            HttpToolConfig(
                name="t", url=f"{api.url}/items/{{id}}", headers={"X": "${ITEMS_TOKEN}"}
            ),
            client=guard,
            environ={},
        )


async def test_placeholder_missing_from_schema_is_a_config_error(
    api: Any, guard: GuardedClient
) -> None:
    with pytest.raises(ConfigError, match="id"):
        tool(api, guard, parameters={"type": "object", "properties": {}})


async def test_inward_url_refused_without_allow_list(api: Any) -> None:
    async with GuardedClient(GuardPolicy()) as strict:
        with pytest.raises(PermissionDenied):
            tool(api, strict)


async def test_model_chosen_host_refused_at_call_time(guard: GuardedClient) -> None:
    t = HttpTool(
        HttpToolConfig(name="fetch", url="http://{host}/x", parameters=None),
        client=guard,
        environ={},
    )
    result = await t.call({"host": "169.254.169.254"}, idempotency_key="k", timeout=5)
    assert result.is_error and "refused" in result.content
