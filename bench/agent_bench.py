"""Agent-turn overhead with a zero-latency scripted model, in process through ``AgentService``
on durable SQLite (WAL, ``synchronous=NORMAL`` unless ``--synchronous FULL``). Prints JSON.

    .venv/bin/python bench/agent_bench.py               # on one core (core 0), as documented
    .venv/bin/python bench/agent_bench.py --write-docs  # and update the docs

One core means one: the process pins itself (``os.sched_setaffinity``) before it starts a
thread, so the event loop, the SQLite writer thread and the reader threads all share core
``--cpu``, and every turns/s figure is what that one core delivers (``--cpu -1``: no pinning).

Figures: a turn's latency (p50, p99) one turn at a time, and the CPU it costs; turns/s one at a
time and with ``--concurrency`` sessions at once (group commit shares commits between them);
writer commits per turn; a turn on a 10,000-message session against a 10- and a 1,000-message
one; and, from ``bench/context_bench.py``, tokens sent per turn of a 200-turn conversation
against the full history and the memory of 10,000 idle cached sessions.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from wayport.cli.progress import progress_bar
from wayport.core.agent import AgentSpec, ContextPolicy
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.session import DEFAULT_TENANT, NewMessage
from wayport.core.types import ChatRequest, Usage
from wayport.models.router import Router
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.gateway import Gateway
from wayport.store import SqlRunStore, SqlSessionStore, SqlStore
from wayport.store.sqlite import SqliteDatabase
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- agent-results:start -->", "<!-- agent-results:end -->"
CONTEXT_BUDGET = 2000  #: the agent's history budget in tokens (as bench/context_bench.py)


def answer(request: ChatRequest) -> Reply:
    """The zero-latency model: answers at once and reports usage without reading the prompt
    (every message of the bench is about 5 tokens with its framing)."""
    return Reply("ok", usage=Usage(prompt_tokens=5 * len(request.messages), completion_tokens=1))


class Bench:
    def __init__(self, state: Path, synchronous: str) -> None:
        self.backend = ScriptedBackend("zero", answer)
        router = Router(
            groups=[ModelGroup(name="zero", deployments=(WeightedDeployment(name="zero"),))],
            backends={"zero": self.backend},
            policy=RouterPolicy(max_retries=0),
        )
        self.gateway = Gateway(router=router)
        self.store: SqlStore | None = None

        async def stores() -> Stores:
            db = await SqliteDatabase.open(state / "wayport.db", synchronous=synchronous)
            await db.migrate()
            self.store = SqlStore(db=db, sessions=SqlSessionStore(db), runs=SqlRunStore(db))
            return self.store

        spec = AgentSpec(
            name="a", model="zero", context=ContextPolicy(budget_tokens=CONTEXT_BUDGET)
        )
        self.service = AgentService(
            catalog=AgentCatalog([spec]), model=self.gateway, open_stores=stores
        )

    async def __aenter__(self) -> Bench:
        await self.gateway.start()
        await self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.close()
        await self.gateway.close()

    @property
    def commits(self) -> tuple[int, int]:
        assert self.store is not None
        stats = self.store.db.stats
        return stats.commits, stats.jobs

    async def session(self, messages: int) -> str:
        s = await self.service.create_session("a")
        for start in range(0, messages, 1000):
            batch = [
                NewMessage(
                    message={"role": "user" if i % 2 == 0 else "assistant", "content": f"m {i}"}
                )
                for i in range(start, min(start + 1000, messages))
            ]
            await self.service.stores.sessions.append(DEFAULT_TENANT, s.id, batch)
        return s.id

    async def turn(self, session_id: str) -> float:
        began = time.perf_counter()
        run = await self.service.submit(session_id, [{"role": "user", "content": "hi"}])
        await self.service.finished(run.id)
        return time.perf_counter() - began


async def measured(
    bench: Bench, turns: int, work: Callable[[], Awaitable[list[float]]]
) -> dict[str, Any]:
    gc.collect()
    commits, jobs = bench.commits
    cpu, wall = time.process_time(), time.perf_counter()
    samples = await work()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    commits, jobs = bench.commits[0] - commits, bench.commits[1] - jobs
    bench.backend.calls.clear()
    out: dict[str, Any] = {
        "turns": turns,
        "turns_per_s": round(turns / wall, 1),
        "cpu_us_per_turn": round(cpu / turns * 1e6),
        "commits_per_turn": round(commits / turns, 2),
        "jobs_per_commit": round(jobs / max(commits, 1), 2),
    }
    if samples:
        samples.sort()
        out["p50_ms"] = round(statistics.median(samples) * 1000, 3)
        out["p99_ms"] = round(samples[int(len(samples) * 0.99) - 1] * 1000, 3)
    return out


async def one_at_a_time(bench: Bench, turns: int) -> dict[str, Any]:
    """Turns one after another, round robin over ten sessions of ten messages each."""
    sessions = [await bench.session(10) for _ in range(10)]
    for sid in sessions:
        await bench.turn(sid)  # warm-up: caches, statements, the pinned version

    async def work() -> list[float]:
        return [await bench.turn(sessions[i % len(sessions)]) for i in range(turns)]

    return await measured(bench, turns, work)


async def at_once(bench: Bench, turns: int, concurrency: int) -> dict[str, Any]:
    """``concurrency`` sessions, each sending its next turn when the last is answered."""
    sessions = [await bench.session(10) for _ in range(concurrency)]
    await asyncio.gather(*(bench.turn(sid) for sid in sessions))
    each = turns // concurrency

    async def client(sid: str) -> list[float]:
        return [await bench.turn(sid) for _ in range(each)]

    async def work() -> list[float]:
        return [s for part in await asyncio.gather(*map(client, sessions)) for s in part]

    result = await measured(bench, each * concurrency, work)
    result["concurrency"] = concurrency
    return result


async def history_sizes(bench: Bench, turns: int) -> dict[str, Any]:
    """The same turn on sessions holding 10, 1,000 and 10,000 messages, interleaved (each
    round takes one turn on each), so that a busy machine's drift hits all three alike."""
    sizes = (10, 1000, 10_000)
    sessions = {size: await bench.session(size) for size in sizes}
    for sid in sessions.values():
        for _ in range(5):
            await bench.turn(sid)  # the first turn fills the cache from the store
    wall: dict[int, list[float]] = {size: [] for size in sizes}
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    for i in range(turns):
        for size in sizes:
            began = time.process_time()
            wall[size].append(await bench.turn(sessions[size]))
            cpu[size].append(time.process_time() - began)
        if i % 100 == 0:
            bench.backend.calls.clear()
    p50 = {size: statistics.median(wall[size]) for size in sizes}
    cpu50 = {size: statistics.median(cpu[size]) for size in sizes}
    return {
        "turns_each": turns,
        "p50_ms": {str(k): round(v * 1000, 3) for k, v in p50.items()},
        "cpu_p50_us": {str(k): round(v * 1e6) for k, v in cpu50.items()},
        "ratio_10000_vs_10": round(p50[10_000] / p50[10], 2),
        "ratio_10000_vs_1000": round(p50[10_000] / p50[1000], 2),
        "cpu_ratio_10000_vs_10": round(cpu50[10_000] / cpu50[10], 2),
        "cpu_ratio_10000_vs_1000": round(cpu50[10_000] / cpu50[1000], 2),
    }


