"""The one outbound HTTP client for everything a user or a model can aim (HTTP tools, MCP
servers, webhooks). It resolves names itself, refuses inward addresses, connects to exactly the
addresses it checked, follows redirects itself (checking every hop) and bounds size and time::

    client = GuardedClient(GuardPolicy(allow=("127.0.0.1/32",), max_bytes=1 << 20))
    await client.start()
    response = await client.request("GET", "https://api.example.com/items/1", timeout=10)
    response.status, response.json()
    await client.close()

Refusals raise ``PermissionDenied`` (code ``ssrf_blocked``); a slow upstream ``BackendTimeout``;
an unreachable one ``BackendUnavailable``; an oversized answer ``PayloadTooLarge``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from wayport.core.errors import (
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
    PayloadTooLarge,
    PermissionDenied,
    WayportError,
)
from wayport.net.addresses import AddressPolicy, parse_ip_host

__all__ = ["GuardPolicy", "GuardedClient", "GuardedResponse", "Resolve", "system_resolve"]

Resolve = Callable[[str], Awaitable[Sequence[str]]]
"""Look a host name up; return its addresses as text. Injected in tests."""

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SCHEMES = frozenset({"http", "https"})
_CHUNK = 64 * 1024


async def system_resolve(host: str) -> Sequence[str]:
    """The operating system's resolver, off the event loop (``getaddrinfo`` in a thread)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardPolicy:
    allow: tuple[str, ...] = ()  #: addresses or networks reachable despite being inward
    allow_hosts: tuple[str, ...] = ()  #: host names exempt from the metadata-name check
    max_bytes: int = 4 << 20  #: largest response body read
    max_redirects: int = 5
    timeout: float = 30.0  #: default overall deadline per request (redirects included)
    max_connections: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardedResponse:
    status: int
    url: str  #: after redirects
    headers: Mapping[str, str] = field(default_factory=dict)  #: lower-case names
    body: bytes = b""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def _refused(reason: str, url: URL | str) -> PermissionDenied:
    return PermissionDenied(f"outbound request to {url} refused: {reason}", code="ssrf_blocked")


class _CheckingResolver(AbstractResolver):
    """Resolves for aiohttp and refuses any answer holding a forbidden address, so the socket
    connects to the very addresses that were checked (no second lookup to rebind)."""

    def __init__(self, policy: AddressPolicy, resolve: Resolve) -> None:
        self._policy = policy
        self._resolve = resolve

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        reason = self._policy.host_refusal(host)
        if reason is not None:
            raise _refused(reason, host)
        try:
            literal = parse_ip_host(host)
        except ValueError as exc:
            raise _refused(str(exc), host) from exc
        addresses = [str(literal)] if literal is not None else list(await self._resolve(host))
        if not addresses:
            raise OSError(f"{host} has no addresses")
        results: list[ResolveResult] = []
        for address in addresses:
            reason = self._policy.refusal(address)
            if reason is not None:
                raise _refused(f"{host} resolves to {reason}", host)
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            results.append(
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            )
        return results

    async def close(self) -> None:
        return None


class GuardedClient:
    """One pooled aiohttp session; every request and every redirect hop is checked."""

    def __init__(self, policy: GuardPolicy | None = None, *, resolve: Resolve | None = None):
        self.policy = policy or GuardPolicy()
        try:
            self._addresses = AddressPolicy.build(
                allow=self.policy.allow, allow_hosts=self.policy.allow_hosts
            )
        except ValueError as exc:
            raise ConfigError(f"invalid outbound allow-list: {exc}") from exc
        self._resolve = resolve or system_resolve
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                resolver=_CheckingResolver(self._addresses, self._resolve),
                use_dns_cache=False,
                limit=self.policy.max_connections,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, trust_env=False, auto_decompress=True
            )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> GuardedClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def check_url(self, url: str | URL) -> URL:
        """Refuse what can be refused without a lookup: scheme, literal addresses, legacy
        numeric hosts, metadata names. Returns the parsed URL."""
        parsed = URL(url) if isinstance(url, str) else url
        if parsed.scheme not in _SCHEMES:
            raise _refused(f"scheme {parsed.scheme!r} is not http or https", parsed)
        host = parsed.raw_host
        if not host:
            raise _refused("no host", parsed)
        reason = self._addresses.host_refusal(host)
        if reason is not None:
            raise _refused(reason, parsed)
        try:
            literal = parse_ip_host(host)
        except ValueError as exc:
            raise _refused(str(exc), parsed) from exc
        if literal is not None:
            reason = self._addresses.refusal(literal)
            if reason is not None:
                raise _refused(reason, parsed)
        return parsed

    async def check_host(self, url: str | URL) -> None:
        """Resolve ``url``'s host now and refuse it if any address is forbidden; for clients
        (the MCP SDK's) that cannot take this client's connector."""
        parsed = self.check_url(url)
        resolver = _CheckingResolver(self._addresses, self._resolve)
        await resolver.resolve(parsed.raw_host or "", parsed.port or 0)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> GuardedResponse:
        """Send one request, following up to ``policy.max_redirects`` redirects. Caller
        headers (which may hold secrets) are dropped when a redirect leaves the origin."""
        if self._session is None:
            raise WayportError("GuardedClient.request before start()")
        deadline = self.policy.timeout if timeout is None else min(timeout, self.policy.timeout)
        try:
            async with asyncio.timeout(deadline):
                return await self._follow(method.upper(), URL(url), dict(headers or {}), body)
        except TimeoutError as exc:
            raise BackendTimeout(f"outbound request to {url} timed out after {deadline}s") from exc

    async def _follow(
        self, method: str, url: URL, headers: dict[str, str], body: bytes | None
    ) -> GuardedResponse:
        assert self._session is not None
        for _hop in range(self.policy.max_redirects + 1):
            self.check_url(url)
            try:
                async with self._session.request(
                    method, url, headers=headers, data=body, allow_redirects=False
                ) as resp:
                    location = resp.headers.get("Location")
                    if resp.status not in _REDIRECTS or location is None:
                        return await self._read(resp, url)
            except aiohttp.InvalidURL as exc:
                raise InvalidRequest(f"invalid outbound URL {url}: {exc}") from exc
            except aiohttp.ClientError as exc:
                raise BackendUnavailable(f"outbound request to {url} failed: {exc}") from exc
            try:
                joined = url.join(URL(location))
            except ValueError as exc:
                raise BackendUnavailable(f"{url} redirected to an invalid URL: {exc}") from exc
            target = self.check_url(joined)
            if resp.status == 303 or (resp.status in (301, 302) and method == "POST"):
                method, body = "GET", None
                headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            if target.origin() != url.origin():
                headers = {}
            url = target
        raise BackendUnavailable(f"outbound request exceeded {self.policy.max_redirects} redirects")

    async def _read(self, resp: aiohttp.ClientResponse, url: URL) -> GuardedResponse:
        limit = self.policy.max_bytes
        if resp.content_length is not None and resp.content_length > limit:
            raise PayloadTooLarge(f"response from {url} is larger than {limit} bytes")
        parts: list[bytes] = []
        size = 0
        try:
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"response from {url} is larger than {limit} bytes")
                parts.append(chunk)
        except aiohttp.ClientError as exc:
            raise BackendUnavailable(f"reading the response from {url} failed: {exc}") from exc
        headers = {k.lower(): v for k, v in resp.headers.items()}
        body = b"".join(parts)
        return GuardedResponse(status=resp.status, url=str(url), headers=headers, body=body)
