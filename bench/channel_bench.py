"""Channel ingress: a signed generic-webhook request to its acknowledgement, in process through
the ASGI app ``wayport serve`` runs (``wayport.yaml`` -> ``build``), on durable SQLite (WAL,
``synchronous=NORMAL``). Prints JSON.

    .venv/bin/python bench/channel_bench.py               # on one core (core 0), as documented
    .venv/bin/python bench/channel_bench.py --write-docs  # and update the docs

What one request costs before its 2xx: the route, the HMAC-SHA256 check of the signature and
its timestamp, the durable replay record of the signature (``claim_nonce``), the durable inbox
row (``accept``), the JSON answer. The agent run each message starts (a zero-latency scripted
model) runs on the same loop and the same core meanwhile, as in production, and the outbox
delivers its reply over loopback HTTP to a sink in another process (another core where there is
one): the figures include the run and the delivery, not the sink. The process pins itself to
one core (``os.sched_setaffinity``) before any thread starts: the event loop, the SQLite
writer and reader threads share it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from wayport.bootstrap import build
from wayport.config.loader import parse_config
from wayport.models.registry import BackendRegistry
from wayport.testing import Reply, ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- channel-results:start -->", "<!-- channel-results:end -->"
SECRET = "bench-secret-0123456789abcdef"

CONFIG = """\
state_dir: {state}
server: {{access_log: false, metrics: false}}
deployments:
  zero: {{backend: zero}}
models:
  zero: {{deployments: [zero]}}
agents:
  assistant: {{model: zero}}
channels:
  hook:
    type: webhook
    credentials: {{secret: "${{HOOK_SECRET}}"}}
    options: {{url: "{sink}"}}
    allow_outbound: [127.0.0.1/32]
{policy}"""
#: ingress alone: the sender is not allow-listed, so each message is verified, stored durably
#: and acknowledged, then marked ignored; no run starts and nothing is sent back
INGRESS_ONLY = '    dm_policy: allowlist\n    allow_from: ["nobody"]\n'

#: the platform's end of the replies: answers every request 200, in a process of its own
SINK = r"""
import asyncio, sys
async def handle(reader, writer):
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        size = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                size = int(line.split(b":")[1])
        await reader.readexactly(size)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def start_sink() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SINK], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    others = set(os.sched_getaffinity(0)) - {0}
    if others:
        os.sched_setaffinity(proc.pid, others)
    return proc, f"http://127.0.0.1:{int(proc.stdout.readline())}/hook"


