"""``wayport keys`` and ``wayport audit`` in process on a SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from wayport.cli.main import app
from wayport.core.identity import parse_token


def test_keys_and_audit_commands(tmp_path: Path) -> None:
    config = tmp_path / "wayport.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\n")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == 0, result.output
        return result.stdout

    token = run("keys", "create", "--name", "ci", "--role", "deployer", "--scope", "chat").strip()
    tenant, key_id = parse_token(token) or ("", "")
    assert tenant == "default"
    listed = [json.loads(line) for line in run("keys", "list").splitlines()]
    assert [(k["id"], k["role"], k["scopes"]) for k in listed] == [(key_id, "deployer", ["chat"])]
    assert token not in json.dumps(listed)
    assert f"revoked wp_default_{key_id}" in run("keys", "revoke", key_id)
    lines = [json.loads(x) for x in run("audit", "export").splitlines()]
    assert [(x["action"], x["actor"]) for x in lines] == [
        ("key.create", "cli"),
        ("key.revoke", "cli"),
    ]
    assert run("audit", "export", "--format", "csv").startswith("seq,at,actor,action")
    assert "ok: 2 entries" in run("audit", "verify")
    bad = runner.invoke(app, ["keys", "create", "--role", "emperor", "--config", str(config)])
    assert bad.exit_code == 1 and "unknown role" in bad.output
    missing = runner.invoke(app, ["keys", "revoke", "zzzzzzzzzzzz", "--config", str(config)])
    assert missing.exit_code == 1
