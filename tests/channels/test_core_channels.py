"""The pure decisions of ``wayport.core.channels``, as tables."""

from __future__ import annotations

import pytest

from wayport.core.channels import (
    AccessPolicy,
    Binding,
    ChatKind,
    DmPolicy,
    Inbound,
    PairingCode,
    SessionMode,
    Verdict,
    admit,
    backoff,
    chunk_text,
    inbound_from_json,
    inbound_to_json,
    resolve,
    session_key,
)


def msg(**kw: object) -> Inbound:
    base: dict[str, object] = {
        "channel": "tg",
        "message_id": "1",
        "sender": "u1",
        "chat": "u1",
        "text": "hi",
    }
    base.update(kw)
    return Inbound(**base)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- chunking


def balanced(piece: str) -> bool:
    return sum(1 for line in piece.split("\n") if line.strip().startswith("```")) % 2 == 0


CODE = "```python\n" + "\n".join(f"print({i})" for i in range(60)) + "\n```"


@pytest.mark.parametrize(
    ("text", "limit"),
    [
        ("short", 100),
        ("word " * 500, 100),
        ("para one.\n\npara two is here.\n\n" * 40, 120),
        ("intro\n\n" + CODE + "\n\nafter the code", 200),
        ("x" * 1000, 64),  # no spaces at all
        ("a\n\n```\nsmall block\n```\n\n" + "b " * 80, 60),
    ],
)
def test_chunks_fit_and_keep_fences_balanced(text: str, limit: int) -> None:
    pieces = chunk_text(text, limit)
    assert pieces
    assert all(0 < len(p) <= limit for p in pieces), [len(p) for p in pieces]
    assert all(balanced(p) for p in pieces)
    squashed = "".join(text.split())
    joined = "".join("".join(p.split()) for p in pieces)
    if "```" not in text:
        assert joined == squashed  # nothing lost, nothing added


def test_a_code_block_that_fits_is_never_cut() -> None:
    block = "```sh\necho one\necho two\n```"
    text = "a" * 50 + "\n\n" + block + "\n\n" + "b" * 10
    pieces = chunk_text(text, 60)
    assert any(block in p for p in pieces)


def test_a_long_code_block_is_closed_and_reopened_with_its_language() -> None:
    pieces = chunk_text(CODE, 120)
    assert len(pieces) > 1
    assert all(p.startswith("```python\n") and p.endswith("\n```") for p in pieces)
    body = [line for p in pieces for line in p.split("\n")[1:-1]]
    assert body == [f"print({i})" for i in range(60)]


def test_empty_text_has_no_chunks_and_tiny_limits_are_refused() -> None:
    assert chunk_text("\n\n", 100) == []
    with pytest.raises(ValueError):
        chunk_text("hi", 10)


# --------------------------------------------------------------------------- routing

BINDINGS = (
    Binding(agent="by-channel", channel="tg"),
    Binding(agent="by-account", channel="tg", account="bot2"),
    Binding(agent="by-group", group="g1"),
    Binding(agent="by-thread", group="g1", thread="t9"),
    Binding(agent="by-peer", peer="vip"),
    Binding(agent="other-channel", channel="slack"),
)


@pytest.mark.parametrize(
    ("message", "agent"),
    [
        (msg(), "by-channel"),
        (msg(channel="webchat"), "default"),
        (msg(channel="slack"), "other-channel"),
        (msg(account="bot2"), "by-account"),
        (msg(chat="g1", chat_kind=ChatKind.GROUP), "by-group"),
        (msg(chat="g1", chat_kind=ChatKind.GROUP, thread="t9"), "by-thread"),
        (msg(chat="g1", chat_kind=ChatKind.GROUP, thread="t9", sender="vip"), "by-peer"),
        (msg(sender="vip", account="bot2"), "by-peer"),
        (msg(chat="g1", chat_kind=ChatKind.DIRECT), "by-channel"),  # a DM is no group
    ],
)
def test_the_most_specific_binding_wins(message: Inbound, agent: str) -> None:
    assert resolve(BINDINGS, message, default="default").agent == agent


