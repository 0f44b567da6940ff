"""The incremental SSE parser: the WHATWG rules as a table, and a property test that no way
of splitting the bytes across reads changes the events."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wayport.models.sse import SSEEvent, SSEParser


def parse(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.finish()


def ev(data: str, event: str = "message", id: str | None = None) -> SSEEvent:
    return SSEEvent(data=data, event=event, id=id)


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        pytest.param(b"data: hi\n\n", [ev("hi")], id="lf"),
        pytest.param(b"data: hi\r\n\r\n", [ev("hi")], id="crlf"),
        pytest.param(b"data: hi\r\r", [ev("hi")], id="cr"),
        pytest.param(b"data: a\r\ndata: b\n\rdata: c\r\n\n", [ev("a\nb"), ev("c")], id="mixed"),
        pytest.param(b"data: a\ndata: b\n\n", [ev("a\nb")], id="multi-line data"),
        pytest.param(b"data:no-space\n\n", [ev("no-space")], id="no space after colon"),
        pytest.param(b"data:  two\n\n", [ev(" two")], id="only one space stripped"),
        pytest.param(b"data\n\n", [ev("")], id="field without colon"),
        pytest.param(b"data:\n\n", [ev("")], id="empty data"),
        pytest.param(b": keep-alive\n\ndata: x\n\n", [ev("x")], id="comment"),
        pytest.param(b":\n:ping\ndata: x\n\n", [ev("x")], id="comments inside event"),
        pytest.param(
            b"event: message_start\ndata: {}\n\n", [ev("{}", event="message_start")], id="event"
        ),
        pytest.param(b"event: lone\n\ndata: x\n\n", [ev("x")], id="event without data resets"),
        pytest.param(b"id: 7\ndata: x\n\ndata: y\n\n", [ev("x", id="7"), ev("y", id="7")], id="id"),
        pytest.param(b"id: a\0b\ndata: x\n\n", [ev("x")], id="id with NUL ignored"),
        pytest.param(b"unknown: 1\ndata: x\n\n", [ev("x")], id="unknown field"),
        pytest.param(b"\xef\xbb\xbfdata: x\n\n", [ev("x")], id="bom"),
        pytest.param(b"data: x\n\xef\xbb\xbfdata: y\n\n", [ev("x")], id="bom only at start"),
        pytest.param(b"data: caf\xc3\xa9\n\n", [ev("café")], id="utf-8"),
        pytest.param(b"data: \xff\n\n", [ev("\ufffd")], id="invalid utf-8 replaced"),
        pytest.param(b"data: [DONE]\n\n", [ev("[DONE]")], id="done"),
        pytest.param(b"\n\n\n", [], id="blank lines only"),
        pytest.param(b"data: last\n", [ev("last")], id="eof before blank line"),
        pytest.param(b"data: a\n\ndata: cut sho", [ev("a")], id="eof mid-line dropped"),
        pytest.param(b"", [], id="empty"),
    ],
)
def test_table(stream: bytes, expected: list[SSEEvent]) -> None:
    assert parse(stream) == expected


def test_retry_field() -> None:
    events = parse(b"retry: 1500\ndata: x\n\nretry: soon\ndata: y\n\n")
    assert [e.retry for e in events] == [1500, 1500]


def test_events_come_out_as_soon_as_complete() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\ndata: tw") == [ev("one")]
    assert parser.feed(b"o\n\n") == [ev("two")]
    assert parser.finish() == []


def test_crlf_split_across_reads_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # Were the LF taken as a second line end, this blank line would end the event here.
    assert parser.feed(b"\n") == []
    assert parser.feed(b"data: b\r\n\r") == [ev("a\nb")]
    assert parser.feed(b"\ndata: c\n\n") == [ev("c")]


def test_bom_split_across_reads() -> None:
    assert parse(b"\xef", b"\xbb", b"\xbfdata: x\n\n") == [ev("x")]


_line = st.one_of(
    st.builds(
        lambda s: b"data: " + s.encode(),
        st.text(
            alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
            max_size=12,
        ),
    ),
    st.sampled_from(
        [b"", b"event: delta", b": comment", b"id: 1", b"retry: 30", b"data", b"data:", b"x: y"]
    ),
)
_sep = st.sampled_from([b"\n", b"\r\n", b"\r"])


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.tuples(_line, _sep), max_size=25))
    body = b"".join(line + sep for line, sep in lines)
    return (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + body


@given(stream=_streams(), cuts=st.lists(st.integers(min_value=0), max_size=12))
def test_any_split_yields_the_same_events(stream: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces = [stream[a:b] for a, b in zip([0, *points], [*points, len(stream)], strict=True)]
    assert parse(*pieces) == parse(stream)


@given(stream=_streams())
def test_byte_at_a_time_matches_whole(stream: bytes) -> None:
    assert parse(*(stream[i : i + 1] for i in range(len(stream)))) == parse(stream)