async def run_all(state: Path, args: argparse.Namespace) -> dict[str, Any]:
    async with Bench(state, args.synchronous) as bench:
        gc.collect()
        gc.freeze()  # as ``wayport serve`` does after start-up
        # a bar of the three parts on stderr when it is a terminal (the JSON goes to stdout)
        with progress_bar("Turns one at a time", total=3) as advance:
            sequential = await one_at_a_time(bench, args.turns)
            advance(description=f"Turns, {args.concurrency} sessions at once")
            concurrent = await at_once(bench, args.turns * 2, args.concurrency)
            advance(description="Turns on long histories")
            sizes = await history_sizes(bench, max(args.turns // 6, 20))
            advance()
    return {
        "synchronous": args.synchronous,
        "context_budget_tokens": CONTEXT_BUDGET,
        "one_at_a_time": sequential,
        "concurrent": concurrent,
        "history": sizes,
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


def context_figures(quick: bool) -> dict[str, Any]:
    command = [sys.executable, str(ROOT / "bench" / "context_bench.py")]
    done = subprocess.run(
        [*command, "--quick"] if quick else command,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    found: dict[str, Any] = json.loads(done.stdout)
    conversation = found["conversation"]
    for key in ("engine_tokens_per_turn", "full_history_tokens_per_turn"):
        conversation.pop(key, None)  # 200 numbers each: the totals and maxima say it
    return found


def markdown(result: dict[str, Any]) -> str:
    one, many, sizes = result["one_at_a_time"], result["concurrent"], result["history"]
    cpus = result["cpus"]
    cores = "one core" if len(cpus) == 1 else f"{len(cpus)} cores"
    lines = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, the whole process "
        f"(event loop, SQLite writer and reader threads) pinned to core(s) {cpus}, SQLite WAL "
        f"with `synchronous={result['synchronous']}`, load average before the run "
        f"{result['load_before']}.",
        "",
        "| agent turns (zero-latency scripted model, in process) | measured | target |",
        "|---|--:|--:|",
        f"| turn p50, one at a time | {one['p50_ms']} ms | <= 2 ms |",
        f"| turn p99, one at a time | {one['p99_ms']} ms | |",
        f"| turns/s, one at a time | {one['turns_per_s']:,} | |",
        f"| turns/s, {many['concurrency']} sessions at once, on {cores} | "
        f"{many['turns_per_s']:,} | >= 1,000 |",
        f"| turns/s a whole core would give at that CPU per turn, {many['concurrency']} at once "
        f"| {round(1e6 / many['cpu_us_per_turn']):,} | |",
        f"| CPU per turn (all threads), one at a time | {one['cpu_us_per_turn']} µs | |",
        f"| CPU per turn, {many['concurrency']} at once | {many['cpu_us_per_turn']} µs | |",
        f"| writer commits per turn, one at a time | {one['commits_per_turn']} | |",
        f"| writer jobs per commit, {many['concurrency']} at once | {many['jobs_per_commit']} | |",
    ]
    p50 = sizes["p50_ms"]
    lines += [
        f"| turn p50 on 10 / 1,000 / 10,000 stored messages | {p50['10']} / {p50['1000']} / "
        f"{p50['10000']} ms | |",
        f"| 10,000-message turn over 10-message turn, p50 (CPU basis) "
        f"| {sizes['ratio_10000_vs_10']}x ({sizes['cpu_ratio_10000_vs_10']}x) | <= 1.2x |",
        f"| 10,000-message turn over 1,000-message turn, p50 (CPU basis) "
        f"| {sizes['ratio_10000_vs_1000']}x ({sizes['cpu_ratio_10000_vs_1000']}x) | |",
    ]
    context = result.get("context")
    if context:
        conv, idle = context["conversation"], context["idle_cache"]
        lines += [
            f"| {conv['turns']}-turn conversation: tokens sent, total (engine / full history) "
            f"| {conv['engine_total']:,} / {conv['full_total']:,} "
            f"({round(conv['saving'] * 100)} % saved) | |",
            f"| same, largest single turn (engine / full history) | {conv['engine_max']:,} / "
            f"{conv['full_max']:,} | |",
            f"| {idle['sessions']:,} idle cached sessions (tracemalloc) | "
            f"{idle['measured_mb']} MB | <= 100 MB |",
        ]
    return "\n".join(lines)


def write_docs(text: str) -> None:
    page = DOCS.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{DOCS}: the markers {START} … {END} are missing")
    DOCS.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=600, help="turns measured one at a time")
    parser.add_argument("--concurrency", type=int, default=16, help="sessions at once")
    parser.add_argument("--synchronous", choices=("NORMAL", "FULL"), default="NORMAL")
    parser.add_argument("--quick", action="store_true", help="a smoke run, figures meaningless")
    parser.add_argument("--skip-context", action="store_true", help="leave context_bench out")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the section in {DOCS}")
    parser.add_argument("--cpu", type=int, default=0, help="the one core to run on (-1: any)")
    args = parser.parse_args()
    if args.cpu >= 0:
        # before any thread starts: the writer and reader threads inherit the affinity
        os.sched_setaffinity(0, {args.cpu})
    if args.quick:
        args.turns, args.concurrency = 60, 4
    load = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as state:
        result = uvloop.run(run_all(Path(state), args))  # as ``wayport serve`` runs
    result["load_before"] = load
    if not args.skip_context:
        result["context"] = context_figures(args.quick)
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(markdown(result))


if __name__ == "__main__":
    main()
