"""uvicorn's httptools protocol with the cap on a request's head that h11 has and httptools lacks.

httptools (llhttp) parses several times faster than h11, but keeps whatever a client sends
before the blank line that ends the headers: one never-ending header grows the process without
bound. This protocol counts the head's bytes as they arrive and answers 400 and closes the
connection past `LLMGW_MAX_HEADER_BYTES`, as uvicorn does for h11 at the same setting, so the
fast parser is safe without a proxy in front that limits headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

TOO_LARGE = "Request header fields too large."
# Per header line: ": " and CRLF around the name and value the parser hands over.
LINE_OVERHEAD = 4


class HeadTooLarge(httptools.HttpParserError):
    """Raised from a parser callback; uvicorn answers any parser error with a 400 and a close."""


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """httptools, with the request line and headers capped at `max_head_bytes` in all."""

    max_head_bytes = 16_384

    def __init__(
        self, config: Config, server_state: ServerState, app_state: dict[str, Any], **kw: Any
    ) -> None:
        super().__init__(config, server_state, app_state, **kw)
        self._in_head = True
        self._head_bytes = 0

    def data_received(self, data: bytes) -> None:
        """Feed the parser; while the head is still incomplete, every byte counts toward it."""
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self.logger.warning(TOO_LARGE)
            self.send_400_response(TOO_LARGE)

    def on_message_begin(self) -> None:
        """A new request starts: its head is counted from zero."""
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        """The exact size of a head that arrived whole in one read is checked here."""
        self._in_head = False
        size = len(self.url) + sum(len(n) + len(v) + LINE_OVERHEAD for n, v in self.headers)
        if size > self.max_head_bytes:
            raise HeadTooLarge(TOO_LARGE)
        super().on_headers_complete()


def capped_httptools(max_head_bytes: int) -> type[CappedHttpToolsProtocol]:
    """The protocol class for uvicorn's `http=`, with this cap."""
    return type(
        "CappedHttpToolsProtocol", (CappedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )
