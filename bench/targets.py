"""How each server of the comparison is started and asked whether it is ready.

Each start function returns once the server answers:

    mock, mock_url = start_mock(servers, cpus="1")
    target = start_floor(servers, mock_url, cpus="0")
    check_answer(target.chat_url, body, target.api_key)
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from procs import BENCH, ROOT, Server, Servers, StartError, free_port, python

#: The LiteLLM release measured; bench/.venv-litellm is created with exactly this.
LITELLM_REQUIREMENT = "litellm[proxy]==1.106.2"
LITELLM_VENV = BENCH / ".venv-litellm"
WAYPORT = ROOT / ".venv" / "bin" / "wayport"
WAYPORT_MOCK_CONFIG = BENCH / "wayport-mock.yaml"
MB = 1_000_000  #: decimal megabytes, the unit of the targets


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    base_url: str
    api_key: str | None = None
    server: Server | None = None

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"


def start_mock(servers: Servers, *, cpus: str | None, delay_ms: float = 0.0) -> tuple[Server, str]:
    """Start the mock upstream; return it and its base URL."""
    argv = [python(), str(BENCH / "mock_upstream.py"), "--port", "0"]
    if delay_ms:
        argv += ["--delay-ms", str(delay_ms)]
    server = servers.start("mock", argv, cpus=cpus)
    return server, server.wait_line("READY ", timeout=15).split()[1]


def start_floor(servers: Servers, upstream: str, *, cpus: str | None) -> Target:
    argv = [python(), str(BENCH / "floor_proxy.py"), "--upstream", upstream, "--port", "0"]
    server = servers.start("floor", argv, cpus=cpus)
    url = server.wait_line("READY ", timeout=30).split()[1]
    return Target(name="floor", base_url=url, server=server)


def wayport_missing() -> str | None:
    """Why ``wayport serve`` cannot be measured here, or None."""
    if not WAYPORT.exists():
        return f"{WAYPORT.relative_to(ROOT)} does not exist (run `uv sync`)"
    done = subprocess.run(
        [str(WAYPORT), "serve", "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    if done.returncode != 0:
        return f"`wayport serve --help` failed: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


def start_wayport(
    servers: Servers,
    *,
    name: str,
    cpus: str | None,
    config: Path | None,
    upstream: str | None = None,
    timeout: float = 120.0,
    cwd: Path = ROOT,
) -> tuple[Target, float]:
    """Start ``wayport serve``; return the target and seconds from spawn to ``/readyz`` 200.

    With ``config=None`` it runs on its built-in defaults (the embedded model): ``cwd`` should
    then be a folder without a ``wayport.yaml``, which it would otherwise pick up.
    """
    port = free_port()
    api_key = secrets.token_urlsafe(32)
    argv = [str(WAYPORT), "serve", "--host", "127.0.0.1", "--port", str(port)]
    if config is not None:
        argv[2:2] = ["--config", str(config)]
    env: dict[str, str | None] = {"WAYPORT_API_KEY": api_key, "WAYPORT_CONFIG": None}
    if upstream is not None:
        env["MOCK_UPSTREAM_URL"] = f"{upstream}/v1"
    server = servers.start(name, argv, cpus=cpus, env=env, cwd=cwd)
    base = f"http://127.0.0.1:{port}"
    ready = server.wait_http(f"{base}/readyz", timeout=timeout)
    return Target(name="wayport", base_url=base, api_key=api_key, server=server), ready


def idle_memory_mb(server: Server, settle: float = 1.0) -> tuple[float, float]:
    """RSS and PSS once start-up work (imports, lazy pools, GC) has settled."""
    time.sleep(settle)
    return server.rss_bytes() / MB, server.pss_bytes() / MB


def compile_bytecode() -> list[str]:
    """Compile every module of the project and of LiteLLM's virtualenv to bytecode.

    An installed wheel or a container image has its ``.pyc`` files; ``uv`` does not write
    them by default and this machine sets ``PYTHONDONTWRITEBYTECODE``, so without this step
    each start compiles every imported module from source (Wayport's ready time doubles) and
    LiteLLM, which retries a failing import on every request, compiles a module per request.
    Returns the commands that failed (a package shipping a file that does not compile).
    """
    failed = []
    for venv, extra in ((ROOT / ".venv", [ROOT / "src"]), (LITELLM_VENV, [])):
        interpreter = venv / "bin" / "python"
        if not interpreter.exists():
            continue
        paths = [*extra, *sorted((venv / "lib").glob("python3*/site-packages"))]
        argv = [str(interpreter), "-m", "compileall", "-q", "-j", "0", *map(str, paths)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if done.returncode != 0:
            failed.append(f"{' '.join(argv[:4])} ...: {done.stdout.strip()[-200:]}")
    return failed


def ensure_litellm() -> tuple[Path | None, str]:
    """Path of the ``litellm`` CLI in its own virtualenv, creating it if needed."""
    cli = LITELLM_VENV / "bin" / "litellm"
    if cli.exists():
        return cli, ""
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not installed, so bench/.venv-litellm cannot be created"
    for argv in (
        [uv, "venv", "-q", "--python", "3.11", str(LITELLM_VENV)],
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(LITELLM_VENV / "bin" / "python"),
            LITELLM_REQUIREMENT,
        ],
    ):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, cwd=ROOT)
        if done.returncode != 0:
            return None, f"{' '.join(argv)} failed: {done.stderr.strip()[-300:]}"
    return (cli, "") if cli.exists() else (None, "litellm CLI missing after install")


def litellm_version() -> str:
    done = subprocess.run(
        [
            str(LITELLM_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m; print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.strip() or "?"


def start_litellm(servers: Servers, cli: Path, upstream: str, *, cpus: str | None) -> Target:
    port = free_port()
    master_key = "sk-" + secrets.token_hex(24)
    env: dict[str, str | None] = {
        "MOCK_UPSTREAM_URL": f"{upstream}/v1",
        "LITELLM_MASTER_KEY": master_key,
        # Keep it off the internet: local cost map, no telemetry, no feedback banner, offline
        # tokenizers; proxies never apply to loopback.
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
        "LITELLM_LOG": "ERROR",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # No database and no cache: the proxy must run stateless, as documented.
        "DATABASE_URL": None,
        "REDIS_HOST": None,
        "REDIS_URL": None,
    }
    argv = [
        str(cli),
        "--config",
        str(BENCH / "litellm-config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--telemetry",
        "False",
    ]
    server = servers.start("litellm", argv, cpus=cpus, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        server.wait_http(f"{base}/health/readiness", timeout=180, interval=0.2)
    except StartError:
        servers.stop(server)
        raise
    return Target(name="litellm", base_url=base, api_key=master_key, server=server)
