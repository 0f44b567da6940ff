"""Keeps ``bench/scale_bench.py`` from rotting: its report and docs rewriting, and one tiny
run on the real Postgres and Redis. Nothing here asserts on timing."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scale_bench", BENCH / "scale_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RESULTS = {
    "meta": {
        "when": "2026-01-01 00:00 UTC",
        "cpus": 2,
        "concurrency": 4,
        "duration_s": 1.0,
        "warmup_s": 0.5,
        "load_average_before": 0.1,
    },
    "throughput": [
        {
            "replicas": n,
            "turns": 10,
            "errors": 0,
            "turns_per_s": 10.0,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "replica_cpu_ms_per_turn": 3.0,
        }
        for n in (1, 2)
    ],
    "overhead": [
        {"store": s, "turns": 5, "p50_ms": 1.0, "p95_ms": 2.0} for s in ("SQLite", "Postgres")
    ],
    "revocation": {"samples": 3, "p50_ms": 0.5, "p99_ms": 0.9, "max_ms": 1.1},
}


def test_the_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    bench = _module()
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"before\n{bench.START}\nold\n{bench.END}\nafter\n")
    bench.rewrite_docs(doc, bench.markdown(RESULTS))
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith(f"{bench.END}\nafter\n")
    assert "old" not in text
    assert "| 2 | 10.0 |" in text and "| Postgres | 1.0 | 2.0 |" in text
    assert "| revocation | 3 | 0.5 | 0.9 | 1.1 |" in text


def test_docs_hold_the_scale_markers() -> None:
    bench = _module()
    text = bench.DOCS.read_text()
    assert bench.START in text and bench.END in text


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.slow
def test_a_tiny_run_answers_every_turn() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "scale_bench.py"),
            "--quick",
            "--concurrency",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--turns",
            "10",
            "--revocations",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout)
    assert [r["replicas"] for r in results["throughput"]] == [1, 2]
    for row in results["throughput"]:
        assert row["errors"] == 0
    assert [r["store"] for r in results["overhead"]] == ["SQLite", "Postgres"]
    assert results["revocation"]["samples"] == 3
