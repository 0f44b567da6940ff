"""Every mistake is reported as ``file:line: path: what was expected``."""

from __future__ import annotations

import pytest

from wayport.config.checks import is_loopback, weak_key_reason
from wayport.config.issues import InvalidConfig, UnsafeBind
from wayport.config.loader import parse_config
from wayport.core.errors import ConfigError

STRONG_KEY = "Zq3-Rt8vL0pXa7Nc2WbYe9HkUf4Jd6Gs1Mo5"

BASE = """\
server:
  host: 127.0.0.1
  port: 8080
deployments:
  local:
    backend: llamacpp
    n_ctx: 2048
  my-vllm:
    backend: openai
    base_url: http://127.0.0.1:8000/v1
    model: Qwen/Qwen2.5-7B-Instruct
    timeouts: {connect: 5, first_byte: 60, total: 600}
models:
  chat:
    deployments: [my-vllm]
    fallbacks: [small]
  small:
    deployments: [local]
"""


def problems(text: str, env: dict[str, str] | None = None) -> tuple[str, ...]:
    with pytest.raises(InvalidConfig) as info:
        parse_config(text, env=env or {})
    return info.value.problems


def test_the_base_document_is_valid() -> None:
    config = parse_config(BASE, env={})
    assert list(config.models) == ["chat", "small"]


def test_wrong_type() -> None:
    text = BASE.replace("connect: 5,", "connect: fast,")
    assert problems(text) == (
        "wayport.yaml:12: deployments.my-vllm.timeouts.connect: Input should be a valid number, "
        "unable to parse string as a number (got 'fast')",
    )


def test_unknown_field_suggests_the_closest() -> None:
    text = BASE.replace("    n_ctx: 2048\n", "    n_ctxx: 2048\n")
    assert problems(text) == (
        "wayport.yaml:7: deployments.local.n_ctxx: unknown field 'n_ctxx' (did you mean 'n_ctx'?)",
    )


def test_unknown_field_without_a_close_match_lists_the_fields() -> None:
    (problem,) = problems(BASE.replace("  port: 8080\n", "  port: 8080\n  zzz: 1\n"))
    assert problem.startswith("wayport.yaml:4: server.zzz: unknown field 'zzz' (expected one of:")
    assert "drain_timeout" in problem


def test_unknown_top_level_section() -> None:
    assert problems(BASE + "routers: {}\n") == (
        "wayport.yaml:19: routers: unknown field 'routers' (did you mean 'router'?)",
    )


def test_unknown_backend() -> None:
    text = BASE.replace("backend: openai", "backend: openia")
    assert problems(text) == (
        "wayport.yaml:9: deployments.my-vllm.backend: unknown backend 'openia' (expected one of: "
        "anthropic, llamacpp, openai; plugins register more under 'wayport.backends')",
    )


def test_missing_backend() -> None:
    text = BASE.replace("    backend: llamacpp\n", "")
    assert problems(text) == (
        "wayport.yaml:5: deployments.local: a deployment needs 'backend': llamacpp, openai, "
        "anthropic or a registered plugin kind",
    )


def test_missing_required_field_points_at_its_parent() -> None:
    text = BASE.replace("    model: Qwen/Qwen2.5-7B-Instruct\n", "")
    assert problems(text) == ("wayport.yaml:8: deployments.my-vllm.model: Field required",)


def test_bad_url() -> None:
    (problem,) = problems(BASE.replace("http://127.0.0.1:8000/v1", "127.0.0.1:8000"))
    assert problem.startswith("wayport.yaml:10: deployments.my-vllm.base_url: Value error, ")
    assert "http:// or https://" in problem


def test_group_naming_a_missing_deployment() -> None:
    text = BASE.replace("deployments: [local]", "deployments: [local, gpu]")
    assert problems(text) == (
        "wayport.yaml:18: models.small.deployments[1]: deployment 'gpu' is not defined under "
        "deployments (defined: local, my-vllm)",
    )


def test_fallback_to_a_missing_model() -> None:
    text = BASE.replace("fallbacks: [small]", "fallbacks: [tiny]")
    assert problems(text) == (
        "wayport.yaml:16: models.chat.fallbacks[0]: model 'tiny' is not defined under models",
    )


def test_fallback_cycle() -> None:
    text = BASE + "    fallbacks: [chat]\n"
    assert problems(text) == (
        "wayport.yaml:19: models.small.fallbacks[0]: fallbacks form a cycle: chat -> small -> chat",
    )


def test_cycle_through_both_kinds_of_fallback() -> None:
    text = BASE + "    context_window_fallbacks: [chat]\n"
    (problem,) = problems(text)
    assert problem.startswith("wayport.yaml:19: models.small.context_window_fallbacks[0]: ")
    assert problem.endswith("fallbacks form a cycle: chat -> small -> chat")


def test_self_fallback() -> None:
    text = BASE.replace("fallbacks: [small]", "fallbacks: [chat]")
    assert problems(text) == (
        "wayport.yaml:16: models.chat.fallbacks[0]: a model cannot fall back to itself",
    )


