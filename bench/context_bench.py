"""The context engine's figures, printed as one JSON object:

- ``conversation``: a 200-turn scripted conversation (with a tool call and a large result every
  fifth turn): tokens sent per turn with the engine against sending the full history;
- ``assembly``: one turn's context cost (``window`` + ``appended``) on a hot 10,000-message
  session against a 10-message one;
- ``idle_cache``: memory held by 10,000 idle cached sessions (tracemalloc), against the
  engine's own byte estimate.

    .venv/bin/python bench/context_bench.py            # full run, ~1 minute
    .venv/bin/python bench/context_bench.py --quick    # a smoke run

Token counts use a whitespace tokenizer, so the figures are about the engine, not a model.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Sequence
from typing import Any

from wayport.core.agent import AgentSpec, ContextPolicy
from wayport.core.session import NewMessage
from wayport.core.types import Message
from wayport.runtime.context import ContextEngine, Counters, TokenizerCounter, summarisers
from wayport.testing import MemoryStores, Reply, ScriptedBackend

T = "default"
CONTEXT_WINDOW = 4096


def words(text: str) -> int:
    return len(text.split())


def sentence(tag: str, n: int) -> str:
    return " ".join([tag] + [f"w{i % 97}" for i in range(n - 1)])


def engine_for(stores: MemoryStores, *, cache_bytes: int = 256 * 1024 * 1024) -> ContextEngine:
    summary_model = ScriptedBackend("summary", default=Reply(sentence("summary", 150)))
    return ContextEngine(
        store=stores.sessions,
        counter_for=Counters(tokenizers={"m": words}),
        summariser_for=summarisers(summary_model.complete),
        cache_bytes=cache_bytes,
    )


AGENT = AgentSpec(
    name="bench",
    model="m",
    instructions=sentence("instructions", 60),
    context=ContextPolicy(tool_result_max_chars=2000),
)


def turn_messages(i: int) -> list[Message]:
    """What one turn stores after its user message: an answer, and every fifth turn a tool
    call with a large result before it."""
    out: list[Message] = []
    if i % 5 == 4:
        out.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"c{i}",
                        "type": "function",
                        "function": {"name": "search", "arguments": '{"q": "x"}'},
                    }
                ],
            }
        )
        out.append({"role": "tool", "tool_call_id": f"c{i}", "content": sentence("result", 2000)})
    out.append({"role": "assistant", "content": sentence(f"a{i}", 60)})
    return out


async def conversation(turns: int) -> dict[str, Any]:
    stores = MemoryStores()
    engine = engine_for(stores)
    counter = TokenizerCounter(words)
    s = await stores.sessions.create(T, agent="bench")
    full: list[Message] = [{"role": "system", "content": AGENT.instructions}]
    sent: list[int] = []
    whole: list[int] = []
    compactions = 0
    for i in range(turns):
        pending: list[Message] = [{"role": "user", "content": sentence(f"q{i}", 30)}]
        window = await engine.window(T, s.id, AGENT, pending, context_window=CONTEXT_WINDOW)
        sent.append(counter.count(window))
        whole.append(counter.count([*full, *pending]))
        new = [*pending, *turn_messages(i)]
        stored = await stores.sessions.append(T, s.id, [NewMessage(message=m) for m in new])
        engine.appended(T, s.id, stored)
        full.extend(new)
        compactions += await engine.maybe_compact(T, s.id, AGENT, context_window=CONTEXT_WINDOW)
    return {
        "turns": turns,
        "context_window": CONTEXT_WINDOW,
        "compactions": compactions,
        "engine_tokens_per_turn": sent,
        "full_history_tokens_per_turn": whole,
        "engine_max": max(sent),
        "full_max": max(whole),
        "engine_total": sum(sent),
        "full_total": sum(whole),
        "saving": round(1 - sum(sent) / sum(whole), 3),
    }


async def assembly(history_messages: int, rounds: int) -> dict[str, float]:
    stores = MemoryStores()
    engine = engine_for(stores)
    s = await stores.sessions.create(T, agent="bench")
    batch = [
        NewMessage(message={"role": "user" if n % 2 == 0 else "assistant", "content": f"m{n} x"})
        for n in range(history_messages)
    ]
    for start in range(0, len(batch), 1000):
        await stores.sessions.append(T, s.id, batch[start : start + 1000])
    agent = AgentSpec(name="bench", model="m", context=ContextPolicy(budget_tokens=2000))
    await engine.window(T, s.id, agent, [], context_window=CONTEXT_WINDOW)  # warm the cache
    samples: list[float] = []
    for i in range(rounds):
        pending: list[Message] = [{"role": "user", "content": f"turn {i}"}]
        stored = await stores.sessions.append(T, s.id, [NewMessage(message=pending[0])])
        started = time.perf_counter()
        await engine.window(T, s.id, agent, pending, context_window=CONTEXT_WINDOW)
        engine.appended(T, s.id, stored)
        samples.append(time.perf_counter() - started)
    samples.sort()
    return {
        "messages": history_messages,
        "p50_us": round(statistics.median(samples) * 1e6, 1),
        "p99_us": round(samples[int(len(samples) * 0.99) - 1] * 1e6, 1),
    }


async def idle_cache(sessions: int) -> dict[str, float]:
    stores = MemoryStores()
    engine = engine_for(stores)
    ids: list[str] = []
    for i in range(sessions):
        s = await stores.sessions.create(T, agent="bench")
        msgs: Sequence[Message] = [
            {"role": "user" if n % 2 == 0 else "assistant", "content": sentence(f"s{i}", 12)}
            for n in range(10)
        ]
        await stores.sessions.append(T, s.id, [NewMessage(message=m) for m in msgs])
        ids.append(s.id)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for sid in ids:
        await engine.window(T, sid, AGENT, [], context_window=CONTEXT_WINDOW)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    stats = engine.stats()
    return {
        "sessions": stats.sessions,
        "measured_mb": round(held / 1e6, 1),
        "estimated_mb": round(stats.bytes / 1e6, 1),
    }


async def main(quick: bool) -> dict[str, Any]:
    turns, rounds, idle = (20, 200, 500) if quick else (200, 2000, 10_000)
    small = await assembly(10, rounds)
    large = await assembly(10_000, rounds)
    return {
        "conversation": await conversation(turns),
        "assembly": {
            "small": small,
            "large": large,
            "large_over_small_p50": round(large["p50_us"] / small["p50_us"], 2),
        },
        "idle_cache": await idle_cache(idle),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, figures meaningless")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args.quick))))
