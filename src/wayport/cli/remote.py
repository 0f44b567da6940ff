"""A small client for a running Wayport (or any OpenAI-compatible server), for ``wayport chat
--url`` and ``wayport models --url``. One aiohttp session per command run.

    async with RemoteApi("http://127.0.0.1:8080", api_key=key) as api:
        print(await api.models())
        async for text in api.stream_chat("smollm2", [{"role": "user", "content": "Hi"}]):
            print(text, end="")
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from types import TracebackType

import aiohttp
import msgspec

from wayport.core.errors import (
    AuthError,
    BackendError,
    BackendUnavailable,
    InvalidRequest,
    NotFound,
    WayportError,
)
from wayport.core.types import Message


class _ModelCard(msgspec.Struct):
    id: str
    owned_by: str = ""


class _ModelList(msgspec.Struct):
    data: list[_ModelCard]


class _Delta(msgspec.Struct):
    content: str | None = None


class _ChunkChoice(msgspec.Struct):
    delta: _Delta = msgspec.field(default_factory=_Delta)


class _ErrorDetail(msgspec.Struct):
    message: str = "unknown error"


class _Event(msgspec.Struct):
    choices: list[_ChunkChoice] = msgspec.field(default_factory=list)
    error: _ErrorDetail | None = None


class _ErrorBody(msgspec.Struct):
    error: _ErrorDetail


_BY_STATUS: dict[int, type[WayportError]] = {
    400: InvalidRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    503: BackendUnavailable,
}
_chunk_decoder = msgspec.json.Decoder(_Event)


def api_base(url: str) -> str:
    """``http://host:8080`` and ``http://host:8080/v1/`` both -> ``http://host:8080/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


class RemoteApi:
    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 600.0) -> None:
        self.base = api_base(url)
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10.0)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RemoteApi:
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use RemoteApi as an async context manager")
        return self._session

    async def models(self) -> list[tuple[str, str]]:
        """``(id, owned_by)`` of every model the server lists."""
        try:
            async with self.session.get(f"{self.base}/models") as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise _http_error(resp.status, body)
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from exc
        try:
            listing = msgspec.json.decode(body, type=_ModelList)
        except msgspec.DecodeError as exc:
            raise BackendError(f"{self.base}/models answered something unexpected") from exc
        return [(card.id, card.owned_by) for card in listing.data]

    async def stream_chat(
        self,
        model: str,
        messages: Sequence[Message],
        params: Mapping[str, object] | None = None,
    ) -> AsyncIterator[str]:
        """The answer's text, piece by piece, as the server streams it. ``params`` are more
        request fields (``max_tokens``, ``temperature`` …)."""
        body = msgspec.json.encode(
            {**(params or {}), "model": model, "messages": list(messages), "stream": True}
        )
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        try:
            async with self.session.post(
                f"{self.base}/chat/completions", data=body, headers=headers
            ) as resp:
                if resp.status != 200:
                    raise _http_error(resp.status, await resp.read())
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    data = line[5:].strip()
                    if data == b"[DONE]":
                        return
                    event = _chunk_decoder.decode(data)
                    if event.error is not None:
                        raise BackendError(event.error.message)
                    for choice in event.choices:
                        if choice.delta.content:
                            yield choice.delta.content
        except aiohttp.ClientError as exc:
            raise self._unreachable(exc) from exc
        except msgspec.DecodeError as exc:
            raise BackendError(f"the server sent an event that is not valid JSON: {exc}") from exc

    def _unreachable(self, exc: aiohttp.ClientError) -> BackendUnavailable:
        return BackendUnavailable(f"cannot reach {self.base}: {exc}")


def _http_error(status: int, body: bytes) -> WayportError:
    try:
        message = msgspec.json.decode(body, type=_ErrorBody).error.message
    except msgspec.DecodeError:
        message = body.decode("utf-8", "replace")[:200] or "no details"
    return _BY_STATUS.get(status, BackendError)(f"HTTP {status}: {message}")
