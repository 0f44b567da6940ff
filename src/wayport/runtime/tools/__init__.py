"""Tools agents call: Python functions, HTTP endpoints (through the SSRF-guarded client) and
MCP servers, all validated against their JSON Schema before they run."""

from wayport.runtime.tools.http import HttpTool, HttpToolConfig
from wayport.runtime.tools.mcp import McpServer, McpServerConfig, McpTool
from wayport.runtime.tools.python import PythonTool, json_schema, load_ref
from wayport.runtime.tools.registry import PythonToolConfig, ToolEntry, ToolRegistry, parse_entry
from wayport.runtime.tools.validate import ArgumentValidator

__all__ = [
    "ArgumentValidator",
    "HttpTool",
    "HttpToolConfig",
    "McpServer",
    "McpServerConfig",
    "McpTool",
    "PythonTool",
    "PythonToolConfig",
    "ToolEntry",
    "ToolRegistry",
    "json_schema",
    "load_ref",
    "parse_entry",
]
