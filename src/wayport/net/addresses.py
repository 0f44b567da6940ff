"""Which addresses outbound requests may reach: the pure half of the SSRF guard.

Everything a user or a model can aim is checked here after the name is resolved, so a DNS name
pointing inward is refused exactly like the address itself::

    >>> policy = AddressPolicy.build(allow=["127.0.0.1/32"])
    >>> policy.refusal("127.0.0.1") is None
    True
    >>> policy.refusal("10.1.2.3")
    'private address 10.1.2.3'
    >>> AddressPolicy.build().refusal("::ffff:169.254.169.254")
    'cloud metadata address 169.254.169.254'
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["METADATA_HOSTS", "AddressPolicy", "IPAddress", "IPNetwork", "parse_ip_host"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata", "metadata.goog", "instance-data", "instance-data.ec2"}
)
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def parse_ip_host(host: str) -> IPAddress | None:
    """The address a URL host names literally, or ``None`` for a DNS name.

    Raises ``ValueError`` for the legacy numeric IPv4 spellings (``2130706433``, ``0x7f000001``,
    ``0177.0.0.1``, ``127.1``) that resolvers still map onto addresses: they exist only to
    smuggle an address past a filter, so they are refused rather than interpreted.
    """
    bare = host.strip("[]").split("%", 1)[0]
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    try:
        socket.inet_aton(bare.rstrip("."))
    except OSError:
        return None
    raise ValueError(f"non-canonical numeric IPv4 host {host!r}")


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, NAT64, 6to4, Teredo), which
    a dual-stack socket or a translator would actually reach."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    value = int(ip)
    if value >> 32 == 0 and value > 1:  # ::a.b.c.d, the deprecated IPv4-compatible form
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def _reason(ip: IPAddress) -> str | None:
    if ip in _METADATA_ADDRESSES:
        return f"cloud metadata address {ip}"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT, "carrier-grade NAT"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
        # Documentation, benchmarking, 6to4 relay … ranges: anything not globally routable.
        (not ip.is_global, "non-global"),
    )
    for hit, name in checks:
        if hit:
            return f"{name} address {ip}"
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressPolicy:
    """Refuse every address that is not globally routable, unless an allow-listed network
    holds it. ``allow`` accepts addresses and networks (``"127.0.0.1"``, ``"10.0.0.0/8"``)."""

    allow: tuple[IPNetwork, ...] = ()
    allow_hosts: frozenset[str] = frozenset()

    @classmethod
    def build(cls, *, allow: Iterable[str] = (), allow_hosts: Iterable[str] = ()) -> AddressPolicy:
        return cls(
            allow=tuple(ipaddress.ip_network(a, strict=False) for a in allow),
            allow_hosts=frozenset(h.lower().rstrip(".") for h in allow_hosts),
        )

    def _allowed(self, ip: IPAddress) -> bool:
        return any(ip.version == net.version and ip in net for net in self.allow)

    def refusal(self, address: str | IPAddress) -> str | None:
        """Why ``address`` must not be reached, or ``None`` when it may."""
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
            ip = ipaddress.IPv6Address(ip.compressed.split("%", 1)[0])
        if self._allowed(ip):
            return None
        if isinstance(ip, ipaddress.IPv6Address):
            inner = _embedded_v4(ip)
            if inner is not None:
                if self._allowed(inner):
                    return None
                reason = _reason(inner)
                if reason is not None:
                    return reason
        return _reason(ip)

    def host_refusal(self, host: str) -> str | None:
        """Why a DNS name must not be looked up at all (metadata service names)."""
        name = host.lower().rstrip(".")
        if name in self.allow_hosts:
            return None
        if name in METADATA_HOSTS:
            return f"cloud metadata host {name}"
        return None
