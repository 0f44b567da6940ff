"""Three ``wayport serve`` processes sharing the real Postgres and Redis, traffic spread over
all three, one of them SIGKILLed mid-run: every accepted run completes exactly once in its
session's history, streams followed on the replicas that stayed up see their runs to the end,
a rate limit holds across the three, and release state reads the same everywhere. And a
replica stopped with SIGTERM while it holds runs hands them back and exits 0; they complete
on another replica, once.

The replica that dies is stuck on its model (its deployment answers after an hour): whatever
it holds is in flight when it is killed, however fast or slow the machine is, and is finished
elsewhere after the sweep. Nothing waits on time: the test polls the API (the
``wayport_agent_runs_in_flight`` gauge, run and session state) for conditions, each under a
generous deadline. Each replica's log is kept in ``tmp_path`` for a failure's report.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from serving import TESTS, kill, plugin_path, serve_env, start_serve, terminate

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

REPLICAS = 3
SESSIONS = 9
RUNS_PER_SESSION = 6
# the limit drains one request every 60 / LIMIT_RPM = 30 s: the 3 * LIMIT_RPM requests sent
# back to back fit in that on any machine (at rpm 4, twelve had to fit in 15 s)
LIMIT_RPM = 2
DEADLINE = 180.0  #: generous: a loaded 2-core CI machine runs three replicas and Postgres
STUCK = 3600.0  #: the model delay of a replica that holds its runs until it is stopped

CONFIG = """\
server:
  {{host: 127.0.0.1, port: 0, access_log: false, metrics_require_auth: false, drain_timeout: 2}}
state_dir: {state}
store: {{url: "{store}"}}
redis: {{url: "{redis}", key_prefix: "{prefix}"}}
cluster: {{heartbeat_interval: 0.5, stale_after: 2}}
deployments:
  slow: {{backend: slow-scripted, delay: {delay}}}
models:
  slow: {{deployments: [slow]}}
router: {{max_retries: 0}}
agents:
  worker: {{model: slow}}
  limited: {{model: slow}}
limits:
  agents:
    limited: {{rpm: {rpm}}}
"""


class Replica:
    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self._config, self._env = config, env
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log = config.with_suffix(".log")

    def start(self, deadline: float) -> None:
        self.proc, self.url = start_serve(
            self._config,
            self._env,
            deadline,
            stderr=self.log.open("a"),
            tail=lambda: f": {self.tail()}",
        )

    def tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""

    def kill(self) -> None:
        kill(self.proc)

    def stop(self) -> int | None:
        return terminate(self.proc, timeout=20)  # SIGTERM: drain


Start = Callable[[list[float]], list[Replica]]


@pytest.fixture
def start_replicas(
    tmp_path: Path, postgres_url: str, redis_url: str, prefix: str
) -> Iterator[Start]:
    """``start(delays)``: one replica per model delay, up and ready, all on the scratch
    database and the test's Redis prefix; every one still up is stopped afterwards."""
    env = serve_env(plugin_path(tmp_path / "plugins"), TESTS)
    started: list[Replica] = []

    def start(delays: list[float]) -> list[Replica]:
        for i, delay in enumerate(delays):
            config = tmp_path / f"wayport-{i}.yaml"
            config.write_text(
                CONFIG.format(
                    state=tmp_path / f"state-{i}",
                    store=postgres_url,
                    redis=redis_url,
                    prefix=prefix,
                    rpm=LIMIT_RPM,
                    delay=delay,
                )
            )
            started.append(Replica(config, env))
        deadline = time.monotonic() + DEADLINE
        for r in started:  # one at a time: the first one migrates the database
            r.start(deadline)
        return started

    try:
        yield start
    finally:
        for r in started:
            try:
                r.stop()
            except subprocess.TimeoutExpired:
                r.kill()


def _follow(url: str, run_id: str, into: dict[tuple[str, str], list[dict[str, object]]]) -> None:
    """Read ``GET /v1/runs/{id}/stream`` on one replica to its end."""
    events: list[dict[str, object]] = []
    with httpx.stream("GET", f"{url}/v1/runs/{run_id}/stream", timeout=DEADLINE) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    into[(url, run_id)] = events


