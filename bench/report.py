"""Turn a results dictionary (as ``bench/run.py`` writes it to ``bench/results/``) into the
targets verdicts and the Markdown that is printed and written into ``docs/benchmarks.md``.

    results = json.loads(Path("bench/results/latest.json").read_text())
    print(markdown(results))
    rewrite_docs(Path("docs/benchmarks.md"), markdown(results))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

START = "<!-- results:start -->"
END = "<!-- results:end -->"
TARGET_NAMES = ("direct", "floor", "wayport", "wayport-notraces", "litellm")
LABELS = {
    "direct": "mock, direct",
    "floor": "Python floor",
    "wayport": "Wayport",
    "wayport-notraces": "Wayport, traces off",
    "litellm": "LiteLLM Proxy",
}

Results = Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    goal: str
    measured: str
    met: bool | None  #: None: not measured in this run


def load_row(results: Results, target: str, mode: str, concurrency: int) -> Mapping[str, Any]:
    for row in results.get("load", []):
        if (row["target"], row["mode"], row["concurrency"]) == (target, mode, concurrency):
            return dict(row)
    return {}


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(results: Results, mode: str, other: str) -> float:
    wayport = _num(load_row(results, "wayport", mode, 32).get("rps"))
    base = _num(load_row(results, other, mode, 32).get("rps"))
    return wayport / base if base > 0 else math.nan


def _cpu_ratio(results: Results, mode: str, other: str) -> float:
    """``other``'s CPU time per request over Wayport's: the rate ratio a saturated core
    would give, and much steadier than the rates themselves when the machine is shared."""
    wayport = _num(load_row(results, "wayport", mode, 32).get("cpu_us_per_request"))
    base = _num(load_row(results, other, mode, 32).get("cpu_us_per_request"))
    return base / wayport if wayport > 0 else math.nan


def _added(results: Results, target: str, mode: str, concurrency: int, key: str) -> float:
    row = load_row(results, target, mode, concurrency)
    direct = load_row(results, "direct", mode, concurrency)
    return _num(row.get(key)) - _num(direct.get(key))


def _verdict(goal: str, measured: str, value: float, ok: bool) -> Verdict:
    return Verdict(goal=goal, measured=measured, met=None if math.isnan(value) else ok)


def evaluate(results: Results) -> list[Verdict]:
    """One verdict per target of docs/benchmarks.md; ``met`` is None where nothing was
    measured (the comparison with NaN is never true, so it cannot pass by accident)."""
    verdicts = []
    for mode in ("json", "stream"):
        r = _ratio(results, mode, "floor")
        cpu = _cpu_ratio(results, mode, "floor")
        verdicts.append(
            _verdict(
                f"Wayport >= 50 % of the floor's RPS, concurrency 32, {mode}",
                f"{_fmt(r * 100, 0)} % (CPU basis {_fmt(cpu * 100, 0)} %)",
                r,
                r >= 0.5,
            )
        )
    for mode in ("json", "stream"):
        added = _added(results, "wayport", mode, 1, "p50_ms")
        verdicts.append(
            _verdict(
                f"added p50 at concurrency 1 <= 0.6 ms, {mode}",
                f"{_fmt(added)} ms",
                added,
                added <= 0.6,
            )
        )
    for mode in ("json", "stream"):
        r = _ratio(results, mode, "litellm")
        cpu = _cpu_ratio(results, mode, "litellm")
        verdicts.append(
            _verdict(
                f">= 20x LiteLLM Proxy's RPS, concurrency 32, {mode}",
                f"{_fmt(r, 1)}x (CPU basis {_fmt(cpu, 1)}x)",
                r,
                r >= 20,
            )
        )
    embedded = results.get("embedded", {})
    via = _num(embedded.get("wayport", {}).get("tokens_per_s"))
    direct = _num(embedded.get("direct", {}).get("tokens_per_s"))
    share = via / direct if direct > 0 else math.nan
    verdicts.append(
        _verdict(
            "embedded model through Wayport >= 95 % of direct tokens/s",
            f"{_fmt(share * 100, 1)} % ({_fmt(via, 1)} vs {_fmt(direct, 1)} tok/s)",
            share,
            share >= 0.95,
        )
    )
    startup = results.get("startup", {})
    for config in ("mock", "embedded"):
        ready = _num(startup.get(config, {}).get("ready_s"))
        verdicts.append(
            _verdict(f"ready <= 2 s ({config} config)", f"{_fmt(ready)} s", ready, ready <= 2.0)
        )
    for config in ("mock", "embedded"):
        rss = _num(startup.get(config, {}).get("idle_rss_mb"))
        verdicts.append(
            _verdict(f"idle RSS <= 250 MB ({config} config)", f"{_fmt(rss, 0)} MB", rss, rss <= 250)
        )
    return verdicts


def _load_table(results: Results) -> list[str]:
    lines = [
        "| server | payload | concurrency | RPS | p50 ms | p99 ms | added p50 ms | added p99 ms "
        "| CPU µs/request | errors |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for target in TARGET_NAMES:
        for mode in ("json", "stream"):
            for concurrency in (1, 32):
                row = load_row(results, target, mode, concurrency)
                if not row:
                    continue
                added50 = (
                    ""
                    if target == "direct"
                    else _fmt(_added(results, target, mode, concurrency, "p50_ms"))
                )
                added99 = (
                    ""
                    if target == "direct"
                    else _fmt(_added(results, target, mode, concurrency, "p99_ms"))
                )
                payload = "streaming (SSE)" if mode == "stream" else "non-streaming"
                lines.append(
                    f"| {LABELS[target]} | {payload} | {concurrency} | {_fmt(row['rps'], 0)} "
                    f"| {_fmt(row['p50_ms'])} | {_fmt(row['p99_ms'])} | {added50} | {added99} "
                    f"| {_fmt(_num(row.get('cpu_us_per_request')), 0)} | {row['errors']} |"
                )
    return lines


def _startup_table(results: Results) -> list[str]:
    startup = results.get("startup", {})
    embedded = results.get("embedded", {})
    lines = ["| Wayport | mock config | embedded default config |", "|---|--:|--:|"]
    mock, emb = startup.get("mock", {}), startup.get("embedded", {})
    lines.append(
        f"| `wayport serve` to ready (`/readyz` 200) | {_fmt(_num(mock.get('ready_s')))} s "
        f"| {_fmt(_num(emb.get('ready_s')))} s |"
    )
    for key, label in (("idle_rss_mb", "idle RSS after start"), ("idle_pss_mb", "idle PSS")):
        lines.append(
            f"| {label} | {_fmt(_num(mock.get(key)), 0)} MB | {_fmt(_num(emb.get(key)), 0)} MB |"
        )
    if embedded:
        lines += ["", "| embedded model | tokens/s | note |", "|---|--:|---|"]
        for key, label in (
            ("direct", "llama-cpp-python called directly"),
            ("backend", "Wayport's backend, in process"),
            ("wayport", "through `wayport serve` (HTTP, streaming)"),
        ):
            figure = embedded.get(key)
            if figure:
                lines.append(
                    f"| {label} | {_fmt(_num(figure.get('tokens_per_s')), 1)} "
                    f"| {figure.get('note', '')} |"
                )
    return lines


def _verdict_table(verdicts: Sequence[Verdict]) -> list[str]:
    lines = ["| target | measured | verdict |", "|---|--:|---|"]
    for v in verdicts:
        word = "not measured" if v.met is None else ("met" if v.met else "**missed**")
        lines.append(f"| {v.goal} | {v.measured} | {word} |")
    return lines


def _tracing_note(results: Results) -> list[str]:
    """What the spans cost: the default (traces on, the "Wayport" rows) against traces off."""
    parts = []
    for mode, payload in (("json", "non-streaming"), ("stream", "streaming")):
        on = _num(load_row(results, "wayport", mode, 32).get("cpu_us_per_request"))
        off = _num(load_row(results, "wayport-notraces", mode, 32).get("cpu_us_per_request"))
        if not (math.isnan(on) or math.isnan(off)):
            parts.append(f"{payload} {_fmt(on, 0)} µs with traces, {_fmt(off, 0)} µs without")
    if not parts:
        return []
    return [
        "The Wayport rows run the mock config as shipped: traces on (the default), the console "
        "keeping the recent ones. CPU per request at concurrency 32: " + "; ".join(parts) + ".",
        "",
    ]


def _loadavg(value: object) -> str:
    return f"{value[0]:.2f}" if isinstance(value, list) and value else "?"


def markdown(results: Results) -> str:
    meta = results.get("meta", {})
    lines = [
        f"Run of {meta.get('date', '?')} on {meta.get('machine', '?')}; load generator: "
        f"{meta.get('loadgen', '?')}; each row is the median of {meta.get('rounds', 1)} "
        f"interleaved round(s) of {meta.get('warmup_s', '?')} s warm-up + "
        f"{meta.get('duration_s', '?')} s measured"
        + (" (quick run)" if meta.get("quick") else "")
        + f"; load average before the run {_loadavg(meta.get('load_average_before'))}.",
        "",
        "Versions: "
        + ", ".join(
            f"{name} {str(version).removeprefix(name + ' ')}"
            for name, version in meta.get("tools", {}).items()
        )
        + f", Python {meta.get('python', '?')}.",
        "",
        *_load_table(results),
        "",
        *_tracing_note(results),
        *_startup_table(results),
        "",
        *_verdict_table(evaluate(results)),
    ]
    skipped = results.get("skipped", {})
    if skipped:
        lines += ["", "Not measured in this run:", ""]
        lines += [f"- {name}: {reason}" for name, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def verdicts_as_dicts(results: Results) -> list[dict[str, object]]:
    return [asdict(v) for v in evaluate(results)]


def rewrite_docs(path: Path, section: str) -> None:
    """Replace what lies between the results markers of ``path`` with ``section``."""
    text = path.read_text()
    head, found, rest = text.partition(START)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise ValueError(f"{path} lacks the {START} ... {END} markers")
    path.write_text(f"{head}{START}\n{section}{END}{tail}")
