"""Server-Sent Events, read in batches: every complete event in one network read comes out
together, so the relay writes them to the browser in one go.

Written by hand because httpx-sse yields one event at a time through three layers of async
generators (text, lines, events) and cannot say which events arrived together; the relay's
cost is per write, and coalescing is what lets it stay small. It follows the WHATWG event
stream format: LF or CRLF line ends, `event:` and `data:` fields (several `data:` lines join
with LF), comments and other fields ignored, an event without `event:` being a `message`.
Data stays bytes: the relay passes most events on as they came, without decoding them.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_PREFIX = b"event: "
DATA_PREFIX = b"data: "


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its type and its data lines as they came (joined with LF)."""

    event: str
    raw: bytes

    @property
    def data(self) -> str:
        """The data as text (invalid UTF-8 replaced, as a browser would)."""
        return self.raw.decode("utf-8", "replace")

    def frame(self) -> bytes:
        """The event as a browser-ready SSE frame; multi-line data becomes several data lines."""
        return b"".join(
            (EVENT_PREFIX, self.event.encode(), b"\n", DATA_PREFIX, self._data_lines(), b"\n\n")
        )

    def _data_lines(self) -> bytes:
        return self.raw.replace(b"\n", b"\n" + DATA_PREFIX) if b"\n" in self.raw else self.raw


def usual_shape(block: bytes) -> int:
    """Where the event line ends in a block of the usual shape (one `event:` line, then one
    `data:` line), whose frame is the block as it came; -1 for any other block."""
    if not block.startswith(EVENT_PREFIX):
        return -1
    end = block.find(b"\n")
    if end > 0 and block.startswith(DATA_PREFIX, end + 1) and block.find(b"\n", end + 1) < 0:
        return end
    return -1


def parse_block(block: bytes) -> Event | None:
    """One event from the lines between two blank lines (None for a comment-only block)."""
    if (end := usual_shape(block)) > 0:
        kind = block[len(EVENT_PREFIX) : end].decode("utf-8", "replace")
        return Event(kind, block[end + 1 + len(DATA_PREFIX) :])
    kind = "message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        name, _, value = line.partition(b":")
        value = value.removeprefix(b" ")
        if name == b"data":
            data.append(value)
        elif name == b"event":
            kind = value.decode("utf-8", "replace")
    if not data:
        return None
    return Event(kind, b"\n".join(data))


class EventBatcher:
    """Feeds on raw bytes, hands out the complete events so far."""

    def __init__(self) -> None:
        self._buffer = b""

    def blocks(self, chunk: bytes) -> list[bytes]:
        """Take a network chunk; return the blocks it completed: each the lines of one event
        (or of a comment) with LF line ends, without the blank line that ended it."""
        buffer = self._buffer + chunk if self._buffer else chunk
        held = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # maybe half of a CRLF: decide with the next chunk
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        blocks = buffer.split(b"\n\n")
        self._buffer = blocks.pop() + held
        return blocks
