"""Workflow step dispatch overhead and steps per second, in process through ``WorkflowEngine``
on durable SQLite (WAL, ``synchronous=NORMAL``), with a no-op async tool through the real
``ToolRegistry``: what is measured is the engine and its checkpoints. Prints JSON.

    .venv/bin/python bench/workflow_bench.py                 # pinned to one core (affinity)
    .venv/bin/python bench/workflow_bench.py --write-docs    # and update docs/benchmarks.md

Figures: a step's latency one run at a time (a chain of tool steps: start checkpoint, tool
call, output checkpoint, scheduling), the CPU it costs, and steps per second with many runs at
once (group commit shares the writer's commits between them), for a chain and for a fan-out
(a map of parallel items).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from wayport.core.workflow import WorkflowDef, parse_workflow
from wayport.core.workflow_run import WorkflowRun
from wayport.runtime.tools import PythonTool, ToolRegistry
from wayport.runtime.workflows import Effects, WorkflowEngine
from wayport.store.workflows import open_workflow_store

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- workflow-results:start -->", "<!-- workflow-results:end -->"
TENANT = "bench"


async def noop(i: int) -> int:
    """Return ``i``: the cheapest possible tool."""
    return i


def chain(steps: int) -> WorkflowDef:
    return parse_workflow(
        "chain",
        {
            "steps": [
                {"id": f"s{i}", "tool": {"name": "noop", "args": {"i": i}}} for i in range(steps)
            ]
            + [
                {"id": "end", "join": {}, "needs": [f"s{i}" for i in range(steps)]},
            ]
        },
    )


def fan(items: int) -> WorkflowDef:
    each = {"tool": {"name": "noop", "args": {"i": "{{ index }}"}}}
    return parse_workflow(
        "fan",
        {
            "steps": [
                {"id": "start", "tool": {"name": "noop", "args": {"i": 0}}},
                {
                    "id": "each",
                    "needs": "start",
                    "map": {"over": list(range(items)), "concurrency": items, "step": each},
                },
            ]
        },
    )


def sequential(steps: int) -> WorkflowDef:
    """Each step needs the one before: one step in flight per run."""
    return parse_workflow(
        "seq",
        {
            "steps": [
                {
                    "id": f"s{i}",
                    "tool": {"name": "noop", "args": {"i": i}},
                    **({"needs": f"s{i - 1}"} if i else {}),
                }
                for i in range(steps)
            ]
        },
    )


async def measure(
    state: Path, definition: WorkflowDef, runs: int, concurrency: int
) -> dict[str, Any]:
    store = await open_workflow_store(None, state_dir=state)
    done = 0
    all_done = asyncio.Event()

    async def finished(run: WorkflowRun) -> None:
        nonlocal done
        done += 1
        if done == runs:
            all_done.set()

    engine = WorkflowEngine(
        store=store.workflows,
        definitions=lambda name: definition if name == definition.name else None,
        effects=Effects(tools=ToolRegistry([PythonTool(noop)])),
        on_finished=finished,
        concurrency=concurrency,
        poll_interval=0.05,
    )
    await engine.start()
    try:
        for i in range(runs):
            await store.workflows.create_run(
                TENANT,
                run_id=f"run-{i:06}",
                workflow=definition.name,
                version=definition.version,
                definition=definition.source,
                input={},
            )
        commits_before = store.db.stats.commits
        cpu0, wall0 = time.process_time(), time.perf_counter()
        engine.wake(TENANT)
        await all_done.wait()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        steps = engine.steps_executed
        commits = store.db.stats.commits - commits_before
    finally:
        await engine.close()
        await store.close()
    return {
        "runs": runs,
        "concurrency": concurrency,
        "effect_steps": steps,
        "seconds": round(wall, 3),
        "steps_per_s": round(steps / wall),
        "ms_per_step": round(wall / steps * 1000, 3),
        "cpu_ms_per_step": round(cpu / steps * 1000, 3),
        "commits_per_step": round(commits / steps, 2),
    }


async def run_all(state: Path, quick: bool) -> dict[str, Any]:
    n = 20 if quick else 200
    results: dict[str, Any] = {}
    results["one_at_a_time"] = await measure(state / "a", sequential(10), 5 if quick else 40, 1)
    results["chain_parallel_runs"] = await measure(state / "b", sequential(10), n, 64)
    results["fan_out"] = await measure(state / "c", fan(8), n, 64)
    results["wide_chain"] = await measure(state / "d", chain(10), n, 64)
    return results


def markdown(result: dict[str, Any]) -> str:
    one, par = result["one_at_a_time"], result["chain_parallel_runs"]
    fan_out, wide = result["fan_out"], result["wide_chain"]
    return "\n".join(
        [
            f"Measured {result['date']} on {result['machine']}, pinned to one core "
            f"(load before: {result['load_before']}).",
            "",
            "| figure | result | target |",
            "|---|---|---|",
            f"| step dispatch, one run at a time (10 sequential tool steps) | "
            f"{one['ms_per_step']} ms/step, {one['cpu_ms_per_step']} ms CPU | |",
            f"| steps/s, {par['runs']} runs of 10 sequential steps, {par['concurrency']} at once "
            f"| {par['steps_per_s']:,} | >= 500 |",
            f"| steps/s, {fan_out['runs']} runs of a map over 8 items | "
            f"{fan_out['steps_per_s']:,} | >= 500 |",
            f"| steps/s, {wide['runs']} runs of 10 parallel steps | {wide['steps_per_s']:,} | "
            f">= 500 |",
            f"| writer commits per step (group commit), sequential / fan-out | "
            f"{par['commits_per_step']} / {fan_out['commits_per_step']} | |",
        ]
    )


def write_docs(text: str) -> None:
    page = DOCS.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{DOCS}: the markers {START} … {END} are missing")
    DOCS.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, figures meaningless")
    parser.add_argument("--all-cores", action="store_true", help="do not pin to one core")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the section in {DOCS}")
    args = parser.parse_args()
    if not args.all_cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    load = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory() as state:
        result = asyncio.run(run_all(Path(state), args.quick))
    result["load_before"] = load
    result["date"] = time.strftime("%Y-%m-%d")
    result["machine"] = f"{os.cpu_count()} CPUs ({os.uname().machine}), SQLite WAL"
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(markdown(result))


if __name__ == "__main__":
    main()
