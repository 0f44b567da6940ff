"""The benchmark harness: one command measures Wayport against a direct call, the Python floor
and LiteLLM Proxy on the same machine, with the same payloads.

    python bench/run.py                 # full run, about 6 minutes on 2 cores
    python bench/run.py --quick         # short run, about 2 minutes
    python bench/run.py --write-docs    # also rewrite the results section of docs/benchmarks.md

The gateways are pinned to core 0 and the mock upstream and load generator share core 1
(``taskset``), so a gateway's own cost decides its figures; they are loaded in turn, in
interleaved rounds (``bench/rounds.py``). Results go to
``bench/results/<timestamp>.json`` (and ``latest.json``); a Markdown summary is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import embedded_http
import machine
import report
from drivers import Driver, check_answer, write_bodies
from procs import ROOT, Server, Servers, StartError, ensure_wrk
from rounds import MODES, measure_interleaved, rounds_total
from targets import (
    MB,
    WAYPORT_MOCK_CONFIG,
    Target,
    compile_bytecode,
    ensure_litellm,
    idle_memory_mb,
    litellm_version,
    start_floor,
    start_litellm,
    start_mock,
    start_wayport,
    wayport_missing,
)
from wayport.cli.progress import progress_bar

RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs" / "benchmarks.md"
#: the default mock config with ``telemetry.traces: false``: what the spans cost
WAYPORT_NOTRACES_CONFIG = ROOT / "bench" / "wayport-mock-notraces.yaml"
GATEWAY_CPUS = "0"
CLIENT_CPUS = "1"
READY_REPEATS = 3


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


T = TypeVar("T")


class Run:
    """One harness run: the settings, the servers it started and the results it gathered."""

    def __init__(self, args: argparse.Namespace, servers: Servers, run_dir: Path) -> None:
        self.args = args
        self.servers = servers
        self.run_dir = run_dir
        self.bodies = write_bodies(run_dir)
        self.load: list[dict[str, object]] = []
        self.skipped: dict[str, str] = {}
        self.startup: dict[str, dict[str, Any]] = {}
        self.embedded: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, str] = {}
        self.load_before = os.getloadavg()
        if self.load_before[0] > 0.5:
            # Figures taken beside other work on 2 cores measure the neighbours as well.
            log(f"the machine is busy (load average {self.load_before[0]:.2f}): expect noise")
        wrk, why = (None, "--loadgen python") if args.loadgen == "python" else ensure_wrk()
        if wrk is None:
            if args.loadgen == "wrk":
                raise SystemExit(f"wrk is required by --loadgen wrk: {why}")
            log(f"falling back to the Python load generator: {why}")
        self.driver = Driver(wrk=wrk, cpus=CLIENT_CPUS)

    def guarded(self, name: str, step: Callable[[], T]) -> T | None:
        """Run one part; a failure is recorded as the reason it was not measured."""
        try:
            return step()
        except (
            StartError,
            RuntimeError,
            ValueError,
            OSError,
            subprocess.SubprocessError,
            http.client.HTTPException,
        ) as exc:
            self.skipped[name] = f"{type(exc).__name__}: {str(exc).strip()[:600]}"
            log(f"{name} not measured: {exc}")
            if self.args.verbose:
                traceback.print_exc()
            return None

    def gateways(self, mock: Server, mock_url: str) -> None:
        """Start every server side by side (idle ones cost nothing), check that each relays
        the mock's answer, then load them in interleaved rounds."""
        started = [Target(name="direct", base_url=mock_url, server=mock)]
        for name, skip, start in (
            ("floor", False, self._start_floor),
            ("wayport", self.args.skip_wayport, self._start_wayport),
            ("wayport-notraces", self.args.skip_wayport, self._start_wayport_notraces),
            ("litellm", self.args.skip_litellm, self._start_litellm),
        ):
            if skip:
                self.skipped[name] = f"--skip-{name}"
                continue
            target = self.guarded(name, functools.partial(start, mock_url))
            if target is not None:
                started.append(target)
        targets = [t for t in started if self.guarded(t.name, functools.partial(self._check, t))]
        total = rounds_total(len(targets), self.args.rounds)
        # a bar on stderr when it is a terminal; the log lines scroll above it
        with progress_bar("Measuring rounds", total=total) as advance:
            self.load = measure_interleaved(
                self.driver,
                targets,
                self.bodies,
                rounds=self.args.rounds,
                duration=self.args.duration,
                warmup=self.args.warmup,
                log=log,
                advance=advance,
            )
        for target in targets:
            if target.name == "wayport" and target.server is not None:
                self.startup["mock"]["rss_after_load_mb"] = target.server.rss_bytes() / MB
            if target.server is not None and target.server is not mock:
                self.servers.stop(target.server)

    def _check(self, target: Target) -> bool:
        for mode in MODES:
            check_answer(target.chat_url, self.bodies[mode].read_bytes(), target.api_key)
        return True

    def _start_floor(self, mock_url: str) -> Target:
        return start_floor(self.servers, mock_url, cpus=GATEWAY_CPUS)

    def _start_wayport(self, mock_url: str) -> Target:
        """Start it a few times (the median start-up time is steadier than one); the last one
        stays up for the load."""
        missing = wayport_missing()
        if missing:
            raise RuntimeError(missing)
        readies: list[float] = []
        memory: list[tuple[float, float]] = []
        target: Target | None = None
        for attempt in range(READY_REPEATS):
            if target is not None and target.server is not None:
                self.servers.stop(target.server)
            target, ready = start_wayport(
                self.servers,
                name=f"wayport-mock-{attempt}",
                cpus=GATEWAY_CPUS,
                config=WAYPORT_MOCK_CONFIG,
                upstream=mock_url,
            )
            assert target.server is not None
            readies.append(ready)
            memory.append(idle_memory_mb(target.server))
        assert target is not None
        log(f"wayport (mock config) ready in {readies} s, idle RSS and PSS {memory} MB")
        self.startup["mock"] = {
            "ready_s": statistics.median(readies),
            "ready_all_s": readies,
            "idle_rss_mb": max(m[0] for m in memory),
            "idle_pss_mb": max(m[1] for m in memory),
        }
        return target

    def _start_wayport_notraces(self, mock_url: str) -> Target:
        """The same server with tracing off (the measured default has it on)."""
        target, _ = start_wayport(
            self.servers,
            name="wayport-notraces",
            cpus=GATEWAY_CPUS,
            config=WAYPORT_NOTRACES_CONFIG,
            upstream=mock_url,
        )
        return dataclasses.replace(target, name="wayport-notraces")

    def _start_litellm(self, mock_url: str) -> Target:
        cli, why = ensure_litellm()
        if cli is None:
            raise RuntimeError(why)
        self.versions["litellm"] = litellm_version()
        return start_litellm(self.servers, cli, mock_url, cpus=GATEWAY_CPUS)

    def embedded_model(self) -> None:
        if self.args.skip_embedded:
            self.skipped["embedded"] = "--skip-embedded"
            return
        target = None
        if not self.args.skip_wayport:
            target = self.guarded("embedded model, through Wayport", self._start_embedded)
        try:
            url = target.base_url if target else None
            key = target.api_key if target else None
            figures = self.guarded(
                "embedded model",
                functools.partial(embedded_http.compare, url, key, quick=self.args.quick),
            )
            self.embedded.update(figures or {})
        finally:
            if target is not None and target.server is not None:
                self.servers.stop(target.server)

    def _start_embedded(self) -> Target:
        """``wayport serve`` on its built-in defaults: the embedded model, preloaded."""
        missing = wayport_missing()
        if missing:
            raise RuntimeError(missing)
        # Its own folder: no wayport.yaml to pick up, and its state (./.wayport) stays there.
        home = self.run_dir / "wayport-embedded"
        home.mkdir(exist_ok=True)
        target, ready = start_wayport(
            self.servers, name="wayport-embedded", cpus=None, config=None, timeout=300, cwd=home
        )
        assert target.server is not None
        rss, pss = idle_memory_mb(target.server)
        self.startup["embedded"] = {"ready_s": ready, "idle_rss_mb": rss, "idle_pss_mb": pss}
        log(f"wayport (embedded default config) ready in {ready:.2f} s, RSS {rss:.0f} MB")
        return target

    def results(self) -> dict[str, Any]:
        results: dict[str, Any] = {
            "meta": {
                **machine.describe("wrk" if self.driver.wrk else self.driver.tool, self.versions),
                "rounds": self.args.rounds,
                "duration_s": self.args.duration,
                "warmup_s": self.args.warmup,
                "quick": self.args.quick,
                "pinning": {"gateway": GATEWAY_CPUS, "mock_and_loadgen": CLIENT_CPUS},
                "load_average_before": [round(x, 2) for x in self.load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            },
            "load": self.load,
            "startup": self.startup,
            "embedded": self.embedded,
            "skipped": self.skipped,
        }
        results["targets"] = report.verdicts_as_dicts(results)
        return results


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one round of 1 s + 3 s per row")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per row (median)")
    parser.add_argument("--duration", type=float, default=None, help="seconds measured a round")
    parser.add_argument("--warmup", type=float, default=None, help="warm-up seconds a round")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--skip-wayport", action="store_true")
    parser.add_argument("--skip-litellm", action="store_true")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite {DOCS.name}")
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="measure nothing: print (and with --write-docs, write) the summary of a past run",
    )
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failures")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 3.0 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 1.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    results = json.loads(args.report.read_text()) if args.report is not None else measure(args)
    section = report.markdown(results)
    print(section)
    if args.write_docs:
        report.rewrite_docs(DOCS, section)
        log(f"rewrote the results section of {DOCS.relative_to(ROOT)}")
    return 0


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold ``bench/results/.lock`` for the run: two runs at once would share the pinned
    cores and each would measure the other."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with (RESULTS / ".lock").open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("another benchmark run is in progress; waiting for it to finish")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def measure(args: argparse.Namespace) -> dict[str, Any]:
    with exclusive():
        return _measure(args)


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = RESULTS / stamp
    with Servers(run_dir / "logs") as servers:
        run = Run(args, servers, run_dir)
        log(f"load generator: {run.driver.tool}; logs in {run_dir.relative_to(ROOT)}")
        if not args.skip_litellm:
            ensure_litellm()  # before compile_bytecode, which then covers it too
        for failure in compile_bytecode():
            log(f"bytecode compilation incomplete: {failure}")
        mock, mock_url = start_mock(servers, cpus=CLIENT_CPUS)
        run.gateways(mock, mock_url)
        run.embedded_model()
    results = run.results()
    text = json.dumps(results, indent=2)
    (RESULTS / f"{stamp}.json").write_text(text)
    (RESULTS / "latest.json").write_text(text)
    return results


if __name__ == "__main__":
    sys.exit(main())
