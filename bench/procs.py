"""Process plumbing for the harness: start servers pinned to cores, wait until they answer,
read their memory, stop them. Standard library only, so ``python bench/run.py`` works from
any Python 3.11+.

    with Servers(log_dir) as servers:
        mock = servers.start("mock", [python(), "bench/mock_upstream.py"], cpus="1")
        url = mock.wait_line("READY ", timeout=10).split()[1]
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


class StartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


def python() -> str:
    """The project's interpreter (it has uvloop, aiohttp, uvicorn), else this one."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def pinned(argv: Sequence[str], cpus: str | None) -> list[str]:
    """``argv`` under ``taskset -c cpus`` where taskset exists and the cores do."""
    if cpus is None or shutil.which("taskset") is None:
        return list(argv)
    wanted = {int(c) for c in cpus.split(",")}
    if not wanted <= os.sched_getaffinity(0):
        return list(argv)
    return ["taskset", "-c", cpus, *argv]


def free_port() -> int:
    """A port that was free a moment ago, for servers that cannot be told to take port 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> int:
    """Status of ``GET url``; 0 when nothing answers."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/", headers=dict(headers or {}))
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


class Server:
    """One started process with its log file."""

    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], log: Path, started_at: float
    ) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self.started_at = started_at  #: ``perf_counter()`` just before the spawn

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise StartError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")

    def wait_line(self, prefix: str, timeout: float) -> str:
        """The first log line starting with ``prefix`` (servers print ``READY url``)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with contextlib.suppress(OSError):
                for line in self.log.read_text(errors="replace").splitlines():
                    if line.startswith(prefix):
                        return line
            self._check_alive()
            time.sleep(0.01)
        raise StartError(f"{self.name}: no {prefix!r} line in {timeout:g}s:\n{self.log_tail()}")

    def wait_http(
        self,
        url: str,
        timeout: float,
        interval: float = 0.005,
        headers: Mapping[str, str] | None = None,
    ) -> float:
        """Poll ``GET url`` until it answers 200; return seconds since the process started."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if http_get(url, timeout=1.0, headers=headers) == 200:
                return time.perf_counter() - self.started_at
            self._check_alive()
            time.sleep(interval)
        raise StartError(f"{self.name}: {url} not ready in {timeout:g}s:\n{self.log_tail()}")

    def rss_bytes(self) -> int:
        """Resident memory of the process and all its descendants."""
        return sum(_status_kb(pid, "VmRSS:") for pid in (self.pid, *_descendants(self.pid))) * 1024

    def cpu_seconds(self) -> float:
        """User plus system CPU time used so far by the process and its descendants."""
        return sum(_cpu_ticks(pid) for pid in (self.pid, *_descendants(self.pid))) / _TICKS

    def pss_bytes(self) -> int:
        """Proportional set size of the process and its descendants: like RSS, but a page
        mapped twice (the same weights file opened by two model slots) counts once."""
        pids = (self.pid, *_descendants(self.pid))
        return sum(_status_kb(pid, "Pss:", "smaps_rollup") for pid in pids) * 1024

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout)


class Servers:
    """Starts servers into ``log_dir`` and stops every one of them on exit, whatever happens."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: list[Server] = []

    def __enter__(self) -> Servers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for server in reversed(self._running):
            server.stop()
        self._running.clear()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpus: str | None = None,
        env: Mapping[str, str | None] | None = None,
        cwd: Path = ROOT,
    ) -> Server:
        """Start ``argv`` in ``cwd`` with ``env`` over this process's environment (a None
        value unsets a variable)."""
        log = self.log_dir / f"{name}.log"
        merged = dict(os.environ)
        for key, value in (env or {}).items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        started_at = time.perf_counter()
        with log.open("wb") as out:
            # A session of its own, so that stop() reaches workers the server forks.
            popen = subprocess.Popen(
                pinned(argv, cpus),
                cwd=cwd,
                env=merged,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server = Server(name, popen, log, started_at)
        self._running.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self._running:
            self._running.remove(server)


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # utime and stime are fields 14 and 15; the name (field 2) may hold spaces.
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _status_kb(pid: int, field: str, file: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{file}") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; fields resume after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def ensure_wrk() -> tuple[str | None, str]:
    """Path of ``wrk`` (installing the Debian package if missing), or ``None`` and why not."""
    found = shutil.which("wrk")
    if found:
        return found, ""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return None, "wrk is not installed and apt-get cannot run here (not root or not Debian)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            return None, f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}"
    found = shutil.which("wrk")
    return (found, "") if found else (None, "apt-get installed wrk but it is not on PATH")
