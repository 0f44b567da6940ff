"""MCP tools against a real MCP server (the SDK's ``MCPServer``) over streamable HTTP on
127.0.0.1:0, allow-listed in the guard."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import suppress

import msgspec
import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from wayport.core.errors import BackendUnavailable, ConfigError, PermissionDenied
from wayport.net import GuardedClient, GuardPolicy
from wayport.runtime.tools import McpServer, McpServerConfig, ToolRegistry

pytestmark = pytest.mark.anyio


def _server() -> MCPServer:
    server = MCPServer("wayport-test")

    @server.tool()
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails."""
        # ToolError: the SDK passes its message on (other exceptions are masked)
        raise ToolError(f"refusing: {reason}")

    return server


@pytest.fixture
async def mcp_url() -> AsyncIterator[str]:
    app = _server().streamable_http_app()
    # log_config=None: uvicorn's default dictConfig would rewire process-wide logging that
    # other tests inspect.
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on"))
    # Listening before uvicorn starts: early connections wait in the backlog, so no polling
    # for readiness is needed.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        with suppress(asyncio.CancelledError):
            await task
        sock.close()


@pytest.fixture
async def guard() -> AsyncIterator[GuardedClient]:
    async with GuardedClient(GuardPolicy(allow=("127.0.0.1",))) as client:
        yield client


async def test_lists_tools_with_their_schemas(mcp_url: str, guard: GuardedClient) -> None:
    server = McpServer(McpServerConfig(url=mcp_url, prefix="calc_"), client=guard)
    try:
        tools = {t.spec.name: t for t in await server.list_tools()}
        assert set(tools) == {"calc_multiply", "calc_fail"}
        spec = tools["calc_multiply"].spec
        assert spec.description == "Multiply two integers."
        assert spec.parameters["required"] == ["a", "b"]
        assert spec.parameters["properties"]["a"]["type"] == "integer"
    finally:
        await server.close()


async def test_registry_calls_mcp_tools(mcp_url: str, guard: GuardedClient) -> None:
    registry = ToolRegistry.from_specs(
        [{"type": "mcp", "url": mcp_url, "tools": ["multiply", "fail"]}], client=guard
    )
    await registry.start()
    try:
        result = await registry.execute("multiply", '{"a": 6, "b": 7}', idempotency_key="k")
        assert not result.is_error
        assert msgspec.json.decode(result.content) == 42
        failed = await registry.execute("fail", '{"reason": "x"}', idempotency_key="k")
        assert failed.is_error and "refusing: x" in failed.content
        invalid = await registry.execute("multiply", '{"a": "six"}', idempotency_key="k")
        assert invalid.is_error and "Invalid arguments" in invalid.content
    finally:
        await registry.close()


async def test_loopback_mcp_server_refused_without_allow_list(mcp_url: str) -> None:
    async with GuardedClient(GuardPolicy()) as strict:
        with pytest.raises(PermissionDenied):
            McpServer(McpServerConfig(url=mcp_url), client=strict)


async def test_mcp_name_resolving_inward_refused(mcp_url: str) -> None:
    async def resolve(host: str) -> list[str]:
        return ["10.0.0.3"]

    async with GuardedClient(GuardPolicy(), resolve=resolve) as strict:
        server = McpServer(McpServerConfig(url="http://mcp.internal.test/mcp"), client=strict)
        with pytest.raises(PermissionDenied, match=r"10\.0\.0\.3"):
            await server.list_tools()


async def test_stdio_servers_refused_unless_allowed(guard: GuardedClient) -> None:
    with pytest.raises(PermissionDenied, match="stdio"):
        McpServer(McpServerConfig(command=["python", "-m", "server"]), client=guard)
    with pytest.raises(ConfigError):
        McpServer(McpServerConfig(), client=guard)


async def test_dead_server_is_unavailable(guard: GuardedClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = McpServer(McpServerConfig(url=f"http://127.0.0.1:{port}/mcp"), client=guard)
    try:
        with pytest.raises(BackendUnavailable):
            await server.list_tools()
    finally:
        await server.close()
