"""A lean HTTP/1.1 streaming client for timing SSE, on h11 and asyncio streams.

httpx costs the client about a millisecond of CPU per request, which at 100 concurrent streams
would be measured as latency of whatever is on the other end; h11 does the protocol and nothing
else, and every chunk is timestamped as it leaves the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

READ_SIZE = 65_536
Headers = tuple[tuple[str, str], ...]
# uvicorn (the gateway and the sim) closes a connection idle for 5 s; one idle this long is
# replaced before it is used, as browsers do, rather than racing that close (a request sent as
# the server hangs up gets no answer, and would be counted as a failed stream).
STALE_AFTER = 4.0
# A frame carrying answer text: a Responses text delta, or a Chat Completions chunk's content.
TEXT_MARKERS = (b"output_text.delta", b'"content":"')


@dataclass
class Timing:
    """One streamed answer as the client saw it."""

    status: int = 0
    first_byte: float | None = None  # seconds from sending to the first body byte
    gaps: list[float] = field(default_factory=list)  # seconds between text-delta events


class StreamConnection:
    """One keep-alive connection; reconnects when the server closed the last one."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._protocol = h11.Connection(h11.CLIENT)
        self.received_at = 0.0

    async def post(self, path: str, body: bytes, headers: Headers = ()) -> float:
        """Send a POST (with `headers` besides its own); return when it was sent (perf_counter)."""
        await self._ready()
        sent = [
            ("Host", f"{self.host}:{self.port}"),
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            *headers,
        ]
        request = h11.Request(method="POST", target=path, headers=sent)
        data = self._protocol.send(request) or b""
        data += self._protocol.send(h11.Data(data=body)) or b""
        data += self._protocol.send(h11.EndOfMessage()) or b""
        assert self._writer is not None
        started = time.perf_counter()
        self._writer.write(data)
        return started

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        """The next HTTP event; `received_at` is when the bytes behind it arrived."""
        while True:
            event = self._protocol.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # NEED_DATA is ruled out just above
            assert self._reader is not None
            chunk = await self._reader.read(READ_SIZE)
            self.received_at = time.perf_counter()
            self._protocol.receive_data(chunk)

    async def close(self) -> None:
        """Drop the connection (mid-stream too: the server sees the visitor leave)."""
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def _ready(self) -> None:
        protocol = self._protocol
        if self._reader is not None and (
            self._reader.at_eof()  # the server let it go idle
            or time.perf_counter() - self.received_at > STALE_AFTER
        ):
            await self.close()
        if self._writer is not None and protocol.states == {
            h11.CLIENT: h11.DONE,
            h11.SERVER: h11.DONE,
        }:
            protocol.start_next_cycle()
            return
        if self._writer is not None and protocol.our_state is h11.IDLE:
            return
        await self.close()
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._protocol = h11.Connection(h11.CLIENT)


async def timed_stream(
    connection: StreamConnection, path: str, body: bytes, headers: Headers = ()
) -> Timing:
    """POST and read the whole answer: status, first body byte, gaps between text deltas.
    A broken exchange comes back with status 0, and the next one uses a new connection."""
    try:
        return await _read_timed(connection, path, body, headers)
    except (h11.ProtocolError, OSError):
        await connection.close()
        return Timing()


async def _read_timed(
    connection: StreamConnection, path: str, body: bytes, headers: Headers
) -> Timing:
    started = await connection.post(path, body, headers)
    timing, pending, last_delta = Timing(), b"", None
    while True:
        event = await connection.next_event()
        if isinstance(event, h11.Response):
            timing.status = event.status_code
        elif isinstance(event, h11.Data):
            if timing.first_byte is None:
                timing.first_byte = connection.received_at - started
            *frames, pending = (pending + bytes(event.data)).split(b"\n\n")
            for frame in frames:
                if any(marker in frame for marker in TEXT_MARKERS):
                    if last_delta is not None:
                        timing.gaps.append(connection.received_at - last_delta)
                    last_delta = connection.received_at
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return timing


async def first_event(connection: StreamConnection, path: str, body: bytes) -> int:
    """POST and read until the first body bytes arrive (the stream is then held open)."""
    await connection.post(path, body)
    status = 0
    while True:
        event = await connection.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data | h11.EndOfMessage | h11.ConnectionClosed):
            return status
