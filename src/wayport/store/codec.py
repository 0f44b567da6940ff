"""Cold history as one zstd-compressed blob: messages packed as msgpack arrays, then zstd::

    blob = encode_history(messages)
    assert decode_history(CODEC, blob, session_id=session_id) == messages

The codec name is stored beside each blob, so a later format is added as a new name while the
old blobs stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import zstandard

from wayport.core.errors import StoreError
from wayport.core.session import StoredMessage
from wayport.core.types import Role, ToolCall

CODEC = "zstd+msgpack/1"
LEVEL = 3  #: zstd's default: most of the ratio of higher levels at a fraction of the CPU


class _Row(msgspec.Struct, array_like=True, frozen=True):
    # array_like: field names are not repeated per message, the blob stays small before zstd
    seq: int
    role: Role
    content: str | list[dict[str, Any]] | None
    name: str | None
    tool_calls: list[ToolCall]
    tool_call_id: str | None
    tokens: int | None
    created_at: float
    run_id: str | None
    step_no: int | None
    idempotency_key: str | None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[_Row])


def encode_history(messages: Sequence[StoredMessage]) -> bytes:
    """Pack and compress ``messages``. CPU-bound: call it through ``asyncio.to_thread``."""
    rows = [
        _Row(
            seq=m.seq,
            role=m.role,
            content=m.content,
            name=m.name,
            tool_calls=list(m.tool_calls),
            tool_call_id=m.tool_call_id,
            tokens=m.tokens,
            created_at=m.created_at,
            run_id=m.run_id,
            step_no=m.step_no,
            idempotency_key=m.idempotency_key,
        )
        for m in messages
    ]
    # one compressor per call: zstandard's compressors must not be shared between threads
    return zstandard.ZstdCompressor(level=LEVEL, write_checksum=True).compress(
        _encoder.encode(rows)
    )


def decode_history(codec: str, data: bytes, *, session_id: str) -> list[StoredMessage]:
    """The messages ``encode_history`` packed. Raises ``StoreError`` for a damaged blob."""
    if codec != CODEC:
        raise StoreError(f"archived history uses unknown codec {codec!r}")
    try:
        rows = _decoder.decode(zstandard.ZstdDecompressor().decompress(data))
    except (zstandard.ZstdError, msgspec.DecodeError) as exc:
        raise StoreError(f"archived history of session {session_id} is damaged: {exc}") from exc
    return [
        StoredMessage(
            session_id=session_id,
            seq=r.seq,
            role=r.role,
            content=r.content,
            name=r.name,
            tool_calls=tuple(r.tool_calls),
            tool_call_id=r.tool_call_id,
            tokens=r.tokens,
            created_at=r.created_at,
            run_id=r.run_id,
            step_no=r.step_no,
            idempotency_key=r.idempotency_key,
        )
        for r in rows
    ]
