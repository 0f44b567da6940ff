"""The release CLI end to end: ``wayport eval SUITE.yaml --version V`` as a real process (no
TTY) on a configuration whose models are scripted plugin backends (an answering model that
names its version's instructions, a judge that grades rubrics), its result read back from
the SQLite store; ``wayport release show`` and ``diff`` against a running server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from wayport.server.app import create_app
from wayport.server.settings import ServerSettings
from wayport.service.gateway import Gateway
from wayport.store import open_store
from wayport.store.releases import SqlReleaseStore

from .conftest import STABLE, Env
from .test_api import KEY, serve

pytestmark = pytest.mark.anyio

#: the console script of the environment running the tests
WAYPORT = str(Path(sys.executable).with_name("wayport"))

PLUGIN = '''\
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply


def _system(request):
    return next((str(m.get("content")) for m in request.messages if m["role"] == "system"), "")


def echo(*, name):
    """Answers with the agent's instructions: every answer names its version."""
    return ScriptedBackend(name, lambda request: Reply(text=_system(request)))


def judge(*, name):
    """PASS when the graded answer is "v2"."""
    graded = lambda request: str(request.messages[-1].get("content"))
    return ScriptedBackend(
        name, lambda request: Reply(text="PASS" if "Answer: v2" in graded(request) else "FAIL")
    )
'''

CONFIG = """\
state_dir: {state}
deployments:
  echo: {{backend: wp-eval-echo}}
  grader: {{backend: wp-eval-judge}}
models:
  echo: {{deployments: [echo]}}
  grader: {{deployments: [grader]}}
router: {{max_retries: 0}}
agents:
  support: {{model: echo, instructions: v1}}
"""

SUITE = """\
name: smoke
agent: support
judge: grader
cases:
  - name: names v2
    input: "Which version are you?"
    assert: [{contains: "v2"}, {regex: "^v\\\\d$"}]
  - name: graded
    input: "Say who you are"
    assert: [{rubric: "says v2"}]
"""


def plugins(root: Path) -> Path:
    """``echo`` and ``judge`` as an installed ``wayport.backends`` plugin (a module and a
    bare ``.dist-info``, as pip would leave them)."""
    root.mkdir()
    (root / "wp_eval_models.py").write_text(PLUGIN)
    info = root / "wp_eval_models-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wp-eval-models\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[wayport.backends]\n"
        "wp-eval-echo = wp_eval_models:echo\n"
        "wp-eval-judge = wp_eval_models:judge\n"
    )
    return root


class EvalProject:
    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.config = tmp / "wayport.yaml"
        self.config.write_text(CONFIG.format(state=self.state))
        self.suite = tmp / "smoke.yaml"
        self.suite.write_text(SUITE)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(plugins(tmp / "plugins")),
            "WAYPORT_API_KEY": "",
            "NO_COLOR": "1",
            "COLUMNS": "120",
        }

    def eval(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [WAYPORT, "eval", str(self.suite), "--config", str(self.config), *args]
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            env=self.env,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )


async def test_eval_runs_a_suite_on_a_version_stores_it_and_exits_by_its_result(
    tmp_path: Path,
) -> None:
    project = EvalProject(tmp_path)

    # the configured version (instructions v1) fails the suite: exit 1, the result is stored
    failing = await asyncio.to_thread(project.eval)
    assert failing.returncode == 1, failing.stdout + failing.stderr
    lines = failing.stdout.splitlines()
    assert "fail names v2" in lines and "fail graded" in lines  # one line per case
    [summary] = [line for line in lines if line.startswith("smoke on support ")]
    configured = summary.split()[3].rstrip(":")
    assert summary.endswith("score 0.00 (0/2 cases)")

    store = await open_store(None, state_dir=project.state)
    try:
        spec = await store.runs.pinned_agent("default", "support", configured)
        assert spec is not None and spec.instructions == "v1"
        candidate = replace(spec, instructions="v2")
        await store.runs.pin_agent("default", candidate)  # a stored version, not configured
    finally:
        await store.close()

    passing = await asyncio.to_thread(project.eval, "--version", candidate.version)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    lines = passing.stdout.splitlines()
    assert "pass names v2" in lines and "pass graded" in lines
    assert any("smoke" in line and "2/2" in line and "100%" in line for line in lines)  # the bar
    assert f"smoke on support {candidate.version}: score 1.00 (2/2 cases)" in lines
    assert "\x1b[" not in passing.stdout  # no terminal control codes in a pipe

    lenient = await asyncio.to_thread(project.eval, "--version", configured, "--min-score", "0")
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    unknown = await asyncio.to_thread(project.eval, "--version", "nope")
    assert unknown.returncode == 1 and "no version 'nope'" in unknown.stderr

    store = await open_store(None, state_dir=project.state)
    try:
        releases = SqlReleaseStore(store.db)
        good = await releases.latest_eval("default", "support", candidate.version, suite="smoke")
        bad = await releases.latest_eval("default", "support", configured)
    finally:
        await store.close()
    assert good is not None and good.score == 1.0 and good.results[0]["answer"] == "v2"
    assert bad is not None and bad.score == 0.0  # the failing result is stored too
    assert bad.results[1]["checks"][0]["why"] == "rubric judged FAIL"


@pytest.fixture
async def server(env: Env) -> AsyncIterator[str]:
    settings = ServerSettings(api_key=KEY, access_log=False, version="9.9.9")
    app = create_app(
        gateway=Gateway(router=env.agents._model),  # type: ignore[arg-type]
        settings=settings,
        releases=env.releases,
    )
    async with serve(app) as url:
        yield url


async def test_release_show_and_diff_against_a_running_server(env: Env, server: str) -> None:
    from typer.testing import CliRunner

    from wayport.cli.main import app

    v2 = await env.releases.register("default", replace(STABLE, instructions="v2"))
    runner = CliRunner()

    def cli(*args: str) -> tuple[int, str]:
        # the server answers on this loop while the command runs in a thread
        result = runner.invoke(app, [*args, "--url", server, "--api-key", KEY])
        return result.exit_code, result.output

    code, shown = await asyncio.to_thread(cli, "release", "show", "support", v2)
    assert code == 0, shown
    assert '"instructions": "v2"' in shown and '"model": "good"' in shown
    code, diff = await asyncio.to_thread(cli, "release", "diff", "support", STABLE.version, v2)
    assert code == 0, diff
    [row] = [line for line in diff.splitlines() if "instructions" in line]
    assert '"v1"' in row and '"v2"' in row
    assert "model" not in diff  # only the fields that differ

    code, missing = await asyncio.to_thread(cli, "release", "show", "support", "nope")
    assert code == 1 and "404" in missing
    result = await asyncio.to_thread(
        runner.invoke, app, ["release", "show", "support", v2, "--url", server]
    )
    assert result.exit_code == 1 and "401" in result.output  # no key: refused