def _in_flight(client: httpx.Client) -> float:
    """The replica's ``wayport_agent_runs_in_flight`` (the autoscaler's signal)."""
    text = client.get("/metrics").text
    found = re.findall(r'^wayport_agent_runs_in_flight\{agent="worker"\} (\S+)$', text, re.M)
    return float(found[0]) if found else 0.0


def _answers(client: httpx.Client, sessions: list[str]) -> int:
    total = 0
    for sid in sessions:
        r = client.get(f"/v1/sessions/{sid}", params={"limit": 1})
        total += r.json()["message_count"] // 2 if r.status_code == 200 else 0
    return total


def _until(condition: Callable[[], bool], deadline: float, what: str, *logs: Replica) -> None:
    """Poll ``condition`` until it holds; past ``deadline`` fail with ``what`` and the logs."""
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {r.log.name}:\n{r.tail()}" for r in logs)
            raise AssertionError(f"{what}\n{tails}")
        time.sleep(0.05)  # a poll's pace, not a wait for anything: the replicas share 2 CPUs


def test_three_replicas_one_killed(start_replicas: Start) -> None:
    # the victim's model never answers: what it claims stays in flight until it dies
    replicas = start_replicas([0.2, STUCK, 0.2])
    deadline = time.monotonic() + DEADLINE
    clients = [httpx.Client(base_url=r.url, timeout=30.0) for r in replicas]
    survivors, victim = [clients[0], clients[2]], replicas[1]
    try:
        # a rate limit holds across the replicas: requests spread over all three
        limited = clients[0].post("/v1/sessions", json={"agent": "limited"}).json()["id"]
        codes = [
            clients[i % REPLICAS]
            .post(f"/v1/sessions/{limited}/runs", json={"input": f"l{i}", "mode": "background"})
            .status_code
            for i in range(3 * LIMIT_RPM)
        ]
        assert sorted(codes) == [202] * LIMIT_RPM + [429] * (2 * LIMIT_RPM), codes

        # traffic spread round-robin: sessions and runs on every replica
        sessions = [
            clients[i % REPLICAS].post("/v1/sessions", json={"agent": "worker"}).json()["id"]
            for i in range(SESSIONS)
        ]
        runs: list[str] = []
        n = 0
        for j in range(RUNS_PER_SESSION):
            for i, sid in enumerate(sessions):
                r = clients[n % REPLICAS].post(
                    f"/v1/sessions/{sid}/runs",
                    json={"input": f"s{i}-m{j}", "mode": "background"},
                    headers={"Idempotency-Key": f"k-{i}-{j}"},
                )
                n += 1
                assert r.status_code == 202, r.text
                runs.append(r.json()["id"])

        # streams on both replicas that stay up, for the last run of some sessions: whichever
        # replica executes one, at least one of its two followers is elsewhere
        followed = runs[-4:]
        streams: dict[tuple[str, str], list[dict[str, object]]] = {}
        readers = [
            threading.Thread(target=_follow, args=(str(c.base_url), run_id, streams), daemon=True)
            for run_id in followed
            for c in survivors
        ]
        for t in readers:
            t.start()

        # kill one replica mid-run: once it holds runs in flight and the others answer some
        doomed = clients[1]
        _until(
            lambda: _in_flight(doomed) >= 1 and _answers(clients[0], sessions) >= 1,
            deadline,
            "the victim never held a run, or the others never answered one",
            *replicas,
        )
        victim.kill()

        pending, attempts = set(runs), {}
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs never finished"
            for k, run_id in enumerate(sorted(pending)):
                r = survivors[k % 2].get(f"/v1/runs/{run_id}")
                assert r.status_code == 200, f"run {run_id} was lost: {r.text}"
                status = r.json()["status"]
                assert status in ("queued", "running", "completed"), r.text
                if status == "completed":
                    pending.discard(run_id)
                    attempts[run_id] = r.json()["attempt"]
        # the victim held runs when it died: they were swept back and ran again elsewhere
        assert max(attempts.values()) >= 2, attempts

        # exactly once in each session's history, in order, read the same on both survivors
        for i, sid in enumerate(sessions):
            pages = [c.get(f"/v1/sessions/{sid}", params={"limit": 1000}).json() for c in survivors]
            assert pages[0]["messages"] == pages[1]["messages"]
            messages = pages[0]["messages"]
            users = [m["content"] for m in messages if m["role"] == "user"]
            assert users == [f"s{i}-m{j}" for j in range(RUNS_PER_SESSION)], users
            roles = [m["role"] for m in messages]
            assert roles == ["user", "assistant"] * RUNS_PER_SESSION, roles

        for t in readers:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
            assert not t.is_alive(), "a stream never ended"
        live = 0
        for c in survivors:
            for run_id in followed:
                events = streams[(str(c.base_url), run_id)]
                assert events[-1]["type"] == "run.finished", events
                assert events[-1]["run"]["status"] == "completed"  # type: ignore[index]
                live += any(e["type"] == "text.delta" for e in events)
        assert live, [[e["type"] for e in v] for v in streams.values()]

        # release state reads the same on every replica that is up
        answers = [c.get("/v1/releases") for c in survivors]
        assert answers[0].status_code == answers[1].status_code
        assert answers[0].json() == answers[1].json()
    finally:
        for c in clients:
            c.close()
    # the survivors drain on SIGTERM and exit cleanly
    assert [replicas[i].stop() for i in (0, 2)] == [0, 0]


