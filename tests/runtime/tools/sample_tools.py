"""Functions the tool tests load by ``module:function`` reference."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Annotated, Literal, TypedDict


class Address(TypedDict):
    city: str
    zip: str


@dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    More text that is not the description.
    """
    return a + b


async def greet(name: str, style: Literal["plain", "loud"] = "plain") -> str:
    """Greet someone."""
    await asyncio.sleep(0)
    return f"HELLO {name.upper()}" if style == "loud" else f"hello {name}"


def everything(
    text: str,
    ratio: float,
    flag: bool,
    tags: list[str],
    scores: dict[str, int],
    maybe: int | None,
    address: Address,
    point: Point,
    note: Annotated[str, "a short note"] = "",
) -> dict[str, object]:
    """Echo every kind of parameter."""
    return {"point_type": type(point).__name__, "x": point.x, "address": address, "maybe": maybe}


def boom(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot do that: {reason}")


def thread_name() -> str:
    """Which thread runs a sync tool."""
    return threading.current_thread().name


def keyed(item: str, idempotency_key: str) -> str:
    """Sees the call's idempotency key."""
    return f"{item}:{idempotency_key}"


async def blocked(release: str) -> str:
    """Waits forever (until cancelled by a timeout)."""
    await asyncio.Event().wait()
    return release
