"""``fit_newest`` with the history's total walks from the front; it must choose exactly the
window the walk from the back chooses, whatever the history and budget."""

from __future__ import annotations

import random

import pytest

from wayport.core.context import assemble, fit_newest
from wayport.core.types import Message

ROLES = ("user", "assistant", "tool", "tool", "system")


def history(rng: random.Random, n: int) -> tuple[list[Message], list[int]]:
    messages: list[Message] = [{"role": rng.choice(ROLES), "content": "x"} for _ in range(n)]
    costs = [rng.choice((0, 1, 3, 5, 40)) for _ in range(n)]
    return messages, costs


@pytest.mark.parametrize("seed", range(20))
def test_from_the_front_chooses_what_from_the_back_chooses(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(200):
        messages, costs = history(rng, rng.randrange(0, 30))
        total = sum(costs)
        for available in (-1, 0, 1, 4, 10, 50, total - 1, total, total + 1):
            for keep in (False, True):
                back = fit_newest(messages, costs, available, keep_last_unit=keep)
                front = fit_newest(messages, costs, available, keep_last_unit=keep, total=total)
                assert front == back, (messages, costs, available, keep)


def test_assemble_counts_the_same_with_the_total() -> None:
    rng = random.Random(7)
    for _ in range(300):
        messages, costs = history(rng, rng.randrange(0, 25))
        pending: list[Message] = [{"role": rng.choice(("user", "tool")), "content": "p"}]
        kw = dict(system="s", system_tokens=2, pending=pending, pending_tokens=3)
        budget = rng.randrange(0, 120)
        plain = assemble(history=messages, costs=costs, budget=budget, **kw)  # type: ignore[arg-type]
        known = assemble(
            history=messages,
            costs=costs,
            budget=budget,
            history_tokens=sum(costs),
            **kw,  # type: ignore[arg-type]
        )
        assert known == plain
