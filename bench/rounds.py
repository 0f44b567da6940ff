"""Interleaved measurement: every server is loaded in turn, round after round, and each row
reports the median of its rounds.

On a shared 2-core machine the neighbours' load drifts over minutes; measuring one server for
a minute and the next one afterwards would compare two different machines. Short rounds that
alternate between the servers (in a rotating order) expose them all to the same drift, so
their ratios hold even when the absolute figures move.

    rows = measure_interleaved(driver, targets, bodies, rounds=3, duration=4, warmup=1)
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drivers import Driver, Measurement
from procs import Server
from targets import Target

CONCURRENCY = (1, 32)
MODES = ("json", "stream")


class CpuMeter:
    """CPU seconds a server spends between ``mark()`` and ``used()``."""

    def __init__(self, server: Server | None) -> None:
        self.server = server
        self.start = 0.0

    def mark(self) -> None:
        self.start = self.server.cpu_seconds() if self.server else 0.0

    def used(self) -> float | None:
        return self.server.cpu_seconds() - self.start if self.server else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    measurement: Measurement
    cpu_seconds: float | None


def aggregate(target: str, mode: str, rounds: Sequence[Round]) -> dict[str, object]:
    """One result row: medians of the rounds' rates and percentiles, sums of the counts, and
    the CPU time per request over all rounds together."""
    ms = [r.measurement for r in rounds]
    requests = sum(m.requests for m in ms)
    row: dict[str, object] = {
        "target": target,
        "mode": mode,
        "tool": ms[0].tool,
        "concurrency": ms[0].concurrency,
        "rounds": len(ms),
        "requests": requests,
        "errors": sum(m.errors for m in ms),
        "duration_s": sum(m.duration_s for m in ms),
        "rps": statistics.median(m.rps for m in ms),
        "rps_rounds": [round(m.rps, 1) for m in ms],
        "p50_ms": statistics.median(m.p50_ms for m in ms),
        "p90_ms": statistics.median(m.p90_ms for m in ms),
        "p99_ms": statistics.median(m.p99_ms for m in ms),
        "mean_ms": statistics.median(m.mean_ms for m in ms),
        "max_ms": max(m.max_ms for m in ms),
        "first_error": next((m.first_error for m in ms if m.first_error), None),
    }
    cpu = [r.cpu_seconds for r in rounds if r.cpu_seconds is not None]
    if cpu and requests:
        row["cpu_us_per_request"] = sum(cpu) / requests * 1e6
        row["cpu_utilisation"] = sum(cpu) / sum(m.duration_s for m in ms)
    return row


def rounds_total(targets: int, rounds: int) -> int:
    """How many measurements ``measure_interleaved`` takes."""
    return len(MODES) * len(CONCURRENCY) * rounds * targets


def measure_interleaved(
    driver: Driver,
    targets: Sequence[Target],
    bodies: Mapping[str, Path],
    *,
    rounds: int,
    duration: float,
    warmup: float,
    log: Callable[[str], None] = lambda _: None,
    advance: Callable[[], None] = lambda: None,
) -> list[dict[str, object]]:
    """Load every target with every payload at every concurrency, ``rounds`` times each;
    ``advance()`` after each of the ``rounds_total(...)`` measurements (a progress bar)."""
    rows: list[dict[str, object]] = []
    for mode in MODES:
        for concurrency in CONCURRENCY:
            taken: dict[str, list[Round]] = {t.name: [] for t in targets}
            for number in range(rounds):
                # Rotating the order keeps any one server from always following the same one.
                shift = number % len(targets)
                for target in [*targets[shift:], *targets[:shift]]:
                    meter = CpuMeter(target.server)
                    m = driver.measure(
                        target.chat_url,
                        bodies[mode],
                        concurrency=concurrency,
                        duration=duration,
                        warmup=warmup,
                        api_key=target.api_key,
                        on_measure=meter.mark,
                    )
                    taken[target.name].append(Round(measurement=m, cpu_seconds=meter.used()))
                    advance()
                    errors = f", {m.errors} errors: {m.first_error}" if m.errors else ""
                    log(
                        f"{mode} c={concurrency} round {number + 1}/{rounds} {target.name}: "
                        f"{m.rps:,.0f} req/s, p50 {m.p50_ms:.3f} ms{errors}"
                    )
            rows += [aggregate(t.name, mode, taken[t.name]) for t in targets]
    return rows