def test_sigterm_drains_and_hands_runs_back(start_replicas: Start) -> None:
    """A replica holding runs gets SIGTERM: it stops claiming, hands back what its grace
    period (``drain_timeout: 2``) did not finish and exits 0; another replica completes the
    handed-back runs, each once, and the sessions' later runs after them, in order."""
    keeper, leaver = start_replicas([0.2, STUCK])
    deadline = time.monotonic() + DEADLINE
    stay, go = (httpx.Client(base_url=r.url, timeout=30.0) for r in (keeper, leaver))
    try:
        # sessions whose runs the leaver starts at once (submitted there, sessions idle), and
        # a second run each, queued behind the first
        sessions = [go.post("/v1/sessions", json={"agent": "worker"}).json()["id"] for _ in "abc"]
        held = [
            go.post(f"/v1/sessions/{sid}/runs", json={"input": f"{sid}-0", "mode": "background"})
            for sid in sessions
        ]
        assert [r.status_code for r in held] == [202] * 3, [r.text for r in held]
        behind = [
            stay.post(f"/v1/sessions/{sid}/runs", json={"input": f"{sid}-1", "mode": "background"})
            for sid in sessions
        ]
        assert [r.status_code for r in behind] == [202] * 3, [r.text for r in behind]
        runs = [r.json()["id"] for r in held + behind]
        # created claimed by the leaver (attempt 1), which holds them until it is stopped
        first = [stay.get(f"/v1/runs/{r}").json() for r in runs[:3]]
        assert [(r["status"], r["attempt"]) for r in first] == [("running", 1)] * 3, first
        _until(lambda: _in_flight(go) >= 1, deadline, "the leaver never held a run", leaver)

        assert leaver.stop() == 0, leaver.tail()

        def finished() -> bool:
            return all(stay.get(f"/v1/runs/{r}").json()["status"] == "completed" for r in runs)

        _until(finished, deadline, "handed-back runs never completed", keeper, leaver)
        # the held runs were started on the leaver, and again on the keeper (more than once
        # only if a loaded machine delayed the leaver's heartbeats past ``stale_after``)
        attempts = [stay.get(f"/v1/runs/{r}").json()["attempt"] for r in runs[:3]]
        assert min(attempts) >= 2, attempts
        for sid in sessions:
            messages = stay.get(f"/v1/sessions/{sid}", params={"limit": 100}).json()["messages"]
            assert [(m["role"], m["content"]) for m in messages] == [
                ("user", f"{sid}-0"),
                ("assistant", "answered"),
                ("user", f"{sid}-1"),
                ("assistant", "answered"),
            ], messages
    finally:
        stay.close()
        go.close()
    assert keeper.stop() == 0, keeper.tail()
