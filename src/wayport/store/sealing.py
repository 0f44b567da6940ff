"""Encryption at rest: what users said and what tools returned, sealed with AES-256-GCM before
it is written and opened after it is read.

    sealer = Sealer.parse("k2:<base64 32 bytes>,k1:<base64 32 bytes>")  # first: the active key
    stored = sealer.seal("acme", "messages.content", "my card is 4111…")
    # {"$sealed": "k2", "data": "<base64 nonce+ciphertext>"}
    sealer.open("acme", "messages.content", stored)   # -> "my card is 4111…"

Each sealed value describes itself: a JSON object ``{"$sealed": key_id, "data": …}`` in a JSON
column, ``wp-sealed:v1:<key id>:<base64>`` in a text column, ``WPSEAL1`` + key id + nonce +
ciphertext in a binary one. No schema change is needed, unsealed rows written before a key was
configured stay readable, and each row names the key that sealed it, so after a rotation (a new
key put first) old rows still open and ``wayport store reencrypt`` re-seals them in batches.

The tenant and the column are the associated data: a sealed value copied into another
tenant's row, or into another column, fails to open instead of leaking. A value that fails to
open (unknown key id, wrong key, tampered bytes) raises ``StoreError`` naming the key id,
never returning ciphertext as if it were content.

Without keys :data:`NO_SEALING` writes plaintext and only checks, on read, that a value is
not sealed (one type check per value: the hot path stays cheap).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from wayport.core.errors import ConfigError, StoreError

__all__ = [
    "ENV",
    "MARK",
    "NO_SEALING",
    "Sealer",
    "generate_key",
]

ENV = "WAYPORT_ENCRYPTION_KEYS"
MARK = "$sealed"  #: the key of a sealed JSON value; message content is never such an object
_TEXT = "wp-sealed:v1:"
_BLOB = b"WPSEAL1\x00"
_NONCE = 12
_KID = re.compile(r"[A-Za-z0-9._-]{1,32}")
_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


def generate_key(kid: str) -> str:
    """A fresh ``kid:base64key`` entry for ``WAYPORT_ENCRYPTION_KEYS``."""
    return f"{kid}:{base64.b64encode(os.urandom(32)).decode()}"


def _aad(tenant: str, purpose: str) -> bytes:
    return f"wayport/{purpose}/{tenant}".encode()


class Sealer:
    """Seals with the first key, opens with any key it holds."""

    __slots__ = ("_active", "_ciphers", "enabled")

    def __init__(self, keys: Sequence[tuple[str, bytes]] = ()) -> None:
        self._ciphers: dict[str, AESGCM] = {}
        for kid, key in keys:
            if _KID.fullmatch(kid) is None:
                raise ConfigError(f"{ENV}: key id {kid!r} must be 1-32 of A-Z a-z 0-9 . _ -")
            if kid in self._ciphers:
                raise ConfigError(f"{ENV}: key id {kid!r} is listed twice")
            if len(key) != 32:
                raise ConfigError(
                    f"{ENV}: key {kid!r} is {len(key)} bytes; AES-256 needs 32 "
                    "(generate one: wayport store keygen)"
                )
            self._ciphers[kid] = AESGCM(key)
        self._active = keys[0][0] if keys else None
        self.enabled = self._active is not None  #: False: values are stored in plaintext

    @classmethod
    def parse(cls, text: str | None) -> Sealer:
        """``kid1:base64key,kid2:base64key`` (first: the active key); empty: no sealing.
        Raises ``ConfigError`` that never quotes key material."""
        if not text or not text.strip():
            return NO_SEALING
        keys: list[tuple[str, bytes]] = []
        for i, item in enumerate(text.split(",")):
            kid, sep, b64 = item.strip().partition(":")
            if not sep or not kid or not b64:
                raise ConfigError(f"{ENV}: entry {i + 1} is not kid:base64key")
            try:
                key = base64.b64decode(b64.strip(), validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{ENV}: key {kid!r} is not valid base64") from None
            keys.append((kid.strip(), key))
        return cls(keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Sealer:
        return cls.parse(env.get(ENV))

    @property
    def active(self) -> str | None:
        """The id of the key new values are sealed with."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    # JSON columns -------------------------------------------------------------------------

    def seal(self, tenant: str, purpose: str, value: Any) -> Any:
        """``value`` as a sealed JSON object (``None`` stays ``None``)."""
        if self._active is None or value is None:
            return value
        data = self._encrypt(tenant, purpose, _encode.encode(value))
        return {MARK: self._active, "data": base64.b64encode(data).decode()}

    def open(self, tenant: str, purpose: str, value: Any) -> Any:
        """What :meth:`seal` sealed; anything else is returned as it is."""
        if type(value) is not dict or MARK not in value:
            return value
        kid = value[MARK]
        try:
            data = base64.b64decode(value["data"])
        except (KeyError, TypeError, binascii.Error, ValueError):
            raise StoreError(f"a sealed {purpose} value is damaged") from None
        return _decode.decode(self._decrypt(tenant, purpose, str(kid), data))

    def is_current(self, value: Any) -> bool:
        """True when ``value`` needs no re-sealing: sealed with the active key, or ``None``,
        or plaintext while sealing is off."""
        if value is None:
            return True
        if type(value) is dict and MARK in value:
            return bool(value[MARK] == self._active)
        if isinstance(value, str) and value.startswith(_TEXT):
            return value[len(_TEXT) :].partition(":")[0] == self._active
        if isinstance(value, bytes) and value.startswith(_BLOB):
            return value[len(_BLOB) :].partition(b"\x00")[0].decode() == self._active
        return self._active is None

    # text columns ---------------------------------------------------------------------------

    def seal_text(self, tenant: str, purpose: str, value: str | None) -> str | None:
        if self._active is None or value is None:
            return value
        data = self._encrypt(tenant, purpose, value.encode())
        return f"{_TEXT}{self._active}:{base64.b64encode(data).decode()}"

    def open_text(self, tenant: str, purpose: str, value: str | None) -> str | None:
        if value is None or not value.startswith(_TEXT):
            return value
        kid, _, b64 = value[len(_TEXT) :].partition(":")
        try:
            data = base64.b64decode(b64)
        except (binascii.Error, ValueError):
            raise StoreError(f"a sealed {purpose} value is damaged") from None
        return self._decrypt(tenant, purpose, kid, data).decode()

    # binary columns -------------------------------------------------------------------------

    def seal_bytes(self, tenant: str, purpose: str, value: bytes) -> bytes:
        if self._active is None:
            return value
        data = self._encrypt(tenant, purpose, value)
        return _BLOB + self._active.encode() + b"\x00" + data

    def open_bytes(self, tenant: str, purpose: str, value: bytes) -> bytes:
        if not value.startswith(_BLOB):
            return value
        kid, _, data = value[len(_BLOB) :].partition(b"\x00")
        return self._decrypt(tenant, purpose, kid.decode("ascii", "replace"), data)

    # --------------------------------------------------------------------------------------

    def _encrypt(self, tenant: str, purpose: str, plaintext: bytes) -> bytes:
        assert self._active is not None
        nonce = os.urandom(_NONCE)
        return nonce + self._ciphers[self._active].encrypt(nonce, plaintext, _aad(tenant, purpose))

    def _decrypt(self, tenant: str, purpose: str, kid: str, data: bytes) -> bytes:
        cipher = self._ciphers.get(kid)
        if cipher is None:
            held = ", ".join(self._ciphers) or "none"
            raise StoreError(
                f"stored {purpose} is sealed with key {kid!r}, which {ENV} does not hold "
                f"(keys held: {held}); add that key back to read it"
            )
        try:
            return cipher.decrypt(data[:_NONCE], data[_NONCE:], _aad(tenant, purpose))
        except (InvalidTag, ValueError):
            raise StoreError(
                f"stored {purpose} does not open with key {kid!r}: a different key under that "
                "id, or the row was altered or copied from another tenant"
            ) from None


#: No keys: values are written in plaintext; sealed values found on read raise ``StoreError``.
NO_SEALING = Sealer()