def signed(n: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """Message ``n``, signed as a sender of the generic webhook signs it."""
    body = json.dumps({"sender": f"crm-{n % 100}", "text": f"message {n}"}).encode()
    stamp = f"{time.time():.6f}"
    digest = hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = [
        (b"content-type", b"application/json"),
        (b"x-wayport-timestamp", stamp.encode()),
        (b"x-wayport-signature", f"sha256={digest}".encode()),
        (b"idempotency-key", f"bench-{n}".encode()),
    ]
    return body, headers


class Asgi:
    """Calls the ASGI app directly: no sockets, no client library in the figures."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._lifespan: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def start(self) -> None:
        async def send(message: dict[str, Any]) -> None:
            await self._outbox.put(message)

        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._lifespan = asyncio.create_task(self.app(scope, self._inbox.get, send))
        await self._inbox.put({"type": "lifespan.startup"})
        done = await self._outbox.get()
        if done["type"] != "lifespan.startup.complete":
            raise SystemExit(f"the app did not start: {done}")

    async def stop(self) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        if self._lifespan is not None:
            await self._lifespan

    async def post(self, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8080),
            "state": {},
        }
        sent = False
        status = 0

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the client never disconnects
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await self.app(scope, receive, send)
        return status


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(app: Asgi, first: int, count: int, concurrency: int) -> dict[str, Any]:
    """``count`` messages from ``concurrency`` senders, each posting its next when its last is
    acknowledged; latencies are signing excluded."""
    prepared = [signed(n) for n in range(first, first + count)]
    latencies: list[float] = []
    refused = 0
    queue = iter(prepared)

    async def sender() -> None:
        nonlocal refused
        for body, headers in queue:
            t0 = time.perf_counter()
            status = await app.post("/channels/hook/webhook", body, headers)
            latencies.append(time.perf_counter() - t0)
            refused += status != 202

    cpu0, t0 = _cpu(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    latencies.sort()
    return {
        "messages": count,
        "concurrency": concurrency,
        "refused": refused,
        "messages_per_s": round(count / wall, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 3),
        "cpu_us_per_message": round(cpu / count * 1e6),
    }


async def run_all(
    state: Path, sink: str, args: argparse.Namespace, *, ingress_only: bool
) -> dict[str, Any]:
    registry = BackendRegistry()
    registry.register("zero", lambda *, name: ScriptedBackend(name, default=Reply("ok")))
    text = CONFIG.format(state=state, sink=sink, policy=INGRESS_ONLY if ingress_only else "")
    config = parse_config(text, env={"HOOK_SECRET": SECRET}, backend_kinds=registry.names())
    app = Asgi(build(config, registry=registry).app)
    await app.start()
    try:
        await measure(app, 0, 200, 4)  # warm up
        one = await measure(app, 1_000_000, args.messages // 4, 1)
        many = await measure(app, 2_000_000, args.messages, args.concurrency)
    finally:
        await app.stop()
    return {
        "cpus": sorted(os.sched_getaffinity(0)),
        "one_at_a_time": one,
        "concurrent": many,
    }


def markdown(result: dict[str, Any]) -> str:
    ingress, full = result["ingress_only"], result["with_runs"]
    cores = "one core" if len(result["cpus"]) == 1 else f"{len(result['cpus'])} cores"
    rows = [
        f"Run of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, the whole process "
        f"pinned to core(s) {result['cpus']}, SQLite WAL with `synchronous=NORMAL`, load "
        f"average before the run {result['load_before']}.",
        "",
        "| signed generic webhook -> 202, in process | ingress alone | with its agent run and "
        "reply | target |",
        "|---|--:|--:|--:|",
    ]
    pairs = [(ingress[k], full[k]) for k in ("concurrent", "one_at_a_time")]
    (many_i, many_f), (one_i, one_f) = pairs
    rows += [
        f"| messages/s, {many_i['concurrency']} senders at once, on {cores} "
        f"| {many_i['messages_per_s']:,} | {many_f['messages_per_s']:,} | >= 1,000 (ingress) |",
        f"| acknowledgement p50 / p99, {many_i['concurrency']} at once "
        f"| {many_i['p50_ms']} / {many_i['p99_ms']} ms | {many_f['p50_ms']} / {many_f['p99_ms']} "
        "ms | |",
        f"| messages/s, one at a time | {one_i['messages_per_s']:,} | {one_f['messages_per_s']:,} "
        "| |",
        f"| acknowledgement p50 / p99, one at a time | {one_i['p50_ms']} / {one_i['p99_ms']} ms "
        f"| {one_f['p50_ms']} / {one_f['p99_ms']} ms | |",
        f"| CPU per message (all threads), {many_i['concurrency']} at once "
        f"| {many_i['cpu_us_per_message']} µs | {many_f['cpu_us_per_message']} µs | |",
        f"| refused (must be 0) | {one_i['refused'] + many_i['refused']} "
        f"| {one_f['refused'] + many_f['refused']} | 0 |",
    ]
    return "\n".join(rows)


def write_docs(text: str) -> None:
    page = DOCS.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(page):
        raise SystemExit(f"{DOCS}: the markers {START} … {END} are missing")
    DOCS.write_text(pattern.sub(lambda _: f"{START}\n{text}\n{END}", page))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=4000, help="messages sent at once")
    parser.add_argument("--concurrency", type=int, default=32, help="senders at once")
    parser.add_argument("--quick", action="store_true", help="a smoke run, figures meaningless")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the section in {DOCS}")
    parser.add_argument("--cpu", type=int, default=0, help="the one core to run on (-1: any)")
    args = parser.parse_args()
    sink, url = start_sink()
    if args.cpu >= 0:
        # before any thread starts: the writer and reader threads inherit the affinity
        os.sched_setaffinity(0, {args.cpu})
    if args.quick:
        args.messages, args.concurrency = 80, 4
    load = round(os.getloadavg()[0], 2)
    try:
        with tempfile.TemporaryDirectory() as state:
            result: dict[str, Any] = {}
            for name, alone in (("ingress_only", True), ("with_runs", False)):
                # as ``wayport serve`` runs: uvloop, a state folder of its own per mode
                folder = Path(state) / name
                folder.mkdir()
                found = uvloop.run(run_all(folder, url, args, ingress_only=alone))
                result["cpus"] = found.pop("cpus")
                result[name] = found
    finally:
        sink.kill()
        sink.wait()
    result["load_before"] = load
    print(json.dumps(result, indent=2))
    if args.write_docs:
        write_docs(markdown(result))


if __name__ == "__main__":
    main()
