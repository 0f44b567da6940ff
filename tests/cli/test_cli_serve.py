"""``wayport serve`` as a real process: readiness, auth from the environment, a graceful drain
on SIGTERM, refusals."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

WAYPORT = str(Path(sys.executable).parent / "wayport")  # the installed console script
STRONG_KEY = "Zq3-Rt8vL0pXa7Nc2WbYe9HkUf4Jd6Gs1Mo5"
READY = re.compile(r"ready on (http://127\.0\.0\.1:\d+)")
HANG_GUARD = 60  # seconds; only ends a test that would otherwise hang, never decides a result


def chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-gated",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class GatedUpstream:
    """An OpenAI-compatible upstream whose stream sends its first token, then waits for
    ``release`` before finishing: a slow stream the test controls."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.url = ""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(chunk({"role": "assistant", "content": "Hello"}))
        await self.release.wait()
        await resp.write(chunk({"content": " world"}))
        await resp.write(chunk({}, "stop"))
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[GatedUpstream]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        try:
            yield self
        finally:
            self.release.set()
            await runner.cleanup()


def write_config(tmp_path: Path, upstream_url: str, extra: str = "") -> Path:
    path = tmp_path / "wayport.yaml"
    path.write_text(
        f"server:\n  drain_timeout: 30\n{extra}"
        f"state_dir: {tmp_path / 'state'}\n"
        "deployments:\n"
        f"  up: {{backend: openai, base_url: '{upstream_url}', model: m}}\n"
        "models:\n  chat: {deployments: [up]}\n"
    )
    return path


class ServeProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr: list[str] = []
        self.draining = asyncio.Event()
        self._reader = asyncio.create_task(self._read_stderr())

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode()
            self.stderr.append(line)
            if '"event": "draining in-flight requests"' in line:
                self.draining.set()

    async def base_url(self) -> str:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            found = READY.search(raw.decode())
            if found:
                return found.group(1)
        raise AssertionError("serve exited before it was ready:\n" + "".join(self.stderr))

    async def wait(self) -> int:
        code = await self.proc.wait()
        await self._reader
        return code


@asynccontextmanager
async def serve(config: Path, env: dict[str, str]) -> AsyncIterator[ServeProcess]:
    proc = await asyncio.create_subprocess_exec(
        WAYPORT,
        "serve",
        "--config",
        str(config),
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    server = ServeProcess(proc)
    try:
        yield server
    finally:
        if proc.returncode is None:
            proc.kill()
        await server.wait()


async def wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    """Poll /readyz until the server says it is ready."""
    while True:
        try:
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)


@pytest.mark.anyio
async def test_sigterm_lets_a_stream_in_flight_finish_then_exits_0(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    upstream = GatedUpstream()
    env = {**subprocess_env, "WAYPORT_API_KEY": STRONG_KEY}
    auth = {"authorization": f"Bearer {STRONG_KEY}"}
    async with upstream.serve(), asyncio.timeout(HANG_GUARD):
        config = write_config(tmp_path, upstream.url)
        async with serve(config, env) as server, aiohttp.ClientSession() as session:
            base = await server.base_url()
            await wait_ready(session, base)
            # The key came from the environment: requests without it are refused.
            async with session.get(f"{base}/v1/models") as resp:
                assert resp.status == 401
            body = {
                "model": "chat",
                "stream": True,
                "messages": [{"role": "user", "content": "hi"}],
            }
            async with session.post(f"{base}/v1/chat/completions", json=body, headers=auth) as resp:
                assert resp.status == 200
                received = b""
                while b"Hello" not in received:
                    received += await resp.content.readline()

                server.proc.send_signal(signal.SIGTERM)
                await server.draining.wait()
                upstream.release.set()
                received += await resp.content.read()

            assert await server.wait() == 0, "".join(server.stderr)
    events = [line for line in received.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    text = "".join(
        json.loads(e[6:])["choices"][0]["delta"].get("content") or ""
        for e in events[:-1]
        if json.loads(e[6:])["choices"]
    )
    assert text == "Hello world"
    assert any('"event": "Application shutdown complete."' in line for line in server.stderr)
    assert not any(STRONG_KEY in line for line in server.stderr)


@pytest.mark.anyio
async def test_sigint_without_requests_exits_0(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    async with asyncio.timeout(HANG_GUARD), serve(config, subprocess_env) as server:
        await server.base_url()
        server.proc.send_signal(signal.SIGINT)
        assert await server.wait() == 0


def run_serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [WAYPORT, "serve", *args], env=env, capture_output=True, text=True, timeout=HANG_GUARD
    )


def test_non_loopback_bind_without_a_key_is_refused(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    result = run_serve("--config", str(config), "--host", "0.0.0.0", env=subprocess_env)
    assert result.returncode == 2
    assert "refusing to listen on '0.0.0.0' without an API key" in result.stderr
    assert "export WAYPORT_API_KEY=" in result.stderr
    assert result.stdout == ""


def test_non_loopback_bind_in_the_file_is_refused_too(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", extra="  host: '::'\n")
    result = run_serve("--config", str(config), env=subprocess_env)
    assert result.returncode == 2
    assert f"{config}:3: server.host: refusing to listen on '::'" in result.stderr


def test_an_invalid_config_exits_1_with_the_location(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/v1", extra="  port: eighty\n")
    result = run_serve("--config", str(config), env=subprocess_env)
    assert result.returncode == 1
    assert f"{config}:3: server.port: Input should be a valid integer" in result.stderr


@pytest.mark.anyio
async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> None:
    """uvicorn would believe X-Forwarded-For from 127.0.0.1 by default; `serve` leaves that to
    the app, which trusts only ``server.trusted_proxies`` (none here)."""
    config = write_config(tmp_path, "http://127.0.0.1:9/v1")
    async with asyncio.timeout(HANG_GUARD), serve(config, subprocess_env) as server:
        base = await server.base_url()
        async with aiohttp.ClientSession() as session:
            forged = {"x-forwarded-for": "203.0.113.9", "x-request-id": "forged-xff"}
            async with session.get(f"{base}/healthz", headers=forged) as resp:
                assert resp.status == 200
        server.proc.send_signal(signal.SIGTERM)
        assert await server.wait() == 0
    access = [json.loads(line) for line in server.stderr if '"forged-xff"' in line]
    assert access, "".join(server.stderr)
    assert access[0]["client"] == "127.0.0.1"
    assert "203.0.113.9" not in "".join(server.stderr)
