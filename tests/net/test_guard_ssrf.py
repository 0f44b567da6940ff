"""SSRF bypass variants, each sent through the real client and refused before any socket
opens; and the same inward addresses reachable once allow-listed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from wayport.core.errors import PermissionDenied
from wayport.net import AddressPolicy, GuardedClient, GuardPolicy

pytestmark = pytest.mark.anyio

# A stand-in DNS: names an attacker controls, pointing inward.
ZONE: dict[str, list[str]] = {
    "inward.test": ["127.0.0.1"],
    "private.test": ["10.0.0.5"],
    "cgnat.test": ["100.64.1.1"],
    "meta.test": ["169.254.169.254"],
    "v6-loopback.test": ["::1"],
    "v6-mapped.test": ["::ffff:127.0.0.1"],
    "v6-ula.test": ["fd00::1"],
    "mixed.test": ["93.184.216.34", "192.168.1.1"],
    "ec2-v6.test": ["fd00:ec2::254"],
    "localhost": ["127.0.0.1", "::1"],
}
LOOKUPS: list[str] = []


async def fake_resolve(host: str) -> Sequence[str]:
    LOOKUPS.append(host)
    return ZONE[host]


BYPASSES = [
    # IPv4 loopback in every spelling resolvers accept
    "http://127.0.0.1/",
    "http://127.0.0.2/",
    "http://127.255.255.254/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.0.0.1/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://0177.0000.0000.0001/",
    "http://017700000001/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.0.0.1./",
    "http://①②⑦.0.0.1/",
    "http://127。0。0。1/",
    "http://example.com@127.0.0.1/",
    "http://user:pass@127.0.0.1:8080/",
    # unspecified / this network
    "http://0/",
    "http://0.0.0.0/",
    "http://0.1.2.3/",
    # RFC 1918, CGNAT
    "http://10.0.0.1/",
    "http://10.255.255.255/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.0.1/",
    "http://100.64.0.1/",
    "http://100.127.255.254/",
    # link-local and cloud metadata
    "http://169.254.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.170.2/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.GOOGLE.INTERNAL./",
    "http://[fd00:ec2::254]/",
    # multicast, reserved, documentation, benchmarking, broadcast
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    "http://192.0.2.1/",
    "http://198.18.0.1/",
    # IPv6 and the IPv6 forms that carry an inward IPv4 address
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[0:0:0:0:0:ffff:7f00:1]/",
    "http://[::ffff:7f00:1]:8080/",
    "http://[::127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[fe80::1]/",
    "http://[fe80::1%25eth0]/",
    "http://[ff02::1]/",
    "https://[::1]:443/",
    # DNS names that resolve inward
    "http://localhost/",
    "http://inward.test/",
    "http://private.test/",
    "http://cgnat.test/",
    "http://meta.test/",
    "http://v6-loopback.test/",
    "http://v6-mapped.test/",
    "http://v6-ula.test/",
    "http://ec2-v6.test:8080/",
    "http://mixed.test/",
    # other schemes
    "file:///etc/passwd",
    "gopher://127.0.0.1:70/_",
    "ftp://example.com/",
    "ws://example.com/",
]


def test_there_are_at_least_fifty_variants() -> None:
    assert len(set(BYPASSES)) >= 50


@pytest.mark.parametrize("url", BYPASSES)
async def test_bypass_refused(url: str) -> None:
    async with GuardedClient(GuardPolicy(), resolve=fake_resolve) as client:
        with pytest.raises(PermissionDenied) as info:
            await client.request("GET", url, timeout=5)
    assert info.value.code == "ssrf_blocked"
    assert info.value.status == 403


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("169.254.169.254", "cloud metadata"),
        ("fe80::1", "link-local"),
        ("::ffff:192.168.0.1", "private"),
        ("ff02::1", "multicast"),
        ("::", "unspecified"),
    ],
)
def test_refusal_names_the_reason(address: str, reason: str) -> None:
    refusal = AddressPolicy.build().refusal(address)
    assert refusal is not None and refusal.startswith(reason)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111", "8.8.8.8"])
def test_public_addresses_pass(address: str) -> None:
    assert AddressPolicy.build().refusal(address) is None


def test_allow_list_covers_embedded_forms() -> None:
    policy = AddressPolicy.build(allow=["127.0.0.0/8"])
    assert policy.refusal("127.0.0.9") is None
    assert policy.refusal("::ffff:127.0.0.1") is None
    assert policy.refusal("10.0.0.1") is not None


async def test_dns_answer_is_used_once_not_looked_up_again(upstream: Any) -> None:
    LOOKUPS.clear()
    async with GuardedClient(GuardPolicy(allow=("127.0.0.1",)), resolve=fake_resolve) as client:
        response = await client.request("GET", f"http://inward.test:{upstream.port}/echo")
    assert response.status == 200
    assert response.json()["host"] == f"inward.test:{upstream.port}"
    assert LOOKUPS == ["inward.test"]


async def test_metadata_name_refused_even_if_it_resolves_to_an_allowed_address() -> None:
    zone = {"metadata.google.internal": ["127.0.0.1"]}

    async def resolve(host: str) -> Sequence[str]:
        return zone[host]

    async with GuardedClient(GuardPolicy(allow=("127.0.0.1",)), resolve=resolve) as client:
        with pytest.raises(PermissionDenied, match="metadata"):
            await client.request("GET", "http://metadata.google.internal/")
