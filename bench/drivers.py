"""Load drivers: ``wrk`` with ``bench/wrk_post.lua`` or, without it, ``bench/loadgen.py``.

Both run closed loop (each connection sends its next request when the answer has ended) for a
warm-up whose results are dropped, then for the measured duration, pinned to the given cores.

    driver = Driver(wrk="/usr/bin/wrk", cpus="1")
    m = driver.measure(url, body_file, concurrency=32, duration=10, warmup=2, api_key=key)
    print(m.rps, m.p50_ms)
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from procs import BENCH, pinned, python

NON_STREAM_BODY: dict[str, object] = {
    "model": "mock-1",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant. Answer briefly."},
        {"role": "user", "content": "Say hello to the benchmark in one short sentence."},
    ],
    "max_tokens": 32,
    "temperature": 0,
}
STREAM_BODY: dict[str, object] = {
    **NON_STREAM_BODY,
    "stream": True,
    "stream_options": {"include_usage": True},
}
EXPECTED_TEXT = "Hello from the mock upstream."


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    tool: str
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    first_error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def write_bodies(directory: Path) -> dict[str, Path]:
    """The two payloads as files, keyed by mode (``json``, ``stream``)."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {"json": directory / "body.json", "stream": directory / "body-stream.json"}
    files["json"].write_text(json.dumps(NON_STREAM_BODY))
    files["stream"].write_text(json.dumps(STREAM_BODY))
    return files


def check_answer(url: str, body: bytes, api_key: str | None, timeout: float = 30.0) -> None:
    """One request; raise ``ValueError`` unless the gateway relays the mock's answer intact."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        conn.request("POST", parts.path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise ValueError(f"HTTP {response.status}: {data[:300]!r}")
    try:
        text = _answer_text(data, stream=bool(json.loads(body).get("stream")))
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"not an OpenAI-shaped answer ({exc!r}): {data[:300]!r}") from exc
    if text != EXPECTED_TEXT:
        raise ValueError(f"answer {text!r} is not the mock's {EXPECTED_TEXT!r}")


def _answer_text(data: bytes, *, stream: bool) -> str:
    if not stream:
        message = json.loads(data)["choices"][0]["message"]
        if message.get("role") != "assistant":
            raise ValueError(f"the message's role is {message.get('role')!r}, not 'assistant'")
        content: str = message["content"]
        return content
    events = [line[6:] for line in data.splitlines() if line.startswith(b"data: ")]
    if not events or events[-1] != b"[DONE]":
        raise ValueError(f"stream does not end with data: [DONE]: {data[-300:]!r}")
    text = ""
    for event in events[:-1]:
        for choice in json.loads(event).get("choices", []):
            text += (choice.get("delta") or {}).get("content") or ""
    return text


class Driver:
    """Runs one load measurement at a time with ``wrk`` when given, else the Python loadgen."""

    def __init__(self, *, wrk: str | None, cpus: str | None) -> None:
        self.wrk = wrk
        self.cpus = cpus

    @property
    def tool(self) -> str:
        return "wrk" if self.wrk else "python-aiohttp (bench/loadgen.py)"

    def measure(
        self,
        url: str,
        body_file: Path,
        *,
        concurrency: int,
        duration: float,
        warmup: float,
        api_key: str | None = None,
        on_measure: Callable[[], None] | None = None,
    ) -> Measurement:
        """Warm up (results dropped), call ``on_measure``, then measure for ``duration``."""
        if warmup > 0:
            self._run(url, body_file, concurrency, warmup, api_key)
        if on_measure is not None:
            on_measure()
        return self._run(url, body_file, concurrency, duration, api_key)

    def _run(
        self, url: str, body_file: Path, concurrency: int, seconds: float, api_key: str | None
    ) -> Measurement:
        if self.wrk is None:
            return self._loadgen(url, body_file, concurrency, seconds, api_key)
        return self._wrk(url, body_file, concurrency, seconds, api_key)

    def _wrk(
        self, url: str, body_file: Path, concurrency: int, seconds: float, api_key: str | None
    ) -> Measurement:
        assert self.wrk is not None
        argv = [
            self.wrk,
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(BENCH / "wrk_post.lua"),
            url,
            "--",
            str(body_file),
            api_key or "",
        ]
        done = subprocess.run(
            pinned(argv, self.cpus), capture_output=True, text=True, timeout=seconds + 60
        )
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        raw = json.loads(line.removeprefix("WRK_JSON "))
        errors = sum(int(v) for k, v in raw.items() if k.startswith("errors_"))
        duration = raw["duration_us"] / 1e6
        # wrk counts non-2xx answers in requests too; the rate counts good answers only.
        good = raw["requests"] - raw["errors_status"]
        return Measurement(
            tool="wrk",
            concurrency=concurrency,
            requests=raw["requests"],
            errors=errors,
            duration_s=duration,
            rps=good / duration if duration > 0 else 0.0,
            p50_ms=raw["p50_us"] / 1000,
            p90_ms=raw["p90_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            mean_ms=raw["mean_us"] / 1000,
            max_ms=raw["max_us"] / 1000,
            first_error=f"{errors} errors: {raw}" if errors else None,
        )

    def _loadgen(
        self,
        url: str,
        body_file: Path,
        concurrency: int,
        duration: float,
        api_key: str | None,
    ) -> Measurement:
        argv = [
            python(),
            str(BENCH / "loadgen.py"),
            url,
            "--body-file",
            str(body_file),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
        ]
        if api_key:
            argv += ["--api-key", api_key]
        done = subprocess.run(
            pinned(argv, self.cpus),
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr[-500:]}")
        raw = json.loads(done.stdout.strip().splitlines()[-1])
        latency = raw["latency_ms"]
        return Measurement(
            tool=raw["tool"],
            concurrency=concurrency,
            requests=raw["requests"],
            errors=raw["errors"],
            duration_s=raw["duration_s"],
            rps=raw["rps"],
            p50_ms=latency["p50"],
            p90_ms=latency["p90"],
            p99_ms=latency["p99"],
            mean_ms=latency["mean"],
            max_ms=latency["max"],
            first_error=raw["first_error"],
        )
