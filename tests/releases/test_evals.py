"""Evals: suites parsed and checked purely, then run as real runs of a chosen version with a
scripted judge for rubrics; results stored, side-effect tools never executed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wayport.core.evals import Answer, check, parse_suite
from wayport.core.types import ChatRequest
from wayport.service.evals import EvalService
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply, Step

from .conftest import STABLE, Env

pytestmark = pytest.mark.anyio

SUITE = {
    "name": "smoke",
    "agent": "support",
    "cases": [
        {"name": "says v1", "input": "hi", "assert": [{"contains": "v1"}, {"regex": "^v\\d$"}]},
        {"name": "json", "input": "hi", "assert": [{"json_schema": {"type": "object"}}]},
        {"name": "graded", "input": "hi", "assert": [{"rubric": "mentions v1"}]},
        {"name": "fast", "input": "hi", "assert": [{"latency_ms": 60000}]},
    ],
}


def judge(request: ChatRequest) -> Step:
    graded = str(request.messages[-1].get("content"))
    return Reply(text="PASS" if "Answer: v1" in graded else "FAIL")


def test_suites_are_validated() -> None:
    with pytest.raises(ValueError, match=r"cases\[0\].assert\[0\]: unknown assertion"):
        parse_suite({"name": "s", "agent": "a", "cases": [{"input": "x", "assert": [{"nope": 1}]}]})
    with pytest.raises(ValueError, match="regex"):
        parse_suite(
            {"name": "s", "agent": "a", "cases": [{"input": "x", "assert": [{"regex": "("}]}]}
        )
    with pytest.raises(ValueError, match="at least one case"):
        parse_suite({"name": "s", "agent": "a", "cases": []})
    suite = parse_suite(SUITE)
    answer = Answer(text="v2", tool_calls=("charge",), latency_ms=70000.0, error=None)
    assert not check(suite.cases[0].assertions[0], answer)[0]
    assert check(suite.cases[0].assertions[1], answer)[0]
    assert not check(suite.cases[3].assertions[0], answer)[0]


async def test_a_suite_runs_on_a_version_and_is_stored(env: Env) -> None:
    evals = EvalService(releases=env.releases, judge=ScriptedBackend("judge", judge))
    seen: list[tuple[str, bool]] = []
    result = await evals.run(
        "default", parse_suite(SUITE), progress=lambda case, ok: seen.append((case.name, ok))
    )
    assert seen == [("says v1", True), ("json", False), ("graded", True), ("fast", True)]
    assert result.score == 0.75 and result.version == STABLE.version
    assert result.results[1]["checks"][0]["why"] == "the answer is not JSON"
    stored = await env.releases.store.latest_eval("default", "support", STABLE.version)
    assert stored is not None and stored.score == 0.75

    # another version: its answers differ, and its side-effect tool is called, not executed
    tooling = replace(STABLE, instructions="use-tool v9")
    version = await env.releases.register("default", tooling)
    suite = parse_suite(
        {
            "name": "tools",
            "agent": "support",
            "cases": [
                {"input": "charge me", "assert": [{"tool_called": "charge"}, {"rubric": "v1"}]}
            ],
        }
    )
    result = await evals.run("default", suite, version=version)
    assert result.version == version
    checks = result.results[0]["checks"]
    assert [c["passed"] for c in checks] == [True, False]
    assert result.results[0]["answer"] == "use-tool v9 after skipped in shadow"
    assert env.charged == []
