from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

from wayport.testing import ManualClock


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """With WAYPORT_STRICT_SKIPS=1 (set by .ci/run) a skipped test is a failed test, so CI
    always runs the Postgres, Redis, browser and embedded-model tests."""
    outcome = yield
    report = outcome.get_result()
    strict = os.environ.get("WAYPORT_STRICT_SKIPS") == "1"
    if strict and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"skipped under WAYPORT_STRICT_SKIPS=1 (CI runs every test): {reason}"


@pytest.fixture
def clock() -> ManualClock:
    """A manual wall clock (mid-2025), for stores and services under test."""
    return ManualClock(start=1_750_000_000.0)


@pytest.fixture
def tenant() -> str:
    """A tenant of this test's own: on a shared database no test sees another's rows."""
    return f"t-{os.urandom(4).hex()}"