def test_equal_bindings_go_to_the_first_listed() -> None:
    first, second = Binding(agent="a", channel="tg"), Binding(agent="b", channel="tg")
    assert resolve((first, second), msg(), default="d").agent == "a"


def test_session_keys() -> None:
    dm_tg, dm_slack = msg(), msg(channel="slack")
    key = session_key
    assert key("a", dm_tg, SessionMode.PEER) == key("a", dm_slack, SessionMode.PEER)
    assert key("a", dm_tg, SessionMode.CHANNEL_PEER) != key("a", dm_slack, SessionMode.CHANNEL_PEER)
    assert key("a", dm_tg, SessionMode.SHARED) == key("a", msg(sender="u2"), SessionMode.SHARED)
    assert key("a", dm_tg, SessionMode.CHANNEL_PEER) != key("b", dm_tg, SessionMode.CHANNEL_PEER)
    g = msg(chat="g", chat_kind=ChatKind.GROUP)
    # groups: per group and thread, whoever speaks and whatever the mode
    assert key("a", g, SessionMode.PEER) == key(
        "a", msg(chat="g", chat_kind=ChatKind.GROUP, sender="u2"), SessionMode.PEER
    )
    assert key("a", g, SessionMode.PEER) != key(
        "a", msg(chat="g", chat_kind=ChatKind.GROUP, thread="t"), SessionMode.PEER
    )
    assert all(len(key("a", m, SessionMode.PEER)) <= 64 for m in (dm_tg, g))


# --------------------------------------------------------------------------- access

NOW = 1_000.0
OPEN, ALLOW = AccessPolicy(), AccessPolicy(dm=DmPolicy.ALLOWLIST, allow_from=frozenset({"ok"}))
PAIR = AccessPolicy(dm=DmPolicy.PAIRING, allow_from=frozenset({"ok"}), max_pending=2)


def code(approved: float | None = None, expires: float = NOW + 60) -> PairingCode:
    return PairingCode(
        channel="tg",
        sender="u1",
        code="ABCD2345",
        created_at=0,
        expires_at=expires,
        approved_at=approved,
    )


@pytest.mark.parametrize(
    ("policy", "message", "mention", "pairing", "pending", "verdict"),
    [
        (OPEN, msg(), True, None, 0, Verdict.ACCEPT),
        (ALLOW, msg(), True, None, 0, Verdict.REFUSE),
        (ALLOW, msg(sender="ok"), True, None, 0, Verdict.ACCEPT),
        (OPEN, msg(chat_kind=ChatKind.GROUP), True, None, 0, Verdict.IGNORE),
        (OPEN, msg(chat_kind=ChatKind.GROUP, mentioned=True), True, None, 0, Verdict.ACCEPT),
        (OPEN, msg(chat_kind=ChatKind.GROUP), False, None, 0, Verdict.ACCEPT),
        (ALLOW, msg(chat_kind=ChatKind.GROUP, mentioned=True), True, None, 0, Verdict.ACCEPT),
        (PAIR, msg(sender="ok"), True, None, 5, Verdict.ACCEPT),
        (PAIR, msg(), True, None, 0, Verdict.ISSUE_CODE),
        (PAIR, msg(), True, None, 2, Verdict.PAIRING_FULL),
        (PAIR, msg(), True, code(), 1, Verdict.REMIND_CODE),
        (PAIR, msg(), True, code(expires=NOW), 1, Verdict.ISSUE_CODE),  # expired: a new one
        (PAIR, msg(), True, code(approved=NOW - 5, expires=0), 0, Verdict.ACCEPT),
    ],
)
def test_admit(
    policy: AccessPolicy,
    message: Inbound,
    mention: bool,
    pairing: PairingCode | None,
    pending: int,
    verdict: Verdict,
) -> None:
    got = admit(policy, message, require_mention=mention, pairing=pairing, pending=pending, now=NOW)
    assert got is verdict


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, base=1, cap=5) for n in range(1, 6)] == [1, 2, 4, 5, 5]


def test_inbound_round_trips_through_json() -> None:
    m = msg(chat_kind=ChatKind.GROUP, thread="t", mentioned=True, reply={"ts": "1.2"})
    assert inbound_from_json(inbound_to_json(m)) == m
