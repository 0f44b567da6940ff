"""``wayport usage``: totals from the store as a table, CSV and JSON; records exported."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from wayport.cli.main import app
from wayport.core.usage import UsageRecord
from wayport.store import open_store
from wayport.store.usage import SqlUsageStore


def _seed(state_dir: Path) -> None:
    async def seed() -> None:
        async with await open_store(None, state_dir=state_dir) as store:
            await SqlUsageStore(store.db).record(
                [
                    UsageRecord(
                        tenant="default",
                        id=f"use-{i}",
                        at=1_750_000_000.0 + i,
                        kind="request",
                        model=model,
                        prompt_tokens=100,
                        completion_tokens=20,
                        cost=cost,
                        latency_ms=50.0,
                    )
                    for i, (model, cost) in enumerate(
                        [("gpt-4o-mini", 0.5), ("gpt-4o-mini", 0.25), ("smollm2", 0.0)]
                    )
                ]
            )

    asyncio.run(seed())


@pytest.fixture
def config(tmp_path: Path) -> Path:
    _seed(tmp_path / "state")
    path = tmp_path / "wayport.yaml"
    path.write_text(f"state_dir: {tmp_path / 'state'}\n")
    return path


def test_table_with_totals(config: Path) -> None:
    result = CliRunner().invoke(app, ["usage", "--config", str(config)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "gpt-4o-mini" in result.output and "smollm2" in result.output
    assert "$0.750000" in result.output  # the footer's total


def test_csv_and_json(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "usage.csv"
    result = CliRunner().invoke(
        app, ["usage", "-c", str(config), "--format", "csv", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["group"], r["requests"]) for r in rows] == [
        ("gpt-4o-mini", "2"),
        ("smollm2", "1"),
        ("total", "3"),
    ]
    result = CliRunner().invoke(app, ["usage", "-c", str(config), "-f", "json", "-g", "day"])
    body = json.loads(result.output)
    assert body["total"]["prompt_tokens"] == 300 and body["data"][0]["group"] == "2025-06-15"


def test_records_export(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "records.json"
    result = CliRunner().invoke(
        app, ["usage", "-c", str(config), "--records", "-f", "json", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in json.loads(out.read_text())] == ["use-0", "use-1", "use-2"]


def test_bad_options(config: Path) -> None:
    result = CliRunner().invoke(app, ["usage", "-c", str(config), "-g", "colour"])
    assert result.exit_code == 1 and "--group-by" in result.output
    result = CliRunner().invoke(app, ["usage", "-c", str(config), "--since", "yesterday"])
    assert result.exit_code == 1 and "since" in result.output
