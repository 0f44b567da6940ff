from __future__ import annotations

import asyncio
import os
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wayport.models.registry import ENTRY_POINT_GROUP
from wayport.testing.fake_upstream import FakeUpstream

ECHO_PLUGIN = """\
from wayport.testing import Reply, ScriptedBackend


def make(*, name: str, prefix: str = "seen") -> ScriptedBackend:
    # Answers with how many messages it was sent: shows that the history is kept.
    return ScriptedBackend(name, lambda request: Reply(f"{prefix} {len(request.messages)}"))
"""


@pytest.fixture
def runner() -> CliRunner:
    # The developer's own environment must not leak into the commands under test.
    return CliRunner(env={"WAYPORT_API_KEY": None, "WAYPORT_CONFIG": None})


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYPORT_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def threaded_upstream() -> Iterator[FakeUpstream]:
    """A FakeUpstream on its own event loop thread, for commands run synchronously by
    CliRunner (which would otherwise block the loop serving the fake)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-upstream", daemon=True)
    thread.start()
    fake = FakeUpstream()
    asyncio.run_coroutine_threadsafe(fake.__aenter__(), loop).result(timeout=30)
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.__aexit__(None, None, None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


@pytest.fixture
def echo_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed plugin distribution (on sys.path) registering the backend kind ``echo``."""
    site = tmp_path / "site"
    site.mkdir()
    module = f"wayport_echo_{tmp_path.name.replace('-', '_')}"
    (site / f"{module}.py").write_text(ECHO_PLUGIN)
    info = site / "wayport_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: wayport-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(f"""\
            [{ENTRY_POINT_GROUP}]
            echo = {module}:make
            """)
    )
    monkeypatch.syspath_prepend(str(site))
    return "echo"
