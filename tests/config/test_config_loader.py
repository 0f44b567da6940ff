from __future__ import annotations

import json
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from wayport.config.issues import InvalidConfig
from wayport.config.loader import find_config, load_config, parse_config
from wayport.config.schema import (
    AnthropicDeployment,
    LlamaCppDeployment,
    OpenAIDeployment,
    PluginDeployment,
    json_schema,
    json_schema_text,
)
from wayport.config.starter import starter_text, write_starter
from wayport.core.errors import ConfigError
from wayport.core.routing import (
    CircuitPolicy,
    ModelGroup,
    RouterPolicy,
    Strategy,
    WeightedDeployment,
)

FULL = """\
server:
  port: 9000
  log_level: warning
  drain_timeout: 5
state_dir: data
deployments:
  local:
    backend: llamacpp
    model_path: models/tiny.gguf
    threads: 2
    gpu_layers: -1
    slots: 1
    preload: false
    idle_unload: 300
  my-vllm:
    backend: openai
    base_url: http://127.0.0.1:8000/v1/
    model: qwen
    api_key: vllm-key
    headers: {Authorization: Bearer hdr-secret, x-team: blue}
    timeouts: {connect: 1, first_byte: 2, total: 3}
    max_connections: 7
    stream_usage: false
  claude:
    backend: anthropic
    model: claude-sonnet-4-5
    api_key: anthropic-key
    default_max_tokens: 99
models:
  chat:
    deployments: [{name: my-vllm, weight: 3}, claude]
    fallbacks: [small]
    context_window_fallbacks: [long]
  small: {deployments: [local]}
  long: {deployments: [claude]}
router:
  strategy: least_inflight
  max_retries: 4
  backoff_base: 0.5
  backoff_max: 8
  timeout: 30
  circuit: {failure_threshold: 2, cooldown: 10, half_open_probes: 3}
"""


def test_defaults_without_a_file(tmp_path: Path) -> None:
    config = load_config(cwd=tmp_path, env={})
    assert list(config.models) == ["smollm2"]
    assert config.groups() == (
        ModelGroup(name="smollm2", deployments=(WeightedDeployment(name="smollm2-local"),)),
    )
    local = config.deployments["smollm2-local"]
    assert isinstance(local, LlamaCppDeployment)
    assert local.backend_options()["model_path"] is None
    assert config.state_dir == tmp_path / ".wayport"
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.api_key is None
    assert config.router.policy() == RouterPolicy()


def test_wayport_yaml_in_the_working_directory_is_found(tmp_path: Path) -> None:
    (tmp_path / "wayport.yaml").write_text("server: {port: 9123}\n")
    assert find_config(cwd=tmp_path) == tmp_path / "wayport.yaml"
    assert load_config(cwd=tmp_path, env={}).server.port == 9123


def test_an_explicit_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "missing.yaml", env={})


def test_errors_name_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "conf.yaml"
    path.write_text("server:\n  port: high\n")
    with pytest.raises(InvalidConfig) as info:
        load_config(path, env={})
    assert info.value.problems == (
        f"{path}:2: server.port: Input should be a valid integer, unable to parse string as an "
        "integer (got 'high')",
    )


def test_a_file_with_only_server_settings_keeps_the_embedded_model() -> None:
    config = parse_config("server: {port: 9001}\n", env={})
    assert list(config.deployments) == ["smollm2-local"]
    assert list(config.models) == ["smollm2"]


def test_log_level_is_case_insensitive() -> None:
    assert parse_config("server: {log_level: DEBUG}\n", env={}).server.log_level == "debug"


def test_an_empty_file_is_the_defaults() -> None:
    assert list(parse_config("# nothing yet\n", env={}).models) == ["smollm2"]


def test_every_field_reaches_the_runtime_types(tmp_path: Path) -> None:
    config = parse_config(FULL, env={}, base_dir=tmp_path)
    assert config.server.log_level == "warning"
    assert config.server.drain_timeout == 5
    assert config.state_dir == tmp_path / "data"
    local = config.deployments["local"]
    assert isinstance(local, LlamaCppDeployment)
    assert local.backend_options() == {
        "model_path": tmp_path / "models" / "tiny.gguf",
        "n_ctx": 2048,
        "n_threads": 2,
        "n_gpu_layers": -1,
        "slots": 1,
        "preload": False,
        "idle_unload": 300.0,
        "chat_format": None,
        "n_batch": 512,
    }
    vllm = config.deployments["my-vllm"]
    assert isinstance(vllm, OpenAIDeployment)
    assert vllm.backend_options() == {
        "base_url": "http://127.0.0.1:8000/v1",
        "model": "qwen",
        "stream_usage": False,
        "api_key": "vllm-key",
        "headers": {"Authorization": "Bearer hdr-secret", "x-team": "blue"},
        "connect_timeout": 1.0,
        "first_byte_timeout": 2.0,
        "total_timeout": 3.0,
        "max_connections": 7,
    }
    claude = config.deployments["claude"]
    assert isinstance(claude, AnthropicDeployment)
    assert claude.backend_options() == {
        "model": "claude-sonnet-4-5",
        "base_url": "https://api.anthropic.com",
        "anthropic_version": "2023-06-01",
        "default_max_tokens": 99,
        "api_key": "anthropic-key",
        "headers": None,
        "connect_timeout": 5.0,
        "first_byte_timeout": 60.0,
        "total_timeout": 600.0,
        "max_connections": 100,
    }
    assert config.groups()[0] == ModelGroup(
        name="chat",
        deployments=(
            WeightedDeployment(name="my-vllm", weight=3.0),
            WeightedDeployment(name="claude", weight=1.0),
        ),
        fallbacks=("small",),
        context_window_fallbacks=("long",),
    )
    assert config.router.policy() == RouterPolicy(
        strategy=Strategy.LEAST_INFLIGHT,
        max_retries=4,
        backoff_base=0.5,
        backoff_max=8.0,
        timeout=30.0,
        circuit=CircuitPolicy(failure_threshold=2, cooldown=10.0, half_open_probes=3),
    )


