"""Keeps ``bench/workflow_bench.py`` from rotting: a quick run must finish every workflow and
report every figure. Nothing here asserts on timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_workflow_bench_quick_run() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "workflow_bench.py"), "--quick", "--all-cores"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout)
    for name, steps in (("one_at_a_time", 50), ("chain_parallel_runs", 200), ("fan_out", 180)):
        assert figures[name]["effect_steps"] == steps, figures[name]
        assert figures[name]["steps_per_s"] > 0
