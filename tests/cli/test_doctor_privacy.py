"""``wayport doctor``, ``wayport privacy`` and ``wayport store`` against real files and a real
SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wayport.cli.main import app
from wayport.core.session import NewMessage
from wayport.store import open_store
from wayport.store.sealing import Sealer

SAFE = "models: {m: {deployments: [d]}}\ndeployments: {d: {backend: llamacpp}}\n"


def _doctor(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    path = tmp_path / "wayport.yaml"
    path.write_text(text)
    result = CliRunner().invoke(
        app, ["doctor", "--config", str(path)], env={"COLUMNS": "200", **(env or {})}
    )
    return result.exit_code, result.output


def test_doctor_flags_unsafe_settings(tmp_path: Path) -> None:
    code, output = _doctor(
        tmp_path,
        "server:\n  host: 0.0.0.0\n  cors_origins: ['*']\n  trusted_proxies: [0.0.0.0/0]\n"
        "  outbound_allow: [169.254.0.0/16, 10.0.0.0/8]\n"
        "deployments: {up: {backend: openai, base_url: 'http://10.1.2.3/v1', model: m}}\n"
        "models: {m: {deployments: [up]}}\n",
    )
    assert code == 1
    for expected in (
        "server.host",
        "server.cors_origins",
        "server.trusted_proxies",
        "cloud metadata",
        "10.0.0.0/8",
        "plaintext http to 10.1.2.3",
        "store.encryption_keys",
        "store.retention_days",
    ):
        assert expected in output, expected


def test_doctor_passes_a_hardened_config(tmp_path: Path) -> None:
    key = CliRunner().invoke(app, ["store", "keygen", "k1"]).output.strip()
    code, output = _doctor(
        tmp_path,
        SAFE + "store: {retention_days: 30}\n",
        env={"WAYPORT_ENCRYPTION_KEYS": key, "WAYPORT_API_KEY": "Zt8-qLw2Vn5xRb9Kc4Hs7Jd1Mf6Pg3Ty"},
    )
    assert code == 0, output
    assert "no findings" in output


def test_doctor_reports_a_refused_config(tmp_path: Path) -> None:
    code, output = _doctor(tmp_path, SAFE, env={"WAYPORT_API_KEY": "changeme"})
    assert code == 1
    assert "refused" in output


def test_privacy_and_reencrypt_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    old = runner.invoke(app, ["store", "keygen", "old"]).output.strip()
    new = runner.invoke(app, ["store", "keygen", "new"]).output.strip()
    config = tmp_path / "wayport.yaml"
    config.write_text(SAFE + f"state_dir: {tmp_path / 'state'}\nstore: {{retention_days: 1}}\n")

    async def seed() -> str:
        store = await open_store(None, state_dir=tmp_path / "state", sealer=Sealer.parse(old))
        try:
            s = await store.sessions.create("default", agent="a", metadata={"user": "carol"})
            msg = NewMessage(message={"role": "user", "content": "carol's secret"})
            await store.sessions.append("default", s.id, [msg])
            return s.id
        finally:
            await store.close()

    sid = asyncio.run(seed())
    env = {"WAYPORT_ENCRYPTION_KEYS": f"{new},{old}", "COLUMNS": "200"}
    exported = runner.invoke(
        app, ["privacy", "export", "--user", "carol", "-c", str(config)], env=env
    )
    assert exported.exit_code == 0, exported.output
    data = json.loads(exported.output)
    assert data["sessions"][0]["messages"][0]["content"] == "carol's secret"
    resealed = runner.invoke(app, ["store", "reencrypt", "-c", str(config)], env=env)
    assert resealed.exit_code == 0, resealed.output
    assert "re-sealed 1 of 2 rows with key 'new'" in resealed.output
    only_new = {"WAYPORT_ENCRYPTION_KEYS": new}
    again = runner.invoke(
        app, ["privacy", "export", "--session", sid, "-c", str(config)], env=only_new
    )
    assert again.exit_code == 0, again.output
    assert "carol's secret" in again.output
    assert runner.invoke(app, ["privacy", "export", "-c", str(config)], env=env).exit_code == 1
    swept = runner.invoke(app, ["privacy", "sweep", "-c", str(config)], env=only_new)
    assert swept.exit_code == 0 and "deleted 0 sessions" in swept.output  # not a day idle yet
    deleted = runner.invoke(
        app, ["privacy", "delete", "--user", "carol", "-c", str(config)], env=only_new
    )
    assert deleted.exit_code == 0 and "deleted 1 sessions" in deleted.output
