"""Scale-out figures: agent turns/s with one ``wayport serve`` replica against two (Postgres +
Redis, a zero-latency scripted model), and the turn overhead of Postgres against SQLite in
process. Prints JSON.

    .venv/bin/python bench/scale_bench.py                 # about a minute
    .venv/bin/python bench/scale_bench.py --quick         # a smoke run, a few seconds a row
    .venv/bin/python bench/scale_bench.py --write-docs    # also rewrite the Scale-out results

Throughput: ``--concurrency`` sessions each send their next turn (``POST
/v1/sessions/{id}/runs``, ``mode: wait``) when the last is answered; with two replicas the
client sends each request to the next replica in turn (round robin), so a session's turns land
on both. Overhead: one turn at a time through ``AgentService`` on a SQLite file (WAL) and on
the same Postgres server, p50 and p95. Revocation: a key revoked through one replica's key
service, timed from the call until another replica (its own Redis bus) has dropped it from its
cache.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import queue
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- scale:start -->", "<!-- scale:end -->"
WAYPORT = str(Path(sys.executable).with_name("wayport"))
READY = re.compile(r"ready on (http://[0-9.:]+)")
REDIS_URL = os.environ.get("WAYPORT_BENCH_REDIS", "redis://127.0.0.1:6379/0")

PLUGIN = '''\
from wayport.core.types import Usage
from wayport.testing import ScriptedBackend
from wayport.testing.models import Reply


def zero_backend(*, name: str) -> ScriptedBackend:
    """Answers at once, whatever it is asked."""
    usage = Usage(prompt_tokens=5, completion_tokens=1)
    return ScriptedBackend(name, default=Reply("ok", usage=usage))
'''

CONFIG = """\
server: {{host: 127.0.0.1, port: 0, access_log: false, drain_timeout: 5}}
state_dir: {state}
store: {{url: "{store}"}}
redis: {{url: "{redis}", key_prefix: "{prefix}"}}
deployments:
  zero: {{backend: zero-scripted}}
models:
  zero: {{deployments: [zero]}}
router: {{max_retries: 0}}
agents:
  bench: {{model: zero}}
"""


def log(message: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def plugin_dir(root: Path) -> Path:
    """The zero-latency model as an installed ``wayport.backends`` plugin (a bare
    ``.dist-info`` beside its module), as ``tests/test_kill_durability.py`` does."""
    info = root / "wayport_scale_model-1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wayport-scale-model\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[wayport.backends]\nzero-scripted = scale_model:zero_backend\n"
    )
    (root / "scale_model.py").write_text(PLUGIN)
    return root


class Replica:
    """One ``wayport serve`` process; its URL from the ``ready on`` line."""

    def __init__(self, config: Path, env: dict[str, str], log_file: Path) -> None:
        self.proc = subprocess.Popen(
            [WAYPORT, "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=log_file.open("w"),
            text=True,
            env=env,
        )
        self.url = ""
        self.log_file = log_file

    def wait_ready(self, timeout: float = 60.0) -> None:
        lines: queue.Queue[str | None] = queue.Queue()
        out = self.proc.stdout
        assert out is not None

        def read() -> None:
            for line in out:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("a replica did not start in time") from None
            if line is None:
                tail = self.log_file.read_text()[-1500:]
                raise RuntimeError(f"wayport serve exited with {self.proc.wait()}: {tail}")
            found = READY.search(line)
            if found:
                self.url = found.group(1)
                return

    def cpu_seconds(self) -> float:
        """User + system CPU of the process so far (``/proc/<pid>/stat``)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: drains
        return self.proc.wait(timeout=30)


@contextlib.contextmanager
def replicas(count: int, store: str, work: Path) -> Iterator[list[Replica]]:
    prefix = f"wpbench:{os.urandom(4).hex()}:"
    env = {
        **os.environ,
        "PYTHONPATH": str(plugin_dir(work / "plugins")),
        "WAYPORT_API_KEY": "",
        "NO_COLOR": "1",
    }
    started: list[Replica] = []
    try:
        for i in range(count):
            config = work / f"replica-{count}-{i}.yaml"
            state = work / f"state-{count}-{i}"
            text = CONFIG.format(state=state, store=store, redis=REDIS_URL, prefix=prefix)
            config.write_text(text)
            started.append(Replica(config, env, work / f"replica-{count}-{i}.log"))
            started[-1].wait_ready()  # one at a time: the first migrates the database
        yield started
    finally:
        for r in started:
            r.stop()
        _drop_redis_keys(prefix)


