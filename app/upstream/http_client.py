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

import httpx

from app.upstream.http_connection import UpstreamConnection

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Iterable, Mapping

# Idle connections kept for the next chats; more are closed when they come back.
MAX_IDLE = 256


class UpstreamResponse:
    """A streamed answer: status, headers (lower-case names), the body as it arrives."""

    __slots__ = ("_connection", "_pool", "headers", "status_code")

    def __init__(self, connection: UpstreamConnection, pool: UpstreamPool) -> None:
        self._connection: UpstreamConnection | None = connection
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
        self._idle: deque[UpstreamConnection] = deque()
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

    def check_in(self, connection: UpstreamConnection) -> None:
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

    def _check_out(self) -> UpstreamConnection | None:
        idle, oldest = self._idle, time.monotonic() - self._expiry
        while idle:
            connection = idle.pop()
            if not connection.closed and connection.idle_since >= oldest:
                connection.idle = False
                return connection
            connection.close()
        return None

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, connection = await loop.create_connection(
                    UpstreamConnection,
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