def test_at_least_one_model() -> None:
    text = BASE[: BASE.index("models:")]
    assert problems(text) == (
        "wayport.yaml: models: at least one model is needed, e.g. "
        "models: {smollm2: {deployments: [smollm2-local]}}",
    )


def test_weighted_references() -> None:
    text = BASE.replace("[my-vllm]", "[{name: my-vllm, weight: 3}, {name: local, weight: -1}]")
    assert problems(text) == (
        "wayport.yaml:15: models.chat.deployments[1].weight: Input should be greater than or "
        "equal to 0 (got -1)",
    )


def test_duplicate_keys() -> None:
    text = BASE.replace("  port: 8080\n", "  port: 8080\n  port: 9090\n")
    assert problems(text) == ("wayport.yaml:4: server.port: duplicate key 'port'",)


def test_invalid_yaml() -> None:
    text = BASE.replace("  port: 8080\n", "  port: [8080\n")
    (problem,) = problems(text)
    assert problem.startswith("wayport.yaml:4: invalid YAML: ")


def test_the_document_must_be_a_mapping() -> None:
    assert problems("- a\n- b\n") == (
        "wayport.yaml:1: the file must be a mapping (server:, deployments: …)",
    )


def test_every_problem_is_reported_at_once() -> None:
    text = BASE.replace("port: 8080", "port: 80800").replace("n_ctx: 2048", "n_ctx: big")
    found = problems(text)
    assert [p.split(": ")[1] for p in found] == ["server.port", "deployments.local.n_ctx"]


def test_secret_values_are_not_echoed() -> None:
    text = BASE.replace("    model: Qwen", "    api_key: [s3cr3t-value]\n    model: Qwen")
    (problem,) = problems(text)
    assert "s3cr3t" not in problem
    assert problem.startswith("wayport.yaml:11: deployments.my-vllm.api_key: ")


# -- security -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("sk-1234", "is a well-known example value"),
        ("changeme", "is a well-known example value"),
        ("password", "is a well-known example value"),
        ("sk-1234567890abcdef1234567890abcdef", "is a well-known example value"),
        ("my-changeme-key-that-is-long-enough-to-pass", "is a well-known example value"),
        ("x" * 40, "is one character repeated"),
        ("Zq3-Rt8vL0pXa7Nc", "is too short (16 characters; at least 32 are needed)"),
        ("k-0123456789abcdefghijklmnopqrstuvwxyz", "contains an easily guessed sequence"),
        ("abababababababababababababababababab", "uses too few distinct characters"),
    ],
)
def test_weak_keys(key: str, reason: str) -> None:
    assert weak_key_reason(key) == reason


def test_a_generated_key_is_accepted() -> None:
    assert weak_key_reason(STRONG_KEY) is None


def test_weak_key_in_the_file_is_refused() -> None:
    text = BASE.replace("  port: 8080\n", "  port: 8080\n  api_key: sk-1234\n")
    (problem,) = problems(text)
    assert problem.startswith(
        "wayport.yaml:4: server.api_key: refused: the API key is a well-known example value; "
        "generate a strong one with: python -c"
    )
    assert "sk-1234" not in problem


def test_weak_key_from_the_environment_is_refused() -> None:
    (problem,) = problems(BASE, env={"WAYPORT_API_KEY": "changeme"})
    assert problem.startswith(
        "WAYPORT_API_KEY (environment): refused: the API key is a well-known example value"
    )


def test_environment_key_applies_when_the_file_has_none() -> None:
    config = parse_config(BASE, env={"WAYPORT_API_KEY": STRONG_KEY})
    assert config.server.api_key is not None
    assert config.server.api_key.get_secret_value() == STRONG_KEY


def test_file_key_wins_over_the_environment() -> None:
    text = BASE.replace("  port: 8080\n", f"  port: 8080\n  api_key: {STRONG_KEY}\n")
    config = parse_config(text, env={"WAYPORT_API_KEY": "changeme"})
    assert config.server.api_key is not None
    assert config.server.api_key.get_secret_value() == STRONG_KEY


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "10.0.0.1"])
def test_unsafe_bind_without_key_is_refused(host: str) -> None:
    text = BASE.replace("host: 127.0.0.1", f"host: '{host}'")
    with pytest.raises(UnsafeBind) as info:
        parse_config(text, env={})
    message = info.value.message
    assert message.startswith(f"wayport.yaml:2: server.host: refusing to listen on {host!r}")
    assert "export WAYPORT_API_KEY=" in message
    assert isinstance(info.value, ConfigError)


def test_non_loopback_bind_with_a_key_is_allowed() -> None:
    text = BASE.replace("host: 127.0.0.1", "host: 0.0.0.0")
    config = parse_config(text, env={"WAYPORT_API_KEY": STRONG_KEY})
    assert config.server.host == "0.0.0.0"


def test_bind_check_can_be_skipped_for_commands_that_do_not_listen() -> None:
    text = BASE.replace("host: 127.0.0.1", "host: 0.0.0.0")
    assert parse_config(text, env={}, bind_check=False).server.host == "0.0.0.0"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
