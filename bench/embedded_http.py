"""The embedded model's speed: through ``wayport serve`` (streaming over HTTP) and, via
``bench/embedded_direct.py``, with llama-cpp-python called directly.

    figures = compare("http://127.0.0.1:8080", api_key, quick=False)
    figures["wayport"]["tokens_per_s"] / figures["direct"]["tokens_per_s"]

Both sides use the same prompt, ``max_tokens`` and greedy sampling, and the same figure:
the decode rate (content chunks after the first over the time from the first to the last),
so prompt processing and model load do not dilute the comparison. Both warm up, then direct
and HTTP runs alternate and the median of each is reported.
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from procs import BENCH, python

MODEL = "smollm2"
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
MAX_TOKENS = 128
RUNS = 5
WARMUP_REQUESTS = 2
QUICK_RUNS = 2


def stream_once(base_url: str, api_key: str | None, *, max_tokens: int) -> dict[str, float]:
    """One streamed completion; times are taken as each SSE event arrives."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=300)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": PROMPT}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    start = time.perf_counter()
    stamps: list[float] = []
    usage_tokens = 0
    try:
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
        for line in response:
            if not line.startswith(b"data: "):
                continue
            payload = line[6:].strip()
            if payload == b"[DONE]":
                break
            event = json.loads(payload)
            if any((c.get("delta") or {}).get("content") for c in event.get("choices", [])):
                stamps.append(time.perf_counter())
            if event.get("usage"):
                usage_tokens = int(event["usage"].get("completion_tokens", 0))
    finally:
        conn.close()
    if len(stamps) < 2:
        raise RuntimeError(f"the stream carried {len(stamps)} content chunks; 2 are needed")
    first, last = stamps[0], stamps[-1]
    return {
        "tokens": usage_tokens or len(stamps),
        "content_chunks": len(stamps),
        "ttft_ms": (first - start) * 1000,
        "tokens_per_s": (len(stamps) - 1) / (last - first),
        "end_to_end_tokens_per_s": len(stamps) / (last - start),
    }


def summarize(runs: Sequence[Mapping[str, Any]], note: str) -> dict[str, Any]:
    """The median run's figures, with every run's rate beside them."""
    median = statistics.median(float(r["tokens_per_s"]) for r in runs)
    middle = min(runs, key=lambda r: abs(float(r["tokens_per_s"]) - median))
    return {
        **middle,
        "tokens_per_s": median,
        "best_tokens_per_s": max(float(r["tokens_per_s"]) for r in runs),
        "runs_tokens_per_s": [round(float(r["tokens_per_s"]), 2) for r in runs],
        "note": f"median of {len(runs)}, {MAX_TOKENS} tokens max, greedy, {note}",
    }


def direct_once() -> dict[str, dict[str, Any]]:
    """One run of ``bench/embedded_direct.py`` (after its own warm-up): llama-cpp-python called
    directly (``direct``) and Wayport's backend in process (``backend``)."""
    script = BENCH / "embedded_direct.py"
    if not script.exists():
        raise RuntimeError(f"{script.name} does not exist yet")
    argv = [python(), str(script), "--json", "--prompt", PROMPT]
    argv += ["--max-tokens", str(MAX_TOKENS), "--runs", "1", "--warmup", "1"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} failed ({done.returncode}): {done.stderr[-600:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    return {key: value for key, value in raw.items() if isinstance(value, dict)}


def compare(base_url: str | None, api_key: str | None, *, quick: bool) -> dict[str, Any]:
    """Alternate direct runs with runs through ``wayport serve`` at ``base_url`` (None: direct
    only), so that both see the same machine, and report the medians.

    The server stays up, idle, while the direct runs go: it holds memory but no core.
    """
    if base_url is not None:
        # One warm-up per slot of the default config: a slot's first request is slow.
        for _ in range(WARMUP_REQUESTS):
            stream_once(base_url, api_key, max_tokens=MAX_TOKENS)
    taken: dict[str, list[dict[str, Any]]] = {"direct": [], "backend": [], "wayport": []}
    for _ in range(QUICK_RUNS if quick else RUNS):
        for key, figures in direct_once().items():
            taken.setdefault(key, []).append(figures)
        if base_url is not None:
            taken["wayport"].append(stream_once(base_url, api_key, max_tokens=MAX_TOKENS))
    notes = {
        "direct": "llama-cpp-python create_chat_completion(stream)",
        "backend": "LlamaCppBackend.stream in process, 1 slot",
        "wayport": "wayport serve, SSE over HTTP",
    }
    return {key: summarize(runs, notes.get(key, key)) for key, runs in taken.items() if runs}
