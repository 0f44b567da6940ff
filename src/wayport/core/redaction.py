"""Masking secrets out of text: the one filter logs, traces, error bodies and stored error text
pass through before they leave the process or reach the database.

    >>> r = SecretRedactor()
    >>> r.add(["wp-canary-0123456789"])
    >>> r.redact("upstream 401 for key wp-canary-0123456789")
    'upstream 401 for key [REDACTED]'
    >>> r.redact("Authorization: Bearer abc.def")
    'Authorization: Bearer [REDACTED]'

Besides the registered values it masks the shapes of credentials whatever their value: bearer
tokens and ``sk-…`` provider keys. The configuration loader registers every secret it reads
with the process-wide :data:`SECRETS` (add-only), so :func:`redact` knows them everywhere.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

__all__ = ["MIN_SECRET_LENGTH", "REDACTED", "SECRETS", "SecretRedactor", "redact", "register"]

REDACTED = "[REDACTED]"
#: Shorter values are not registered: masking every "abc" in every line would hide more than
#: it protects (and a secret that short is refused as weak anyway).
MIN_SECRET_LENGTH = 6
_TOKEN_PATTERNS = (
    r"(?i:\bbearer\s+)[A-Za-z0-9\-._~+/]+=*",  # credentials in Authorization-style text
    r"\bsk-[A-Za-z0-9_\-]{6,}",  # the common shape of provider API keys
)


def _mask(match: re.Match[str]) -> str:
    found = match.group()
    scheme, space, _ = found.partition(" ")
    # Keep the word "Bearer" so that a reader still sees what kind of secret was there.
    return f"{scheme} {REDACTED}" if space and scheme.lower() == "bearer" else REDACTED


class SecretRedactor:
    """A set of secret values and the one compiled pattern that masks them (longest first,
    so a secret containing another is masked whole). Adding is thread-safe; redacting reads
    one immutable compiled pattern and takes no lock."""

    __slots__ = ("_lock", "_pattern", "_secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._pattern = re.compile("|".join(_TOKEN_PATTERNS))
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}
        with self._lock:
            if fresh <= self._secrets:
                return
            self._secrets = self._secrets | fresh
            literal = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join([*map(re.escape, literal), *_TOKEN_PATTERNS]))

    def __contains__(self, secret: object) -> bool:
        return secret in self._secrets

    def redact(self, text: str) -> str:
        return self._pattern.sub(_mask, text)


#: The process-wide registry: every secret the configuration loader read.
SECRETS = SecretRedactor()


def register(secrets: Iterable[str]) -> None:
    """Mask these values everywhere from now on (values shorter than 6 characters are
    ignored)."""
    SECRETS.add(secrets)


def redact(text: str) -> str:
    """``text`` with every registered secret, bearer token and ``sk-…`` key masked: call it on
    anything that leaves the process (trace attributes, error bodies, stored error text)."""
    return SECRETS.redact(text)
