"""The tools of the support-ticket example: look a customer up, send the approved reply.

``send_reply`` is the side effect that must not happen twice: it keeps the idempotency key of
every reply it sent (in ``outbox.jsonl`` beside the state) and sends nothing for a key it has
seen, so a step repeated after a crash (steps are at least once) delivers one reply. A real
integration passes the key to its provider (an ``Idempotency-Key`` header) instead.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

CUSTOMERS = {
    "ada@example.com": {"name": "Ada Lovelace", "plan": "pro", "since": 2019},
    "grace@example.com": {"name": "Grace Hopper", "plan": "team", "since": 2021},
}


def lookup_customer(email: str) -> dict[str, object]:
    """Find a customer by email address."""
    found = CUSTOMERS.get(email.strip().lower())
    if found is None:
        return {"email": email, "name": "unknown customer", "plan": "free", "since": None}
    return {"email": email, **found}


def _outbox() -> Path:
    return Path(os.environ.get("SUPPORT_OUTBOX", ".wayport/outbox.jsonl"))


def send_reply(to: str, body: str, idempotency_key: str) -> dict[str, object]:
    """Send the approved reply to the customer (once per idempotency key)."""
    path = _outbox()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as outbox:
        fcntl.flock(outbox, fcntl.LOCK_EX)
        outbox.seek(0)
        for line in outbox:
            if json.loads(line)["key"] == idempotency_key:
                return {"sent": True, "to": to, "repeat": True}
        outbox.write(json.dumps({"key": idempotency_key, "to": to, "body": body}) + "\n")
    return {"sent": True, "to": to, "repeat": False}
