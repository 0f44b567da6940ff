"""What every channel adapter shares: its construction context, signature checks, and the
translation of a platform's HTTP answers into ``wayport.core.errors``.

    class EchoChannel(ChannelBase):
        max_chars = 1000

        async def receive(self, request: WebhookRequest) -> WebhookAnswer: ...
        async def send(self, message: Outbound) -> Delivered: ...

Adapters import only ``ports``, ``core`` and ``net``; every request they send goes through the
SSRF-guarded client they are given, whose allow-list the configuration sets.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from wayport.core.channels import Delivered, Outbound, WebhookAnswer, WebhookRequest
from wayport.core.errors import (
    AuthError,
    BackendRejected,
    BackendUnavailable,
    ConfigError,
    InvalidRequest,
    UpstreamRateLimited,
)
from wayport.net.guard import GuardedClient, GuardedResponse

#: How far a signed request's timestamp may be from now, in seconds.
TOLERANCE = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelContext:
    """What a channel is built from: its name, options and credentials (already read from the
    environment by the configuration), the outbound client and the wall clock."""

    name: str
    http: GuardedClient
    options: Mapping[str, Any] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    now: Callable[[], float] = time.time

    def credential(self, key: str) -> str:
        value = self.credentials.get(key)
        if not value:
            raise ConfigError(f"channels.{self.name}: credentials.{key} is required")
        return value

    def option(self, key: str, default: Any) -> Any:
        return self.options.get(key, default)


class ChannelBase:
    """Defaults for the optional parts of ``ChannelAdapter``."""

    max_chars = 4000
    can_edit = False

    def __init__(self, ctx: ChannelContext) -> None:
        self.name = ctx.name
        self._ctx = ctx
        self._http = ctx.http
        self._now = ctx.now

    async def start(self) -> None:
        """Open the channel's outbound client; adapters that override this call it first."""
        await self._http.start()

    async def close(self) -> None:
        await self._http.close()

    async def typing(self, chat: str, thread: str | None) -> None:
        return None

    async def receive(self, request: WebhookRequest) -> WebhookAnswer:
        raise InvalidRequest(f"channel {self.name!r} takes no webhooks", code="no_webhook")

    async def send(self, message: Outbound) -> Delivered:  # pragma: no cover - abstract
        raise NotImplementedError

    async def post_json(
        self,
        url: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        method: str = "POST",
        check: bool = True,
    ) -> GuardedResponse:
        """Send JSON; raise the error class the answer's status calls for (unless ``check`` is
        false: platforms answering errors in the body read it themselves)."""
        body = msgspec.json.encode(payload)
        all_headers = {"content-type": "application/json; charset=utf-8", **(headers or {})}
        response = await self._http.request(method, url, headers=all_headers, body=body)
        if check:
            check_status(response, self.name)
        return response


def check_status(response: GuardedResponse, channel: str) -> None:
    """429 and 5xx are worth retrying (the outbox backs off); other 4xx are not."""
    status = response.status
    if status < 300:
        return
    detail = f"channel {channel!r}: the platform answered {status}: {response.text()[:200]}"
    if status == 429:
        retry = _retry_after(response)
        raise UpstreamRateLimited(detail, retry_after=retry)
    if status >= 500 or status == 408:
        raise BackendUnavailable(detail)
    raise BackendRejected(detail, code="channel_rejected")


def _retry_after(response: GuardedResponse) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def decode_json(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc}", code="invalid_json") from exc


def hmac_hex(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two secrets or signatures."""
    return hmac.compare_digest(a.encode(), b.encode())


def check_timestamp(value: str | None, now: float, *, tolerance: float = TOLERANCE) -> float:
    """A request timestamp (seconds, or milliseconds when it looks like them) within
    ``tolerance`` of ``now``; else ``AuthError``."""
    try:
        stamp = float(value) if value is not None else None
    except ValueError:
        stamp = None
    if stamp is None:
        raise AuthError("the request has no valid timestamp", code="invalid_signature")
    if stamp > 1e11:
        stamp /= 1000.0
    if abs(now - stamp) > tolerance:
        raise AuthError("the request timestamp is too old or in the future", code="stale_request")
    return stamp


def refused(reason: str = "the request signature does not match") -> AuthError:
    return AuthError(reason, code="invalid_signature")


def ok_json(payload: Any, *, messages: tuple[Any, ...] = (), status: int = 200) -> WebhookAnswer:
    return WebhookAnswer(
        messages=messages,
        status=status,
        body=msgspec.json.encode(payload),
        content_type="application/json",
    )
