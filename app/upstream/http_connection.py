"""One keep-alive HTTP/1.1 connection to the model server, as an asyncio protocol: llhttp
(httptools) parses the answer as it arrives and fills the connection, which the pool of
`http_client` hands out and the answer reads from. Written by hand for the reason given there.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import httptools
import httpx

if TYPE_CHECKING:
    from collections.abc import Iterable

# Unread body past which the socket is no longer read (the browser is slower than the model).
PAUSE_BYTES = 256 * 1024
FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class UpstreamConnection(asyncio.Protocol):
    """One connection to the model server, one exchange at a time; parser callbacks fill it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.idle = False  # kept in the pool, between exchanges
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self.reset()

    def reset(self) -> None:
        """Ready for the next exchange (the parser goes on with the next message itself)."""
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.until_close = False
        self.received = 0
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.error: httpx.TransportError | None = None

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream transport: TCP or TLS

    def data_received(self, data: bytes) -> None:
        if self.idle:  # unasked for (a server's 408 before it hangs up): not reusable
            self.close()
            return
        self.received += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"the model server's answer is not HTTP ({exc})")
            self.close()
        if self.buffered > PAUSE_BYTES and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self._lost()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:  # noqa: ARG002 - asyncio's signature
        self._lost()

    def _lost(self) -> None:
        self.closed = True
        if self.head_done and self.until_close and not self.complete:
            self.complete = True  # a body without a length ends when the connection does
        elif not self.complete and self.error is None and (self.head_done or self.received):
            self.error = httpx.RemoteProtocolError("the model server hung up mid-answer")
        elif not self.complete and self.error is None:
            self.error = httpx.RemoteProtocolError("the model server closed the connection")
        self._wake()

    # httptools' callbacks

    def on_message_begin(self) -> None:
        if self.head_done:  # a second answer to one request: the connection is not to be trusted
            raise httptools.HttpParserError("the model server answered twice")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.status < 200:  # interim (100 Continue, 103 Early Hints): the answer follows
            self.headers.clear()
            return
        self.head_done = True
        framed = {name.lower() for name, _ in self.headers} & FRAMING
        self.until_close = not framed and self.status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if not self.head_done:  # the end of an interim answer
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()

    # the gateway's side

    def send(self, data: Iterable[bytes]) -> None:
        if self.transport is None or self.closed:
            self.error = httpx.RemoteProtocolError("the model server closed the connection")
            return
        self.transport.writelines(data)

    async def head(self) -> None:
        """Return once the status line and headers are in."""
        while not self.head_done:
            if self.error is not None:
                raise self.error
            await self.wait()

    def take(self) -> bytes:
        """Whatever body has arrived, in one piece."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self.buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return data

    async def wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.closed and not self.chunks

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
