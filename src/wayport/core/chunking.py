"""Replies cut to a platform's size limit, code blocks kept renderable.

>>> [len(p) for p in chunk_text("word " * 20, limit=40)]
[39, 39, 19]
"""

from __future__ import annotations

from collections.abc import Iterable

_FENCE = "```"


def chunk_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters, between paragraphs and code
    blocks where it can, else between lines, else between words. A code block that fits in a
    piece is never cut; one longer than a piece is closed at the end of each piece and reopened
    (with its language) at the start of the next, so every piece renders on its own."""
    if limit < 32:
        raise ValueError("limit must be at least 32 characters")
    pieces: list[str] = []
    current: list[str] = []
    size = -1  # the joining newline of the first line is not sent

    def flush() -> None:
        nonlocal current, size
        body = "\n".join(current).strip("\n")
        if body.strip():
            pieces.append(body)
        current, size = [], -1

    for unit in _units(text.split("\n")):
        joined = "\n".join(unit)
        if size + 1 + len(joined) <= limit:
            current += unit
            size += 1 + len(joined)
            continue
        flush()
        if len(joined) <= limit:
            current, size = list(unit), len(joined)
            continue
        for part in _split_unit(unit, limit):
            pieces.append(part)
    flush()
    return pieces


def _units(lines: list[str]) -> Iterable[list[str]]:
    """Paragraphs (with the blank line after them) and whole code blocks."""
    unit: list[str] = []
    in_code = False
    for line in lines:
        fence = line.lstrip().startswith(_FENCE)
        if not in_code and fence:
            if unit:
                yield unit
            unit, in_code = [line], True
        elif in_code:
            unit.append(line)
            if fence:
                yield unit
                unit, in_code = [], False
        else:
            unit.append(line)
            if not line.strip():
                yield unit
                unit = []
    if unit:
        yield unit


def _split_unit(unit: list[str], limit: int) -> Iterable[str]:
    """A paragraph or code block longer than ``limit``, in pieces."""
    opening = unit[0].strip() if unit[0].lstrip().startswith(_FENCE) else None
    if opening is None:
        body, width = unit, limit
    else:
        closed = len(unit) > 1 and unit[-1].strip() == _FENCE
        body = unit[1:-1] if closed else unit[1:]
        width = limit - len(opening) - len(_FENCE) - 2
        if width < 16:  # an absurd info string: drop it rather than overflow
            opening, width = _FENCE, limit - 2 * len(_FENCE) - 2
    current: list[str] = []
    size = -1
    for line in _wrapped(body, width):
        if size + 1 + len(line) > width and current:
            yield _framed(current, opening)
            current, size = [], -1
        current.append(line)
        size += 1 + len(line)
    if current and any(x.strip() for x in current):
        yield _framed(current, opening)


def _framed(lines: list[str], opening: str | None) -> str:
    body = "\n".join(lines)
    return body.strip("\n") if opening is None else f"{opening}\n{body}\n{_FENCE}"


def _wrapped(lines: list[str], width: int) -> Iterable[str]:
    """Lines no longer than ``width``, long ones cut at a space where there is one."""
    for line in lines:
        while len(line) > width:
            cut = line.rfind(" ", 0, width + 1)
            cut = cut if cut > width // 2 else width
            yield line[:cut].rstrip()
            line = line[cut:].lstrip(" ")
        yield line
