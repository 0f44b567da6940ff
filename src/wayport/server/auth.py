"""API key authentication: ``Authorization: Bearer <key>``, compared in constant time.

    auth = ApiKeyAuth("wp-secret")
    auth.check(b"Bearer wp-secret")   # passes
    auth.check(None)                  # AuthError (401)

Messages never repeat what the client sent: a mistyped key must not end up in a log.
"""

from __future__ import annotations

import hmac

from wayport.core.errors import AuthError


class ApiKeyAuth:
    def __init__(self, api_key: str | None) -> None:
        self._key = api_key.encode() if api_key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    def check(self, authorization: bytes | None) -> None:
        """Raise ``AuthError`` unless the header carries the configured key."""
        key = self._key
        if key is None:
            return
        if authorization is None:
            raise AuthError(
                "Missing API key: send it as 'Authorization: Bearer <key>'",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), key):
            raise AuthError("Invalid API key")
