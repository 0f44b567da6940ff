"""``wayport serve`` as a subprocess for the tests that SIGKILL and restart it: the console
script, a slow scripted model installed as a plugin, and readiness read from its stdout."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

#: the console script of the environment running the tests
WAYPORT = str(Path(sys.executable).with_name("wayport"))
READY = re.compile(r"ready on (http://[0-9.:]+)")
TESTS = Path(__file__).resolve().parent


def plugin_path(root: Path) -> Path:
    """A directory that makes ``tests/kill_model.py:slow_backend`` an installed
    ``wayport.backends`` plugin named ``slow-scripted`` (a bare ``.dist-info``, as pip would
    leave it)."""
    info = root / "wayport_kill_model-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: wayport-kill-model\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[wayport.backends]\nslow-scripted = kill_model:slow_backend\n"
    )
    return root


def serve_env(*path: Path, **more: str) -> dict[str, str]:
    """The environment of a ``wayport serve`` child: ``path`` on ``PYTHONPATH``, no API key."""
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(p) for p in path),
        "WAYPORT_API_KEY": "",
        "NO_COLOR": "1",
        **more,
    }


def start_serve(
    config: Path,
    env: Mapping[str, str],
    deadline: float,
    *,
    stderr: IO[Any] | int = subprocess.DEVNULL,
    tail: Callable[[], str] = lambda: "",
) -> tuple[subprocess.Popen[str], str]:
    """Start ``wayport serve --config config`` and wait (until ``deadline``, monotonic) for its
    ``ready on`` line; the process and its base URL. ``tail`` adds to a failure's message."""
    proc = subprocess.Popen(
        [WAYPORT, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=dict(env),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    out = proc.stdout
    assert out is not None

    def read() -> None:
        for line in out:
            lines.put(line)
        lines.put(None)  # the process closed its output: it exited

    threading.Thread(target=read, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"the server did not start in time{tail()}") from None
        assert line is not None, f"wayport serve exited with {proc.wait()}{tail()}"
        found = READY.search(line)
        if found:
            return proc, found.group(1)


def kill(proc: subprocess.Popen[str] | None) -> None:
    """SIGKILL ``proc`` and reap it."""
    assert proc is not None
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def terminate(proc: subprocess.Popen[str] | None, timeout: float) -> int | None:
    """SIGTERM ``proc`` (it drains) and its exit status; ``None`` when it was not running."""
    if proc is None or proc.poll() is not None:
        return None
    proc.terminate()
    return proc.wait(timeout=timeout)
