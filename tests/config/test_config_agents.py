"""The ``store:``, ``tools:`` and ``agents:`` sections: defaults, AgentSpec mapping, errors
located by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from wayport.config.issues import InvalidConfig
from wayport.config.loader import load_config, parse_config
from wayport.core.agent import QueueMode, SessionScope
from wayport.core.errors import ConfigError

MODELS = """\
deployments:
  up: {backend: openai, base_url: "http://127.0.0.1:9/v1", model: m}
models:
  chat: {deployments: [up]}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(InvalidConfig) as info:
        parse_config(text, env={})
    return list(info.value.problems)


def test_without_agents_the_default_assistant_runs_on_the_first_model() -> None:
    (spec,) = parse_config(MODELS, env={}).agent_specs()
    assert (spec.name, spec.model) == ("assistant", "chat")
    assert spec.instructions
    (default,) = parse_config(None, env={}).agent_specs()
    assert default.model == "smollm2"
    assert parse_config(None, env={}).store.url is None


def test_an_agent_maps_onto_its_spec(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "support.md").write_text("Be kind.\n")
    config_file = tmp_path / "wayport.yaml"
    config_file.write_text(
        MODELS
        + """\
store: {url: "sqlite+aiosqlite:///x.db"}
tools:
  add: {type: python, function: "mytools:add", description: Adds.}
  docs: {type: mcp, url: "https://mcp.example.com/mcp", prefix: docs_, tools: [search]}
agents:
  support:
    description: Helps.
    instructions_file: prompts/support.md
    model: chat
    params: {temperature: 0.2}
    tools: [add, docs]
    limits: {max_steps: 3, run_timeout: 20}
    context: {budget_tokens: 1000, keep_recent_turns: 2}
    scope: stateless
    queue_mode: reject
    max_queue: 2
"""
    )
    config = load_config(config_file, env={})
    assert config.store.url == "sqlite+aiosqlite:///x.db"
    (spec,) = config.agent_specs()
    assert spec.instructions == "Be kind."  # read relative to the config file
    assert spec.tools == ("add", "docs_search")  # the MCP server's tools, prefixed
    assert spec.params == {"temperature": 0.2}
    assert (spec.limits.max_steps, spec.limits.run_timeout) == (3, 20)
    assert (spec.context.budget_tokens, spec.context.keep_recent_turns) == (1000, 2)
    assert spec.scope is SessionScope.STATELESS
    assert spec.queue_mode is QueueMode.REJECT
    assert spec.max_queue == 2


def test_bad_references_are_reported_with_their_lines() -> None:
    found = problems(
        MODELS
        + """\
tools:
  add: {type: python, function: "mytools:add"}
  odd: {type: carrier-pigeon}
agents:
  a:
    model: nope
    tools: [add, missing]
  b:
    model: chat
    instructions: hi
    instructions_file: /no/such/file.md
"""
    )
    assert any(p.startswith("wayport.yaml:7: tools.odd:") and "carrier-pigeon" in p for p in found)
    assert any(
        p.startswith("wayport.yaml:10: agents.a.model:") and "'nope' is not defined" in p
        for p in found
    )
    assert any(p.startswith("wayport.yaml:11: agents.a.tools:") and "'missing'" in p for p in found)
    assert any(p.startswith("wayport.yaml:15: agents.b.instructions_file:") for p in found)
    assert len(found) == 4


def test_unknown_agent_fields_and_both_instruction_sources_are_refused(tmp_path: Path) -> None:
    prompt = tmp_path / "p.md"
    prompt.write_text("x")
    found = problems(
        MODELS
        + "agents:\n  a: {model: chat, temprature: 1}\n"
        + f"  b: {{model: chat, instructions: hi, instructions_file: {prompt}}}\n"
    )
    assert any("agents.a.temprature" in p for p in found)
    assert any("agents.b" in p and "not both" in p for p in found)


def test_an_mcp_server_without_a_tool_list_cannot_be_given_to_an_agent() -> None:
    config = parse_config(
        MODELS
        + "tools:\n  docs: {type: mcp, url: 'https://mcp.example.com/mcp'}\n"
        + "agents:\n  a: {model: chat, tools: [docs]}\n",
        env={},
    )
    with pytest.raises(ConfigError, match=r"agents\.a\.tools: .*tools\.docs\.tools"):
        config.agent_specs()
