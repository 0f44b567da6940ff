"""Tools the workflow tests and the example call. ``record`` appends one line per execution to
the file named by ``WAYPORT_WF_SIDE_EFFECTS`` (the kill test's side-effect log) and answers
with the line's number, which the step's checkpoint keeps; with ``WAYPORT_WF_REPLICA`` set (the
two-replica test) the line ends with that replica's name."""

from __future__ import annotations

import fcntl
import os
import time

ATTEMPTS: dict[str, int] = {}


def record(label: str, idempotency_key: str, pause: float = 0.0) -> dict[str, object]:
    """Append ``key label [replica]`` to the side-effect log; return the line number written."""
    if pause:
        time.sleep(pause)  # a slow side effect, so that kills land inside steps too
    path = os.environ["WAYPORT_WF_SIDE_EFFECTS"]
    replica = os.environ.get("WAYPORT_WF_REPLICA")
    with open(path, "a+", encoding="utf-8") as log:
        fcntl.flock(log, fcntl.LOCK_EX)  # append and count as one, across threads and processes
        log.write(f"{idempotency_key} {label}" + (f" {replica}" if replica else "") + "\n")
        log.flush()
        os.fsync(log.fileno())
        log.seek(0)
        line = sum(1 for _ in log)
    return {"label": label, "line": line}


def echo(value: object) -> object:
    """Return the value."""
    return value


def flaky(name: str, failures: int, idempotency_key: str) -> str:
    """Fail ``failures`` times per key, then succeed."""
    seen = ATTEMPTS.get(idempotency_key, 0)
    ATTEMPTS[idempotency_key] = seen + 1
    if seen < failures:
        raise RuntimeError(f"{name} failure {seen + 1}")
    return f"{name} ok after {seen + 1}"


def lookup_customer(email: str) -> dict[str, object]:
    """Find a customer by email."""
    return {"email": email, "name": "Ada Lovelace", "plan": "pro", "open_tickets": 1}


def send_reply(to: str, body: str, idempotency_key: str) -> dict[str, object]:
    """Send a reply (here: append it to the outbox file, once per key)."""
    path = os.environ.get("WAYPORT_WF_OUTBOX")
    if path:
        with open(path, "a", encoding="utf-8") as outbox:
            outbox.write(f"{idempotency_key}\t{to}\t{body!r}\n")
    return {"sent": True, "to": to}
