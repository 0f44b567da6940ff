"""Two ``wayport serve`` replicas share one workflow queue on one scratch Postgres database.

Runs are submitted across both; both execute steps (every side effect names the replica that
ran it); one replica is SIGKILLed mid-way and the other takes over the runs it held once their
heartbeat is older than ``cluster.stale_after``. Every run completes, exactly once, and no step
runs again after its checkpoint (the side-effect log proof of ``test_workflow_kill``).

Nothing waits on time: the test polls the log and the API for conditions, under a deadline.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_workflow_kill import CONFIG as SINGLE_CONFIG
from test_workflow_kill import PER_RUN, Server

from scratch_db import scratch_postgres
from wayport.core.workflow_run import step_key

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

RUNS = 40
DEADLINE = 120.0
# the single-process kill test's workflow, on Postgres, with short cluster timings; not too
# short: a replica stalled past ``stale_after`` on a loaded machine has its runs taken over
# while it still executes them, and a step it was in may then be recorded after the other's
# checkpoint (steps are at least once), which the test counts as a repeat
CONFIG = SINGLE_CONFIG.replace(
    "state_dir: {state}\n",
    'state_dir: {state}\nstore: {{url: "{store}"}}\n'
    "cluster: {{heartbeat_interval: 0.3, stale_after: 4}}\n",
)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A scratch database of this test's own, dropped afterwards."""
    with scratch_postgres() as url:
        yield url


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[Server, Server]]:
    """Replicas ``a`` and ``b``: configurations of their own (state dirs), one database, one
    side-effect log."""
    log = tmp_path / "side-effects.log"
    made: list[Server] = []
    for name in ("a", "b"):
        home = tmp_path / name
        home.mkdir()
        config = CONFIG.format(state=home / "state", store=postgres_url)
        made.append(Server(home, config, log=log, env={"WAYPORT_WF_REPLICA": name}))
    try:
        yield made[0], made[1]
    finally:
        for server in made:
            server.stop()


def effects(log: Path) -> list[list[str]]:
    """``[key, label, replica]`` per line, in order."""
    return [line.split(" ") for line in log.read_text(encoding="utf-8").splitlines()]


def test_two_replicas_share_the_queue_and_take_over_a_killed_one(
    pair: tuple[Server, Server],
) -> None:
    a, b = pair
    deadline = time.monotonic() + DEADLINE
    a.start(deadline)  # migrates the database first
    b.start(deadline)
    runs: list[str] = []
    with httpx.Client(timeout=10.0) as client:
        for n in range(RUNS):
            target = (a, b)[n % 2]
            r = client.post(
                f"{target.url}/v1/workflows/fan/runs",
                json={"input": {"n": n}},
                headers={"Idempotency-Key": f"k{n}"},
            )
            assert r.status_code == 202, r.text
            runs.append(r.json()["id"])
    assert len(set(runs)) == RUNS

    # kill ``a`` once both replicas executed steps and a good part of the work is done
    while True:
        seen = effects(a.log)
        replicas = {line[2] for line in seen}
        if replicas == {"a", "b"} and len(seen) >= RUNS * PER_RUN // 4:
            break
        assert len(seen) < RUNS * PER_RUN, f"all work done before the kill, by {replicas}"
        assert time.monotonic() < deadline, f"stuck at {len(seen)} side effects by {replicas}"
        time.sleep(0.005)  # polling the log for a condition
    a.kill()
    print(f"killed a after {time.monotonic() - deadline + DEADLINE:.1f}s")

    details: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=b.url, timeout=10.0) as client:
        pending = set(runs)
        while pending:
            if time.monotonic() > deadline:
                stuck = [client.get(f"/v1/workflow-runs/{r}").json() for r in sorted(pending)]
                raise AssertionError(f"{len(pending)} runs never finished on b: {stuck}")
            for run_id in sorted(pending):
                r = client.get(f"/v1/workflow-runs/{run_id}")
                assert r.status_code == 200, f"run {run_id} was lost: {r.text}"
                body = r.json()
                assert body["status"] in ("queued", "running", "waiting", "completed"), body
                if body["status"] == "completed":
                    pending.discard(run_id)
                    details[run_id] = body
            time.sleep(0.01)  # polling the API for a condition

    lines = effects(a.log)
    by_key: dict[str, list[int]] = defaultdict(list)
    replica_of: dict[int, str] = {}
    for number, (key, _label, replica) in enumerate(lines, 1):
        by_key[key].append(number)
        replica_of[number] = replica
    checkpointed_by: dict[str, int] = defaultdict(int)
    taken_over = 0
    for run_id, body in details.items():
        tool_steps = [s for s in body["steps"] if s["kind"] == "tool"]
        assert len(tool_steps) == PER_RUN, body["steps"]
        ran_on = set()
        for step in tool_steps:
            key = step_key(run_id, step["path"])
            written = by_key.pop(key)
            assert step["output"]["line"] == max(written), (
                f"{run_id} {step['path']} ran again after its checkpoint: lines {written}"
            )
            checkpointed_by[replica_of[max(written)]] += 1
            ran_on.update(replica_of[n] for n in written)
        # exactly once: one completion, whose output is the last step's checkpoint
        assert body["output"] == next(s for s in tool_steps if s["path"] == "z")["output"]["line"]
        if ran_on == {"a", "b"}:
            taken_over += 1
            assert body["attempt"] >= 2, f"{run_id} changed replica without a new claim"
    assert not by_key, f"side effects of no known step: {sorted(by_key)[:5]}"
    assert checkpointed_by["a"] > 0 and checkpointed_by["b"] > 0, dict(checkpointed_by)
    # a held unfinished runs when it died (it had started steps of them): b finished them
    assert taken_over > 0, "no run that a started was finished by b"
    with httpx.Client(base_url=b.url, timeout=10.0) as client:
        listed = client.get("/v1/workflow-runs", params={"status": "completed", "limit": 100})
    assert {r["id"] for r in listed.json()["data"]} == set(runs)
    print(f"{len(lines)} side effects; checkpoints by replica {dict(checkpointed_by)}")
