"""The durability proof, through the real CLI: ``wayport serve --config wayport.yaml`` with a
slow scripted model (a plugin backend) runs 100 background runs over 10 sessions and is
SIGKILLed at (seeded) random moments, then restarted on the same state; every run completes,
none is lost, and no session history holds a message twice.

The kill moments are progress thresholds (answers stored across the sessions), not times: the
test polls the API with a deadline and kills once a threshold is passed.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from serving import TESTS, kill, plugin_path, serve_env, start_serve, terminate

SESSIONS = 10
RUNS_PER_SESSION = 10
KILLS = 4
DEADLINE = 180.0  #: ends a hang only: five starts and 100 runs on a loaded 2-core machine

CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, metrics: false, drain_timeout: 1}}
state_dir: {state}
deployments:
  slow: {{backend: slow-scripted, delay: 0.05}}
models:
  slow: {{deployments: [slow]}}
router: {{max_retries: 0}}
agents:
  worker: {{model: slow}}
"""


class Server:
    """One ``wayport serve`` process; ``kill`` SIGKILLs it, ``start`` runs a new one on the
    same configuration and state."""

    def __init__(self, tmp: Path) -> None:
        self._config = tmp / "wayport.yaml"
        self._config.write_text(CONFIG.format(state=tmp / "state"))
        self._env = serve_env(plugin_path(tmp / "plugins"), TESTS)
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self, deadline: float) -> None:
        self._proc, self.url = start_serve(self._config, self._env, deadline)

    def kill(self) -> None:
        kill(self._proc)

    def stop(self) -> None:
        terminate(self._proc, timeout=15)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path)
    try:
        yield s
    finally:
        s.stop()


def _answered(client: httpx.Client, sessions: list[str]) -> int:
    total = 0
    for sid in sessions:
        r = client.get(f"/v1/sessions/{sid}", params={"limit": 1})
        total += r.json()["message_count"] // 2 if r.status_code == 200 else 0
    return total


@pytest.mark.slow
def test_runs_survive_sigkill(server: Server) -> None:
    rng = random.Random(13)
    deadline = time.monotonic() + DEADLINE
    server.start(deadline)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        sessions = [
            client.post("/v1/sessions", json={"agent": "worker"}).json()["id"]
            for _ in range(SESSIONS)
        ]
        runs: list[str] = []
        for j in range(RUNS_PER_SESSION):
            for i, sid in enumerate(sessions):
                r = client.post(
                    f"/v1/sessions/{sid}/runs",
                    json={"input": f"s{i}-m{j}", "mode": "background"},
                    headers={"Idempotency-Key": f"k-{i}-{j}"},
                )
                assert r.status_code == 202, r.text
                runs.append(r.json()["id"])
    total = SESSIONS * RUNS_PER_SESSION
    thresholds = sorted(rng.sample(range(5, total - 10), KILLS))
    for threshold in thresholds:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            while _answered(client, sessions) < threshold:
                assert time.monotonic() < deadline, f"stuck before {threshold} answers"
                time.sleep(0.01)  # a poll's pace, not a wait: the server shares the CPUs
        server.kill()
        server.start(deadline)

    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        pending = set(runs)
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs never finished"
            for run_id in sorted(pending):
                r = client.get(f"/v1/runs/{run_id}")
                assert r.status_code == 200, f"run {run_id} was lost: {r.text}"
                status = r.json()["status"]
                assert status in ("queued", "running", "completed"), r.text
                if status == "completed":
                    pending.discard(run_id)
        for i, sid in enumerate(sessions):
            r = client.get(f"/v1/sessions/{sid}", params={"limit": 1000})
            messages = r.json()["messages"]
            users = [m["content"] for m in messages if m["role"] == "user"]
            assert sorted(users) == sorted(f"s{i}-m{j}" for j in range(RUNS_PER_SESSION))
            assert len(messages) == 2 * RUNS_PER_SESSION, [m["content"] for m in messages]
            roles = [m["role"] for m in messages]
            assert roles == ["user", "assistant"] * RUNS_PER_SESSION