def _drop_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def _turns(
    urls: Sequence[str], sessions: int, duration: float, warmup: float
) -> dict[str, Any]:
    """Closed loop: each session sends its next turn when the last is answered, to the next
    replica in turn. Counts what ends inside the measured window."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        ids = []
        for i in range(sessions):
            async with http.post(
                f"{urls[i % len(urls)]}/v1/sessions", json={"agent": "bench"}
            ) as resp:
                resp.raise_for_status()
                ids.append((await resp.json())["id"])
        turn = {"n": 0}
        samples: list[float] = []
        errors = 0
        begin = time.perf_counter() + warmup
        end = begin + duration

        async def session(sid: str) -> None:
            nonlocal errors
            while time.perf_counter() < end:
                url = urls[turn["n"] % len(urls)]
                turn["n"] += 1
                t0 = time.perf_counter()
                async with http.post(
                    f"{url}/v1/sessions/{sid}/runs", json={"input": "hi", "mode": "wait"}
                ) as resp:
                    body = await resp.read()
                    ok = resp.status == 200 and b'"completed"' in body
                t1 = time.perf_counter()
                if begin <= t1 < end:
                    if ok:
                        samples.append(t1 - t0)
                    else:
                        errors += 1

        await asyncio.gather(*(session(s) for s in ids))
    samples.sort()
    return {
        "turns": len(samples),
        "errors": errors,
        "turns_per_s": round(len(samples) / duration, 1),
        "p50_ms": round(statistics.median(samples) * 1000, 2) if samples else None,
        "p95_ms": round(_pct(samples, 0.95) * 1000, 2) if samples else None,
    }


def _pct(sorted_samples: list[float], q: float) -> float:
    return sorted_samples[max(0, int(len(sorted_samples) * q) - 1)]


def throughput(store: str, work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for count in (1, 2):
        with replicas(count, store, work) as started:
            cpu = [r.cpu_seconds() for r in started]
            figures = asyncio.run(
                _turns([r.url for r in started], args.concurrency, args.duration, args.warmup)
            )
            used = sum(r.cpu_seconds() for r in started) - sum(cpu)
            turns_seen = max(figures["turns"], 1)
            # CPU over the whole load (warm-up included) per measured turn, roughly
            figures["replica_cpu_ms_per_turn"] = round(
                used / turns_seen * 1000 * args.duration / (args.duration + args.warmup), 3
            )
            rows.append({"replicas": count, **figures})
            log(f"{count} replica(s): {figures}")
    return rows


async def _overhead_on(url: str, turns: int, warmup: int) -> dict[str, Any]:
    from wayport.core.agent import AgentSpec
    from wayport.core.routing import ModelGroup, RouterPolicy, WeightedDeployment
    from wayport.core.types import Usage
    from wayport.models.router import Router
    from wayport.service.agents import AgentCatalog, AgentService, Stores
    from wayport.service.gateway import Gateway
    from wayport.store import open_store
    from wayport.testing import ScriptedBackend
    from wayport.testing.models import Reply

    backend = ScriptedBackend("zero", default=Reply("ok", usage=Usage(prompt_tokens=5)))
    router = Router(
        groups=[ModelGroup(name="zero", deployments=(WeightedDeployment(name="zero"),))],
        backends={"zero": backend},
        policy=RouterPolicy(max_retries=0),
    )
    gateway = Gateway(router=router)

    async def stores() -> Stores:
        return await open_store(url)

    service = AgentService(
        catalog=AgentCatalog([AgentSpec(name="a", model="zero")]),
        model=gateway,
        open_stores=stores,
    )
    await gateway.start()
    await service.start()
    try:
        sessions = [(await service.create_session("a")).id for _ in range(10)]
        samples = []
        for i in range(warmup + turns):
            t0 = time.perf_counter()
            run = await service.submit(sessions[i % 10], [{"role": "user", "content": "hi"}])
            await service.finished(run.id)
            if i >= warmup:
                samples.append(time.perf_counter() - t0)
    finally:
        await service.close()
        await gateway.close()
    samples.sort()
    return {
        "turns": turns,
        "p50_ms": round(statistics.median(samples) * 1000, 3),
        "p95_ms": round(_pct(samples, 0.95) * 1000, 3),
    }


def overhead(postgres: str, work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    import uvloop

    sqlite = f"sqlite+aiosqlite:///{work / 'overhead.db'}"
    rows = []
    for name, url in (("SQLite", sqlite), ("Postgres", postgres)):
        figures = uvloop.run(_overhead_on(url, args.turns, max(10, args.turns // 10)))
        rows.append({"store": name, **figures})
        log(f"turn overhead on {name}: {figures}")
    return rows


async def _revocation_on(url: str, samples: int) -> dict[str, Any]:
    """Two replicas' key services on one Postgres, each with its own Redis bus: the time from
    calling ``revoke`` on one (the store's update, the audit entry, the broadcast) to the
    other dropping the key from its cache."""
    from wayport.core.identity import Principal, Role
    from wayport.core.session import DEFAULT_TENANT
    from wayport.service.cluster import Cluster
    from wayport.service.keys import Security
    from wayport.store import open_store
    from wayport.store.redis_bus import RedisBus

    prefix = f"wpbench-{os.urandom(4).hex()}:"
    owner = Principal(tenant=DEFAULT_TENANT, role=Role.OWNER)
    async with contextlib.AsyncExitStack() as stack:
        replicas: list[Security] = []
        heard: asyncio.Queue[float] = asyncio.Queue()
        for i in range(2):
            store = await open_store(url)
            stack.push_async_callback(store.close)
            cluster = Cluster(bus=RedisBus(REDIS_URL, prefix=prefix))
            security = Security.build(lambda s=store: s, revocations=cluster.revocations())
            cluster.on_revoke(security.keys.forget)
            if i == 1:
                cluster.on_revoke(lambda _t, _k: heard.put_nowait(time.perf_counter()))
            assert cluster.bus is not None
            await cluster.bus.start()
            stack.push_async_callback(cluster.close)
            stack.push_async_callback(security.close)
            replicas.append(security)
        a, b = replicas
        delays = []
        for _ in range(samples):
            key, token = await a.keys.create(owner, name="bench")
            await b.keys.authenticate(token)  # cached on b
            t0 = time.perf_counter()
            await a.keys.revoke(owner, key.id)
            delays.append(await asyncio.wait_for(heard.get(), timeout=30) - t0)
    _drop_redis_keys(prefix)
    delays.sort()
    return {
        "samples": samples,
        "p50_ms": round(statistics.median(delays) * 1000, 3),
        "p99_ms": round(_pct(delays, 0.99) * 1000, 3),
        "max_ms": round(delays[-1] * 1000, 3),
    }


def revocation(postgres: str, args: argparse.Namespace) -> dict[str, Any]:
    figures = asyncio.run(_revocation_on(postgres, args.revocations))
    log(f"key revocation across replicas: {figures}")
    return figures


@contextlib.contextmanager
def scratch_postgres() -> Iterator[str]:
    """A database of the run's own on the Postgres server (``WAYPORT_BENCH_POSTGRES``, a
    libpq URL without a database), dropped afterwards."""
    import asyncpg

    server = os.environ.get("WAYPORT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    name = f"wayport_bench_{os.urandom(6).hex()}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(f"{server}/postgres", timeout=10)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="wayport-scale-") as tmp:
        work = Path(tmp)
        with scratch_postgres() as store:
            rows = throughput(store, work, args)
        with scratch_postgres() as store:
            turns = overhead(store, work, args)
        with scratch_postgres() as store:
            revoked = revocation(store, args)
    return {
        "meta": {
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count(),
            "concurrency": args.concurrency,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "load_average_before": round(load_before[0], 2),
        },
        "throughput": rows,
        "overhead": turns,
        "revocation": revoked,
    }


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"Run of {meta['when']} on {meta['cpus']} CPUs; {meta['concurrency']} sessions at "
        f"once, {meta['warmup_s']} s warm-up + {meta['duration_s']} s measured; load average "
        f"before the run {meta['load_average_before']}.",
        "",
        "| replicas (Postgres + Redis, HTTP, round robin) | turns/s | p50 ms | p95 ms "
        "| replica CPU ms/turn | errors |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for row in results["throughput"]:
        lines.append(
            f"| {row['replicas']} | {row['turns_per_s']:,} | {row['p50_ms']} | {row['p95_ms']} "
            f"| {row['replica_cpu_ms_per_turn']} | {row['errors']} |"
        )
    lines += [
        "",
        "| turn overhead, one at a time, in process | p50 ms | p95 ms |",
        "|---|--:|--:|",
    ]
    for row in results["overhead"]:
        lines.append(f"| {row['store']} | {row['p50_ms']} | {row['p95_ms']} |")
    rev = results["revocation"]
    lines += [
        "",
        "| key revocation: call on one replica until another drops it (Redis pub/sub) | samples "
        "| p50 ms | p99 ms | max ms |",
        "|---|--:|--:|--:|--:|",
        f"| revocation | {rev['samples']} | {rev['p50_ms']} | {rev['p99_ms']} | {rev['max_ms']} |",
    ]
    return "\n".join(lines)


def rewrite_docs(path: Path, section: str) -> None:
    text = path.read_text()
    head, found, rest = text.partition(START)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{path}: no {START} … {END} markers")
    path.write_text(f"{head}{START}\n{section}\n{END}{tail}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="short rows: a smoke run")
    parser.add_argument("--concurrency", type=int, default=32, help="sessions at once")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured a row")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds a row")
    parser.add_argument("--turns", type=int, default=None, help="turns for the overhead rows")
    parser.add_argument("--revocations", type=int, default=None, help="keys revoked, timed")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    args = parser.parse_args(argv)
    if args.revocations is None:
        args.revocations = 20 if args.quick else 200
    if args.duration is None:
        args.duration = 2.0 if args.quick else 15.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 3.0
    if args.turns is None:
        args.turns = 50 if args.quick else 1000
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    results = measure(args)
    print(json.dumps(results, indent=2))
    if args.write_docs:
        rewrite_docs(DOCS, markdown(results))
        log(f"rewrote the Scale-out results of {DOCS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
