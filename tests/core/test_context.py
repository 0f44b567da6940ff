"""Tables for the pure context assembly: budgets, whole tool-call units, truncation, where the
summary goes, what compaction may cover, calibration."""

from __future__ import annotations

import doctest

import pytest

import wayport.core.context as context
from wayport.core.agent import ContextPolicy
from wayport.core.context import (
    assemble,
    calibrated_ratio,
    clip,
    compaction_cut,
    cut_middle,
    fit_newest,
    history_budget,
    message_text,
    should_compact,
    system_prompt,
)
from wayport.core.types import Message, ToolCall


def test_docstring_examples_run() -> None:
    result = doctest.testmod(context)
    assert result.attempted > 0
    assert result.failed == 0


def call(id_: str, name: str = "lookup", args: str = "{}") -> ToolCall:
    return {"id": id_, "type": "function", "function": {"name": name, "arguments": args}}


def U(text: str = "u") -> Message:
    return {"role": "user", "content": text}


def A(text: str = "a") -> Message:
    return {"role": "assistant", "content": text}


def CALL(*ids: str) -> Message:
    return {"role": "assistant", "content": None, "tool_calls": [call(i) for i in ids]}


def T(id_: str, text: str = "r") -> Message:
    return {"role": "tool", "tool_call_id": id_, "content": text}


# --------------------------------------------------------------------------- budgets


@pytest.mark.parametrize(
    ("policy", "window", "params", "expected"),
    [
        (ContextPolicy(), 4096, None, 4096 - 256),
        (ContextPolicy(reserve_tokens=0), 4096, None, 4096),
        (ContextPolicy(), 4096, {"max_tokens": 1000}, 3096),
        (ContextPolicy(), 4096, {"max_tokens": 0}, 4096 - 256),  # nonsense falls back
        (ContextPolicy(budget_tokens=1000), 4096, None, 1000),
        (ContextPolicy(budget_tokens=9000), 4096, None, 4096 - 256),  # never past the window
        (ContextPolicy(), 100, {"max_tokens": 500}, 0),
    ],
)
def test_history_budget(
    policy: ContextPolicy, window: int, params: dict[str, int] | None, expected: int
) -> None:
    assert history_budget(policy, context_window=window, params=params) == expected


@pytest.mark.parametrize(
    ("used", "budget", "compact_at", "expected"),
    [(80, 100, 0.8, False), (81, 100, 0.8, True), (0, 0, 0.8, False), (1, 0, 0.8, True)],
)
def test_should_compact_past_the_threshold_only(
    used: int, budget: int, compact_at: float, expected: bool
) -> None:
    policy = ContextPolicy(compact_at=compact_at)
    assert should_compact(policy, used=used, budget=budget) is expected


# --------------------------------------------------------------------------- fitting units


@pytest.mark.parametrize(
    ("history", "costs", "available", "start"),
    [
        ([], [], 100, 0),
        ([U(), A()], [5, 5], 10, 0),  # exact fit
        ([U(), A()], [5, 5], 9, 1),  # one short: the newest message only
        ([U(), A()], [5, 5], 4, 2),  # nothing fits
        ([U(), CALL("c1"), T("c1"), A()], [5, 5, 5, 5], 14, 3),  # call + result cost 10
        ([U(), CALL("c1"), T("c1"), A()], [5, 5, 5, 5], 15, 1),
        ([U(), CALL("c1", "c2"), T("c1"), T("c2")], [5, 5, 5, 5], 14, 4),  # all or nothing
        ([U(), CALL("c1", "c2"), T("c1"), T("c2")], [5, 5, 5, 5], 15, 1),
        ([T("c0"), U(), A()], [5, 5, 5], 100, 1),  # an orphan tool result never opens it
        ([T("c0"), T("c1")], [1, 1], 100, 2),
        ([U(), A(), U(), A()], [5, 5, 5, 5], 12, 2),  # stops at the first unit that does not fit
        ([U(), A(), U(), A()], [1, 50, 1, 1], 100, 0),
    ],
)
def test_fit_newest_keeps_whole_units(
    history: list[Message], costs: list[int], available: int, start: int
) -> None:
    got = fit_newest(history, costs, available)
    assert got == start
    assert got == len(history) or history[got]["role"] != "tool"
    assert sum(costs[got:]) <= available


def test_fit_newest_keeps_the_last_unit_when_told_whatever_it_costs() -> None:
    history = [U(), A(), U(), CALL("c1")]
    assert fit_newest(history, [5, 5, 5, 50], 10) == 4
    assert fit_newest(history, [5, 5, 5, 50], 10, keep_last_unit=True) == 3
    assert fit_newest(history, [5, 5, 5, 50], 60, keep_last_unit=True) == 1
    assert fit_newest(history, [5, 5, 5, 50], 0, keep_last_unit=True) == 3


# --------------------------------------------------------------------------- truncation


