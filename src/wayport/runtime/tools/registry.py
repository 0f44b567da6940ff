"""The tools an agent may call, by name, and the one way to run them: parse, validate, call,
bounded in time. Built from plain data, so ``tools:`` entries in ``wayport.yaml`` map onto it::

    registry = ToolRegistry.from_specs(
        [
            {"type": "python", "function": "myapp.tools:get_weather"},
            {"type": "http", "name": "get_item", "url": "https://api.example.com/items/{id}"},
            {"type": "mcp", "url": "https://mcp.example.com/mcp", "prefix": "docs_"},
        ],
        client=GuardedClient(GuardPolicy()),
    )
    await registry.start()  # opens the guarded client, lists the MCP servers' tools
    registry.specs(agent.tools)  # -> list[ToolSpec] for the model
    result = await registry.execute("get_weather", '{"city": "Oslo"}',
                                    idempotency_key="run-1:call-1", timeout=30)
    await registry.close()

Every failure the model can fix (unknown tool, broken JSON, schema violation, a tool that
raised or timed out) comes back as ``ToolResult(is_error=True)``; nothing invalid is executed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.errors import ConfigError, NotFound
from wayport.net.guard import GuardedClient, GuardPolicy
from wayport.ports import Tool
from wayport.runtime.tools.http import HttpTool, HttpToolConfig
from wayport.runtime.tools.mcp import McpServer, McpServerConfig
from wayport.runtime.tools.python import PythonTool
from wayport.runtime.tools.validate import ArgumentValidator

__all__ = ["PythonToolConfig", "ToolEntry", "ToolRegistry", "parse_entry"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PythonToolConfig:
    function: str  #: ``"package.module:function"``
    name: str | None = None  #: default: the function's name
    description: str | None = None  #: default: the docstring's first paragraph
    side_effects: bool = True
    requires_approval: bool = False


ToolEntry = PythonToolConfig | HttpToolConfig | McpServerConfig

_KINDS: dict[str, type[PythonToolConfig] | type[HttpToolConfig] | type[McpServerConfig]] = {
    "python": PythonToolConfig,
    "http": HttpToolConfig,
    "mcp": McpServerConfig,
}


def parse_entry(data: Mapping[str, Any]) -> ToolEntry:
    """One ``tools:`` entry of plain data (``{"type": "python" | "http" | "mcp", …}``)."""
    fields = dict(data)
    kind = fields.pop("type", "python")
    cls = _KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(f"unknown tool type {kind!r}; expected one of {sorted(_KINDS)}")
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ConfigError(f"invalid {kind} tool entry: {exc}") from exc


@dataclass(frozen=True, slots=True)
class _Entry:
    tool: Tool
    validator: ArgumentValidator


class ToolRegistry:
    """Tools by name, each with its compiled argument validator."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        *,
        servers: Sequence[McpServer] = (),
        client: GuardedClient | None = None,
    ) -> None:
        self._tools: dict[str, _Entry] = {}
        self._servers = tuple(servers)
        self._client = client
        for tool in tools:
            self.add(tool)

    @classmethod
    def from_specs(
        cls,
        entries: Iterable[ToolEntry | Mapping[str, Any]],
        *,
        client: GuardedClient | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ToolRegistry:
        """Build from config entries. HTTP and MCP tools share ``client`` (default: a guarded
        client with the default policy, nothing inward allowed)."""
        client = client or GuardedClient(GuardPolicy())
        tools: list[Tool] = []
        servers: list[McpServer] = []
        for raw in entries:
            entry = raw if isinstance(raw, ToolEntry) else parse_entry(raw)
            if isinstance(entry, PythonToolConfig):
                tools.append(
                    PythonTool.from_ref(
                        entry.function,
                        name=entry.name,
                        description=entry.description,
                        side_effects=entry.side_effects,
                        requires_approval=entry.requires_approval,
                    )
                )
            elif isinstance(entry, HttpToolConfig):
                tools.append(HttpTool(entry, client=client, environ=environ))
            else:
                servers.append(McpServer(entry, client=client, environ=environ))
        return cls(tools, servers=servers, client=client)

    def add(self, tool: Tool) -> None:
        name = tool.spec.name
        if name in self._tools:
            raise ConfigError(f"two tools are named {name!r}")
        self._tools[name] = _Entry(tool, ArgumentValidator(name, tool.spec.parameters))

    async def start(self) -> None:
        """Open the shared client and list every MCP server's tools."""
        if self._client is not None:
            await self._client.start()
        for server in self._servers:
            for tool in await server.list_tools():
                self.add(tool)

    async def close(self) -> None:
        for server in self._servers:
            await server.close()
        if self._client is not None:
            await self._client.close()

    def names(self) -> list[str]:
        return list(self._tools)

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name].tool
        except KeyError:
            raise NotFound(f"no tool named {name!r}", code="tool_not_found") from None

    def specs(self, names: Iterable[str] | None = None) -> list[ToolSpec]:
        """The specs of ``names`` in that order (all tools when ``None``). Raises ``NotFound``
        for an unknown name: an agent naming a missing tool is a configuration mistake."""
        if names is None:
            return [e.tool.spec for e in self._tools.values()]
        return [self.get(n).spec for n in names]

    async def execute(
        self,
        name: str,
        arguments_json: str,
        *,
        idempotency_key: str,
        timeout: float | None = None,
    ) -> ToolResult:
        entry = self._tools.get(name)
        if entry is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolResult(
                content=f"Unknown tool {name!r}. Available tools: {known}.", is_error=True
            )
        checked = entry.validator.check(arguments_json)
        if isinstance(checked, ToolResult):
            return checked
        try:
            async with asyncio.timeout(timeout):
                return await entry.tool.call(
                    checked, idempotency_key=idempotency_key, timeout=timeout
                )
        except TimeoutError:
            return ToolResult(content=f"Tool {name!r} timed out after {timeout}s", is_error=True)
