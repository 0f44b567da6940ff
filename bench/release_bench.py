"""A bad canary, measured: a candidate whose model fails every other call goes out at 10 %
weight, and the reconciler must roll it back by itself. In process, through ``AgentService``
on durable SQLite with ``ReleaseService`` routing every run and the real ``Reconciler``.
Prints JSON.

    .venv/bin/python bench/release_bench.py               # figures as documented
    .venv/bin/python bench/release_bench.py --write-docs  # and update docs/benchmarks.md

The clock is *simulated and advances with the request count*: users send ``--rps`` requests
per simulated second, one after another (each a distinct user, so sticky hashing spreads them
over both versions), and the reconciler runs every ``--interval`` simulated seconds. Models
answer at once; only the release machinery is real. Figures:

- time to rollback: simulated seconds from ``create`` until the rollout is ``rolled_back``,
  and the requests served meanwhile;
- the share of those requests that reached the bad version (answered or failed over);
- user-visible errors: runs that did not complete (the target is 0: a failed candidate call
  is retried on stable before any byte is sent);
- the wall-clock seconds the whole scenario took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wayport.core.agent import AgentSpec
from wayport.core.errors import BackendUnavailable
from wayport.core.release import Phase
from wayport.core.release_codec import strategy_from_dict
from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
from wayport.core.types import ChatRequest
from wayport.models.router import Router
from wayport.service.agents import AgentCatalog, AgentService, Stores
from wayport.service.release_reconciler import Reconciler
from wayport.service.release_signals import SignalCollector
from wayport.service.releases import ReleaseService
from wayport.store import SqlStore, open_store
from wayport.store.releases import SqlReleaseStore
from wayport.testing import ManualClock, ScriptedBackend
from wayport.testing.models import Fail, Reply, Step

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- release-results:start -->", "<!-- release-results:end -->"
STABLE = AgentSpec(name="support", model="echo", instructions="v1")
BAD = "broken v2"


def strategy(args: argparse.Namespace) -> dict[str, Any]:
    """The canary of the scenario (as it would be written in ``wayport.yaml``)."""
    return {
        "kind": "canary",
        "steps": [
            {"set_weight": 10},
            {
                "analysis": {
                    "conditions": ["error_rate <= 0.05"],
                    "min_requests": args.min_requests,
                    "interval": args.analysis_interval,
                }
            },
            {"set_weight": 50},
            {"pause": {}},
        ],
    }


@dataclass
class Model:
    """The scripted model: answers with the version's instructions; the bad version fails
    every other call it gets."""

    bad_calls: int = 0
    bad_failures: int = 0

    def __call__(self, request: ChatRequest) -> Step:
        text = next((str(m.get("content")) for m in request.messages if m["role"] == "system"), "")
        if text == BAD:
            self.bad_calls += 1
            if self.bad_calls % 2:
                self.bad_failures += 1
                return Fail(BackendUnavailable("broken on purpose"))
        return Reply(text=text)


async def scenario(state: Path, args: argparse.Namespace) -> dict[str, Any]:
    clock = ManualClock(start=1_750_000_000.0)
    model = Model()
    backend = ScriptedBackend("echo", model)
    store: list[SqlStore] = []

    async def stores() -> Stores:
        store.append(await open_store(None, state_dir=state))
        return store[0]

    agents = AgentService(
        catalog=AgentCatalog([STABLE]),
        model=Router(
            groups=[ModelGroup(name="echo", deployments=(WeightedDeployment(name="echo"),))],
            backends={"echo": backend},
            policy=RouterPolicy(max_retries=0),
        ),
        open_stores=stores,
    )
    signals = SignalCollector(replica="bench", wall=clock.now, monotonic=time.monotonic)
    agents.observer = signals
    releases = ReleaseService(
        agents=agents,
        store=lambda: SqlReleaseStore(store[0].db),
        signals=signals,
        wall=clock.now,
    )
    agents.picker = releases
    reconciler = Reconciler(releases)
    await backend.start()
    await agents.start()
    began = time.perf_counter()
    served = errors = 0
    try:
        candidate = replace(STABLE, instructions=BAD)
        await releases.create(
            "default", "support", spec=candidate, strategy=strategy_from_dict(strategy(args))
        )
        created_at = clock.now()
        next_tick = created_at
        phase = Phase.PROGRESSING
        while phase is Phase.PROGRESSING and served < args.max_requests:
            if clock.now() >= next_tick:
                await reconciler.tick()
                next_tick += args.interval
                rollout = await releases.store.rollout("default", "support")
                assert rollout is not None
                phase = rollout.state.phase
                if phase is not Phase.PROGRESSING:
                    break
            served += 1
            try:
                done = await agents.chat(
                    "agent/support",
                    [{"role": "user", "content": "hi"}],
                    session_id=None,
                    user=f"user-{served}",
                )
            except Exception:  # whatever it was, the user saw an error
                errors += 1
            else:
                errors += done.run.status.value != "completed"
            clock.advance(1.0 / args.rps)
        rollout = await releases.store.rollout("default", "support")
        assert rollout is not None
    finally:
        await releases.drain()
        await agents.close()
        await backend.close()
    return {
        "scenario": {
            "weight_percent": 10,
            "candidate_failure_rate": 0.5,
            "rps_simulated": args.rps,
            "reconciler_interval_s": args.interval,
            "analysis_interval_s": args.analysis_interval,
            "min_requests": args.min_requests,
            "failover": True,
            "clock": "simulated, advancing 1/rps per request",
        },
        "phase": rollout.state.phase.value,
        "reason": rollout.state.reason,
        "time_to_rollback_s": round(clock.now() - created_at, 2),
        "requests_until_rollback": served,
        "reached_bad_version": model.bad_calls,
        "share_reached_bad_version": round(model.bad_calls / served, 4) if served else 0.0,
        "bad_version_failures": model.bad_failures,
        "user_visible_errors": errors,
        "wall_s": round(time.perf_counter() - began, 2),
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["scenario"]
    rows = [
        ("outcome", f"{result['phase']} ({result['reason']})"),
        ("time to rollback (simulated)", f"{result['time_to_rollback_s']} s"),
        ("requests served until rollback", str(result["requests_until_rollback"])),
        (
            "requests that reached the bad version",
            f"{result['reached_bad_version']} "
            f"({100 * result['share_reached_bad_version']:.1f} %), "
            f"{result['bad_version_failures']} of them failed there",
        ),
        ("user-visible errors (failover on)", str(result["user_visible_errors"])),
        ("wall-clock time of the scenario", f"{result['wall_s']} s"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return (
        f"A candidate failing 50 % of its calls at {s['weight_percent']} % weight; "
        f"{s['rps_simulated']} requests per simulated second, the reconciler every "
        f"{s['reconciler_interval_s']} s, analysis `error_rate <= 0.05` every "
        f"{s['analysis_interval_s']} s with at least {s['min_requests']} candidate requests. "
        "The clock is simulated and advances with the request count.\n\n"
        f"| figure | value |\n|---|---|\n{table}"
    )


def write_docs(text: str, path: Path = DOCS) -> None:
    page = path.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{path}: the markers {START} … {END} are missing")
    path.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rps", type=float, default=20.0, help="requests per simulated second")
    parser.add_argument("--interval", type=float, default=5.0, help="reconciler pass, seconds")
    parser.add_argument("--analysis-interval", type=float, default=30.0, help="seconds")
    parser.add_argument("--min-requests", type=int, default=20, help="candidate requests")
    parser.add_argument("--max-requests", type=int, default=20_000, help="give up after")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the section in {DOCS}")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as state:
        result = asyncio.run(scenario(Path(state), args))
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(markdown(result))


if __name__ == "__main__":
    main()
