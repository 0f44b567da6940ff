"""What a request tells releases: the version it asks to preview and whom it speaks for.

    X-Wayport-Version: 9e1d0c2b4a7f     the candidate of a rollout (blue-green preview)
    X-Wayport-Preview: 1                the candidate, whatever its version
    X-Wayport-User: alice               the sticky key of an A/B split for stateless calls

The user is the key's own end user (``principal.user``) when it has one, else the header,
else the OpenAI ``user`` field of the body.
"""

from __future__ import annotations

from dataclasses import dataclass

from wayport.server.http import Exchange

__all__ = ["PREVIEW_HEADER", "USER_HEADER", "VERSION_HEADER", "Routing", "routing"]

VERSION_HEADER = b"x-wayport-version"
PREVIEW_HEADER = b"x-wayport-preview"
USER_HEADER = b"x-wayport-user"
_MAX = 256  #: longer values are not keys anyone sends on purpose


@dataclass(frozen=True, slots=True)
class Routing:
    preview: str | None = None
    user: str | None = None


def routing(ex: Exchange, body_user: object = None) -> Routing:
    """The preview and user of ``ex``; ``body_user``: the body's ``user`` field, if any."""
    version = _header(ex, VERSION_HEADER)
    preview = version if version is not None else _header(ex, PREVIEW_HEADER)
    user = ex.principal.user or _header(ex, USER_HEADER)
    if user is None and isinstance(body_user, str) and 0 < len(body_user) <= _MAX:
        user = body_user
    return Routing(preview=preview, user=user)


def _header(ex: Exchange, name: bytes) -> str | None:
    for key, value in ex.scope["headers"]:
        if key == name:
            text = value.decode("latin-1").strip()
            return text if 0 < len(text) <= _MAX else None
    return None
