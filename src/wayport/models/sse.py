"""An incremental Server-Sent Events parser that follows the WHATWG event-stream rules.

Bytes go in as they come off the socket, split anywhere; complete events come out::

    parser = SSEParser()
    events = parser.feed(b'event: ping\\ndata: {"a"')    # [] - nothing complete yet
    events = parser.feed(b": 1}\\n\\ndata: [DONE]\\n\\n")
    # [SSEEvent(data='{"a": 1}', event='ping', ...), SSEEvent(data='[DONE]', ...)]
    events += parser.finish()                           # at end of stream

Line ends may be LF, CRLF or a lone CR (also when a CRLF pair is split across two reads);
``data:`` lines of one event are joined with ``\\n``; comments (``:`` lines) are skipped; a
leading UTF-8 byte-order mark is dropped.
"""

from __future__ import annotations

import msgspec

__all__ = ["SSEEvent", "SSEParser"]

_BOM = b"\xef\xbb\xbf"


class SSEEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One dispatched event. ``event`` is ``"message"`` unless the stream named it.

    A msgspec struct rather than a dataclass: one is built per event on the streaming hot
    path, and a frozen dataclass takes ten times as long to construct."""

    data: str
    event: str = "message"
    id: str | None = None  #: the last event id seen on the stream so far
    retry: int | None = None  #: the last ``retry:`` reconnection time (ms) seen so far


class SSEParser:
    """Turns byte chunks into ``SSEEvent``s. One parser per stream; not thread-safe."""

    __slots__ = (
        "_data",
        "_event",
        "_last_id",
        "_pending",
        "_retry",
        "_skip_lf",
        "_started",
    )

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # a line not yet ended, in the pieces it came in
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False  # the previous feed ended in CR: a leading LF completes CRLF
        self._started = False  # the byte-order mark check is done

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Add bytes read from the stream; return the events they completed (maybe none)."""
        if not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if self._started and b"\n" not in chunk and b"\r" not in chunk:
            # No line ends here: park the bytes (joined once, so a huge line costs O(n)).
            self._pending.append(chunk)
            return []
        if self._pending:
            buf = b"".join([*self._pending, chunk])
            self._pending.clear()
        else:
            buf = chunk
        if not self._started:
            if len(buf) < len(_BOM) and _BOM.startswith(buf):
                self._pending.append(buf)
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        if not buf:
            return []
        events: list[SSEEvent] = []
        if not self._data and not self._event and b"\r" not in buf:
            # The usual stream: ``data: …`` events of one line each, LF line ends. Cut them
            # out with find() instead of splitting every line; stop at anything else.
            pos = 0
            find = buf.find
            while True:
                end = find(b"\n\n", pos)
                if end < 0 or not buf.startswith(b"data: ", pos) or find(b"\n", pos, end) >= 0:
                    break
                text = buf[pos + 6 : end].decode("utf-8", "replace")
                events.append(SSEEvent(data=text, id=self._last_id, retry=self._retry))
                pos = end + 2
            if pos:
                buf = buf[pos:]
                if not buf:
                    return events
        # bytes.splitlines breaks on exactly LF, CR and CRLF: the three SSE line ends.
        lines = buf.splitlines()
        last = buf[-1:]
        if last == b"\r":
            self._skip_lf = True  # this CR may be the first half of a CRLF still on the wire
        elif last != b"\n":
            self._pending.append(lines.pop())
        data = self._data
        for line in lines:
            if line.startswith(b"data: "):  # the common case, kept off the slow path
                data.append(line[6:].decode("utf-8", "replace"))
            elif line:
                self._field(line)
            elif data:
                events.append(self._dispatch())
                data = self._data
            else:
                self._event = ""
        return events

    def finish(self) -> list[SSEEvent]:
        """Call once at end of stream. An event whose lines all arrived but whose closing blank
        line did not is still delivered (lenient); a half-received line is dropped, since
        its data is cut short."""
        self._pending.clear()
        if self._data:
            return [self._dispatch()]
        return []

    def _dispatch(self) -> SSEEvent:
        event = SSEEvent(
            data="\n".join(self._data),
            event=self._event or "message",
            id=self._last_id,
            retry=self._retry,
        )
        self._data = []
        self._event = ""
        return event

    def _field(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ":" starts a comment (keep-alives are sent this way)
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
        elif name == b"id":
            if b"\0" not in value:
                self._last_id = value.decode("utf-8", "replace")
        elif name == b"retry" and value.isdigit():
            self._retry = int(value)
