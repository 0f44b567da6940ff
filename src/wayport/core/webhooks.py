"""Signed completion webhooks: the signature scheme, the retry schedule and the outbox record.

A webhook body is signed with HMAC-SHA256 over ``"<timestamp>.<raw body>"`` and sent in the
``Wayport-Signature`` header as ``t=<unix seconds>,v1=<hex digest>`` (Stripe's layout, so the
usual receiver code fits)::

    >>> header = signature_header("s3cret", b'{"type":"run.completed"}', timestamp=1700000000)
    >>> header.startswith("t=1700000000,v1=")
    True
    >>> verify_signature("s3cret", b'{"type":"run.completed"}', header, now=1700000100)
    True
    >>> verify_signature("other", b'{"type":"run.completed"}', header, now=1700000100)
    False
    >>> [retry_delay(n) for n in (1, 2, 3)]
    [1.0, 2.0, 4.0]
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum

SIGNATURE_HEADER = "Wayport-Signature"
EVENT_ID_HEADER = "Wayport-Webhook-Id"
TOLERANCE = 300.0  #: seconds a receiver should accept between the timestamp and its clock
MAX_ATTEMPTS = 12  #: deliveries tried before the webhook is given up (about an hour of retries)


class WebhookState(StrEnum):
    ARMED = "armed"  #: waiting for its run to finish, or for its next attempt
    DELIVERED = "delivered"  #: a 2xx came back; never sent again
    FAILED = "failed"  #: every attempt failed; kept for inspection


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhook:
    """One run's completion webhook as the outbox keeps it."""

    tenant_id: str
    run_id: str
    event_id: str  #: sent as ``Wayport-Webhook-Id``: the same on every retry, for dedup
    url: str
    secret: str | None = None  #: the run's own; ``None``: the configured default
    state: WebhookState = WebhookState.ARMED
    attempts: int = 0
    next_attempt_at: float = 0.0
    last_error: str | None = None
    created_at: float = 0.0
    delivered_at: float | None = None

    def __repr__(self) -> str:  # the secret never reaches a log line through a repr
        return (
            f"Webhook(run_id={self.run_id!r}, url={self.url!r}, state={self.state.value!r}, "
            f"attempts={self.attempts})"
        )


def _digest(secret: str, body: bytes, timestamp: int) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, *, timestamp: int) -> str:
    """The ``Wayport-Signature`` value for ``body`` sent at ``timestamp``."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify_signature(
    secret: str, body: bytes, header: str, *, now: float, tolerance: float = TOLERANCE
) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` of ``now``
    (constant-time comparison; any ``v1`` entry may match, for secret rotation)."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = _digest(secret, body, timestamp)
    return any(hmac.compare_digest(expected, c) for c in candidates)


def retry_delay(attempts: int, *, base: float = 1.0, cap: float = 600.0) -> float:
    """Seconds before the next try after ``attempts`` failed ones: doubling, capped."""
    return float(min(cap, base * 2 ** max(attempts - 1, 0)))
