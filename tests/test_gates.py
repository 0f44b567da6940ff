"""The project's static gates run as part of the one test command: ruff, mypy and the
import-linter layer contracts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CODE = [p for p in ("src", "tests", "bench") if (ROOT / p).is_dir()]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize(
    "cmd",
    [
        pytest.param((str(BIN / "ruff"), "check", *CODE), id="ruff"),
        pytest.param((str(BIN / "ruff"), "format", "--check", *CODE), id="format"),
        pytest.param((str(BIN / "mypy"),), id="mypy"),
        pytest.param((str(BIN / "lint-imports"),), id="import-contracts"),
    ],
)
def test_gate(cmd: tuple[str, ...]) -> None:
    result = _run(*cmd)
    assert result.returncode == 0, result.stdout + result.stderr
