"""``EstimatingCounter.count`` inlines the common case; it must count what the formula of
``wayport.core.context`` counts for every kind of message."""

from __future__ import annotations

from wayport.core.context import estimate_tokens, message_text
from wayport.core.types import Message
from wayport.runtime.context import EstimatingCounter

MESSAGES: list[Message] = [
    {"role": "user", "content": "hello there, how are you?"},
    {"role": "user", "content": ""},
    {"role": "assistant", "content": None},
    {"role": "assistant", "content": "x" * 1001},
    {"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "image_url"}]},
    {
        "role": "assistant",
        "content": "calling",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    },
    {"role": "assistant", "content": "no calls after all", "tool_calls": None},  # type: ignore[typeddict-item]
    {"role": "tool", "tool_call_id": "c1", "content": "result " * 40},
]


def test_count_is_the_formula_summed() -> None:
    for ratio in (4.0, 3.3, 1.0, 0.7):
        counter = EstimatingCounter(chars_per_token=ratio, per_message=4)
        expected = sum(estimate_tokens(len(message_text(m)), ratio, 4) for m in MESSAGES)
        assert counter.count(MESSAGES) == expected
        for m in MESSAGES:
            assert counter.count([m]) == estimate_tokens(len(message_text(m)), ratio, 4)
    assert EstimatingCounter().count([]) == 0
