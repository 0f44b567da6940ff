"""Who is asking: the principal a request runs as, and the roles of the access model.

Every request is served on behalf of one ``Principal``: the tenant its data belongs to, the API
key (if any) that authenticated it, the end user it speaks for, and the role that bounds what it
may do. The server fills it in from the credentials; services and stores only ever see the
tenant it carries, so tenant scoping never depends on a value the client typed.

Roles, most to least powerful::

    owner > admin > deployer > developer > user > viewer

``owner`` and ``admin`` manage keys and settings, ``deployer`` moves releases, ``developer``
edits agents and tools, ``user`` invokes agents and models, ``viewer`` only reads.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wayport.core.session import DEFAULT_TENANT


class Role(enum.IntEnum):
    """Ordered: a role may do everything the roles below it may."""

    VIEWER = 10
    USER = 20
    DEVELOPER = 30
    DEPLOYER = 40
    ADMIN = 50
    OWNER = 60

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str) -> Role:
        try:
            return cls[value.upper()]
        except KeyError:
            names = ", ".join(r.label for r in sorted(cls, reverse=True))
            raise ValueError(f"unknown role {value!r}; expected one of {names}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    tenant: str
    role: Role
    key_id: str | None = None  #: the API key's public id; None when no key was presented
    user: str | None = None  #: the end user the caller speaks for, when it says so
    scopes: frozenset[str] = field(default_factory=frozenset)  #: empty: everything the role allows

    def allows(self, role: Role) -> bool:
        return self.role >= role


#: The principal of a server running without authentication (loopback only): the default
#: tenant's owner.
LOCAL_OWNER = Principal(tenant=DEFAULT_TENANT, role=Role.OWNER)


# --- Tenants, API keys, audit entries ----------------------------------------------------------

#: Tenant and organisation ids: lower-case slugs, no ``_`` (API keys use it as a separator).
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: ``wp_<tenant>_<key id>_<secret>``: the key id is 12 base32 characters, the secret 43
#: url-safe ones (``secrets.token_urlsafe(32)``, 256 bits).
KEY_TOKEN = re.compile(r"wp_([a-z0-9][a-z0-9-]{0,63})_([a-z2-7]{12})_([A-Za-z0-9_-]{43})")
KEY_ID = re.compile(r"[a-z2-7]{12}")
#: The principal of the configured ``server.api_key``: the default tenant's owner.
BOOTSTRAP_KEY_ID = "bootstrap"


def check_slug(value: str, what: str) -> str:
    if SLUG.fullmatch(value) is None:
        raise ValueError(
            f"{what} must be 1 to 64 characters of a-z, 0-9 and '-', starting with a letter "
            f"or digit: {value!r}"
        )
    return value


def parse_token(token: str) -> tuple[str, str] | None:
    """``(tenant, key_id)`` of a well-formed key, ``None`` for anything else; nothing about
    the token reaches a query before this regex has accepted it."""
    m = KEY_TOKEN.fullmatch(token)
    return None if m is None else (m.group(1), m.group(2))


def key_prefix(tenant: str, key_id: str) -> str:
    """The visible part of a key (``wp_<tenant>_<key id>``), safe to show and log."""
    return f"wp_{tenant}_{key_id}"


def hash_token(token: str) -> str:
    """SHA-256 of the whole key, hex. Keys carry 256 random bits, so a fast hash is enough:
    nothing can be guessed by trying, and a slow KDF (argon2, bcrypt) would only add tens of
    milliseconds to every uncached request."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A project: the unit every stored row belongs to. ``org`` groups projects."""

    id: str
    org: str
    name: str = ""
    created_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A stored API key; the secret itself is never stored, only its hash."""

    tenant: str
    id: str
    name: str
    role: Role
    scopes: frozenset[str] = frozenset()
    user: str | None = None
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    created_by: str | None = None
    hash: str = field(default="", repr=False)

    @property
    def prefix(self) -> str:
        return key_prefix(self.tenant, self.id)

    def usable(self, now: float) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def principal(self) -> Principal:
        return Principal(
            tenant=self.tenant, role=self.role, key_id=self.id, user=self.user, scopes=self.scopes
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One line of a tenant's append-only audit log. ``hash`` chains it to the line before
    (``prev_hash``), so editing or removing a line breaks every hash after it."""

    tenant: str
    seq: int
    at: float
    actor: str | None
    action: str
    target: str | None
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


GENESIS_HASH = "0" * 64


def audit_hash(
    *,
    tenant: str,
    seq: int,
    at: float,
    actor: str | None,
    action: str,
    target: str | None,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    """SHA-256 over the previous hash and a canonical JSON of the entry."""
    body = json.dumps(
        [tenant, seq, repr(float(at)), actor, action, target, details],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        default=str,
    )
    return hashlib.sha256(f"{prev_hash}\n{body}".encode()).hexdigest()


def verify_chain(entries: Iterable[AuditEntry], *, prev_hash: str = GENESIS_HASH) -> int:
    """Check a run of consecutive entries; return how many. Raises ``ValueError`` naming the
    first entry whose link or hash does not match."""
    count = 0
    for e in entries:
        if e.prev_hash != prev_hash:
            raise ValueError(f"audit entry {e.seq}: the chain is broken before it")
        expected = audit_hash(
            tenant=e.tenant,
            seq=e.seq,
            at=e.at,
            actor=e.actor,
            action=e.action,
            target=e.target,
            details=e.details,
            prev_hash=e.prev_hash,
        )
        if expected != e.hash:
            raise ValueError(f"audit entry {e.seq}: its content does not match its hash")
        prev_hash = e.hash
        count += 1
    return count
