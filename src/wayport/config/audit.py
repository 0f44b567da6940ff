"""``wayport doctor``: what in a configuration is unsafe, and how bad it is.

    findings = audit(load_config("wayport.yaml", bind_check=False), env=os.environ)
    [f"{f.severity}: {f.where}: {f.problem}" for f in findings]
    any(f.severity is Severity.HIGH for f in findings)  # doctor exits 1

Pure: it reads the validated configuration and the environment, opens nothing, resolves no
names. Each finding says what to change.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from wayport.config import checks
from wayport.config.schema import WayportConfig
from wayport.net.addresses import AddressPolicy

__all__ = ["Finding", "Severity", "audit"]

_METADATA = ("169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254")
_MAX_BODY = 64 * 1024 * 1024


class Severity(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    severity: Severity
    where: str  #: the setting, as a path in wayport.yaml (or an environment variable)
    problem: str
    fix: str


def _networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(i, strict=False) for i in items]


def audit(config: WayportConfig, *, env: Mapping[str, str]) -> list[Finding]:
    """Every finding, most severe first."""
    found: list[Finding] = []
    add = found.append
    server = config.server
    has_key = server.api_key is not None or bool(env.get(checks.KEY_ENV))
    loopback = checks.is_loopback(server.host)
    if not loopback and not has_key:
        add(
            Finding(
                severity=Severity.HIGH,
                where="server.host",
                problem=f"listens on {server.host} without an API key: anyone who can reach "
                "it uses it (the server refuses to start like this)",
                fix=f"keep 127.0.0.1, or set {checks.KEY_ENV}",
            )
        )
    elif not has_key:
        add(
            Finding(
                severity=Severity.LOW,
                where="server.api_key",
                problem="no API key: every local process may call the API",
                fix=f"set {checks.KEY_ENV} (python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')",
            )
        )
    key = server.api_key.get_secret_value() if server.api_key else env.get(checks.KEY_ENV)
    reason = checks.weak_key_reason(key) if key else None
    if reason is not None:
        add(
            Finding(
                severity=Severity.HIGH,
                where="server.api_key",
                problem=f"the API key {reason}",
                fix="generate a strong key",
            )
        )
    if not loopback and server.metrics and not server.metrics_require_auth:
        add(
            Finding(
                severity=Severity.MEDIUM,
                where="server.metrics_require_auth",
                problem="/metrics is open to the network without a key",
                fix="set metrics_require_auth: true",
            )
        )
    if "*" in server.cors_origins:
        add(
            Finding(
                severity=Severity.HIGH,
                where="server.cors_origins",
                problem="'*' lets every web page call the API from its visitors' browsers",
                fix="list the exact origins (https://app.example.com)",
            )
        )
    for net in _networks(server.trusted_proxies):
        if net.prefixlen == 0:
            add(
                Finding(
                    severity=Severity.HIGH,
                    where="server.trusted_proxies",
                    problem=f"{net} trusts every peer: any client can forge X-Forwarded-For "
                    "and so its address in logs and rate limits",
                    fix="list only your load balancers' addresses",
                )
            )
        elif net.prefixlen < (8 if net.version == 4 else 32):
            add(
                Finding(
                    severity=Severity.MEDIUM,
                    where="server.trusted_proxies",
                    problem=f"{net} is a very broad range of trusted proxies",
                    fix="narrow it to the proxies' own addresses",
                )
            )
    found.extend(_outbound(config))
    if server.max_body_bytes > _MAX_BODY:
        add(
            Finding(
                severity=Severity.LOW,
                where="server.max_body_bytes",
                problem=f"request bodies up to {server.max_body_bytes} bytes invite memory "
                "exhaustion",
                fix="keep it at a few MiB",
            )
        )
    for name, deployment in config.deployments.items():
        base = getattr(deployment, "base_url", None)
        if isinstance(base, str):
            parts = urlsplit(base)
            if parts.scheme == "http" and not checks.is_loopback(parts.hostname or ""):
                add(
                    Finding(
                        severity=Severity.MEDIUM,
                        where=f"deployments.{name}.base_url",
                        problem=f"plaintext http to {parts.hostname}: prompts, answers and the "
                        "upstream key cross the network unencrypted",
                        fix="use https (or a loopback address)",
                    )
                )
    for name, tool in config.tools.items():
        fields = tool.root
        if fields.get("type") == "mcp" and fields.get("command"):
            add(
                Finding(
                    severity=Severity.MEDIUM,
                    where=f"tools.{name}.command",
                    problem="a stdio MCP server runs a local command with this process's rights",
                    fix="prefer an HTTP MCP server, or run it sandboxed",
                )
            )
        url = fields.get("url")
        if isinstance(url, str) and urlsplit(url).scheme == "http":
            add(
                Finding(
                    severity=Severity.LOW,
                    where=f"tools.{name}.url",
                    problem="tool calls travel over plaintext http",
                    fix="use https",
                )
            )
    if config.store.encryption_keys is None:
        add(
            Finding(
                severity=Severity.MEDIUM,
                where="store.encryption_keys",
                problem="conversations and tool results are stored unencrypted",
                fix="set WAYPORT_ENCRYPTION_KEYS=$(wayport store keygen)",
            )
        )
    if config.store.retention_days is None:
        add(
            Finding(
                severity=Severity.LOW,
                where="store.retention_days",
                problem="sessions are kept forever",
                fix="set store.retention_days (e.g. 30)",
            )
        )
    return sorted(found, key=lambda f: -f.severity)


def _outbound(config: WayportConfig) -> list[Finding]:
    found: list[Finding] = []
    allowed = config.server.outbound_allow
    nets = _networks(allowed)
    policy = AddressPolicy.build(allow=allowed)
    if any(policy.refusal(address) is None for address in _METADATA):
        found.append(
            Finding(
                severity=Severity.HIGH,
                where="server.outbound_allow",
                problem="the cloud metadata address is reachable: a prompt-injected tool "
                "call can read this machine's cloud credentials",
                fix="remove the range holding 169.254.169.254 (or fd00:ec2::254)",
            )
        )
    for net in nets:
        if net.prefixlen == 0:
            found.append(
                Finding(
                    severity=Severity.HIGH,
                    where="server.outbound_allow",
                    problem=f"{net} turns the SSRF guard off",
                    fix="allow only the hosts tools need (a /32 each)",
                )
            )
        elif net.prefixlen < (16 if net.version == 4 else 48):
            found.append(
                Finding(
                    severity=Severity.MEDIUM,
                    where="server.outbound_allow",
                    problem=f"{net} opens a large private range to tools and webhooks",
                    fix="allow only the hosts tools need",
                )
            )
    return found
