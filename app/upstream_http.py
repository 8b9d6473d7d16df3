"""The chat's own HTTP/1.1 client to the model server: asyncio protocols, llhttp (httptools)
for the answers, and a keep-alive pool that hands out a connection in constant time.

httpx stays the client for everything else (the health check, the doctor). For chats it was most
of the gateway's CPU: its pool scans every connection for each request (two thirds of the CPU
at 100 concurrent streams) and each chunk went through h11 and several layers of wrappers.
Errors are httpx's own exception types, so callers map them as before: `ConnectError` and
`ConnectTimeout` when no connection can be made, `RemoteProtocolError` when the server breaks the
exchange, `DecodingError` for a body in an encoding that cannot be decoded.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import deque
from typing import TYPE_CHECKING

import httptools
import httpx

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Iterable, Mapping

# Unread body past which the socket is no longer read (the browser is slower than the model).
PAUSE_BYTES = 256 * 1024
# Idle connections kept for the next chats; more are closed when they come back.
MAX_IDLE = 256
FRAMING = frozenset({b"content-length", b"transfer-encoding"})


class _Connection(asyncio.Protocol):
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


class UpstreamResponse:
    """A streamed answer: status, headers (lower-case names), the body as it arrives."""

    __slots__ = ("_connection", "_pool", "headers", "status_code")

    def __init__(self, connection: _Connection, pool: UpstreamPool) -> None:
        self._connection: _Connection | None = connection
        self._pool = pool
        self.status_code = connection.status
        headers: dict[str, str] = {}
        for raw_name, raw_value in connection.headers:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers = headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it comes off the wire (chunk framing removed), one piece per read."""
        connection = self._connection
        if connection is None:
            return
        while True:
            if connection.chunks:
                yield connection.take()
            elif connection.complete:
                return
            elif connection.error is not None:
                raise connection.error
            else:
                await connection.wait()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body decoded from its content encoding (gzip or deflate; the gateway asks for
        identity, but a proxy in between may compress anyway)."""
        decoder = _decoder(self.headers.get("content-encoding", "identity"))
        async for chunk in self.aiter_raw():
            if decoder is None:
                yield chunk
                continue
            try:
                data = decoder.decompress(chunk)
            except zlib.error as exc:
                raise httpx.DecodingError(f"the answer could not be decompressed ({exc})") from exc
            if data:
                yield data

    async def aclose(self) -> None:
        """Done with the answer: the connection goes back to the pool when the answer was read to
        its end, and is closed otherwise (the model server then stops generating)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        if connection.reusable():
            self._pool.check_in(connection)
        else:
            connection.close()


def _decoder(encoding: str) -> zlib._Decompress | None:
    encoding = encoding.strip().lower()
    if encoding in ("identity", ""):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # zlib-wrapped or gzip, by its header
    raise httpx.DecodingError(f"the model server used an unsupported encoding: {encoding}")


class UpstreamPool:
    """Keep-alive connections to one origin, newest first; a chat POSTs to one fixed URL."""

    def __init__(
        self,
        url: httpx.URL,
        headers: Iterable[tuple[str, str]],
        *,
        connect_timeout: float,
        ssl_context: ssl.SSLContext | None,
        keepalive_expiry: float = 30.0,
    ) -> None:
        self._host = url.host
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = ssl_context if url.scheme == "https" else None
        self._connect_timeout = connect_timeout
        self._expiry = keepalive_expiry
        self._idle: deque[_Connection] = deque()
        authority = url.netloc.decode("ascii")
        fixed = [("Host", authority), *headers, ("Content-Type", "application/json")]
        self._head = b"POST " + url.raw_path + b" HTTP/1.1\r\n" + _lines(fixed)

    async def post(self, body: bytes, headers: Mapping[str, str] | None = None) -> UpstreamResponse:
        """Send the chat; return once the answer's head is in. A kept connection that the server
        closed before answering at all (its keep-alive ran out as we sent) is retried once on a
        new one: the request never reached the model then."""
        extra = _lines([*(headers or {}).items(), ("Content-Length", str(len(body)))])
        request = (self._head, extra, b"\r\n", body)
        while True:
            connection = self._check_out()
            reused = connection is not None
            if connection is None:
                connection = await self._connect()
            connection.send(request)
            try:
                await connection.head()
            except httpx.RemoteProtocolError:
                connection.close()
                if reused and connection.received == 0:
                    continue
                raise
            except BaseException:
                connection.close()
                raise
            return UpstreamResponse(connection, self)

    def check_in(self, connection: _Connection) -> None:
        idle, now = self._idle, time.monotonic()
        while idle and idle[0].idle_since < now - self._expiry:
            idle.popleft().close()
        if len(idle) >= MAX_IDLE:
            connection.close()
            return
        connection.reset()
        connection.idle_since = now
        connection.idle = True
        idle.append(connection)

    def _check_out(self) -> _Connection | None:
        idle, oldest = self._idle, time.monotonic() - self._expiry
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest:
                connection.idle = False
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    _Connection,
                    self._host,
                    self._port,
                    ssl=self._tls,
                    server_hostname=self._host if self._tls is not None else None,
                )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout("connecting to the model server timed out") from exc
        except OSError as exc:  # refused, unreachable, DNS, and TLS failures (ssl.SSLError)
            raise httpx.ConnectError(f"cannot connect to the model server ({exc})") from exc
        return connection  # asyncio and uvloop both set TCP_NODELAY on TCP connections

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()


def _lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """Header lines; a value that would break the head (CR or LF in it) is left out."""
    return b"".join(
        f"{name}: {value}\r\n".encode("latin-1")
        for name, value in headers
        if "\r" not in value and "\n" not in value
    )
