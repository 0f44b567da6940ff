"""Context assembly and budget arithmetic: which messages a model sees on a turn.

Pure functions over data; ``wayport.runtime.context.ContextEngine`` feeds them from its cache
and the store. A window is one system message (instructions, pinned memory, rolling summary),
then the newest history that fits the budget in whole *units*, then the pending turn. A unit is
a message with the tool results that answer it, so an assistant's tool call never loses its
results and a window never opens on a tool message::

    >>> call = {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
    >>> history = [
    ...     {"role": "user", "content": "weather?"},
    ...     {"role": "assistant", "content": None, "tool_calls": [call]},
    ...     {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ...     {"role": "assistant", "content": "Sunny."},
    ... ]
    >>> fit_newest(history, [5, 5, 5, 5], available=12)  # 10 for the call + result is too much
    3
    >>> fit_newest(history, [5, 5, 5, 5], available=15)
    1

Budget arithmetic: the budget is what the prompt may use; compaction starts past
``compact_at`` of it::

    >>> policy = ContextPolicy(reserve_tokens=256, compact_at=0.5)
    >>> history_budget(policy, context_window=8192)
    7936
    >>> should_compact(policy, used=4000, budget=7936)
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from wayport.core.agent import ContextPolicy
from wayport.core.types import Message

SUMMARY_SEQ_KEY = "context.summary_seq"
"""Session ``metadata`` key: the newest ``seq`` the rolling summary covers."""

CUT_MARKER = "\n[… {cut} characters cut …]\n"


def history_budget(
    policy: ContextPolicy, *, context_window: int, params: Mapping[str, Any] | None = None
) -> int:
    """Tokens the prompt may use: the context window less room for the answer (the agent's
    ``max_tokens`` when set, else ``reserve_tokens``), capped by an explicit ``budget_tokens``.

    >>> history_budget(ContextPolicy(), context_window=4096, params={"max_tokens": 1000})
    3096
    >>> history_budget(ContextPolicy(budget_tokens=2000), context_window=4096)
    2000
    """
    max_tokens = (params or {}).get("max_tokens")
    reserve = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None
    derived = context_window - (policy.reserve_tokens if reserve is None else reserve)
    budget = derived if policy.budget_tokens is None else min(policy.budget_tokens, derived)
    return max(budget, 0)


def should_compact(policy: ContextPolicy, *, used: int, budget: int) -> bool:
    """True when a prompt of ``used`` tokens is past the compaction threshold."""
    return used > policy.compact_at * budget


def cut_middle(text: str, max_chars: int) -> str:
    """``text`` cut to its head and tail with a marker saying how much went, when longer than
    ``max_chars`` (the marker itself is not counted).

    >>> cut_middle("abcdefghij", 4)
    'ab\\n[… 6 characters cut …]\\nij'
    >>> cut_middle("short", 10)
    'short'
    """
    if max_chars < 0 or len(text) <= max_chars:
        return text
    head = (max_chars + 1) // 2
    tail = max_chars - head
    cut = len(text) - head - tail
    return text[:head] + CUT_MARKER.format(cut=cut) + (text[len(text) - tail :] if tail else "")


def clip(message: Message, max_chars: int) -> Message:
    """The message as the context shows it: a tool result longer than ``max_chars`` is cut to
    head and tail; anything else comes back unchanged (the same object)."""
    content = message.get("content")
    if message["role"] != "tool" or not isinstance(content, str) or len(content) <= max_chars:
        return message
    clipped = message.copy()
    clipped["content"] = cut_middle(content, max_chars)
    return clipped


def message_text(message: Message) -> str:
    """The text a tokenizer sees in a message: its content (text parts of a list), and the
    name and arguments of each tool call."""
    content = message.get("content")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        text = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    else:
        text = ""
    for call in message.get("tool_calls") or ():
        fn = call["function"]
        text += fn["name"] + fn["arguments"]
    return text


def system_prompt(instructions: str, pinned: Sequence[str], summary: str | None) -> str:
    """One system message: instructions, then pinned facts, then the summary of older turns.
    One message, because many chat templates accept a single system message only.

    >>> print(system_prompt("Be brief.", ["Name: Ada"], "They asked about tea."))
    Be brief.
    <BLANKLINE>
    Pinned facts:
    - Name: Ada
    <BLANKLINE>
    Summary of the earlier conversation:
    They asked about tea.
    """
    parts = [instructions] if instructions else []
    if pinned:
        parts.append("Pinned facts:\n" + "\n".join(f"- {fact}" for fact in pinned))
    if summary:
        parts.append("Summary of the earlier conversation:\n" + summary)
    return "\n\n".join(parts)


def unit_start(history: Sequence[Message], end: int) -> int:
    """Index of the first message of the unit that ends just before ``end``: tool messages
    belong to the message before them."""
    i = end - 1
    while i > 0 and history[i]["role"] == "tool":
        i -= 1
    return i


def fit_newest(
    history: Sequence[Message],
    costs: Sequence[int],
    available: int,
    *,
    keep_last_unit: bool = False,
    total: int | None = None,
) -> int:
    """Index ``i`` such that ``history[i:]`` is the longest run of whole newest units whose
    ``costs`` sum to at most ``available``. ``history[i]`` is never a tool message: tool
    messages with no call before them (a cut-off unit) are left out. With ``keep_last_unit``
    the newest unit is kept whatever it costs (the pending turn carries its tool results).

    Walks back from the end only as far as the budget reaches, so its cost follows the
    window, not the history. Given ``total`` (``sum(costs)``, which a cache keeps anyway) it
    walks from the front instead, dropping the oldest units until the rest fits: the same
    answer for the cost of what is dropped (a cache holding about a window's worth drops one
    turn or two, where the walk back visits every message of the window).
    """
    if total is not None:
        return _drop_oldest(history, costs, available, keep_last_unit, total)
    used = 0
    start = len(history)
    unit = 0
    forced = keep_last_unit
    for i in range(len(history) - 1, -1, -1):
        unit += costs[i]
        if history[i]["role"] == "tool":
            continue
        if not forced and used + unit > available:
            break
        forced = False
        used += unit
        unit = 0
        start = i
    return start


def _drop_oldest(
    history: Sequence[Message],
    costs: Sequence[int],
    available: int,
    keep_last_unit: bool,
    total: int,
) -> int:
    """``fit_newest`` from the front: costs are never negative, so the longest fitting run
    of newest units is what is left after dropping the oldest units until the rest fits."""
    n = len(history)
    i = 0
    while i < n and history[i]["role"] == "tool":  # a cut-off unit: never shown
        total -= costs[i]
        i += 1
    while i < n and total > available:
        end = i + 1
        unit = costs[i]
        while end < n and history[end]["role"] == "tool":
            unit += costs[end]
            end += 1
        if keep_last_unit and end == n:
            break  # the newest unit stays whatever it costs
        total -= unit
        i = end
    return i


def compaction_cut(history: Sequence[Message], keep_recent_turns: int) -> int:
    """How many of the oldest messages a compaction may summarise: everything before the
    ``keep_recent_turns`` newest turns (a turn opens with a user message). 0: nothing to do.

    >>> roles = ["user", "assistant", "user", "assistant", "user", "assistant"]
    >>> compaction_cut([{"role": r} for r in roles], keep_recent_turns=2)
    2
    """
    if keep_recent_turns <= 0:
        return len(history)
    seen = 0
    for i in range(len(history) - 1, -1, -1):
        if history[i]["role"] == "user":
            seen += 1
            if seen == keep_recent_turns:
                return i
    return 0


def assemble(
    *,
    system: str,
    system_tokens: int,
    history: Sequence[Message],
    costs: Sequence[int],
    pending: Sequence[Message],
    pending_tokens: int,
    budget: int,
    history_tokens: int | None = None,
) -> tuple[list[Message], int]:
    """The window and its estimated tokens: the system message (left out when empty), the
    newest history units that fit what the system message and ``pending`` leave of
    ``budget``, then ``pending``. ``pending`` and the system message are always there, even
    past the budget: dropping either would change what is asked. When ``pending`` opens with
    tool results, the call they answer (the newest history unit) is kept too.
    ``history_tokens``: ``sum(costs)`` when the caller keeps it (see ``fit_newest``).

    >>> window, used = assemble(system="Be brief.", system_tokens=4,
    ...     history=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
    ...     costs=[3, 3], pending=[{"role": "user", "content": "c"}], pending_tokens=3, budget=12)
    >>> [m["role"] for m in window], used
    (['system', 'assistant', 'user'], 10)
    """
    available = budget - system_tokens - pending_tokens
    answers_call = bool(pending) and pending[0]["role"] == "tool"
    start = fit_newest(history, costs, available, keep_last_unit=answers_call, total=history_tokens)
    window: list[Message] = [{"role": "system", "content": system}] if system else []
    window.extend(history[start:])
    window.extend(pending)
    # with history_tokens, what was dropped is the short part to add up
    shown = sum(costs[start:]) if history_tokens is None else history_tokens - sum(costs[:start])
    used = (system_tokens if system else 0) + shown + pending_tokens
    return window, used


def calibrated_ratio(
    chars_per_token: float, *, estimated: int, reported: int, rate: float = 0.3
) -> float:
    """The chars-per-token ratio moved a step (``rate``) toward the one that would have
    estimated ``reported`` tokens; unchanged when either count is not positive.

    >>> calibrated_ratio(4.0, estimated=100, reported=200, rate=1.0)
    2.0
    >>> calibrated_ratio(4.0, estimated=100, reported=200, rate=0.5)
    3.0
    """
    if estimated <= 0 or reported <= 0:
        return chars_per_token
    target = chars_per_token * estimated / reported
    moved = chars_per_token + rate * (target - chars_per_token)
    return min(max(moved, 0.5), 32.0)


def estimate_tokens(chars: int, chars_per_token: float, per_message: int) -> int:
    """Tokens of one message of ``chars`` characters under a chars-per-token ratio."""
    return per_message + math.ceil(chars / chars_per_token)
