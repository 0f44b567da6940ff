"""Run events as bytes, for the ``Bus`` between replicas: ``[kind, fields]`` in JSON,
decoded back into the same frozen dataclasses (``decode(encode(e)) == e``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec

from wayport.core.agent import (
    RunEvent,
    RunFinished,
    RunStarted,
    TextDelta,
    ToolCalled,
    ToolResult,
    ToolReturned,
)
from wayport.core.session import Run, RunStatus
from wayport.core.types import Usage

_encoder = msgspec.json.Encoder()


def _run(fields: dict[str, Any]) -> Run:
    return Run(**{**fields, "status": RunStatus(fields["status"])})


_DECODERS: dict[str, Callable[[dict[str, Any]], RunEvent]] = {
    "started": lambda f: RunStarted(run=_run(f["run"])),
    "delta": lambda f: TextDelta(**f),
    "tool_called": lambda f: ToolCalled(**f),
    "tool_returned": lambda f: ToolReturned(
        run_id=f["run_id"], call_id=f["call_id"], result=ToolResult(**f["result"])
    ),
    "finished": lambda f: RunFinished(run=_run(f["run"]), usage=Usage(**f["usage"])),
}
_NAMES: dict[type[Any], str] = {
    RunStarted: "started",
    TextDelta: "delta",
    ToolCalled: "tool_called",
    ToolReturned: "tool_returned",
    RunFinished: "finished",
}


def encode(event: RunEvent) -> bytes:
    return _encoder.encode((_NAMES[type(event)], event))


def decode(data: bytes) -> RunEvent:
    kind, fields = msgspec.json.decode(data)
    return _DECODERS[kind](fields)
