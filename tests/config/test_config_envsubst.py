from __future__ import annotations

import pytest

from wayport.config.envsubst import SubstitutionError, UnsetVariable, substitute
from wayport.config.issues import InvalidConfig
from wayport.config.loader import parse_config

OPENAI = """\
deployments:
  up:
    backend: openai
    base_url: {base_url}
    model: m
    api_key: {api_key}
models:
  chat: {{deployments: [up]}}
"""


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A}", {"A": "1"}, "1"),
        ("x-${A}-${B}-y", {"A": "1", "B": "2"}, "x-1-2-y"),
        ("${A:-fallback}", {}, "fallback"),
        ("${A:-fallback}", {"A": ""}, "fallback"),  # empty counts as unset, as in the shell
        ("${A:-fallback}", {"A": "set"}, "set"),
        ("${A:-}", {}, ""),
        ("${A:-http://h:1/v1}", {}, "http://h:1/v1"),
        ("$${A}", {"A": "1"}, "${A}"),
        ("cost: $5 and $${HOME}", {}, "cost: $5 and ${HOME}"),
        ("no expressions", {}, "no expressions"),
        ("${A}", {"A": "${B}"}, "${B}"),  # values are not expanded again
    ],
)
def test_substitute(text: str, env: dict[str, str], expected: str) -> None:
    assert substitute(text, env) == expected


def test_unset_variable_without_default_names_it() -> None:
    with pytest.raises(UnsetVariable, match=r"VLLM_KEY is not set") as info:
        substitute("Bearer ${VLLM_KEY}", {"OTHER": "x"})
    assert info.value.name == "VLLM_KEY"


@pytest.mark.parametrize("text", ["${1A}", "${A B}", "${A", "${}", "${A:default}"])
def test_malformed_expressions_are_errors(text: str) -> None:
    with pytest.raises(SubstitutionError, match="invalid substitution"):
        substitute(text, {"A": "x"})


def test_values_are_substituted_in_the_document() -> None:
    text = OPENAI.format(base_url="${UP_URL:-http://127.0.0.1:9/v1}", api_key="${UP_KEY}")
    config = parse_config(text, env={"UP_KEY": "k-1"})
    up = config.deployments["up"]
    options = up.backend_options()
    assert options["base_url"] == "http://127.0.0.1:9/v1"
    assert options["api_key"] == "k-1"


def test_unset_variable_is_reported_with_file_line_and_path() -> None:
    text = OPENAI.format(base_url="http://127.0.0.1:9/v1", api_key="${UP_KEY}")
    with pytest.raises(InvalidConfig) as info:
        parse_config(text, name="conf/wayport.yaml", env={})
    assert info.value.problems == (
        "conf/wayport.yaml:6: deployments.up.api_key: environment variable UP_KEY is not set "
        "(used as ${UP_KEY}); set it, or give a default with ${UP_KEY:-default}",
    )


def test_plain_scalars_keep_their_types_through_pydantic() -> None:
    text = "server:\n  port: ${PORT:-9001}\n  metrics: ${METRICS:-false}\n"
    config = parse_config(text, env={})
    assert config.server.port == 9001
    assert config.server.metrics is False


def test_a_plain_scalar_that_expands_to_nothing_is_null() -> None:
    text = "server:\n  api_key: ${WAYPORT_API_KEY:-}\nstate_dir: ./s\n"
    config = parse_config(text, env={})
    assert config.server.api_key is None


def test_a_quoted_scalar_that_expands_to_nothing_stays_a_string() -> None:
    text = OPENAI.format(base_url="http://127.0.0.1:9/v1", api_key="x").replace(
        "    api_key: x\n", '    api_key: x\n    headers: {x-team: "${TEAM:-}"}\n'
    )
    config = parse_config(text, env={})
    assert config.deployments["up"].backend_options()["headers"] == {"x-team": ""}


def test_comments_are_not_substituted() -> None:
    text = "# api_key: ${NEVER_SET}\nserver:\n  port: 9000  # ${ALSO_NEVER_SET}\n"
    assert parse_config(text, env={}).server.port == 9000


def test_escaped_expression_reaches_the_value_literally() -> None:
    text = OPENAI.format(base_url="http://127.0.0.1:9/v1", api_key="'$${NOT_A_VAR}'")
    config = parse_config(text, env={})
    assert config.deployments["up"].backend_options()["api_key"] == "${NOT_A_VAR}"


def test_anchors_are_substituted_once() -> None:
    # The alias shares the anchored node; substituting it twice would turn "$${" into "${"
    # and then fail on it.
    text = (
        "deployments:\n"
        "  a: &up {backend: openai, base_url: 'http://h/v1', model: m, api_key: '$${X}'}\n"
        "  b: *up\n"
        "models:\n"
        "  chat: {deployments: [a, b]}\n"
    )
    config = parse_config(text, env={})
    assert config.deployments["b"].backend_options()["api_key"] == "${X}"
