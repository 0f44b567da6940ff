"""Cold history as one zstd-compressed blob: messages packed as msgpack arrays, then zstd::

    blob = encode_history(messages)
    assert decode_history(CODEC, blob, session_id=session_id) == messages

The codec name is stored beside each blob, so a later format is added as a new name while the
old blobs stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any, cast, get_args, get_origin, get_type_hints

import msgspec
import zstandard

from wayport.core.agent import AgentSpec
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


# --- agent definitions (the agent_versions table) ----------------------------------------------


def spec_to_json(spec: AgentSpec) -> dict[str, Any]:
    """An agent definition as JSON, for ``agent_versions.spec``."""
    return cast(dict[str, Any], msgspec.to_builtins(spec))


def spec_from_json(data: Any) -> AgentSpec:
    """The definition ``spec_to_json`` stored. Numbers and strings come back as they were
    stored (an ``int`` in a float field stays an ``int``), so ``version`` hashes the same;
    fields the stored JSON lacks take their defaults, fields it has that the code no longer
    knows are dropped. Raises ``StoreError`` for JSON that is no agent definition."""
    try:
        if not isinstance(data, dict):
            raise TypeError(f"an object is needed, not {type(data).__name__}")
        return cast(AgentSpec, _build(AgentSpec, data))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"a stored agent definition cannot be read: {exc}") from exc


def _build(cls: type[Any], data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    given = {f.name: _value(hints[f.name], data[f.name]) for f in fields(cls) if f.name in data}
    return cls(**given)


def _value(hint: Any, value: Any) -> Any:
    if isinstance(hint, type) and is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    if get_origin(hint) is tuple and isinstance(value, list):
        args = get_args(hint)
        item = args[0] if args else Any
        return tuple(_value(item, v) for v in value)
    return value


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    found = _HINTS.get(cls)
    if found is None:
        found = _HINTS[cls] = get_type_hints(cls)
    return found
