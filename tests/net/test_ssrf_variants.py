"""More SSRF bypass spellings than ``test_guard_ssrf``: letter case, trailing dots, userinfo and
fragment tricks, the link-local metadata address in every notation, and the same spellings as
redirect targets (re-checked at the hop). Each is refused before a socket opens to it.

Names resolve through ``Zone``, a stand-in DNS implementing the guard's resolver seam (an
``async (host) -> addresses`` callable) that answers like a real resolver: case-insensitively,
with or without the root dot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import pytest
from tests.net.test_guard_ssrf import BYPASSES

from wayport.core.errors import PermissionDenied
from wayport.net import GuardedClient, GuardPolicy

pytestmark = pytest.mark.anyio


class Zone:
    """Names an attacker controls, pointing inward."""

    def __init__(self, records: dict[str, list[str]]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        name = host.lower().rstrip(".")
        if name not in self.records:
            raise OSError(f"NXDOMAIN {host}")
        return self.records[name]


def zone() -> Zone:
    return Zone(
        {
            "inward.test": ["127.0.0.1"],
            "meta.test": ["169.254.169.254"],
            "v6-ll.test": ["fe80::1"],
            "v6-ula.test": ["fd00::"],
            "rebind.test": ["8.8.8.8", "127.0.0.1"],
            "cgnat.test": ["100.64.0.0"],
            "localhost": ["127.0.0.1"],
            "evil.com": ["93.184.216.34"],
        }
    )


VARIANTS = [
    # letter case in the scheme and the host
    "HTTP://127.0.0.1/",
    "Http://127.0.0.1/",
    "HTTPS://[::1]/",
    "http://LOCALHOST/",
    "http://LocalHost./",
    "http://INWARD.TEST./",
    "http://Meta.Test/latest/meta-data/",
    "http://0X7F000001/",
    "http://0X7F.0X0.0X0.0X1/",
    "http://[::FFFF:7F00:1]/",
    # loopback spellings not in test_guard_ssrf
    "http://0177.1/",
    "http://0x7f.0x0.0x0.0x1/",
    "http://0x7f.0.1/",
    "http://127.000.000.001/",
    "http://2130706434/",
    "http://0x7f000001:65535/",
    # link-local metadata in every notation
    "http://169.254.169.254./",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0xa9.0xfe.0xa9.0xfe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[0:0:0:0:0:ffff:169.254.169.254]/",
    "http://[::ffff:169.254.169.254]:80/",
    "http://[fe80::a9fe:a9fe]/",
    "http://169.254.1.1/",
    # IPv6 private and special ranges
    "http://[fd00::]/",
    "http://[fdff:ffff:ffff:ffff::1]/",
    "http://[fe80::]/",
    "http://[febf::1]/",
    "http://[::ffff:0.0.0.0]/",
    "http://[0:0:0:0:0:0:0:0]/",
    # unspecified, CGNAT edges
    "http://0.0.0.0:8080/",
    "http://0x0/",
    "http://100.64.0.0/",
    "http://100.127.0.1/",
    # userinfo and fragment tricks
    "http://evil.com@127.0.0.1/",
    "http://evil.com:443@127.0.0.1/",
    "http://evil.com@[::1]/",
    "http://a@b@127.0.0.1/",
    "http://127.0.0.1#@evil.com/",
    "http://127.0.0.1:80#@evil.com/",
    "http://127.0.0.1?@evil.com/",
    # names resolving inward, spelled like a resolver forgives
    "http://inward.test/",
    "http://meta.test./",
    "http://v6-ll.test/",
    "http://v6-ula.test/",
    "http://cgnat.test/",
    "http://rebind.test/",
    "http://metadata.google.internal./",
    # schemes in other case
    "FILE:///etc/passwd",
    "Gopher://127.0.0.1:70/_",
]


def test_there_are_at_least_fifty_distinct_variants() -> None:
    assert len(VARIANTS) == len(set(VARIANTS)) >= 50
    assert len(set(VARIANTS) | set(BYPASSES)) >= 100  # with test_guard_ssrf's


@pytest.mark.parametrize("url", VARIANTS)
async def test_variant_refused(url: str) -> None:
    async with GuardedClient(GuardPolicy(), resolve=zone()) as client:
        with pytest.raises(PermissionDenied) as info:
            await client.request("GET", url, timeout=5)
    assert info.value.code == "ssrf_blocked"


REDIRECTS = [
    "HTTP://127.0.0.2:{port}/echo",
    "http://V6-LL.TEST:{port}/echo",
    "http://v6-ula.test.:{port}/echo",
    "http://evil.com@127.0.0.2:{port}/echo",
    "http://2852039166/",
    "http://[0:0:0:0:0:ffff:169.254.169.254]/",
    "http://0x7f000002:{port}/echo",
    "http://meta.test/",
]


@pytest.mark.parametrize("target", REDIRECTS)
async def test_redirect_to_variant_refused_at_the_hop(upstream: Any, target: str) -> None:
    """The first hop is allow-listed (127.0.0.1 only); where it points is checked again."""
    to = quote(target.format(port=upstream.port), safe="")
    async with GuardedClient(GuardPolicy(allow=("127.0.0.1/32",)), resolve=zone()) as client:
        with pytest.raises(PermissionDenied):
            await client.request("GET", f"{upstream.url}/redirect?to={to}", timeout=5)
    assert len(upstream.hits) == 1  # the redirect was served, its target never reached
