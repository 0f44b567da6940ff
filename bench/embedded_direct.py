"""Tokens/s of the embedded model: llama-cpp-python called directly vs through
``LlamaCppBackend.stream``, same file, prompt, seed, ``max_tokens`` and greedy sampling.

    python bench/embedded_direct.py --json --max-tokens 128 --runs 5

Prints one JSON object (the last line of stdout)::

    {"direct": {"tokens_per_s": …, …}, "backend": {"tokens_per_s": …, …}, "backend_share": 0.99}

``tokens_per_s`` is the decode rate: content chunks after the first over the time from the
first to the last, so model load and prompt processing do not dilute the comparison (the
end-to-end rate is reported beside it). Both sides warm up first, then run alternately, and
the median run is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import llama_cpp

from wayport.core.types import ChatRequest, Message
from wayport.models.llamacpp import LlamaCppBackend, default_model_path

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
SEED = 42


def figures(start: float, stamps: list[float], usage_tokens: int | None) -> dict[str, float]:
    if len(stamps) < 2:
        raise RuntimeError(f"the stream carried {len(stamps)} content chunks; 2 are needed")
    first, last = stamps[0], stamps[-1]
    return {
        "tokens": float(usage_tokens or len(stamps)),
        "content_chunks": float(len(stamps)),
        "ttft_ms": (first - start) * 1000,
        "tokens_per_s": (len(stamps) - 1) / (last - first),
        "end_to_end_tokens_per_s": len(stamps) / (last - start),
    }


def run_direct(llm: llama_cpp.Llama, messages: list[Message], max_tokens: int) -> dict[str, float]:
    stamps: list[float] = []
    start = time.perf_counter()
    stream: Any = llm.create_chat_completion(
        messages=list(messages),  # type: ignore[arg-type]
        max_tokens=max_tokens,
        temperature=0.0,
        seed=SEED,
        stream=True,
    )
    for chunk in stream:
        if chunk["choices"][0]["delta"].get("content"):
            stamps.append(time.perf_counter())
    return figures(start, stamps, None)


async def run_backend(
    backend: LlamaCppBackend, messages: list[Message], max_tokens: int
) -> dict[str, float]:
    request = ChatRequest(
        model="local",
        messages=messages,
        stream=True,
        params={"max_tokens": max_tokens, "temperature": 0.0, "seed": SEED},
    )
    stamps: list[float] = []
    usage = None
    start = time.perf_counter()
    async for chunk in backend.stream(request):
        if chunk.content:
            stamps.append(time.perf_counter())
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return figures(start, stamps, usage)


def summary(runs: list[dict[str, float]], note: str) -> dict[str, Any]:
    median = statistics.median(r["tokens_per_s"] for r in runs)
    middle = min(runs, key=lambda r: abs(r["tokens_per_s"] - median))
    return {
        **middle,
        "tokens_per_s": median,
        "end_to_end_tokens_per_s": statistics.median(r["end_to_end_tokens_per_s"] for r in runs),
        "best_tokens_per_s": max(r["tokens_per_s"] for r in runs),
        "runs_tokens_per_s": [round(r["tokens_per_s"], 2) for r in runs],
        "note": note,
    }


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.model) if args.model else default_model_path()
    messages: list[Message] = [{"role": "user", "content": args.prompt}]
    llm = llama_cpp.Llama(str(path), n_ctx=args.n_ctx, n_threads=args.threads, verbose=False)
    backend = LlamaCppBackend(
        name="local", model_path=path, n_ctx=args.n_ctx, n_threads=args.threads, slots=1
    )
    await backend.start()
    loop = asyncio.get_running_loop()
    direct: list[dict[str, float]] = []
    through: list[dict[str, float]] = []
    try:
        for _ in range(args.warmup):
            await loop.run_in_executor(None, run_direct, llm, messages, args.max_tokens)
            await run_backend(backend, messages, args.max_tokens)
        for _ in range(args.runs):
            # Alternating keeps slow drifts of a shared machine from favouring one side.
            direct.append(
                await loop.run_in_executor(None, run_direct, llm, messages, args.max_tokens)
            )
            through.append(await run_backend(backend, messages, args.max_tokens))
    finally:
        await backend.close()
        llm.close()
    note = f"median of {args.runs}, {args.max_tokens} tokens max, greedy"
    result: dict[str, Any] = {
        "direct": summary(direct, note + ", llama-cpp-python create_chat_completion(stream)"),
        "backend": summary(through, note + ", LlamaCppBackend.stream, 1 slot"),
        "model": path.name,
        "load_seconds": backend.load_seconds,
    }
    result["backend_share"] = result["backend"]["tokens_per_s"] / result["direct"]["tokens_per_s"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--model", default=None, help="GGUF file (default: SmolLM2 135M)")
    parser.add_argument("--json", action="store_true", help="JSON only (the default prints both)")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args))
    if not args.json:
        for side in ("direct", "backend"):
            print(f"{side:8} {result[side]['tokens_per_s']:8.1f} tok/s", file=sys.stderr)
        print(f"backend/direct {result['backend_share'] * 100:.1f} %", file=sys.stderr)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
