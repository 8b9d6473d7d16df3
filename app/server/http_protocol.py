"""uvicorn's httptools protocol with the cap on a request's head that h11 has and httptools lacks.

httptools (llhttp) parses several times faster than h11, but keeps whatever a client sends
before the blank line that ends the headers: one never-ending header grows the process without
bound. This protocol counts the bytes of a request that are not body as they arrive (the head, and
the chunk framing and trailers of a chunked body, which httptools buffers the same way) and
answers 400 and closes the connection past `LLMGW_MAX_HEADER_BYTES`, as uvicorn does for h11
at the same setting, so the fast parser is safe without a proxy in front that limits headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import asyncio

    from uvicorn.config import Config
    from uvicorn.server import ServerState

TOO_LARGE = "Request header fields too large."
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # what uvicorn writes, before the response starts
# Per header line: ": " and CRLF around the name and value the parser hands over.
LINE_OVERHEAD = 4


class HeadTooLarge(httptools.HttpParserError):
    """Raised from a parser callback; uvicorn answers any parser error with a 400 and a close."""


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, with every byte of a request that is not body (its head, and for a chunked
    body the chunk framing and trailers) capped at `max_head_bytes` in all."""

    max_head_bytes = 16_384

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(config, server_state, app_state, **kw)
        self._in_message = False  # from a request's first byte to its last
        self._began_in_read = False
        self._body_in_read = 0
        self._counted = 0
        self._read_size = 0

    def data_received(self, data: bytes) -> None:
        """Feed the parser, then count what of this read was not body. A read in which a
        request began is not counted (it may hold the end of the one before, pipelined): that
        request's head is checked exactly when it completes, and from its next read on, every
        byte counts, so what the parser holds stays within the cap plus one read."""
        self._began_in_read = False
        self._body_in_read = 0
        self._read_size = len(data)
        super().data_received(data)
        if not self._in_message or self._began_in_read or self.transport.is_closing():
            return
        self._counted += len(data) - self._body_in_read
        if self._counted > self.max_head_bytes:
            self.logger.warning(TOO_LARGE)
            self.send_400_response(TOO_LARGE)

    def on_message_begin(self) -> None:
        """A new request starts: counted from zero."""
        super().on_message_begin()
        self._in_message = True
        self._began_in_read = True
        self._counted = 0

    def on_headers_complete(self) -> None:
        """The exact size of the head, which may have arrived whole in the read it began in
        (not measured when that read, the usual case, is within the cap: so is the head)."""
        if not self._began_in_read or self._read_size > self.max_head_bytes:
            size = len(self.url) + sum(len(n) + len(v) + LINE_OVERHEAD for n, v in self.headers)
            if size > self.max_head_bytes:
                raise HeadTooLarge(TOO_LARGE)
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not None and self.cycle is not before:  # a new request's cycle
            self.cycle.transport = HeldHead(self.transport, self.loop)  # type: ignore[assignment]

    def _flush_held_head(self) -> None:
        """Send a head still held back, before anything written to the connection directly."""
        cycle = self.cycle
        if cycle is not None and isinstance(cycle.transport, HeldHead):
            cycle.transport.flush()

    def on_response_complete(self) -> None:
        """A response without a body (to HEAD) has its head sent before the next begins."""
        self._flush_held_head()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        """A 400 for a bad pipelined request comes after the answer already started."""
        self._flush_held_head()
        super().send_400_response(msg)

    def shutdown(self) -> None:
        """Graceful shutdown closes an idle connection: not before a held head is sent."""
        self._flush_held_head()
        super().shutdown()

    def on_body(self, body: bytes) -> None:
        """Body bytes are the body cap's business (LLMGW_MAX_BODY_BYTES), not this one's."""
        self._body_in_read += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The request's last byte arrived: nothing more to count until the next begins."""
        self._in_message = False
        super().on_message_complete()


def capped_httptools(max_head_bytes: int) -> type[CappedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with this cap."""
    return type(
        "CappedHttpToolsProtocol", (CappedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )


class HeldHead:
    """A response's transport whose head waits, until the end of the event loop's turn, for
    the body written in the same turn, so a short answer (a 429, a JSON error) leaves in one
    write system call, not two. A head with no body that turn (an SSE stream waiting for its
    first event) goes out alone at the turn's end."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop  # the connection's: no lookup of the running loop per response
        self._head: bytes | None = b""  # b"": not written yet; None: written

    def write(self, data: bytes) -> None:
        head = self._head
        if head is None or (head == b"" and data == CONTINUE):  # the interim answer: at once
            self._transport.write(data)
        elif head:
            self._head = None
            self._transport.write(head + data)
        else:
            self._head = data
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        head, self._head = self._head, None
        if head and not self._transport.is_closing():  # the client may have gone meanwhile
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())
