"""The durability proof: 100 background runs over 10 sessions survive a server that is
SIGKILLed at (seeded) random moments and restarted; every run completes, none is lost, and no
session history holds a message twice.

The kill moments are progress thresholds (completed answers across the sessions), not times:
the test polls the API with a deadline and kills once the threshold is passed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
SESSIONS = 10
RUNS_PER_SESSION = 10
KILLS = 4
DEADLINE = 60.0


class Server:
    """One launcher process; ``kill`` SIGKILLs it, ``start`` runs a new one on the same state."""

    def __init__(self, state: Path) -> None:
        self._state = state
        self._proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self._starts = 0

    def start(self, deadline: float) -> None:
        self._starts += 1
        port_file = self._state / f"port-{self._starts}"
        self._proc = subprocess.Popen(
            [sys.executable, str(HERE / "kill_launcher.py"), str(self._state), str(port_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not port_file.exists():
            assert self._proc.poll() is None, "the server process exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)  # polling a file the child writes; not a timing assumption
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer"
            time.sleep(0.02)

    def kill(self) -> None:
        assert self._proc is not None
        os.kill(self._proc.pid, signal.SIGKILL)
        self._proc.wait()

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            self._proc.wait(timeout=15)


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
