"""Channels' decisions: which agent and session a message goes to (bindings), and whether its
sender may talk to the agent (DM policy, pairing codes). Pure functions of their arguments.

    >>> route = resolve((Binding(agent="sales", channel="tg"),), Inbound(
    ...     channel="tg", message_id="1", sender="u1", chat="u1", text="hi"), default="assistant")
    >>> route.agent, route.session_key.startswith("ch-")
    ('sales', True)
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from wayport.core.channel_types import ChatKind, Inbound

# --- routing ------------------------------------------------------------------------------------


class SessionMode(StrEnum):
    PEER = "peer"  #: one session per person across channels (direct chats)
    CHANNEL_PEER = "channel_peer"  #: one per person per channel
    SHARED = "shared"  #: one session for everyone the binding covers


@dataclass(frozen=True, slots=True, kw_only=True)
class Binding:
    """Send matching messages to ``agent``. Every field given must match; the most specific
    binding wins: peer, then group/thread, then account, then channel, then the default."""

    agent: str
    channel: str | None = None
    account: str | None = None
    peer: str | None = None  #: a sender id
    group: str | None = None  #: a group chat id
    thread: str | None = None  #: a thread inside ``group``
    session: SessionMode = SessionMode.CHANNEL_PEER  #: for direct chats; groups are per thread
    require_mention: bool = True  #: in groups, answer only when mentioned

    def matches(self, m: Inbound) -> bool:
        return (
            (self.channel is None or self.channel == m.channel)
            and (self.account is None or self.account == m.account)
            and (self.peer is None or self.peer == m.sender)
            and (self.group is None or (m.chat_kind is ChatKind.GROUP and self.group == m.chat))
            and (self.thread is None or self.thread == m.thread)
        )

    @property
    def specificity(self) -> int:
        if self.peer is not None:
            return 5
        if self.thread is not None:
            return 4
        if self.group is not None:
            return 3
        if self.account is not None:
            return 2
        return 1 if self.channel is not None else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    agent: str
    session_key: str  #: a session id (``ch-`` and a hash of what it is per)
    binding: Binding | None  #: None: the default agent
    require_mention: bool


def resolve(
    bindings: Sequence[Binding],
    message: Inbound,
    *,
    default: str,
    session: SessionMode = SessionMode.CHANNEL_PEER,
) -> Route:
    """The agent and session for ``message``: the most specific matching binding (the first
    one listed among equals), else ``default``."""
    best: Binding | None = None
    for b in bindings:
        if b.matches(message) and (best is None or b.specificity > best.specificity):
            best = b
    agent = best.agent if best is not None else default
    mode = best.session if best is not None else session
    return Route(
        agent=agent,
        session_key=session_key(agent, message, mode),
        binding=best,
        require_mention=best.require_mention if best is not None else True,
    )


def session_key(agent: str, message: Inbound, mode: SessionMode) -> str:
    """Groups are keyed by group and thread; direct chats by ``mode``."""
    if message.chat_kind is ChatKind.GROUP:
        parts = [agent, message.channel, "group", message.chat, message.thread or ""]
    elif mode is SessionMode.PEER:
        parts = [agent, "peer", message.sender]
    elif mode is SessionMode.SHARED:
        parts = [agent, "shared"]
    else:
        parts = [agent, message.channel, "peer", message.sender]
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"ch-{digest[:40]}"


# --- who may talk -------------------------------------------------------------------------------


class DmPolicy(StrEnum):
    OPEN = "open"  #: anybody
    ALLOWLIST = "allowlist"  #: only the listed senders
    PAIRING = "pairing"  #: the listed or paired senders; others get a code to have approved


class Verdict(StrEnum):
    ACCEPT = "accept"  #: start a run
    IGNORE = "ignore"  #: a group message not addressed to the bot
    REFUSE = "refuse"  #: not allowed, nothing to say
    ISSUE_CODE = "issue_code"  #: tell the sender a new pairing code
    REMIND_CODE = "remind_code"  #: tell the sender their pending code again
    PAIRING_FULL = "pairing_full"  #: too many codes pending; try later


@dataclass(frozen=True, slots=True, kw_only=True)
class PairingCode:
    channel: str
    sender: str
    code: str
    created_at: float
    expires_at: float
    approved_at: float | None = None

    def pending(self, now: float) -> bool:
        return self.approved_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessPolicy:
    dm: DmPolicy = DmPolicy.OPEN
    allow_from: frozenset[str] = frozenset()  #: sender ids always allowed
    pairing_ttl: float = 3600.0  #: seconds a pairing code stays valid
    max_pending: int = 3  #: codes pending at once per channel


def admit(
    policy: AccessPolicy,
    message: Inbound,
    *,
    require_mention: bool,
    pairing: PairingCode | None,
    pending: int,
    now: float,
) -> Verdict:
    """Whether ``message`` starts a run. ``pairing`` is the sender's pairing record on this
    channel (if any), ``pending`` how many codes wait for approval on it now."""
    if message.chat_kind is ChatKind.GROUP:
        return Verdict.IGNORE if require_mention and not message.mentioned else Verdict.ACCEPT
    if policy.dm is DmPolicy.OPEN or message.sender in policy.allow_from:
        return Verdict.ACCEPT
    if policy.dm is DmPolicy.ALLOWLIST:
        return Verdict.REFUSE
    if pairing is not None and pairing.approved_at is not None:
        return Verdict.ACCEPT
    if pairing is not None and pairing.pending(now):
        return Verdict.REMIND_CODE
    return Verdict.PAIRING_FULL if pending >= policy.max_pending else Verdict.ISSUE_CODE


_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud without doubt


def new_pairing_code(length: int = 8) -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(length))


def pairing_text(verdict: Verdict, code: str | None) -> str | None:
    """What the sender is told, if anything."""
    if verdict in (Verdict.ISSUE_CODE, Verdict.REMIND_CODE) and code is not None:
        return (
            f"Hi! This assistant answers approved people only. Your pairing code is {code}; "
            "ask the operator to approve it."
        )
    if verdict is Verdict.PAIRING_FULL:
        return "Too many pairing requests are waiting; please try again later."
    return None
