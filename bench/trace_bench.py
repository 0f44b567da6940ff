"""The request path's tracing, alone: CPU per request of a server span plus one client
``chat`` span given its usage attributes (``json``), and the same with the ``chat`` span
detached and attached around three stream steps (``stream``). Median of five rounds of
``time.process_time``; prints JSON.

    .venv/bin/python bench/trace_bench.py               # 5 x 20,000 requests a row
    .venv/bin/python bench/trace_bench.py -n 1000       # a smoke run
    .venv/bin/python bench/trace_bench.py --sdk         # the OpenTelemetry SDK's spans instead

``--sdk`` adds a span processor that does nothing, which is what moves ``Tracing`` onto the
SDK (as an exporter does); pin the process to one core (``taskset -c 0``) for steadier figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind

from wayport.telemetry.tracing import Tracing

ROUTE = "/v1/chat/completions"
ASKED = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "mock-1",
    "gen_ai.request.max_tokens": 32,
    "gen_ai.request.temperature": 0.0,
}
SERVED = {"wayport.deployment": "d", "gen_ai.response.model": "up", "gen_ai.provider.name": "p"}
USAGE = {
    "gen_ai.usage.input_tokens": 10,
    "gen_ai.usage.output_tokens": 7,
    "gen_ai.response.finish_reasons": ("stop",),
}


def _served() -> None:
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(SERVED)


def json_request(tracing: Tracing) -> None:
    server = tracing.server_span("POST", ROUTE, route=ROUTE)
    span, token = tracing.start("chat mock-1", ASKED, SpanKind.CLIENT)
    _served()
    span.set_attributes(USAGE)
    tracing.finish(span, token)
    tracing.end_server_span(server, route=ROUTE, status=200, tenant="default")


def stream_request(tracing: Tracing) -> None:
    server = tracing.server_span("POST", ROUTE, route=ROUTE)
    span = tracing.start_detached("chat mock-1", ASKED, SpanKind.CLIENT)
    context = trace.set_span_in_context(span)
    for step in range(3):
        token = otel_context.attach(context)
        if step == 0:
            _served()
        otel_context.detach(token)
    span.set_attributes(USAGE)
    span.end()
    tracing.end_server_span(server, route=ROUTE, status=200, tenant="default")


def measure(tracing: Tracing, request: Callable[[Tracing], None], n: int) -> float:
    """Median CPU µs per request over five rounds of ``n`` (after a warm-up)."""
    for _ in range(min(n, 2000)):
        request(tracing)
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            request(tracing)
        rounds.append((time.process_time() - started) / n * 1e6)
        tracing.recent.traces(tenant="default")  # the console reads now and then
    return round(statistics.median(rounds), 2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=20_000, help="requests a round")
    parser.add_argument("--sdk", action="store_true", help="the SDK's spans (as with an exporter)")
    args = parser.parse_args(argv)
    tracing = Tracing()
    if args.sdk:
        tracing.provider.add_span_processor(SpanProcessor())
    figures = {
        "path": "sdk" if args.sdk else "light",
        "requests_per_round": args.n,
        "json_us": measure(tracing, json_request, args.n),
        "stream_us": measure(tracing, stream_request, args.n),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