@pytest.mark.parametrize(
    ("text", "limit", "head", "tail", "cut"),
    [
        ("x" * 10, 10, "x" * 10, "", 0),
        ("abcdefghij", 4, "ab", "ij", 6),
        ("abcdefghij", 5, "abc", "ij", 5),
        ("abcdefghij", 1, "a", "", 9),
        ("abcdefghij", 0, "", "", 10),
    ],
)
def test_cut_middle_keeps_head_and_tail_and_says_how_much_went(
    text: str, limit: int, head: str, tail: str, cut: int
) -> None:
    got = cut_middle(text, limit)
    if cut == 0:
        assert got == text
        return
    assert got.startswith(head)
    assert got.endswith(tail)
    assert f"{cut} characters cut" in got
    assert len(got) - len(context.CUT_MARKER.format(cut=cut)) == limit


def test_clip_cuts_only_long_tool_results() -> None:
    long = "start " + "x" * 10_000 + " end"
    tool = T("c1", long)
    clipped = clip(tool, 100)
    content = clipped.get("content")
    assert isinstance(content, str)
    assert content.startswith("start ") and content.endswith(" end")
    assert "characters cut" in content
    assert clipped["tool_call_id"] == "c1"
    assert tool["content"] == long  # the original is left whole
    user = U(long)
    assert clip(user, 100) is user
    short = T("c1", "fine")
    assert clip(short, 100) is short


def test_message_text_reads_parts_and_tool_calls() -> None:
    parts: Message = {"role": "user", "content": [{"type": "text", "text": "a"}, {"x": 1}]}
    assert message_text(parts) == "a"
    assert message_text(CALL("c1")) == "lookup{}"
    assert message_text({"role": "assistant"}) == ""


# --------------------------------------------------------------------------- assembly


@pytest.mark.parametrize(
    ("instructions", "pinned", "summary", "expected"),
    [
        ("", (), None, ""),
        ("I.", (), None, "I."),
        ("", ("p",), None, "Pinned facts:\n- p"),
        ("", (), "S.", "Summary of the earlier conversation:\nS."),
        (
            "I.",
            ("p", "q"),
            "S.",
            "I.\n\nPinned facts:\n- p\n- q\n\nSummary of the earlier conversation:\nS.",
        ),
    ],
)
def test_system_prompt_order(
    instructions: str, pinned: tuple[str, ...], summary: str | None, expected: str
) -> None:
    assert system_prompt(instructions, pinned, summary) == expected


def test_assemble_puts_system_first_then_history_then_pending() -> None:
    history = [U("old"), A("old answer"), U("recent"), A("recent answer")]
    window, used = assemble(
        system="I.\n\nSummary of the earlier conversation:\nS.",
        system_tokens=10,
        history=history,
        costs=[10, 10, 10, 10],
        pending=[U("now")],
        pending_tokens=10,
        budget=40,
    )
    assert [m.get("content") for m in window] == [
        "I.\n\nSummary of the earlier conversation:\nS.",
        "recent",
        "recent answer",
        "now",
    ]
    assert window[0]["role"] == "system"
    assert used == 40


def test_assemble_without_system_and_over_budget_still_sends_the_pending_turn() -> None:
    window, used = assemble(
        system="",
        system_tokens=0,
        history=[U(), A()],
        costs=[5, 5],
        pending=[U("huge")],
        pending_tokens=500,
        budget=100,
    )
    assert window == [U("huge")]
    assert used == 500


def test_assemble_keeps_the_call_that_pending_tool_results_answer() -> None:
    history = [U("q"), CALL("c1")]
    window, _ = assemble(
        system="I.",
        system_tokens=1,
        history=history,
        costs=[10, 10],
        pending=[T("c1")],
        pending_tokens=5,
        budget=10,
    )
    assert [m["role"] for m in window] == ["system", "assistant", "tool"]


# --------------------------------------------------------------------------- compaction


@pytest.mark.parametrize(
    ("roles", "keep", "cut"),
    [
        ("", 2, 0),
        ("ua", 2, 0),
        ("uaua", 2, 0),
        ("uauaua", 2, 2),
        ("uauaua", 1, 4),
        ("uauaua", 0, 6),
        ("uctauctaua", 2, 4),  # the cut lands on a user message, never inside a call unit
        ("aaua", 1, 2),
    ],
)
def test_compaction_cut_keeps_the_recent_turns(roles: str, keep: int, cut: int) -> None:
    make = {"u": U, "a": A, "c": lambda: CALL("c1"), "t": lambda: T("c1")}
    history = [make[r]() for r in roles]
    assert compaction_cut(history, keep) == cut


# --------------------------------------------------------------------------- calibration


def test_calibration_converges_on_the_reported_ratio() -> None:
    ratio = 4.0
    chars = 3000
    true_ratio = 2.5
    for _ in range(30):
        estimated = round(chars / ratio)
        ratio = calibrated_ratio(ratio, estimated=estimated, reported=round(chars / true_ratio))
    assert ratio == pytest.approx(true_ratio, rel=0.01)


@pytest.mark.parametrize(("estimated", "reported"), [(0, 10), (10, 0), (-1, 5)])
def test_calibration_ignores_empty_reports(estimated: int, reported: int) -> None:
    assert calibrated_ratio(3.0, estimated=estimated, reported=reported) == 3.0


def test_calibration_is_bounded() -> None:
    assert calibrated_ratio(4.0, estimated=1, reported=1_000_000, rate=1.0) == 0.5
    assert calibrated_ratio(4.0, estimated=1_000_000, reported=1, rate=1.0) == 32.0
