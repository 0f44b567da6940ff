"""``wayport chat``: piped input, streamed output, history kept for the session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wayport.cli.main import app
from wayport.testing.fake_upstream import FakeUpstream

WAYPORT = str(Path(sys.executable).parent / "wayport")  # the installed console script


async def chat_process(*args: str, stdin: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``wayport chat`` as a process without blocking the loop that serves the fake."""
    proc = await asyncio.create_subprocess_exec(
        WAYPORT,
        "chat",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.anyio
async def test_chat_with_a_server_streams_and_keeps_history(
    subprocess_env: dict[str, str],
) -> None:
    async with FakeUpstream() as fake:  # echoes the last user message back
        code, out, err = await chat_process(
            "--url",
            f"http://127.0.0.1:{fake.port}",
            "--system",
            "Be brief.",
            "--max-tokens",
            "16",
            stdin="Hello there\n\nHow are you\n/exit\nnever sent\n",
            env=subprocess_env,
        )
    assert (code, err) == (0, "")
    assert out == "Hello there\nHow are you\n"
    first, second = (r.body for r in fake.requests if r.path == "/v1/chat/completions")
    assert first["model"] == "fake"  # the first model the server lists
    assert first["stream"] is True
    assert first["max_tokens"] == 16
    assert second["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hello there"},
        {"role": "user", "content": "How are you"},
    ]


@pytest.mark.anyio
async def test_chat_ends_at_end_of_input(subprocess_env: dict[str, str]) -> None:
    async with FakeUpstream() as fake:
        fake.reply(text="pong")
        code, out, _ = await chat_process(
            "--url", fake.openai_url, "-m", "any", stdin="ping", env=subprocess_env
        )
    assert (code, out) == (0, "pong\n")


@pytest.mark.anyio
async def test_chat_with_a_wrong_key_fails_clearly(subprocess_env: dict[str, str]) -> None:
    async with FakeUpstream(api_key="the-right-key") as fake:
        env = {**subprocess_env, "WAYPORT_API_KEY": "a-wrong-key"}
        code, out, err = await chat_process(
            "--url", fake.openai_url, "-m", "fake", stdin="hi\n", env=env
        )
    assert code == 1
    assert out == ""
    assert "error: HTTP 401" in err


def test_chat_in_process_with_a_plugin_backend(
    runner: CliRunner, echo_plugin: str, tmp_path: Path
) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"deployments:\n  e: {{backend: {echo_plugin}, prefix: messages}}\n"
        "models:\n  echo: {deployments: [e]}\n"
    )
    result = runner.invoke(
        app, ["chat", "--config", str(config), "-s", "system"], input="one\ntwo\n"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "messages 2\nmessages 4\n"


def test_chat_in_process_reports_an_unknown_model(
    runner: CliRunner, echo_plugin: str, tmp_path: Path
) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(
        f"state_dir: {tmp_path / 'state'}\n"
        f"deployments:\n  e: {{backend: {echo_plugin}}}\n"
        "models:\n  echo: {deployments: [e]}\n"
    )
    result = runner.invoke(app, ["chat", "--config", str(config), "-m", "nope"], input="hi\n")
    assert result.exit_code == 1
    assert "The model 'nope' does not exist" in result.stderr


def test_chat_in_process_reports_an_invalid_config(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text("server: {port: x}\n")
    result = runner.invoke(app, ["chat", "--config", str(config)], input="hi\n")
    assert result.exit_code == 1
    assert f"{config}:1: server.port: Input should be a valid integer" in result.stderr


@pytest.mark.model
def test_chat_in_process_with_the_embedded_model_piped(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    # No wayport.yaml in the working directory: the built-in defaults, the embedded model.
    result = subprocess.run(
        [WAYPORT, "chat", "--max-tokens", "8"],
        input="Say hello.\nAnd again.\n/exit\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=subprocess_env,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    # Two answers, each ended by a newline (an answer may hold newlines of its own).
    assert result.stdout.strip()
    assert result.stdout.endswith("\n")
    assert result.stdout.count("\n") >= 2
    assert (tmp_path / ".wayport").is_dir()
