"""Structured logs: one JSON object per line, secrets masked, stdlib and uvicorn included.

    handle = configure_logging("info", secrets=[settings.api_key])
    log = structlog.get_logger("wayport")
    log.info("started", port=8080)
    # {"event": "started", "port": 8080, "level": "info", "logger": "wayport",
    #  "timestamp": "2025-01-01T00:00:00.000000Z", "request_id": "req-…"}
    handle.close()  # flush and detach (at exit this happens by itself)

``request_id`` (and anything else) bound with ``structlog.contextvars.bind_contextvars`` appears
on every line logged in that context, stdlib records included. Lines are rendered and masked in
the caller and written by a background thread, so a slow log pipe never stalls the event loop.
structlog's own loggers skip the stdlib machinery (an access-log line costs microseconds).
Run uvicorn with ``log_config=None`` so that it keeps these handlers.
"""

from __future__ import annotations

import atexit
import logging
import queue
import sys
import threading
from collections.abc import Iterable
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from wayport.core.redaction import REDACTED, SECRETS, SecretRedactor, redact, register

__all__ = [
    "REDACTED",
    "LogHandle",
    "Redactor",
    "configure_logging",
    "redact",
    "register_secrets",
]
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


class Redactor:
    """A structlog processor that masks secrets anywhere in the event dict: every configured
    secret value, bearer tokens and ``sk-…`` keys. Values that are not plain data are turned
    into (masked) text first, so no ``repr`` can smuggle a secret past it.

    ``secrets`` join ``registry`` (the process-wide one by default, which the configuration
    loader fills), so logs, traces and error bodies all mask the same values."""

    def __init__(self, secrets: Iterable[str] = (), *, registry: SecretRedactor = SECRETS) -> None:
        registry.add(secrets)
        self._registry = registry

    def __call__(self, logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
        return {key: self.clean(value) for key, value in event_dict.items()}

    def clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {self.clean(k): self.clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.clean(v) for v in value]
        if isinstance(value, bytes):
            return self.scrub(value.decode("utf-8", "replace"))
        return self.scrub(str(value))

    def scrub(self, text: str) -> str:
        return self._registry.redact(text)


def register_secrets(secrets: Iterable[str]) -> None:
    """Mask these values in every log line, trace attribute and error body from now on."""
    register(secrets)


class _Writer:
    """Writes finished lines from a queue on a daemon thread."""

    _STOP = object()

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="wayport-log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, line: str) -> None:
        self._queue.put(line)

    def stop(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                self._stream.flush()
                return
            self._stream.write(f"{item}\n")
            if self._queue.empty():
                self._stream.flush()


class _LineLogger:
    """What a structlog logger writes into: a named queue entrance."""

    __slots__ = ("_writer", "name")

    def __init__(self, writer: _Writer, name: str) -> None:
        self._writer = writer
        self.name = name

    def msg(self, message: str) -> None:
        self._writer.put(message)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _LineLoggerFactory:
    def __init__(self, writer: _Writer) -> None:
        self._writer = writer

    def __call__(self, *args: Any) -> _LineLogger:
        return _LineLogger(self._writer, str(args[0]) if args else "wayport")


class _StdlibHandler(logging.Handler):
    """Renders stdlib records (uvicorn's too) with the same processors, in the caller."""

    def __init__(self, writer: _Writer, formatter: logging.Formatter, owner: LogHandle) -> None:
        super().__init__()
        self._writer = writer
        self.owner = owner
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._writer.put(self.format(record))
        except RecursionError:
            raise
        except Exception:  # noqa: BLE001 - logging's contract: report and go on
            self.handleError(record)


def _add_logger_name(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict["logger"] = name
    return event_dict


class LogHandle:
    """The running log writer; ``close()`` flushes what is queued and detaches it."""

    def __init__(
        self, writer: _Writer, formatter: logging.Formatter, factory: _LineLoggerFactory
    ) -> None:
        self._writer = writer
        self._factory = factory
        self.handler = _StdlibHandler(writer, formatter, self)
        self._open = False

    def start(self) -> None:
        self._writer.start()
        self._open = True
        atexit.register(self.close)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        atexit.unregister(self.close)
        logging.getLogger().removeHandler(self.handler)
        if structlog.get_config()["logger_factory"] is self._factory:
            # Nobody would drain the queue any more: fall back to structlog's defaults.
            structlog.reset_defaults()
        self._writer.stop()


def configure_logging(
    level: str,
    json: bool = True,
    secrets: Iterable[str] = (),
    *,
    stream: TextIO | None = None,
) -> LogHandle:
    """Route structlog and stdlib logging (uvicorn's too) through one redacting renderer.

    ``level`` is a stdlib level name (``"info"``, ``"DEBUG"`` …); ``json=False`` renders for
    humans; ``secrets`` are masked wherever they appear; ``stream`` defaults to stderr.
    Calling it again replaces the previous configuration.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    redactor = Redactor(secrets)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            timestamper,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
    )
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StdlibHandler):
            handler.owner.close()
    writer = _Writer(stream if stream is not None else sys.stderr)
    factory = _LineLoggerFactory(writer)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            _add_logger_name,
            timestamper,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handle = LogHandle(writer, formatter, factory)
    root.addHandler(handle.handler)
    root.setLevel(numeric)
    for name in _UVICORN_LOGGERS:
        # uvicorn's own handlers would print unredacted, non-JSON lines beside ours.
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    handle.start()
    return handle
