"""Running eval suites against one agent version and storing the result (the release store's
``eval_results``; an ``eval`` step of a rollout reads the newest score)::

    evals = EvalService(releases=releases, judge=gateway, judge_model="smollm2")
    result = await evals.run("default", suite, version="3f2a9c1b7d4e", progress=print)
    result.score, result.results[0]["checks"]

Each case runs as a real run of that version, in a hidden session of its own, marked like
shadow traffic: tools with side effects are not executed (the model still calls them, so
``tool_called`` holds). A ``rubric`` asks the judge model whether the answer meets the rubric;
it must answer PASS or FAIL.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jsonschema

from wayport.core.agent import AgentSpec, ToolCalled
from wayport.core.errors import WayportError
from wayport.core.evals import EXTERNAL, Answer, Assertion, Case, Suite, check, score
from wayport.core.ids import new_id
from wayport.core.release_records import EvalResult
from wayport.core.types import ChatRequest, Message
from wayport.runtime.runner import ChatModel, run_input
from wayport.service.releases import ReleaseService

JUDGE_PROMPT = (
    "You grade an assistant's answer against a rubric. Reply with exactly one word: PASS if "
    "the answer meets the rubric, FAIL if it does not."
)

Progress = Callable[[Case, bool], None]


class EvalService:
    def __init__(
        self,
        *,
        releases: ReleaseService,
        judge: ChatModel,
        judge_model: str = "smollm2",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """``judge``: the model router rubrics are graded through; ``judge_model``: the
        model (group) asked, unless the suite names its own ``judge``."""
        self._releases = releases
        self._judge = judge
        self._judge_model = judge_model
        self._monotonic = monotonic

    async def run(
        self,
        tenant: str,
        suite: Suite,
        *,
        version: str | None = None,
        progress: Progress | None = None,
    ) -> EvalResult:
        """Run every case on ``version`` (default: the configured one); store the result."""
        releases = self._releases
        configured = releases.agents.catalog.get(suite.agent)
        spec = await releases.version(tenant, suite.agent, version or configured.version)
        results: list[dict[str, Any]] = []
        passed: list[bool] = []
        for case in suite.cases:
            answer = await self._answer(tenant, spec, case)
            checks = [await self._check(a, answer, case, suite) for a in case.assertions]
            ok = answer.error is None and all(c["passed"] for c in checks)
            passed.append(ok)
            results.append(
                {
                    "case": case.name,
                    "passed": ok,
                    "answer": answer.text,
                    "error": answer.error,
                    "latency_ms": answer.latency_ms,
                    "checks": checks,
                }
            )
            if progress is not None:
                progress(case, ok)
        result = EvalResult(
            id=new_id("eval"),
            agent=suite.agent,
            suite=suite.name,
            version=spec.version,
            score=score(passed),
            results=results,
            at=releases.wall(),
        )
        await releases.store.add_eval(tenant, result)
        return result

    async def _answer(self, tenant: str, spec: AgentSpec, case: Case) -> Answer:
        agents = self._releases.agents
        stores = agents.stores
        version = await agents.versions.pin(tenant, spec)
        session = await stores.sessions.create(
            tenant, agent=spec.name, agent_version=version, metadata={"eval": True}
        )
        try:
            payload = run_input([{"role": "user", "content": case.input}])
            assert isinstance(payload, dict)
            payload["shadow"] = True  # tools with side effects are not executed
            began = self._monotonic()
            run = await stores.runs.create(
                tenant, session_id=session.id, input=payload, agent_version=version
            )
            channel = agents.events.open(run.id)
            agents.worker.wake()
            finished = await channel.wait()
            latency = (self._monotonic() - began) * 1000.0
            tools = tuple(
                e.call["function"]["name"] for e in channel.events if isinstance(e, ToolCalled)
            )
            output = finished.run.output
            text = output.get("content") if isinstance(output, dict) else None
            return Answer(
                text=text if isinstance(text, str) else None,
                tool_calls=tools,
                latency_ms=latency,
                error=finished.run.error if finished.run.status.value != "completed" else None,
            )
        finally:
            await stores.sessions.delete(tenant, session.id)

    async def _check(
        self, assertion: Assertion, answer: Answer, case: Case, suite: Suite
    ) -> dict[str, Any]:
        if assertion.kind not in EXTERNAL:
            ok, why = check(assertion, answer)
        elif assertion.kind == "json_schema":
            ok, why = _schema(assertion.value, answer.text)
        else:
            ok, why = await self._rubric(str(assertion.value), case, answer, suite)
        return {"kind": assertion.kind, "passed": ok, "why": why}

    async def _rubric(
        self, rubric: str, case: Case, answer: Answer, suite: Suite
    ) -> tuple[bool, str]:
        messages: list[Message] = [
            {"role": "system", "content": JUDGE_PROMPT},
            {
                "role": "user",
                "content": f"Rubric: {rubric}\n\nQuestion: {case.input}\n\n"
                f"Answer: {answer.text or ''}\n\nPASS or FAIL?",
            },
        ]
        request = ChatRequest(
            model=suite.judge or self._judge_model,
            messages=messages,
            stream=True,
            params={"temperature": 0.0, "max_tokens": 8},
        )
        try:
            parts = [c.content async for c in self._judge.stream(request) if c.content]
        except WayportError as exc:
            return False, f"rubric: the judge failed: {exc.message}"
        verdict = "".join(parts).strip().upper()
        return verdict.startswith("PASS"), f"rubric judged {verdict[:16] or 'nothing'}"


def _schema(schema: Any, text: str | None) -> tuple[bool, str]:
    try:
        value = json.loads(text or "")
    except ValueError:
        return False, "the answer is not JSON"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return False, f"json_schema: {exc.message}"
    except jsonschema.SchemaError as exc:
        return False, f"json_schema: the schema is invalid: {exc.message}"
    return True, "matches the JSON Schema"
