"""Progress bars of the export commands on a real SQLite store: drawn on stderr when it is a
terminal (forced here with ``TTY_COMPATIBLE=1``, which rich honours), nothing at all on stderr
in a pipe, and never a byte of bar in the data on stdout."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from wayport.cli.main import app
from wayport.core.session import NewMessage
from wayport.store import open_store
from wayport.store.sealing import Sealer

ESC = "\x1b"
PIPE = {"TTY_COMPATIBLE": "0", "FORCE_COLOR": None, "WAYPORT_CONFIG": None}
TERMINAL = {"TTY_COMPATIBLE": "1", "FORCE_COLOR": None, "WAYPORT_CONFIG": None, "COLUMNS": "120"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "wayport.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n")
    return path


def invoke(config: Path, env: dict[str, str | None], *args: str) -> Result:
    result = CliRunner().invoke(app, [*args, "--config", str(config)], env=env)
    assert result.exit_code == 0, result.output
    return result


def seed_audit(config: Path, keys: int) -> None:
    for i in range(keys):
        invoke(config, PIPE, "keys", "create", "--name", f"k{i}", "--role", "viewer")


def seed_session(tmp_path: Path, user: str) -> None:
    async def seed() -> None:
        store = await open_store(None, state_dir=tmp_path / "state", sealer=Sealer.parse(None))
        try:
            s = await store.sessions.create("default", agent="a", metadata={"user": user})
            msg = NewMessage(message={"role": "user", "content": f"{user}'s note"})
            await store.sessions.append("default", s.id, [msg])
        finally:
            await store.close()

    asyncio.run(seed())


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_audit_export_draws_a_bar_only_on_a_terminal(config: Path, fmt: str) -> None:
    seed_audit(config, 3)
    piped = invoke(config, PIPE, "audit", "export", "--format", fmt)
    shown = invoke(config, TERMINAL, "audit", "export", "--format", fmt)

    assert piped.stderr == ""
    assert ESC not in piped.stdout
    assert shown.stdout == piped.stdout  # the data is the same, byte for byte
    assert "Exporting audit log" in shown.stderr
    assert ESC in shown.stderr
    if fmt == "jsonl":
        lines = [json.loads(x) for x in piped.stdout.splitlines()]
        assert [x["action"] for x in lines] == ["key.create"] * 3
        assert "3/?" in shown.stderr  # no total known up front: the count so far
    else:
        assert len(piped.stdout.splitlines()) == 4  # header and three entries


def test_privacy_export_draws_its_steps_only_on_a_terminal(config: Path, tmp_path: Path) -> None:
    seed_session(tmp_path, "carol")
    args = ("privacy", "export", "--user", "carol")
    piped = invoke(config, PIPE, *args)
    shown = invoke(config, TERMINAL, *args)

    assert piped.stderr == ""
    assert ESC not in piped.stdout
    data = json.loads(shown.stdout)  # stdout stays pure JSON on a terminal too
    assert data["sessions"][0]["messages"][0]["content"] == "carol's note"
    assert ESC in shown.stderr
    assert "3/3" in shown.stderr

    written = tmp_path / "carol.json"
    to_file = invoke(config, PIPE, *args, "--output", str(written))
    assert json.loads(written.read_text()) == data
    assert ESC not in to_file.stderr
    assert "wrote" in to_file.stderr


def test_reencrypt_draws_a_bar_only_on_a_terminal(config: Path, tmp_path: Path) -> None:
    seed_session(tmp_path, "dave")
    key = CliRunner().invoke(app, ["store", "keygen", "k2"]).output.strip()
    piped = invoke(config, {**PIPE, "WAYPORT_ENCRYPTION_KEYS": key}, "store", "reencrypt")
    again = invoke(config, {**TERMINAL, "WAYPORT_ENCRYPTION_KEYS": key}, "store", "reencrypt")

    assert piped.stderr == ""
    assert ESC not in piped.stdout
    assert "re-sealed 1 of 2 rows with key 'k2'" in piped.stdout
    assert "re-sealing" in again.stderr
    assert ESC in again.stderr
    assert "re-sealed 0 of 2 rows" in again.stdout
