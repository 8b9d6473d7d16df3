"""The lean upstream transport behaves as httpx's own: answers, TLS, and the same errors."""

from __future__ import annotations

import asyncio
import http.server
import shutil
import socketserver
import ssl
import subprocess
import threading
from typing import TYPE_CHECKING

import httpcore
import httpx
import pytest

from app.network_backend import LeanBackend, LeanTransport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


async def serving(talk: Talk, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A raw TCP server speaking `talk` to every connection; yields its URL."""
    server = await asyncio.start_server(talk, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"{'https' if tls else 'http'}://localhost:{port}/"


async def fetch(talk: Talk, *, read_timeout: float = 5.0) -> httpx.Response:
    """GET through the lean transport from a server speaking `talk`; the whole body read."""
    async for url in serving(talk):
        timeout = httpx.Timeout(5.0, read=read_timeout)
        async with httpx.AsyncClient(transport=LeanTransport(httpx.Limits()), timeout=timeout) as c:
            response = await c.get(url)
            await response.aread()
            return response
    raise AssertionError


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(HEAD + b"9\r\ndata: x\n\n\r\n0\r\n\r\n")
    await writer.drain()


async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(HEAD + b"9\r\ndata: x\n\n\r\n")
    await writer.drain()
    await asyncio.sleep(5)


async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(HEAD + b"9\r\ndata: x\n\n\r\n")
    await writer.drain()
    writer.close()


def test_a_chunked_answer_arrives_whole() -> None:
    """A streamed answer comes through as sent."""
    response = asyncio.run(fetch(answer))
    assert response.status_code == 200
    assert response.content == b"data: x\n\n"


def test_a_stalled_answer_is_a_read_timeout() -> None:
    """A server that stops sending gives httpx's ReadTimeout, as the default transport does."""
    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(fetch(stall, read_timeout=0.2))


def test_a_server_that_hangs_up_mid_answer_is_a_protocol_error() -> None:
    """A connection closed mid-body is an httpx transport error, not a hang or a crash."""
    with pytest.raises(httpx.RemoteProtocolError):
        asyncio.run(fetch(hang_up))


class Answer(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "9")
        self.end_headers()
        self.wfile.write(b"data: x\n\n")

    def log_message(self, *_: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the test certificate")
def test_tls_connections_are_lean_too(tmp_path: Path) -> None:
    """An https upstream is verified, answers, and its connection is kept for the next request."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answer)
    server.socket = server_tls.wrap_socket(server.socket, server_side=True)
    url = f"https://localhost:{server.server_address[1]}/"
    threading.Thread(target=server.serve_forever, daemon=True).start()

    async def scenario() -> list[int]:
        trusted = ssl.create_default_context(cafile=str(cert))
        async with httpcore.AsyncConnectionPool(
            ssl_context=trusted, network_backend=LeanBackend()
        ) as pool:
            statuses = [(await pool.request("GET", url)).status for _ in range(2)]
            assert len(pool.connections) == 1
            return statuses

    try:
        assert asyncio.run(scenario()) == [200, 200]
    finally:
        server.shutdown()
        server.server_close()
