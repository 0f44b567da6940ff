"""A closed-loop HTTP load generator in Python (aiohttp), for machines without ``wrk``.

    python bench/loadgen.py http://127.0.0.1:8000/v1/chat/completions \\
        --body-file body.json --concurrency 32 --duration 10 --warmup 2 --api-key KEY

prints one JSON object: requests, errors, rps and latency percentiles in milliseconds.

``concurrency`` workers each send a request, read the whole answer (for a stream: up to the
end of the response) and send the next one. Every run is bounded twice: by ``duration``
seconds and, when given, by ``--requests``. An answer counts as an error unless its status
is 200 and, for a stream, it ends with ``data: [DONE]``.

It is slower than ``wrk`` (one Python event loop does all the work), so on a small machine it
can become the bottleneck; the harness uses it only where ``wrk`` cannot be installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import aiohttp

TOOL = "python-aiohttp"


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadConfig:
    url: str
    body: bytes
    concurrency: int = 1
    duration: float = 10.0
    warmup: float = 0.0
    max_requests: int | None = None
    api_key: str | None = None
    stream: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Latency:
    """Milliseconds."""

    p50: float
    p90: float
    p99: float
    mean: float
    max: float


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    tool: str
    concurrency: int
    requests: int
    errors: int
    duration_s: float
    rps: float
    latency_ms: Latency
    first_error: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summarize(latencies: Sequence[float]) -> Latency:
    values = sorted(latencies)
    mean = sum(values) / len(values) if values else math.nan
    return Latency(
        p50=percentile(values, 50) * 1000,
        p90=percentile(values, 90) * 1000,
        p99=percentile(values, 99) * 1000,
        mean=mean * 1000,
        max=(values[-1] if values else math.nan) * 1000,
    )


class _Phase:
    """Shared state of one timed phase: when to stop, how many tickets are left, results."""

    def __init__(self, deadline: float, tickets: int | None) -> None:
        self.deadline = deadline
        self.tickets = tickets
        self.latencies: list[float] = []
        self.errors = 0
        self.first_error: str | None = None

    def take_ticket(self) -> bool:
        if time.perf_counter() >= self.deadline:
            return False
        if self.tickets is None:
            return True
        if self.tickets <= 0:
            return False
        self.tickets -= 1
        return True

    def fail(self, reason: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = reason


async def _worker(session: aiohttp.ClientSession, config: LoadConfig, phase: _Phase) -> None:
    headers = {"Content-Type": "application/json"}
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
    while phase.take_ticket():
        start = time.perf_counter()
        try:
            async with session.post(config.url, data=config.body, headers=headers) as response:
                data = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            phase.fail(f"{type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - start
        if status != 200:
            phase.fail(f"HTTP {status}: {data[:200]!r}")
        elif config.stream and not data.rstrip().endswith(b"data: [DONE]"):
            phase.fail(f"stream did not end with [DONE]: {data[-200:]!r}")
        else:
            phase.latencies.append(elapsed)


async def _phase(
    session: aiohttp.ClientSession, config: LoadConfig, seconds: float, tickets: int | None
) -> tuple[_Phase, float]:
    start = time.perf_counter()
    phase = _Phase(start + seconds, tickets)
    async with asyncio.TaskGroup() as group:
        for _ in range(config.concurrency):
            group.create_task(_worker(session, config, phase))
    return phase, time.perf_counter() - start


async def run_load(config: LoadConfig) -> LoadResult:
    """Warm up for ``config.warmup`` seconds (results dropped), then measure.

    result = await run_load(LoadConfig(url=url, body=b"{...}", concurrency=32))
    print(result.rps, result.latency_ms.p99)
    """
    connector = aiohttp.TCPConnector(limit=config.concurrency, ttl_dns_cache=None)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if config.warmup > 0:
            await _phase(session, config, config.warmup, None)
        phase, elapsed = await _phase(session, config, config.duration, config.max_requests)
    done = len(phase.latencies)
    return LoadResult(
        tool=TOOL,
        concurrency=config.concurrency,
        requests=done,
        errors=phase.errors,
        duration_s=elapsed,
        rps=done / elapsed if elapsed > 0 else 0.0,
        latency_ms=summarize(phase.latencies),
        first_error=phase.first_error,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("--body-file", required=True, help="JSON request body to POST")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds run first, dropped")
    parser.add_argument("--requests", type=int, default=None, help="stop after this many")
    parser.add_argument("--api-key", default=None)
    args = parser.parse_args(argv)
    with open(args.body_file, "rb") as file:
        body = file.read()
    config = LoadConfig(
        url=args.url,
        body=body,
        concurrency=args.concurrency,
        duration=args.duration,
        warmup=args.warmup,
        max_requests=args.requests,
        api_key=args.api_key,
        stream=json.loads(body).get("stream", False) is True,
    )
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run_load(config))
    else:
        result = uvloop.run(run_load(config))
    print(result.to_json(), flush=True)


if __name__ == "__main__":
    main()
