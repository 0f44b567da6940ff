"""What the HTTP model backends share: one pooled aiohttp session per backend, the three
timeouts, Server-Sent Events reading, and the translation of everything an upstream can do
wrong into ``wayport.core.errors``.

    client = UpstreamClient(name="vllm-a", headers={"authorization": "Bearer ..."},
                            timeouts=Timeouts(connect=5, first_byte=60, total=600),
                            max_connections=100, secret="...")
    await client.start()
    raw = await client.post("http://127.0.0.1:8000/v1/chat/completions", body, timeout=30)
    async with aclosing(client.events(url, body, timeout=30)) as events:
        async for event in events: ...
    await client.close()

The backend decides what the bytes mean; this module only guarantees that what escapes is a
``WayportError`` and that no message carries the configured secret.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import msgspec

from wayport.core.errors import (
    BackendError,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ConfigError,
    ContextWindowExceeded,
    UpstreamRateLimited,
    WayportError,
)
from wayport.models.sse import SSEEvent, SSEParser

__all__ = [
    "ErrorInfo",
    "Timeouts",
    "UpstreamClient",
    "error_info",
    "map_error",
    "parse_retry_after",
    "translate",
]

T = TypeVar("T")

_MAX_MESSAGE = 1000
_WAITING = " waiting for the first byte"
_READING = " reading the answer"
_UNAVAILABLE_STATUSES = frozenset({500, 502, 503, 504, 529})
_CONTEXT_RE = re.compile(
    r"context[ _-]?(length|window|size)|maximum context|prompt is too long|too many tokens"
    r"|exceeds? the (available |maximum )?context",
    re.IGNORECASE,
)
# Error ``type``/``code`` strings (OpenAI, Anthropic, vLLM …) seen without an HTTP status,
# as in an error event in the middle of a stream.
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "api_error": 500,
    "server_error": 500,
    "internal_error": 500,
    "service_unavailable": 503,
    "overloaded_error": 529,
    "timeout": 408,
    "timeout_error": 408,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds allowed to open the socket, to see the first byte (response headers, and for
    streams the first event) and for the whole request."""

    connect: float = 5.0
    first_byte: float = 60.0
    total: float = 600.0

    def __post_init__(self) -> None:
        if min(self.connect, self.first_byte, self.total) <= 0:
            raise ConfigError(f"timeouts must be positive, got {self}")

    def bound(self, deadline: float | None) -> Timeouts:
        """These timeouts, each capped by ``deadline`` (time left to the caller) and by the
        total; raises ``BackendTimeout`` when no time is left at all."""
        total = self.total if deadline is None else min(self.total, deadline)
        if total <= 0:
            raise BackendTimeout("no time left in the request deadline")
        return Timeouts(
            connect=min(self.connect, total), first_byte=min(self.first_byte, total), total=total
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorInfo:
    """The parts of an upstream error body that decide how it is mapped."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None
    status: int | None = None  #: an HTTP status the body itself names (vLLM puts it in code)


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP-date).

    >>> parse_retry_after({"retry-after": "2"})
    2.0
    >>> parse_retry_after({"retry-after-ms": "1500"})
    1.5
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000.0, 0.0)
        except ValueError:
            pass  # an unusable ms header falls back to Retry-After
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass  # not a number: an HTTP-date
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def error_info(body: object, *, fallback: str) -> ErrorInfo:
    """Read the error out of a decoded body in any of the shapes upstreams use:
    ``{"error": {...}}`` (OpenAI, vLLM), ``{"type": "error", "error": {...}}`` (Anthropic),
    ``{"error": "text"}`` (Ollama), ``{"detail": ...}`` or ``{"message": ...}``."""
    if not isinstance(body, dict):
        return ErrorInfo(message=fallback)
    inner = body.get("error")
    if isinstance(inner, str):
        return ErrorInfo(message=inner or fallback)
    src: dict[str, Any] = inner if isinstance(inner, dict) else body
    message = src.get("message") or src.get("detail") or fallback
    code = src.get("code")
    param = src.get("param")
    kind = src.get("type")
    return ErrorInfo(
        message=message if isinstance(message, str) else str(message),
        type=kind if isinstance(kind, str) and kind != "error" else None,
        code=code if isinstance(code, str) else None,
        param=param if isinstance(param, str) else None,
        status=code if isinstance(code, int) and 100 <= code < 600 else None,
    )


def map_error(
    *, backend: str, status: int | None, info: ErrorInfo, retry_after: float | None = None
) -> WayportError:
    """The ``wayport.core.errors`` exception for an upstream failure. ``status`` is the HTTP
    status, or ``None`` for an error reported inside a stream (then the body decides)."""
    if status is None:
        status = (
            info.status or _TYPE_STATUS.get(info.code or "") or _TYPE_STATUS.get(info.type or "")
        )
        where = "reported an error"
    else:
        where = f"returned HTTP {status}"
    text = info.message[:_MAX_MESSAGE]
    message = f"upstream {backend!r} {where}: {text}"
    context = info.code == "context_length_exceeded" or bool(_CONTEXT_RE.search(text))
    if context and status in (None, 400, 413, 422):
        return ContextWindowExceeded(message, param=info.param)
    if status == 429:
        return UpstreamRateLimited(message, retry_after=retry_after)
    if status == 408:
        return BackendTimeout(message)
    if status in (401, 403):
        return BackendError(message, code="upstream_auth")
    if status in _UNAVAILABLE_STATUSES:
        return BackendUnavailable(message, retry_after=retry_after)
    if status is not None and 400 <= status < 500:
        return BackendRejected(message, param=info.param, code=info.code)
    return BackendError(message, code="upstream_error")


def translate(exc: BaseException, backend: str, *, during: str = "") -> WayportError:
    """A transport failure as a ``WayportError`` (timeouts first: some are also OSErrors).
    ``during`` says what was being waited for, for the timeout message."""
    if isinstance(exc, WayportError):
        return exc
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return BackendTimeout(f"upstream {backend!r} timed out connecting")
    if isinstance(exc, TimeoutError):
        return BackendTimeout(f"upstream {backend!r} timed out{during}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return BackendUnavailable(f"cannot connect to upstream {backend!r}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return BackendUnavailable(f"connection to upstream {backend!r} lost: {type(exc).__name__}")
    return BackendError(f"request to upstream {backend!r} failed: {type(exc).__name__}")


class UpstreamClient:
    """One aiohttp session (and so one connection pool) for one backend."""

    def __init__(
        self,
        *,
        name: str,
        headers: Mapping[str, str],
        timeouts: Timeouts,
        max_connections: int = 100,
        secret: str | None = None,
    ) -> None:
        self.name = name
        self._headers = dict(headers)
        self._timeouts = timeouts
        self._max_connections = max_connections
        self._secret = secret or None
        self._session: aiohttp.ClientSession | None = None
        # Reused for every request that brings no deadline of its own.
        self._unbounded = timeouts.bound(None)
        self._default = self._client_timeout(self._unbounded)

    async def start(self) -> None:
        if self._session is not None and not self._session.closed:
            return
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, ttl_dns_cache=300, keepalive_timeout=30.0
        )
        self._session = aiohttp.ClientSession(
            connector=connector, headers=self._headers, raise_for_status=False
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def ready(self) -> bool:
        return self._session is not None and not self._session.closed

    async def post(
        self, url: str, body: bytes, *, timeout: float | None, headers: Mapping[str, str] | None
    ) -> bytes:
        """POST ``body``; return the body of a 2xx answer, raise the mapped error otherwise."""
        session, client_timeout, first_byte = self._prepare(timeout)
        phase = _WAITING
        try:
            async with asyncio.timeout(first_byte):
                resp = await session.post(
                    url, data=body, headers=headers, timeout=client_timeout, allow_redirects=False
                )
            phase = _READING
            try:
                raw = await resp.read()
            finally:
                resp.release()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise translate(exc, self.name, during=phase) from exc
        if not 200 <= resp.status < 300:
            raise self.http_error(resp.status, resp.headers, raw)
        return raw

    async def events(
        self, url: str, body: bytes, *, timeout: float | None, headers: Mapping[str, str] | None
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` and yield the SSE events of the answer until the upstream ends it.

        The first-byte timeout runs until the first event; after that only the total does.
        Closing the iterator early gives the connection back (closed, if it was mid-body).
        """
        batches = self.event_batches(url, body, timeout=timeout, headers=headers)
        async with aclosing(batches):
            async for batch in batches:
                for event in batch:
                    yield event

    async def event_batches(
        self, url: str, body: bytes, *, timeout: float | None, headers: Mapping[str, str] | None
    ) -> AsyncGenerator[list[SSEEvent], None]:
        """Like ``events``, but the events that one read off the socket completed come as one
        list (never empty), so a consumer can handle them, and write them on, together."""
        session, client_timeout, first_byte = self._prepare(timeout)
        parser = SSEParser()
        resp: aiohttp.ClientResponse | None = None
        pending: list[SSEEvent] = []
        eof = False
        try:
            try:
                async with asyncio.timeout(first_byte):
                    resp = await session.post(
                        url,
                        data=body,
                        headers=headers,
                        timeout=client_timeout,
                        allow_redirects=False,
                    )
                    if not 200 <= resp.status < 300:
                        raise self.http_error(resp.status, resp.headers, await resp.read())
                    if resp.content_type == "application/json":
                        raise self._json_instead_of_stream(await resp.read())
                    while not pending and not eof:
                        chunk = await resp.content.readany()
                        pending = parser.feed(chunk) if chunk else parser.finish()
                        eof = not chunk
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise translate(exc, self.name, during=_WAITING) from exc
            content = resp.content
            while True:
                if pending:
                    yield pending
                if eof:
                    return
                try:
                    chunk = await content.readany()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise translate(exc, self.name, during=_READING) from exc
                pending = parser.feed(chunk) if chunk else parser.finish()
                eof = not chunk
        finally:
            if resp is not None:
                resp.release()

    def http_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> WayportError:
        """The mapped error for a non-2xx answer with body ``raw``."""
        fallback = raw[:_MAX_MESSAGE].decode("utf-8", "replace").strip() or f"HTTP {status}"
        try:
            body: object = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            body = None
        info = error_info(body, fallback=fallback)
        retry_after = parse_retry_after(headers) if status in (429, 503, 529) else None
        return self.error(status, info, retry_after)

    def error(
        self, status: int | None, info: ErrorInfo, retry_after: float | None = None
    ) -> WayportError:
        """``map_error`` for this backend, with the secret scrubbed from the message."""
        if self._secret and self._secret in info.message:
            info = ErrorInfo(
                message=info.message.replace(self._secret, "***"),
                type=info.type,
                code=info.code,
                param=info.param,
                status=info.status,
            )
        return map_error(backend=self.name, status=status, info=info, retry_after=retry_after)

    def event_error(self, data: str) -> WayportError:
        """The mapped error for an error event in a stream, whose data is ``data``."""
        try:
            body: object = msgspec.json.decode(data)
        except msgspec.DecodeError:
            body = None
        if isinstance(body, dict) and "error" not in body and body.get("type") != "error":
            body = {"error": body}  # a bare error object
        return self.error(None, error_info(body, fallback=data[:_MAX_MESSAGE]))

    def invalid(self, what: str) -> BackendError:
        """The error for an answer that is not the JSON shape the protocol promises."""
        return BackendError(
            f"upstream {self.name!r} sent an invalid response: {what}",
            code="upstream_invalid_response",
        )

    def decode(self, decoder: msgspec.json.Decoder[T], raw: bytes | str) -> T:
        """Decode with ``decoder``; a body that does not fit is ``upstream_invalid_response``."""
        try:
            return decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise self.invalid(str(exc)[:200]) from exc

    def _json_instead_of_stream(self, raw: bytes) -> WayportError:
        # Some servers answer a stream request with a JSON error and status 200.
        try:
            body: object = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return self.invalid("expected an event stream")
        if isinstance(body, dict) and "error" in body:
            return self.error(None, error_info(body, fallback="unknown error"))
        return self.invalid("expected an event stream, got a JSON body")

    def _prepare(
        self, deadline: float | None
    ) -> tuple[aiohttp.ClientSession, aiohttp.ClientTimeout, float]:
        session = self._session
        if session is None or session.closed:
            raise BackendUnavailable(f"backend {self.name!r} is not started", code="not_started")
        if deadline is None:
            return session, self._default, self._unbounded.first_byte
        bound = self._timeouts.bound(deadline)
        return session, self._client_timeout(bound), bound.first_byte

    @staticmethod
    def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
        # first_byte is enforced by the caller around the header (and first event) wait.
        return aiohttp.ClientTimeout(total=timeouts.total, sock_connect=timeouts.connect)
