"""Keeps the benchmark harness from rotting: the mock upstream, the Python floor and the load
generators run for a handful of requests over loopback. Nothing here asserts on timing."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
EXPECTED = "Hello from the mock upstream."
BODY = {"model": "mock-1", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}


def _start(*args: str) -> Iterator[str]:
    """Run a bench server on port 0; yield the URL from its ``READY url`` line."""
    proc = subprocess.Popen(
        [sys.executable, *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=BENCH.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY "):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            pytest.fail(f"{args[0]} did not start: {line!r} {err.decode()[-2000:]}")
        yield line.split()[1]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    yield from _start(str(BENCH / "mock_upstream.py"))


@pytest.fixture(scope="module")
def floor_url(mock_url: str) -> Iterator[str]:
    yield from _start(str(BENCH / "floor_proxy.py"), "--upstream", mock_url)


def _streamed_text(body: bytes) -> tuple[str, list[bytes]]:
    events = [line[6:] for line in body.splitlines() if line.startswith(b"data: ")]
    text = ""
    for event in events:
        if event != b"[DONE]":
            for choice in json.loads(event)["choices"]:
                text += choice["delta"].get("content") or ""
    return text, events


@pytest.mark.parametrize("which", ["mock", "floor"])
def test_answers_are_openai_shaped(which: str, request: pytest.FixtureRequest) -> None:
    base = request.getfixturevalue(f"{which}_url")
    with httpx.Client(base_url=base, timeout=30) as client:
        whole = client.post("/v1/chat/completions", json=BODY)
        streamed = client.post("/v1/chat/completions", json=STREAM_BODY)
        missing = client.post("/v1/nothing", json=BODY)
    assert whole.status_code == 200
    assert whole.json()["choices"][0]["message"]["content"] == EXPECTED
    assert whole.json()["usage"]["total_tokens"] > 0
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    text, events = _streamed_text(streamed.content)
    assert text == EXPECTED
    assert events[-1] == b"[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] > 0
    assert missing.status_code == 404


@pytest.mark.parametrize("body", [BODY, STREAM_BODY], ids=["json", "stream"])
def test_python_loadgen_counts_every_request(
    floor_url: str, body: dict[str, object], tmp_path: Path
) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(body))
    argv = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        f"{floor_url}/v1/chat/completions",
        "--body-file",
        str(body_file),
        "--concurrency",
        "4",
        "--requests",
        "40",
        "--duration",
        "60",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert result["tool"] == "python-aiohttp"
    assert (result["requests"], result["errors"]) == (40, 0)
    latency = result["latency_ms"]
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"]


def test_python_loadgen_counts_errors(mock_url: str, tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(BODY))
    argv = [sys.executable, str(BENCH / "loadgen.py"), f"{mock_url}/v1/nothing"]
    argv += ["--body-file", str(body_file), "--requests", "5", "--duration", "60"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(done.stdout)
    assert (result["requests"], result["errors"]) == (0, 5)
    assert result["first_error"].startswith("HTTP 404")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_wrk_script_reports_json(mock_url: str, tmp_path: Path) -> None:
    body_file = tmp_path / "body.json"
    body_file.write_text(json.dumps(STREAM_BODY))
    argv = ["wrk", "-t1", "-c2", "-d1s", "--latency", "-s", str(BENCH / "wrk_post.lua")]
    argv += [f"{mock_url}/v1/chat/completions", "--", str(body_file), "a-key"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    assert raw["requests"] > 0
    assert raw["errors_status"] == raw["errors_connect"] == raw["errors_read"] == 0


@pytest.fixture(scope="module")
def report() -> Iterator[ModuleType]:
    """``bench/report.py`` loaded by path (bench/ is scripts, not a package)."""
    spec = importlib.util.spec_from_file_location("wayport_bench_report", BENCH / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses resolve annotations through sys.modules while the module executes.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def _row(target: str, mode: str, concurrency: int, rps: float, p50: float) -> dict[str, object]:
    return {
        "target": target,
        "mode": mode,
        "concurrency": concurrency,
        "rps": rps,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "errors": 0,
        "cpu_us_per_request": 1e6 / rps,
    }


def test_report_verdicts_and_docs_section(report: ModuleType, tmp_path: Path) -> None:
    load = []
    for mode in ("json", "stream"):
        load += [
            _row("direct", mode, 1, 9000, 0.10),
            _row("direct", mode, 32, 40000, 0.50),
            _row("floor", mode, 32, 8000, 4.0),
            _row("wayport", mode, 1, 3000, 0.80 if mode == "stream" else 0.50),
            _row("wayport", mode, 32, 4000 if mode == "json" else 3900, 8.0),
            _row("litellm", mode, 32, 100, 300.0),
        ]
    results = {
        "load": load,
        "startup": {"mock": {"ready_s": 1.2, "idle_rss_mb": 90.0}},
        "embedded": {"direct": {"tokens_per_s": 100.0}, "wayport": {"tokens_per_s": 96.0}},
    }
    verdicts = report.evaluate(results)
    met = {v.goal: v.met for v in verdicts}
    measured = {v.goal: v.measured for v in verdicts}
    assert measured["Wayport >= 50 % of the floor's RPS, concurrency 32, json"] == (
        "50 % (CPU basis 50 %)"
    )
    assert met["Wayport >= 50 % of the floor's RPS, concurrency 32, json"] is True
    assert met["Wayport >= 50 % of the floor's RPS, concurrency 32, stream"] is False
    assert met["added p50 at concurrency 1 <= 0.6 ms, json"] is True
    assert met["added p50 at concurrency 1 <= 0.6 ms, stream"] is False
    assert met[">= 20x LiteLLM Proxy's RPS, concurrency 32, json"] is True
    assert met["embedded model through Wayport >= 95 % of direct tokens/s"] is True
    assert met["ready <= 2 s (mock config)"] is True
    assert met["ready <= 2 s (embedded config)"] is None
    assert met["idle RSS <= 250 MB (embedded config)"] is None
    assert math.isnan(report._ratio({}, "json", "floor"))

    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nintro\n\n{report.START}\nold\n{report.END}\n\nafter\n")
    report.rewrite_docs(docs, report.markdown(results))
    text = docs.read_text()
    assert "old" not in text
    assert text.startswith("# Benchmarks\n\nintro\n") and text.endswith("\nafter\n")
    assert "| Wayport | non-streaming | 32 | 4,000 |" in text
    assert "**missed**" in text
