"""Keeps ``bench/release_bench.py`` from rotting: one small run of its bad-canary scenario
(real SQLite, the real reconciler, a simulated clock) and its docs rewriting. Nothing here
asserts on wall-clock time."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"

pytestmark = pytest.mark.anyio


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("release_bench", BENCH / "release_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


async def test_the_bad_canary_is_rolled_back_with_no_user_error(tmp_path: Path) -> None:
    bench = _module()
    args = argparse.Namespace(
        rps=20.0, interval=5.0, analysis_interval=10.0, min_requests=5, max_requests=2_000
    )
    result = await bench.scenario(tmp_path, args)
    assert result["phase"] == "rolled_back", result
    assert "error_rate" in result["reason"]
    assert result["user_visible_errors"] == 0
    # the first analysis is due 10 simulated seconds after the start: 20 requests a second
    assert result["time_to_rollback_s"] == pytest.approx(10.0, abs=0.5)
    assert 190 <= result["requests_until_rollback"] <= 210
    assert 0.02 <= result["share_reached_bad_version"] <= 0.2  # about the 10 % weight
    assert result["bad_version_failures"] == (result["reached_bad_version"] + 1) // 2

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# B\n\n{bench.START}\nold\n{bench.END}\ntail\n")
    bench.write_docs(bench.markdown(result), page)
    text = page.read_text()
    assert "old" not in text and text.endswith(f"{bench.END}\ntail\n")
    assert "| user-visible errors (failover on) | 0 |" in text
    assert bench.START in bench.DOCS.read_text()  # the real page has the section's markers
