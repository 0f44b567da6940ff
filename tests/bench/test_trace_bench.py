"""Keeps ``bench/trace_bench.py`` from rotting: a tiny run of each path. No timing asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "trace_bench.py"


@pytest.mark.parametrize("path", ["light", "sdk"])
def test_a_tiny_run_reports_both_rows(path: str) -> None:
    argv = [sys.executable, str(BENCH), "-n", "20"] + (["--sdk"] if path == "sdk" else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout)
    assert figures["path"] == path and figures["requests_per_round"] == 20
    assert figures["json_us"] > 0 and figures["stream_us"] > 0
