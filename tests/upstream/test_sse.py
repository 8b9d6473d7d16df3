"""The SSE batch parser: events come out whole and together, however the bytes are cut."""

from __future__ import annotations

import pytest

from app.upstream.sse import Event, EventBatcher, parse_block

STREAM = (
    b": keep-alive comment\n\n"
    b'event: response.created\ndata: {"a": 1}\n\n'
    b"event: response.output_text.delta\ndata: line one\ndata: line two\n\n"
    b"data: no event name\n\n"
    b"id: 7\nretry: 100\nevent: response.completed\ndata:{}\n\n"
)
EXPECTED = [
    Event("response.created", b'{"a": 1}'),
    Event("response.output_text.delta", b"line one\nline two"),
    Event("message", b"no event name"),
    Event("response.completed", b"{}"),
]


def feed(batcher: EventBatcher, chunk: bytes) -> list[Event]:
    """The events a network chunk completed: its blocks, parsed (comments leave none)."""
    return [event for block in batcher.blocks(chunk) if (event := parse_block(block)) is not None]


def test_events_in_one_chunk_come_out_together() -> None:
    """Everything one network read completes is one batch."""
    assert feed(EventBatcher(), STREAM) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_any_cut_gives_the_same_events(size: int) -> None:
    """Bytes cut at any place (mid-field, mid-CRLF) still give every event once, in order."""
    for stream in (STREAM, STREAM.replace(b"\n", b"\r\n")):
        batcher = EventBatcher()
        events: list[Event] = []
        for start in range(0, len(stream), size):
            events += feed(batcher, stream[start : start + size])
        assert events == EXPECTED


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    """An event without its terminating blank line is not handed out yet."""
    batcher = EventBatcher()
    assert feed(batcher, b"event: x\ndata: 1\n") == []
    assert feed(batcher, b"\n") == [Event("x", b"1")]


def test_an_event_is_passed_on_as_the_frame_it_came_in() -> None:
    """The browser gets the event's type and data as sent; several data lines stay several."""
    one, two, *_ = feed(EventBatcher(), STREAM)
    assert one.frame() == b'event: response.created\ndata: {"a": 1}\n\n'
    assert two.frame() == (b"event: response.output_text.delta\ndata: line one\ndata: line two\n\n")
