"""The workflow durability proof, through the real CLI: ``wayport serve --config …`` with a slow
scripted model (a plugin backend) runs 50 workflow runs with parallel branches and a map, and
is SIGKILLed at (seeded) random moments and restarted. Every run completes, and no step runs
again after its checkpoint.

Every side effect is a ``record`` tool call that appends ``<idempotency key> <label>`` to a log
and returns the line number it wrote; the step's checkpoint keeps that number. A step that
ran again after its checkpoint would have written a later line under the same key. Runs before
the checkpoint may repeat (steps are at least once): then the checkpoint holds the last one.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from serving import kill, plugin_path, serve_env, start_serve, terminate

HERE = Path(__file__).resolve().parent
RUNS = 50
KILLS = 5
DEADLINE = 120.0
PER_RUN = 6  #: record calls per run: a, b, 3 map items, z

CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, metrics: false, drain_timeout: 1}}
state_dir: {state}
deployments:
  slow: {{backend: slow-scripted, delay: 0.02, text: billing}}
models:
  slow: {{deployments: [slow]}}
router: {{max_retries: 0}}
tools:
  record: {{type: python, function: "workflow_sample_tools:record"}}
workflows:
  fan:
    inputs: {{n: {{required: true}}}}
    steps:
      - id: classify
        llm: {{model: slow, prompt: "classify ticket {{{{ input.n }}}}"}}
      - id: a
        tool: {{name: record, args: {{label: "a-{{{{ input.n }}}}", pause: 0.005}}}}
      - id: b
        needs: classify
        tool: {{name: record, args: {{label: "b-{{{{ steps.classify.output }}}}"}}}}
      - id: each
        needs: classify
        map:
          over: [1, 2, 3]
          concurrency: 2
          step: {{tool: {{name: record, args: {{label: "m{{{{ item }}}}", pause: 0.005}}}}}}
      - id: z
        needs: [a, b, each]
        tool: {{name: record, args: {{label: "z-{{{{ input.n }}}}"}}}}
    output: "{{{{ steps.z.output.line }}}}"
"""


class Server:
    """One ``wayport serve`` process on ``config``; ``kill`` SIGKILLs it, ``start`` runs a new
    one on the same configuration and state."""

    def __init__(
        self,
        tmp: Path,
        config: str,
        *,
        path: tuple[Path, ...] = (),
        log: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``log``: the side-effect log (shared by replicas); ``env``: more variables."""
        self.log = log or tmp / "side-effects.log"
        self.log.touch()
        self._config = tmp / "wayport.yaml"
        self._config.write_text(config)
        self._env = serve_env(
            plugin_path(tmp / "plugins"),
            HERE.parent,
            HERE,
            *path,
            **{
                "WAYPORT_WF_SIDE_EFFECTS": str(self.log),
                "SUPPORT_OUTBOX": str(tmp / "outbox.jsonl"),
                **(env or {}),
            },
        )
        self._proc: subprocess.Popen[str] | None = None
        self._stderr = (tmp / "stderr.log").open("ab")  #: for a failing test's diagnosis
        self.url = ""

    def start(self, deadline: float) -> None:
        self._proc, self.url = start_serve(self._config, self._env, deadline, stderr=self._stderr)

    def kill(self) -> None:
        kill(self._proc)

    def stop(self) -> None:
        terminate(self._proc, timeout=15)
        self._stderr.close()

    def effects(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    s = Server(tmp_path, CONFIG.format(state=tmp_path / "state"))
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.slow
def test_workflows_survive_sigkill(server: Server) -> None:
    rng = random.Random(29)
    deadline = time.monotonic() + DEADLINE
    server.start(deadline)
    runs: list[str] = []
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        for n in range(RUNS):
            r = client.post(
                "/v1/workflows/fan/runs",
                json={"input": {"n": n}},
                headers={"Idempotency-Key": f"k{n}"},
            )
            assert r.status_code == 202, r.text
            runs.append(r.json()["id"])
    assert len(set(runs)) == RUNS
    for threshold in sorted(rng.sample(range(10, RUNS * PER_RUN - 30), KILLS)):
        while len(server.effects()) < threshold:
            assert time.monotonic() < deadline, f"stuck before {threshold} side effects"
            time.sleep(0.005)  # polling the log for a condition, not waiting for time
        server.kill()
        server.start(deadline)

    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        pending = set(runs)
        details: dict[str, dict[str, object]] = {}
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} runs never finished"
            for run_id in sorted(pending):
                r = client.get(f"/v1/workflow-runs/{run_id}")
                assert r.status_code == 200, f"run {run_id} was lost: {r.text}"
                body = r.json()
                assert body["status"] in ("queued", "running", "waiting", "completed"), body
                if body["status"] == "completed":
                    pending.discard(run_id)
                    details[run_id] = body
            time.sleep(0.01)  # polling

    lines = server.effects()
    by_key: dict[str, list[int]] = defaultdict(list)
    for number, line in enumerate(lines, 1):
        by_key[line.split(" ", 1)[0]].append(number)
    checkpointed = 0
    for run_id, body in details.items():
        steps = body["steps"]
        assert isinstance(steps, list)
        tool_steps = [s for s in steps if s["kind"] == "tool"]
        assert len(tool_steps) == PER_RUN, steps
        for step in tool_steps:
            key = step.get("idempotency_key") or _key(run_id, step["path"])
            written = by_key.pop(key)
            assert step["output"]["line"] == max(written), (
                f"{run_id} {step['path']} ran again after its checkpoint: lines {written}"
            )
            checkpointed += 1
        assert body["output"] == next(s for s in tool_steps if s["path"] == "z")["output"]["line"]
    assert checkpointed == RUNS * PER_RUN
    assert not by_key, f"side effects of no known step: {sorted(by_key)[:5]}"
    repeats = len(lines) - checkpointed
    print(f"{len(lines)} side effects, {repeats} repeated before their checkpoint")


def _key(run_id: str, path: str) -> str:
    from wayport.core.workflow_run import step_key

    return step_key(run_id, path)
