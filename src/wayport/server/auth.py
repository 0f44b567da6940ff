"""Authentication and role checks at the HTTP edge.

``Authenticator`` turns the ``Authorization`` header into a ``Principal``::

    auth = Authenticator(api_key="wp-secret", keys=key_service)
    await auth.authenticate(b"Bearer wp-secret")        # the default tenant's owner
    await auth.authenticate(b"Bearer wp_acme_…_…")      # the key's tenant, role and scopes
    await auth.authenticate(None)                       # AuthError (401)

The configured ``server.api_key`` (the bootstrap key) is compared in constant time and stands
for the default tenant's owner. Issued keys (``wp_<tenant>_<id>_<secret>``) are checked by
``wayport.service.keys.KeyService``. Without a configured key, authentication is off
(loopback only): requests run as the default tenant's owner, unless they present an issued
key, which is then checked and used. Messages never repeat what the client sent.

``ApiKeyAuth`` is the static check alone (``/metrics`` uses it).
"""

from __future__ import annotations

import hmac

from wayport.core.errors import AuthError, PermissionDenied
from wayport.core.identity import BOOTSTRAP_KEY_ID, LOCAL_OWNER, Principal, Role
from wayport.core.session import DEFAULT_TENANT
from wayport.service.keys import KeyService

#: The configured key's principal.
BOOTSTRAP_OWNER = Principal(tenant=DEFAULT_TENANT, role=Role.OWNER, key_id=BOOTSTRAP_KEY_ID)
_ISSUED = b"wp_"


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
        token = _bearer(authorization)
        if not hmac.compare_digest(token, key):
            raise AuthError("Invalid API key")


class Authenticator:
    def __init__(self, api_key: str | None, *, keys: KeyService | None = None) -> None:
        self._key = api_key.encode() if api_key else None
        self.keys = keys

    @property
    def enabled(self) -> bool:
        return self._key is not None

    async def authenticate(self, authorization: bytes | None) -> Principal:
        key = self._key
        if key is None:
            if authorization is None or self.keys is None:
                return LOCAL_OWNER
            token = _bearer(authorization, strict=False)
            if not token.startswith(_ISSUED):
                return LOCAL_OWNER  # clients that must send something send anything
            return await self.keys.authenticate(token.decode("ascii", "replace"))
        token = _bearer(authorization)
        if hmac.compare_digest(token, key):
            return BOOTSTRAP_OWNER
        if self.keys is None or not token.startswith(_ISSUED):
            raise AuthError("Invalid API key")
        return await self.keys.authenticate(token.decode("ascii", "replace"))


def authorize(principal: Principal, role: Role, scope: str) -> None:
    """Raise ``PermissionDenied`` (403) unless ``principal`` has ``role`` and, for a key
    limited to scopes, ``scope``."""
    if principal.role < role:
        raise PermissionDenied(
            f"This needs the {role.label} role; the key has {principal.role.label}",
            code="insufficient_role",
        )
    if principal.scopes and scope not in principal.scopes:
        raise PermissionDenied(f"The key's scopes do not include {scope!r}", code="out_of_scope")


def _bearer(authorization: bytes | None, *, strict: bool = True) -> bytes:
    if authorization is None:
        raise AuthError(
            "Missing API key: send it as 'Authorization: Bearer <key>'", code="missing_api_key"
        )
    scheme, _, token = authorization.partition(b" ")
    if scheme.lower() != b"bearer":
        if strict:
            raise AuthError("Invalid API key")
        return b""
    return token.strip()
