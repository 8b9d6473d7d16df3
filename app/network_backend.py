"""httpcore's own anyio network backend, with reads and writes that cost less.

Every read of an upstream chunk went through a generator context manager (httpcore's exception
mapping) and an anyio cancel scope (its timeout): about 6% of the gateway's CPU per relayed
chat. Here the same read is one `asyncio.timeout` and a try/except that maps the same errors
to the same httpcore exceptions. Connecting, TLS and everything else stay anyio's, as before.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import anyio
import httpcore
import httpx
from httpcore._backends.anyio import AnyIOBackend, AnyIOStream

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterable

    from httpcore._backends.base import SOCKET_OPTION, AsyncNetworkStream


class LeanStream(AnyIOStream):
    """An anyio byte stream whose reads and writes skip the per-call cancel scope."""

    _stream: anyio.abc.ByteStream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._stream.receive(max_bytes=max_bytes)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(exc) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise httpcore.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        if not buffer:
            return
        try:
            async with asyncio.timeout(timeout):
                await self._stream.send(item=buffer)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(exc) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise httpcore.WriteError(exc) from exc

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> LeanStream:
        return _lean(await super().start_tls(ssl_context, server_hostname, timeout))


def _lean(stream: AsyncNetworkStream) -> LeanStream:
    """The same connection, read and written the lean way."""
    if not isinstance(stream, AnyIOStream):
        raise TypeError(type(stream).__name__)
    return LeanStream(stream._stream)  # noqa: SLF001 - httpcore's own stream, wrapped anew


class LeanBackend(AnyIOBackend):
    """httpcore's anyio backend, handing out `LeanStream`s."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> LeanStream:
        return _lean(await super().connect_tcp(host, port, timeout, local_address, socket_options))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SOCKET_OPTION] | None = None,
    ) -> LeanStream:
        return _lean(await super().connect_unix_socket(path, timeout, socket_options))


class LeanTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with the pool it would make for these limits (verified TLS, HTTP/1.1),
    its connections made by `LeanBackend`."""

    def __init__(self, limits: httpx.Limits) -> None:
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=LeanBackend(),
        )
