"""``sticky: false`` with a ``user``: a stateless call is split by its user on every pick,
so the user stays on one variant call after call (the session key of a stateless call is
random and must not decide)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.release_codec import strategy_from_dict

from .conftest import STABLE, Env

pytestmark = pytest.mark.anyio


async def test_a_non_sticky_split_keeps_a_stateless_user_on_one_variant(env: Env) -> None:
    b = replace(STABLE, instructions="B")
    strategy = strategy_from_dict({"kind": "ab", "split": 50, "sticky": False})
    assert not strategy.sticky
    await env.releases.create("default", "support", spec=b, strategy=strategy)
    users = [f"user-{i}" for i in range(16)]
    first = {who: await env.ask(who) for who in users}
    assert set(first.values()) == {"v1", "B"}  # both variants are served
    for _ in range(3):
        assert {who: await env.ask(who) for who in users} == first
