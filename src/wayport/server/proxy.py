"""Forwarded headers, believed only from configured proxies.

Behind a load balancer the TCP peer is the proxy; the client's address arrives in
``X-Forwarded-For``. Anyone can send that header, so it is honoured only when the peer is in
``server.trusted_proxies``; then the client is the right-most address of the chain that is not
itself a trusted proxy (entries left of it were written by the client and prove nothing)::

    app = ProxyHeaders(app, trusted=["10.0.0.0/8"])
    # peer 10.0.0.5 sending "X-Forwarded-For: 198.51.100.7, 10.0.0.9"
    # -> scope["client"] == ("198.51.100.7", 0)

``X-Forwarded-Proto`` (``http``/``https``) sets ``scope["scheme"]`` under the same rule. The
client address (:func:`client_ip`) is what the access log and rate limits use. Without trusted
proxies the app is not wrapped at all, and uvicorn's own proxy-header handling must be off
(``proxy_headers=False``) so that this is the only place that decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ProxyHeaders", "client_ip", "parse_networks"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


def client_ip(scope: Scope) -> str | None:
    """The client's address as this server believes it (after :class:`ProxyHeaders`)."""
    client = scope.get("client")
    return str(client[0]) if client else None


class ProxyHeaders:
    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self._trusted = parse_networks(trusted)

    def _is_trusted(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.strip().strip("[]"))
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self._trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            peer = client_ip(scope)
            if peer is not None and self._is_trusted(peer):
                scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded_for.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[0].strip().lower()
        changed = dict(scope)
        # walk from the right: the nearest hop was written by our proxy, the rest by whoever
        # came before it; stop at the first address our proxies did not vouch for
        for hop in reversed([h.strip() for h in forwarded_for if h.strip()]):
            if not _valid_ip(hop):
                break
            changed["client"] = (hop, 0)
            if not self._is_trusted(hop):
                break
        if proto in ("http", "https"):
            changed["scheme"] = proto if scope["type"] == "http" else _ws(proto)
        return changed


def _valid_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _ws(proto: str) -> str:
    return "wss" if proto == "https" else "ws"
