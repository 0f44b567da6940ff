"""``wayport chat --agent``: the conversation lives in a durable session the user can resume."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from wayport.cli.main import app

SESSION = re.compile(r"--session (sess-[0-9a-f]+)")


def test_agent_chat_prints_the_session_and_resumes_it(
    runner: CliRunner, echo_plugin: str, tmp_path: Path
) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"deployments:\n  e: {{backend: {echo_plugin}}}\n"
        "models:\n  echo: {deployments: [e]}\n"
    )
    first = runner.invoke(
        app, ["chat", "--config", str(config), "--agent", "assistant"], input="one\ntwo\n"
    )
    assert first.exit_code == 0, first.output
    # the echo model counts what it is sent: the instructions plus the session's history
    assert first.stdout == "seen 2\nseen 4\n"
    found = SESSION.search(first.stderr.replace("\n", ""))
    assert found is not None, first.stderr
    again = runner.invoke(
        app,
        ["chat", "--config", str(config), "--agent", "assistant", "--session", found[1]],
        input="three\n",
    )
    assert again.exit_code == 0, again.output
    assert again.stdout == "seen 6\n"  # a new process, the same stored conversation


def test_agent_chat_refuses_model_options_and_unknown_agents(
    runner: CliRunner, echo_plugin: str, tmp_path: Path
) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"deployments:\n  e: {{backend: {echo_plugin}}}\n"
        "models:\n  echo: {deployments: [e]}\n"
    )
    mixed = runner.invoke(app, ["chat", "--agent", "assistant", "-m", "echo"], input="")
    assert mixed.exit_code == 1
    assert "--agent talks to an agent" in mixed.stderr
    alone = runner.invoke(app, ["chat", "--session", "sess-1"], input="")
    assert alone.exit_code == 1
    assert "--session needs --agent" in alone.stderr
    unknown = runner.invoke(
        app, ["chat", "--config", str(config), "--agent", "nobody"], input="hi\n"
    )
    assert unknown.exit_code == 1
    assert "The agent 'nobody' does not exist" in unknown.stderr
