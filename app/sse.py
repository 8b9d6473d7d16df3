"""Server-Sent Events, read in batches: every complete event in one network read comes out
together, so the relay writes them to the browser in one go.

Written by hand because httpx-sse yields one event at a time through three layers of async
generators (text, lines, events) and cannot say which events arrived together; the relay's
cost is per write, and coalescing is what lets it stay small. It follows the WHATWG event
stream format: LF or CRLF line ends, `event:` and `data:` fields (several `data:` lines join
with LF), comments and other fields ignored, an event without `event:` being a `message`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterable


@dataclass(frozen=True, slots=True)
class Event:
    event: str
    data: str


def parse_block(block: bytes) -> Event | None:
    """One event from the lines between two blank lines (None for a comment-only block)."""
    kind = "message"
    data: list[str] = []
    for raw in block.split(b"\n"):
        name, _, value = raw.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            data.append(value.decode("utf-8", "replace"))
        elif name == b"event":
            kind = value.decode("utf-8", "replace")
    if not data:
        return None
    return Event(kind, "\n".join(data))


class EventBatcher:
    """Feeds on raw bytes, hands out the complete events so far."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Take a network chunk; return the events it completed."""
        buffer = self._buffer + chunk
        held = b""
        if buffer.endswith(b"\r"):  # maybe half of a CRLF: decide with the next chunk
            buffer, held = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *blocks, rest = buffer.split(b"\n\n")
        self._buffer = rest + held
        return [event for block in blocks if (event := parse_block(block)) is not None]


async def event_batches(chunks: AsyncIterable[bytes]) -> AsyncGenerator[list[Event], None]:
    """The events of a byte stream, one list per chunk that completed at least one."""
    batcher = EventBatcher()
    async for chunk in chunks:
        if events := batcher.feed(chunk):
            yield events
