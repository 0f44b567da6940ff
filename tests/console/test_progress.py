"""Progress bars of long CLI operations: drawn on a terminal, silent anywhere else."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from rich.console import Console

from wayport.cli.progress import loading_models, progress_bar, track


class Backend:
    def __init__(self) -> None:
        self.loaded = threading.Event()

    def ready(self) -> bool:
        return self.loaded.is_set()


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=100), out


def test_a_bar_counts_steps_on_a_terminal_and_is_silent_in_a_pipe() -> None:
    console, out = terminal()
    with progress_bar("Exporting", total=3, console=console) as advance:
        for _ in range(3):
            advance(1)
    assert "Exporting" in out.getvalue()
    assert "3/3" in out.getvalue()

    piped = io.StringIO()
    with progress_bar("Exporting", total=3, console=Console(file=piped)) as advance:
        advance(3)
    assert piped.getvalue() == ""


def test_loading_models_follows_the_backends_until_finished() -> None:
    console, out = terminal()
    a, b = Backend(), Backend()
    with loading_models({"a": a, "b": b}, console=console, every=0.01) as finish:
        a.loaded.set()
        b.loaded.set()
        finish()
        finish()  # twice is harmless (the server reports ready once, but be safe)
    text = out.getvalue()
    assert "Loading models" in text
    assert "2/2" in text

    piped = io.StringIO()
    with loading_models({"a": a}, console=Console(file=piped)) as finish:
        finish()
    assert piped.getvalue() == ""


@pytest.mark.anyio
async def test_track_passes_every_item_through() -> None:
    async def lines():  # type: ignore[no-untyped-def]
        for i in range(4):
            yield f"line {i}"

    assert [x async for x in track(lines(), "Exporting", total=4)] == [
        f"line {i}" for i in range(4)
    ]


def test_the_benchmark_rounds_advance_one_bar_step_per_measurement(tmp_path: Path) -> None:
    """``bench/rounds.py`` against the bench's own mock upstream, with the Python loadgen."""
    bench = Path(__file__).resolve().parents[2] / "bench"
    sys.path.insert(0, str(bench))
    try:
        import drivers
        import rounds
        import targets
    finally:
        sys.path.remove(str(bench))
    proc = subprocess.Popen(
        [sys.executable, str(bench / "mock_upstream.py"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().decode()
        assert ready.startswith("READY "), ready
        target = targets.Target(name="direct", base_url=ready.split()[1])
        console, out = terminal()
        total = rounds.rounds_total(1, 1)
        steps: list[int] = []
        with progress_bar("Measuring rounds", total=total, console=console) as advance:
            rows = rounds.measure_interleaved(
                drivers.Driver(wrk=None, cpus=None),
                [target],
                drivers.write_bodies(tmp_path),
                rounds=1,
                duration=0.2,
                warmup=0,
                advance=lambda: (steps.append(1), advance())[-1],
            )
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert total == 4  # two payloads at two concurrencies
    assert len(steps) == total == len(rows)
    assert all(row["requests"] for row in rows)
    assert f"{total}/{total}" in out.getvalue()
