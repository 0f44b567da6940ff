"""The releases issue's "done when", end to end against a real ``wayport serve`` process:

a user changes the agent's prompt (``candidate.yaml``), starts a canary with ``wayport release
create``, watches it with ``wayport release status --once``, and the candidate, deliberately
broken (its model fails every other call), is rolled back by the reconciler while every user
request during the rollout succeeds (each failed candidate call is retried on stable)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.serving import WAYPORT, serve_env, start_serve, terminate

PLUGIN = '''\
from wayport.core.errors import BackendUnavailable
from wayport.testing import ScriptedBackend
from wayport.testing.models import Fail, Reply


def echo(*, name):
    """Answers with the agent's instructions; a version whose instructions start "broken"
    fails every other call (the model unavailable)."""
    calls = [0]

    def answer(request):
        text = next(
            (str(m.get("content")) for m in request.messages if m["role"] == "system"), ""
        )
        if text.startswith("broken"):
            calls[0] += 1
            if calls[0] % 2:
                return Fail(BackendUnavailable("broken on purpose"))
        return Reply(text=text)

    return ScriptedBackend(name, answer)
'''

CONFIG = """\
state_dir: {state}
server: {{host: 127.0.0.1, port: 0}}
deployments:
  echo: {{backend: wp-done-echo}}
models:
  echo: {{deployments: [echo]}}
router: {{max_retries: 0}}
agents:
  support: {{model: echo, instructions: v1}}
releases:
  interval: 0.2
"""

CANDIDATE = "instructions: broken v2\n"  # the changed prompt

# The analysis waits for 4 candidate requests however slowly the test sends them (a loaded CI
# machine): with the default ``max_inconclusive`` (5), five 1 s analyses short of data pause the
# rollout for a human, which is right in production and a race against the clock here.
CANARY = """\
kind: canary
steps:
  - set_weight: 10
  - analysis:
      conditions: ["error_rate <= 0.05"]
      min_requests: 4
      interval: 1
      max_inconclusive: 100000
  - set_weight: 50
  - pause: {}
"""


def _plugins(root: Path) -> Path:
    root.mkdir()
    (root / "wp_done_models.py").write_text(PLUGIN)
    info = root / "wp_done_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wp-done-models\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[wayport.backends]\nwp-done-echo = wp_done_models:echo\n"
    )
    return root


class Project:
    def __init__(self, tmp: Path) -> None:
        self.config = tmp / "wayport.yaml"
        self.config.write_text(CONFIG.format(state=tmp / "state"))
        self.candidate = tmp / "candidate.yaml"
        self.candidate.write_text(CANDIDATE)
        self.canary = tmp / "canary.yaml"
        self.canary.write_text(CANARY)
        self.env = serve_env(_plugins(tmp / "plugins"), COLUMNS="200")
        self.url = ""

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [WAYPORT, "release", *args, "--url", self.url],
            capture_output=True,
            text=True,
            env=self.env,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path)
    proc, made.url = start_serve(made.config, made.env, time.monotonic() + 60)
    try:
        yield made
    finally:
        terminate(proc, 30)


def _status_row(out: str) -> list[str]:
    [row] = [line for line in out.splitlines() if "support" in line and "canary" in line]
    return [cell.strip() for cell in row.replace("│", "|").split("|") if cell.strip()]


def test_a_broken_prompt_change_is_canaried_and_rolled_back_with_no_user_error(
    project: Project,
) -> None:
    answers: list[str] = []
    with httpx.Client(base_url=project.url, timeout=30) as client:

        def ask(i: int) -> None:
            response = client.post(
                "/v1/chat/completions",
                json={
                    "model": "agent/support",
                    "messages": [{"role": "user", "content": "hi"}],
                    "user": f"user-{i}",
                },
            )
            assert response.status_code == 200, response.text  # no user-visible error
            answers.append(response.json()["choices"][0]["message"]["content"])

        ask(0)
        assert answers == ["v1"]
        made = project.cli(
            "create", "support", "--file", str(project.candidate), "--strategy", str(project.canary)
        )
        assert "rollout of" in made and "began" in made

        # the reconciler sets the first weight; the status shows the canary at 10 %
        deadline = time.monotonic() + 60
        while True:
            row = _status_row(project.cli("status", "support", "--once"))
            if row[2] == "progressing" and row[5] == "10%":
                break
            assert time.monotonic() < deadline, row
        watched = project.cli("status", "support", "--once")
        assert "checks" in watched and "error_rate" in watched  # the current step's check

        # users keep asking; half the candidate's calls fail, each is answered by stable
        i = 1
        while True:
            for _ in range(20):
                ask(i)
                i += 1
            row = _status_row(project.cli("status", "support", "--once"))
            if row[2] != "progressing":
                break
            assert time.monotonic() < deadline, row

    final = project.cli("status", "support", "--once")
    row = _status_row(final)
    assert row[2] == "rolled_back" and row[5] == "0%", final
    assert "error_rate" in final  # the reason names the failed check
    assert "broken v2" in answers  # the candidate did answer some users (its good half)
    assert set(answers) == {"v1", "broken v2"}  # and nobody got an error
