"""HTTP endpoints as tools, always through the SSRF-guarded client::

    config = HttpToolConfig(
        name="get_item",
        url="https://api.example.com/items/{id}",
        headers={"Authorization": "Bearer ${ITEMS_TOKEN}"},  # resolved once, at build time
        parameters={"type": "object", "properties": {"id": {"type": "string"}},
                    "required": ["id"]},
    )
    tool = HttpTool(config, client=guarded_client)
    await tool.call({"id": "a/b"}, idempotency_key="call-1", timeout=10)  # GET …/items/a%2Fb

Arguments named in the URL template fill it (URL-encoded); the rest become the query string
for ``GET``/``HEAD``/``DELETE`` and a JSON body otherwise. The call's idempotency key goes out
as ``Idempotency-Key``. A 4xx/5xx answer, a refused address or a timeout are error results
the model can read.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import msgspec

from wayport.core.agent import ToolResult, ToolSpec
from wayport.core.errors import ConfigError, WayportError
from wayport.net.guard import GuardedClient

__all__ = ["HttpTool", "HttpToolConfig", "resolve_secrets"]

_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NO_BODY = frozenset({"GET", "HEAD", "DELETE"})
_MAX_RESULT = 64 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpToolConfig:
    name: str
    url: str  #: template: ``https://host/items/{id}``
    method: str = "GET"
    description: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  #: values may hold ``${VAR}``
    parameters: Mapping[str, Any] | None = None  #: None: every placeholder a required string
    side_effects: bool | None = None  #: None: true unless the method is GET or HEAD
    requires_approval: bool = False


def _placeholders(template: str) -> list[str]:
    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f]
    except ValueError as exc:
        raise ConfigError(f"invalid URL template {template!r}: {exc}") from exc


def resolve_secrets(headers: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """Fill ``${VAR}`` in header values from ``environ``; a missing variable is a
    ``ConfigError`` (a tool must not go out without its credentials)."""

    def sub(match: re.Match[str]) -> str:
        try:
            return environ[match.group(1)]
        except KeyError:
            raise ConfigError(
                f"HTTP tool header needs ${{{match.group(1)}}}, which is not set"
            ) from None

    return {k: _SECRET.sub(sub, v) for k, v in headers.items()}


class HttpTool:
    """One HTTP endpoint behind the ``Tool`` protocol."""

    def __init__(
        self,
        config: HttpToolConfig,
        *,
        client: GuardedClient,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config
        self._client = client
        self._method = config.method.upper()
        self._fields = _placeholders(config.url)
        self._headers = resolve_secrets(config.headers, os.environ if environ is None else environ)
        # Fail at build time, not at the first call: the template must already be a URL the
        # guard accepts the shape of (scheme, host).
        client.check_url(config.url.format(**dict.fromkeys(self._fields, "x")).split("?")[0])
        parameters = config.parameters
        if parameters is None:
            parameters = {
                "type": "object",
                "properties": {f: {"type": ["string", "integer"]} for f in self._fields},
                "required": self._fields,
            }
        missing = set(self._fields) - set(parameters.get("properties", {}))
        if missing:
            raise ConfigError(
                f"HTTP tool {config.name!r}: URL placeholders {sorted(missing)} are not in its "
                "parameters"
            )
        side_effects = config.side_effects
        if side_effects is None:
            side_effects = self._method not in ("GET", "HEAD")
        self.spec = ToolSpec(
            name=config.name,
            description=config.description,
            parameters=parameters,
            side_effects=side_effects,
            requires_approval=config.requires_approval,
        )

    def _build(self, arguments: Mapping[str, Any]) -> tuple[str, bytes | None]:
        filled = {f: quote(str(arguments[f]), safe="") for f in self._fields}
        url = self._config.url.format(**filled)
        rest = {k: v for k, v in arguments.items() if k not in filled}
        if self._method in _NO_BODY:
            if rest:
                query = urlencode(
                    {
                        k: v if isinstance(v, str) else msgspec.json.encode(v).decode()
                        for k, v in rest.items()
                    }
                )
                url = f"{url}{'&' if '?' in url else '?'}{query}"
            return url, None
        return url, msgspec.json.encode(rest)

    async def call(
        self, arguments: Mapping[str, Any], *, idempotency_key: str, timeout: float | None
    ) -> ToolResult:
        url, body = self._build(arguments)
        headers = {**self._headers, "Idempotency-Key": idempotency_key}
        if body is not None:
            headers.setdefault("Content-Type", "application/json")
        try:
            response = await self._client.request(
                self._method, url, headers=headers, body=body, timeout=timeout
            )
        except WayportError as exc:
            # Refused addresses, timeouts and dead upstreams depend on what the model asked
            # for; it reads them and may try something else.
            return ToolResult(content=f"HTTP request failed: {exc.message}", is_error=True)
        text = response.text()
        if len(text) > _MAX_RESULT:
            text = text[:_MAX_RESULT] + "…"
        if response.status >= 400:
            return ToolResult(content=f"HTTP {response.status}: {text}", is_error=True)
        return ToolResult(content=text)
