"""JSON logs: one object per line, request ids from contextvars, stdlib and uvicorn routed
through the same processors, secrets masked wherever they hide."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import structlog

from wayport.telemetry.logging import REDACTED, LogHandle, Redactor, configure_logging

SECRET = "wp-live-0123456789abcdef"


class Captured:
    def __init__(self, handle: LogHandle, stream: io.StringIO) -> None:
        self.handle = handle
        self.stream = stream

    def done(self) -> str:
        """Flush the writer thread and return everything written."""
        self.handle.close()
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.done().splitlines()]


@contextmanager
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
        root.setLevel(level)


@pytest.fixture
def capture() -> Iterator[Captured]:
    stream = io.StringIO()
    with restored_logging():
        handle = configure_logging("info", secrets=[SECRET], stream=stream)
        try:
            yield Captured(handle, stream)
        finally:
            handle.close()


def test_structlog_lines_are_json(capture: Captured) -> None:
    log = structlog.get_logger("wayport.test")
    tokens = structlog.contextvars.bind_contextvars(request_id="req-1")
    log.info("hello", answer=42)
    structlog.contextvars.reset_contextvars(**tokens)
    log.debug("hidden below the level")
    log.warning("after")
    first, second = capture.lines()
    assert first["event"] == "hello"
    assert first["answer"] == 42
    assert first["level"] == "info"
    assert first["logger"] == "wayport.test"
    assert first["request_id"] == "req-1"
    assert first["timestamp"].endswith("Z")
    assert second["event"] == "after"
    assert "request_id" not in second


def test_stdlib_and_uvicorn_records_are_routed(capture: Captured) -> None:
    logging.getLogger("some.library").warning("disk %s", "full")
    logging.getLogger("uvicorn.error").info("Started server process")
    lib, uvi = capture.lines()
    assert (lib["event"], lib["level"], lib["logger"]) == ("disk full", "warning", "some.library")
    assert (uvi["event"], uvi["logger"]) == ("Started server process", "uvicorn.error")


def test_exceptions_are_rendered_and_masked(capture: Captured) -> None:
    log = structlog.get_logger("wayport.test")
    try:
        raise ValueError(f"bad key {SECRET}")
    except ValueError:
        log.exception("failed")
        logging.getLogger("stdlib").exception("also failed")
    lines = capture.lines()
    assert SECRET not in capture.stream.getvalue()
    ours, theirs = lines
    assert "ValueError: bad key [REDACTED]" in ours["exception"]
    assert "ValueError: bad key [REDACTED]" in theirs["exception"]


def test_secrets_masked_everywhere(capture: Captured) -> None:
    log = structlog.get_logger("wayport.test")
    log.info(
        f"key is {SECRET}",
        nested={"headers": [("authorization", f"Bearer {SECRET}")], "other": b"sk-abcdef123456"},
        token="Authorization: bearer abc.def-ghi",
        obj=RuntimeError(f"boom {SECRET}"),
    )
    (line,) = capture.lines()
    for leaked in (SECRET, "sk-abcdef123456", "abc.def-ghi"):
        assert leaked not in capture.stream.getvalue()
    assert line["event"] == f"key is {REDACTED}"
    assert line["nested"]["headers"] == [["authorization", f"Bearer {REDACTED}"]]
    assert line["token"] == f"Authorization: bearer {REDACTED}"
    assert line["obj"] == f"boom {REDACTED}"


def test_redactor_leaves_ordinary_text_alone() -> None:
    redact = Redactor(["s3cr3t-value"])
    event = {"event": "skipped 3 tasks", "n": 3, "ok": True, "ratio": 0.5, "none": None}
    assert redact(None, "info", dict(event)) == event
    assert redact.scrub("risk-free and task-based") == "risk-free and task-based"
    assert redact.scrub("x s3cr3t-value y") == f"x {REDACTED} y"


def test_console_rendering_and_bad_level() -> None:
    out = io.StringIO()
    with restored_logging():
        handle = configure_logging("warning", json=False, secrets=[SECRET], stream=out)
        structlog.get_logger("wayport.test").warning("plain", key=SECRET)
        handle.close()
    assert "plain" in out.getvalue()
    assert SECRET not in out.getvalue()
    assert not out.getvalue().lstrip().startswith("{")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("loud")


def test_reconfiguring_replaces_the_writer() -> None:
    first, second = io.StringIO(), io.StringIO()
    before = list(logging.getLogger().handlers)
    with restored_logging():
        configure_logging("info", stream=first)
        handle = configure_logging("info", stream=second)
        structlog.get_logger("wayport.test").info("once")
        logging.getLogger("lib").info("twice")
        handle.close()
        assert logging.getLogger().handlers == before
    assert first.getvalue() == ""
    assert [json.loads(line)["event"] for line in second.getvalue().splitlines()] == [
        "once",
        "twice",
    ]
