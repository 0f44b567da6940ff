"""What the results were measured on: machine, interpreter and tool versions.

describe(loadgen="wrk", extra={"litellm": "1.106.2"})["tools"]["aiohttp"]   # "3.14.5"
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from procs import python

DISTRIBUTIONS = ("wayport", "uvicorn", "aiohttp", "uvloop", "httptools", "llama_cpp_python")


def version_of(dist: str) -> str:
    """Version of ``dist`` in the project's interpreter (not necessarily this one)."""
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    done = subprocess.run([python(), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() or "not installed"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def describe(loadgen: str, extra: Mapping[str, str]) -> dict[str, Any]:
    tools = {dist: version_of(dist) for dist in DISTRIBUTIONS}
    wrk = shutil.which("wrk")
    if loadgen == "wrk" and wrk:
        done = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=30)
        tools["wrk"] = (done.stdout or done.stderr).split(" [")[0].removeprefix("wrk ").strip()
    tools.update(extra)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{os.cpu_count()} cores ({cpu_model()}), Linux {platform.release()}",
        "python": platform.python_version(),
        "tools": tools,
        "loadgen": loadgen,
    }
