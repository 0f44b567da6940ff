"""Tools of MCP servers over streamable HTTP, through the official ``mcp`` SDK::

    server = McpServer(McpServerConfig(url="https://mcp.example.com/mcp", prefix="docs_"),
                       client=guarded_client)
    tools = await server.list_tools()  # their input schemas become ToolSpecs
    await tools[0].call({"query": "refunds"}, idempotency_key="call-1", timeout=30)
    await server.close()

The server's host is resolved and checked by the guarded client before every connection (the
SDK speaks HTTP through its own httpx2 client, which cannot take the guard's connector; the
SDK itself follows only same-origin redirects). Servers launched over stdio run arbitrary
commands on this machine, so they are refused unless ``allow_stdio`` is set.

Each list or call opens its own MCP connection: no long-lived session or task group outlives
the caller's task, and a server restart costs nothing but the next handshake.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.errors import BackendUnavailable, ConfigError, PermissionDenied
from wayport.net.guard import GuardedClient
from wayport.runtime.tools.http import resolve_secrets

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp.shared.exceptions import MCPError
    from mcp_types import RequestParamsMeta

__all__ = ["McpServer", "McpServerConfig", "McpTool"]


# What a broken connection to a server looks like through the SDK's transports and task groups.
def _mcp_error() -> type[MCPError]:
    from mcp.shared.exceptions import MCPError

    return MCPError


def _connection_errors() -> tuple[type[BaseException], ...]:
    # The SDK (and its HTTP client) load on first use: most configurations never use MCP, and
    # importing it costs most of a second at start-up.
    import httpx2
    from mcp.shared.exceptions import MCPError

    return (MCPError, httpx2.HTTPError, OSError, ExceptionGroup, RuntimeError)


@dataclass(frozen=True, slots=True, kw_only=True)
class McpServerConfig:
    url: str | None = None  #: streamable HTTP endpoint, e.g. ``https://host/mcp``
    command: Sequence[str] = ()  #: stdio server (refused unless stdio is allowed)
    headers: Mapping[str, str] = field(default_factory=dict)  #: values may hold ``${VAR}``
    prefix: str = ""  #: prepended to every tool name (keeps servers apart)
    tools: Sequence[str] | None = None  #: only these of the server's tools (None: all)
    side_effects: bool = True
    requires_approval: bool = False
    timeout: float = 30.0  #: listing and per-call read timeout, seconds


def _text(result: Any) -> str:
    parts: list[str] = []
    for block in result.content:
        text = getattr(block, "text", None)
        parts.append(text if isinstance(text, str) else block.model_dump_json(exclude_none=True))
    if not parts and result.structured_content is not None:
        return msgspec.json.encode(result.structured_content).decode()
    return "\n".join(parts)


class McpServer:
    """One configured MCP server; lists its tools as ``McpTool``s."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        client: GuardedClient,
        environ: Mapping[str, str] | None = None,
        allow_stdio: bool = False,
    ) -> None:
        if (config.url is None) == (not config.command):
            raise ConfigError("an MCP server needs exactly one of 'url' or 'command'")
        if config.command and not allow_stdio:
            raise PermissionDenied(
                f"stdio MCP server {list(config.command)} refused: stdio servers run local "
                "commands and are off unless explicitly allowed",
                code="stdio_not_allowed",
            )
        if config.url is not None:
            client.check_url(config.url)
        self.config = config
        self._guard = client
        self._headers = resolve_secrets(config.headers, os.environ if environ is None else environ)
        self._http: httpx2.AsyncClient | None = None

    @property
    def label(self) -> str:
        return self.config.url or " ".join(self.config.command)

    def _http_client(self) -> httpx2.AsyncClient:
        # One pooled client per server for its whole life, not one per call.
        if self._http is None:
            import httpx2

            self._http = httpx2.AsyncClient(
                headers=self._headers,
                timeout=httpx2.Timeout(self.config.timeout),
                follow_redirects=False,
                trust_env=False,
            )
        return self._http

    @asynccontextmanager
    async def connect(self, timeout: float | None = None) -> AsyncIterator[Client]:
        """An initialised MCP client session for one operation."""
        from mcp import Client
        from mcp.client.stdio import StdioServerParameters
        from mcp.client.streamable_http import streamable_http_client

        read_timeout = timeout if timeout is not None else self.config.timeout
        target: Any
        if self.config.url is not None:
            await self._guard.check_host(self.config.url)
            target = streamable_http_client(self.config.url, http_client=self._http_client())
        else:
            command, *args = self.config.command
            target = StdioServerParameters(command=command, args=args)
        async with Client(target, read_timeout_seconds=read_timeout) as session:
            yield session

    async def list_tools(self) -> list[McpTool]:
        """The server's tools (all pages), as tools named ``prefix + name``."""
        found: list[McpTool] = []
        try:
            async with self.connect() as session:
                cursor: str | None = None
                while True:
                    page = await session.list_tools(cursor=cursor)
                    for tool in page.tools:
                        if self.config.tools is None or tool.name in self.config.tools:
                            found.append(self._tool(tool.name, tool.description, tool.input_schema))
                    cursor = page.next_cursor
                    if not cursor:
                        break
        except _connection_errors() as exc:
            raise BackendUnavailable(
                f"MCP server {self.label} failed to list tools: {exc}"
            ) from exc
        return found

    def _tool(self, name: str, description: str | None, schema: dict[str, Any]) -> McpTool:
        spec = ToolSpec(
            name=f"{self.config.prefix}{name}",
            description=description or "",
            parameters=schema or {"type": "object"},
            side_effects=self.config.side_effects,
            requires_approval=self.config.requires_approval,
        )
        return McpTool(server=self, remote_name=name, spec=spec)

    async def close(self) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


@dataclass(slots=True, kw_only=True)
class McpTool:
    """One tool of an MCP server behind the ``Tool`` protocol."""

    server: McpServer
    remote_name: str
    spec: ToolSpec

    async def call(
        self, arguments: Mapping[str, Any], *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        meta: RequestParamsMeta = {"io.wayport/idempotency-key": idempotency_key}  # type: ignore[typeddict-unknown-key]
        try:
            async with self.server.connect(timeout) as session:
                result = await session.call_tool(
                    self.remote_name, dict(arguments), read_timeout_seconds=timeout, meta=meta
                )
        except _mcp_error() as exc:
            return ToolResult(content=f"MCP error: {exc.error.message}", is_error=True)
        except _connection_errors() as exc:
            raise BackendUnavailable(
                f"MCP server {self.server.label} failed calling {self.remote_name!r}: {exc}"
            ) from exc
        return ToolResult(content=_text(result), is_error=bool(result.is_error))
