"""Every example in README.md and docs/*.md runs here, in order, against a real server.

Each fenced block is preceded by a marker saying how to run it:

- ``<!-- doc: serve -->``   bash; started in the background, waited for until it prints that it
  is ready, stopped with SIGTERM at the end of the file (it must then exit 0);
- ``<!-- doc: run -->``     bash; must exit 0 (``stdin="…"`` feeds input, ``expect="…"``
  must appear in the output);
- ``<!-- doc: python -->``  Python; must exit 0 (``expect="…"`` as above);
- ``<!-- doc: config -->``  a wayport.yaml; ``wayport check`` must accept it;
- ``<!-- doc: ci -->``      bash; must appear verbatim in .ci/run (it is the test command itself);
- ``<!-- doc: help -->``    bash of long-running commands (a benchmark run): each line runs from
  the repository root with ``--help`` appended, so the command and its flags must exist (what
  they do is covered by the tests of that tool);
- ``<!-- doc: output -->``  shows output; not run.

The documented port 8080 is replaced by a free port (``WAYPORT_PORT``) so runs never collide.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"<!-- doc: (?P<kind>[a-z-]+)(?P<args>[^>]*?)\s*-->\s*\n"
    r"```(?P<lang>[\w-]*)\n(?P<body>.*?)\n```",
    re.S,
)
ARG = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
FENCE = re.compile(r"^```", re.M)
KINDS = {"serve", "run", "python", "config", "ci", "help", "output"}


@dataclass(frozen=True, slots=True)
class Block:
    kind: str
    lang: str
    body: str
    args: dict[str, str]
    line: int


def blocks(path: Path) -> list[Block]:
    text = path.read_text()
    found = []
    for m in BLOCK.finditer(text):
        args = {k: v.encode().decode("unicode_escape") for k, v in ARG.findall(m["args"])}
        line = text.count("\n", 0, m.start()) + 1
        found.append(Block(m["kind"], m["lang"], m["body"], args, line))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_block_has_a_marker(path: Path) -> None:
    text = path.read_text()
    fences = len(FENCE.findall(text)) // 2
    marked = blocks(path)
    assert len(marked) == fences, f"{path.name}: {fences - len(marked)} code block(s) lack a marker"
    unknown = [b for b in marked if b.kind not in KINDS]
    assert not unknown, f"unknown marker kinds: {[(b.line, b.kind) for b in unknown]}"


class Session:
    """The background server and environment shared by one document's blocks."""

    def __init__(self, tmp: Path) -> None:
        self.port = _free_port()
        self.tmp = tmp
        self.env = {
            **os.environ,
            "WAYPORT_PORT": str(self.port),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
        }
        self.server: subprocess.Popen[str] | None = None
        self.server_log = tmp / "server.log"

    def local(self, text: str) -> str:
        return text.replace("8080", str(self.port))

    def serve(self, block: Block) -> None:
        assert self.server is None, "one server per document"
        log = self.server_log.open("w")
        self.server = subprocess.Popen(
            ["bash", "-c", self.local(block.body)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        assert self.server.stdout is not None
        for line in self.server.stdout:
            if "ready on" in line:
                return
        pytest.fail(f"server exited before it was ready:\n{self.server_log.read_text()[-4000:]}")

    def run(self, block: Block) -> str:
        argv = ["bash", "-c", self.local(block.body)]
        if block.kind == "python":
            argv = [sys.executable, "-c", self.local(block.body)]
        result = subprocess.run(
            argv,
            cwd=self.tmp,
            env=self.env,
            input=block.args.get("stdin", ""),
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"line {block.line} failed:\n{output[-4000:]}"
        if "expect" in block.args:
            assert block.args["expect"] in output, output
        return output

    def check_help(self, block: Block) -> None:
        for line in block.body.splitlines():
            command = line.split("#", 1)[0].strip()
            if not command:
                continue
            result = subprocess.run(
                ["bash", "-c", f"{command} --help"],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert result.returncode == 0, f"line {block.line}: {command}: {result.stderr}"

    def check_config(self, block: Block) -> None:
        path = self.tmp / f"example-{block.line}.yaml"
        path.write_text(block.body)
        env = {**self.env, "WAYPORT_API_KEY": secrets.token_urlsafe(32)}
        result = subprocess.run(
            [str(Path(sys.executable).parent / "wayport"), "check", str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"line {block.line}: {result.stdout}{result.stderr}"

    def stop(self) -> None:
        if self.server is None:
            return
        self.server.send_signal(signal.SIGTERM)
        try:
            code = self.server.wait(timeout=120)
        finally:
            if self.server.poll() is None:
                os.killpg(self.server.pid, signal.SIGKILL)
        assert code == 0, f"server exited {code}:\n{self.server_log.read_text()[-4000:]}"


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    s = Session(tmp_path)
    try:
        yield s
    finally:
        s.stop()


@pytest.mark.model
@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_examples_run(path: Path, session: Session) -> None:
    assert shutil.which("uv", path=session.env["PATH"]) or not any(
        "uv " in b.body for b in blocks(path)
    ), "uv is needed to run the documented commands: python3 -m pip install uv"
    ci_script = (ROOT / ".ci" / "run").read_text()
    for block in blocks(path):
        if block.kind == "serve":
            session.serve(block)
        elif block.kind in {"run", "python"}:
            session.run(block)
        elif block.kind == "config":
            session.check_config(block)
        elif block.kind == "help":
            session.check_help(block)
        elif block.kind == "ci":
            assert block.body in ci_script, f"line {block.line}: .ci/run must run {block.body!r}"
