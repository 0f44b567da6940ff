"""Keeps ``bench/channel_bench.py`` from rotting: a quick run over the real app, every signed
message acknowledged. Nothing here asserts on timing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_channel_bench_runs_and_every_message_is_acknowledged() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "channel_bench.py"), "--quick", "--cpu", "-1"],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    result = json.loads(done.stdout)
    for mode in ("ingress_only", "with_runs"):  # acknowledgement alone, and with the agent runs
        for run in (result[mode]["one_at_a_time"], result[mode]["concurrent"]):
            assert run["refused"] == 0
            assert run["messages"] > 0 and run["messages_per_s"] > 0
            assert run["p50_ms"] <= run["p99_ms"]
