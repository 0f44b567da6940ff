from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
from typer.testing import CliRunner

from wayport import __version__
from wayport.cli.main import app
from wayport.config.starter import starter_text
from wayport.testing.fake_upstream import FakeUpstream

OPENAI_CONFIG = """\
deployments:
  my-vllm:
    backend: openai
    base_url: http://127.0.0.1:9/v1
    model: qwen
  backup:
    backend: openai
    base_url: http://127.0.0.1:9/v1
    model: qwen-small
models:
  chat:
    deployments: [{name: my-vllm, weight: 3}, {name: backup, weight: 1}]
    fallbacks: [small]
  small:
    deployments: [backup]
"""


@pytest.mark.parametrize(
    "command", [[], ["serve"], ["chat"], ["models"], ["check"], ["init"], ["schema"], ["version"]]
)
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: wayport" in result.output


def test_version(runner: CliRunner) -> None:
    for args in (["version"], ["--version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0
        assert result.stdout == f"wayport {__version__}\n"


def test_schema_prints_a_json_schema(runner: CliRunner) -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert jsonschema_rs.meta.is_valid(schema)
    assert set(schema["properties"]) == {
        "server",
        "state_dir",
        "deployments",
        "models",
        "router",
        "store",
        "tools",
        "agents",
        "telemetry",  # observability: traces, OTLP, the console
        "webhooks",  # signed completion webhooks
        "limits",  # rate limits and budgets
        "pricing",  # the price table
        "channels",  # chat apps and webhooks in
        "channel_outbox",  # delivery of replies
        "releases",  # rollouts per agent
        "workflows",  # durable workflows
        "redis",  # scale-out: the cross-replica bus and shared limits
        "cluster",  # scale-out: heartbeats and claiming
    }


def test_init_writes_the_starter_and_refuses_to_overwrite(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "wayport.yaml").read_text() == starter_text()

    (tmp_path / "wayport.yaml").write_text("server: {port: 1}\n")
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 1
    assert "already exists; pass --force to overwrite it" in result.stderr
    assert (tmp_path / "wayport.yaml").read_text() == "server: {port: 1}\n"

    result = runner.invoke(app, ["init", "--force"])
    assert result.exit_code == 0
    assert (tmp_path / "wayport.yaml").read_text() == starter_text()


def test_init_into_a_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 0
    assert (tmp_path / "wayport.yaml").is_file()


def test_check_a_written_starter(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["init"]).exit_code == 0
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert "wayport.yaml: valid, 1 model, 1 deployment" in result.stdout
    assert "smollm2-local" in result.stdout


def test_check_without_a_file_checks_the_defaults(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0
    assert "built-in defaults (no wayport.yaml here): valid, 1 model, 1 deployment" in result.stdout


def test_check_summarises_models_and_deployments(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(OPENAI_CONFIG)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: valid, 2 models, 2 deployments" in result.stdout
    assert "my-vllm (weight 3), backup (weight 1)" in result.stdout
    assert "qwen at http://127.0.0.1:9/v1" in result.stdout


def test_check_reports_errors_with_exit_code_1(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(OPENAI_CONFIG.replace("fallbacks: [small]", "fallbacks: [tiny]"))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {path}:13: models.chat.fallbacks[0]: model 'tiny' is not defined under models\n"
    )
    assert result.stdout == ""


def test_check_refuses_a_weak_key_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(OPENAI_CONFIG)
    result = CliRunner(env={"WAYPORT_API_KEY": "changeme"}).invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert "WAYPORT_API_KEY (environment): refused" in result.stderr


def test_check_reports_a_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "no such configuration file" in result.stderr


def test_models_from_a_config_with_openai_deployments(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(OPENAI_CONFIG)
    result = runner.invoke(app, ["models", "--config", str(path)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "│" in line]
    assert [row.split("│")[1].strip() for row in rows] == ["chat", "small"]
    assert "small" in rows[0].split("│")[3]


def test_models_config_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(OPENAI_CONFIG)
    result = CliRunner(env={"WAYPORT_CONFIG": str(path), "WAYPORT_API_KEY": None}).invoke(
        app, ["models"]
    )
    assert result.exit_code == 0
    assert "chat" in result.stdout


def test_models_of_a_running_server(runner: CliRunner, threaded_upstream: FakeUpstream) -> None:
    result = runner.invoke(app, ["models", "--url", f"http://127.0.0.1:{threaded_upstream.port}"])
    assert result.exit_code == 0, result.output
    assert "fake" in result.stdout
    assert f"Models at {threaded_upstream.openai_url}" in result.stdout


def test_models_of_an_unreachable_server(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 1
    assert "cannot reach http://127.0.0.1:9/v1" in result.stderr