def test_secrets_are_collected_for_redaction() -> None:
    config = parse_config(FULL, env={"WAYPORT_API_KEY": "Zq3-Rt8vL0pXa7Nc2WbYe9HkUf4Jd6Gs1Mo5"})
    assert set(config.secrets()) == {
        "Zq3-Rt8vL0pXa7Nc2WbYe9HkUf4Jd6Gs1Mo5",
        "vllm-key",
        "Bearer hdr-secret",
        "anthropic-key",
    }
    assert "vllm-key" not in repr(config)


def test_plugin_kinds_validate_against_the_registered_names() -> None:
    text = (
        "deployments:\n  e: {backend: echo, reply: pong, api_token: t0k}\n"
        "models:\n  m: {deployments: [e]}\n"
    )
    config = parse_config(text, env={}, backend_kinds=["echo"])
    plugin = config.deployments["e"]
    assert isinstance(plugin, PluginDeployment)
    assert plugin.backend_options() == {"reply": "pong", "api_token": "t0k"}
    assert config.secrets() == ("t0k",)
    with pytest.raises(InvalidConfig, match="unknown backend 'echo'"):
        parse_config(text, env={}, backend_kinds=[])


# -- starter ---------------------------------------------------------------------------------


def test_the_starter_validates_and_serves_the_embedded_model() -> None:
    config = parse_config(starter_text(), env={})
    assert list(config.models) == ["smollm2"]
    assert isinstance(config.deployments["smollm2-local"], LlamaCppDeployment)


def test_the_starter_examples_validate_once_uncommented() -> None:
    # The commented examples are part of the documentation: they must be valid too.
    lines = starter_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "# my-vllm:" in line)
    end = next(i for i, line in enumerate(lines) if line.startswith("# Models:"))
    uncommented = [
        line.replace("# ", "", 1) if line.startswith("  # ") and ":" in line else line
        for line in lines[start:end]
    ]
    text = "\n".join(lines[:start] + uncommented + lines[end:])
    text = text.replace("[smollm2-local]", "[smollm2-local, my-vllm, claude]", 1)
    config = parse_config(text, env={"ANTHROPIC_API_KEY": "a-key"})
    assert list(config.deployments) == ["smollm2-local", "my-vllm", "claude"]


def test_write_starter_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write_starter(tmp_path)
    assert path == tmp_path / "wayport.yaml"
    path.write_text("mine\n")
    with pytest.raises(ConfigError, match="already exists; pass --force"):
        write_starter(path)
    assert path.read_text() == "mine\n"
    write_starter(path, force=True)
    assert path.read_text() == starter_text()


# -- JSON Schema -----------------------------------------------------------------------------


def test_the_schema_is_a_valid_json_schema() -> None:
    schema = json.loads(json_schema_text())
    assert jsonschema_rs.meta.is_valid(schema)
    assert schema["title"] == "Wayport configuration"


def test_the_schema_accepts_the_starter_and_rejects_mistakes() -> None:
    validator = jsonschema_rs.validator_for(json_schema())
    starter = yaml.safe_load(starter_text().replace("${WAYPORT_API_KEY:-}", "null"))
    assert validator.is_valid(starter)
    assert validator.is_valid(yaml.safe_load(FULL))
    typo = yaml.safe_load(FULL.replace("max_connections: 7", "max_conections: 7"))
    assert not validator.is_valid(typo)
    wrong_type = yaml.safe_load(FULL.replace("slots: 1", "slots: one"))
    assert not validator.is_valid(wrong_type)
    builtin_kind_with_plugin_fields = yaml.safe_load(
        FULL.replace("backend: anthropic", "backend: openai")
    )
    assert not validator.is_valid(builtin_kind_with_plugin_fields)
    plugin = {"deployments": {"e": {"backend": "echo", "anything": 1}}, "models": {}}
    assert validator.is_valid(plugin)
