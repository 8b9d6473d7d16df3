"""The chat's own HTTP/1.1 client (`app.upstream.http_client`) against raw servers: answers in every
framing, kept connections, hang-ups, garbage, TLS, compression and proxies."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
from support import self_signed_certificate

from app.errors import UpstreamUnavailable
from app.protection.outage import OutageClass
from app.upstream.client import UpstreamClient, open_stream
from app.upstream.http_client import UpstreamPool, UpstreamResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
    from pathlib import Path

    Talk = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

SSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
CHUNKED = SSE + b"Transfer-Encoding: chunked\r\n\r\n"
EVENT = b"data: x\n\n"


@dataclass
class Server:
    """A raw TCP server; it keeps what it was sent and counts its connections."""

    url: str
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request: its head and its Content-Length body."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + await reader.readexactly(length)


async def serving(
    answers: list[bytes | None], tls: ssl.SSLContext | None = None, *, close: bool = False
) -> AsyncIterator[Server]:
    """Answer requests in turn with `answers` (None: hang up without a byte), on any of its
    connections; `close` hangs up after each answer."""
    pending = list(answers)
    server_state = Server("")

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server_state.connections += 1
        try:
            while pending:
                server_state.requests.append(await read_request(reader))
                answer = pending.pop(0)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(talk, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    server_state.url = f"{'https' if tls else 'http'}://localhost:{port}"
    async with server:
        yield server_state


def sized(body: bytes) -> bytes:
    """A Content-Length header, the blank line, and the body."""
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def pool_for(url: str, ssl_context: ssl.SSLContext | None = None, **options: float) -> UpstreamPool:
    return UpstreamPool(
        httpx.URL(url).join("/v1/responses"),
        [("Authorization", "Bearer t")],
        connect_timeout=2,
        ssl_context=ssl_context,
        **options,
    )


async def body_of(response: UpstreamResponse) -> bytes:
    try:
        return b"".join([chunk async for chunk in response.aiter_bytes()])
    finally:
        await response.aclose()


def run(scenario: Callable[[], Coroutine[object, object, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_chunked_answer_arrives_whole_and_the_request_is_as_configured() -> None:
    async def scenario() -> None:
        async for server in serving([CHUNKED + b"9\r\n" + EVENT + b"\r\n0\r\n\r\n"]):
            pool = pool_for(server.url)
            response = await pool.post(b'{"a":1}', {"traceparent": "00-abc-def-01"})
            assert response.status_code == 200
            assert response.headers["content-type"] == "text/event-stream"
            assert await body_of(response) == EVENT
            request = server.requests[0]
            assert request.startswith(b"POST /v1/responses HTTP/1.1\r\n")
            for line in (b"Authorization: Bearer t", b"traceparent: 00-abc-def-01"):
                assert line in request
            assert b"Content-Length: 7\r\n" in request
            assert request.endswith(b'\r\n\r\n{"a":1}')
            await pool.aclose()

    run(scenario)


def test_an_interim_answer_is_skipped() -> None:
    """A proxy's 100 Continue or 103 Early Hints comes before the real answer."""
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"

    async def scenario() -> None:
        async for server in serving([early + SSE + sized(EVENT)]):
            pool = pool_for(server.url)
            response = await pool.post(b"{}")
            assert response.status_code == 200
            assert "link" not in response.headers
            assert await body_of(response) == EVENT
            await pool.aclose()

    run(scenario)


def test_a_kept_connection_that_speaks_unasked_is_not_reused() -> None:
    """Some servers send a 408 on an idle connection before they close it, or answer twice:
    the next chat must not take that for its answer, nor reuse the connection."""
    answer = SSE + sized(EVENT)
    timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"
    connections: list[int] = []

    async def talk(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(answer)
        if len(connections) == 1:
            await asyncio.sleep(0.05)
            writer.write(timeout)  # unasked, while the connection is idle in the pool
        elif len(connections) == 2:
            writer.write(timeout)  # a second answer, in the same breath as the first
        await writer.drain()
        await asyncio.sleep(0.3)
        writer.close()

    async def scenario() -> None:
        server = await asyncio.start_server(talk, "127.0.0.1", 0)
        async with server:
            pool = pool_for(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            for _ in range(3):
                response = await pool.post(b"{}")
                assert response.status_code == 200
                assert await body_of(response) == EVENT
                await asyncio.sleep(0.15)
            assert len(connections) == 3
            await pool.aclose()

    run(scenario)


def test_a_kept_connection_serves_the_next_chat() -> None:
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([answer, answer, answer]):
            pool = pool_for(server.url)
            for _ in range(3):
                assert await body_of(await pool.post(b"{}")) == EVENT
            assert server.connections == 1
            await pool.aclose()

    run(scenario)


def test_an_answer_left_unread_closes_its_connection() -> None:
    """A visitor who leaves mid-answer: the model server sees the connection close (and stops
    generating); the next chat gets a new connection."""
    endless = CHUNKED + b"9\r\n" + EVENT + b"\r\n"
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([endless, answer]):
            pool = pool_for(server.url)
            first = await pool.post(b"{}")
            chunks = first.aiter_raw()
            assert await anext(chunks) == EVENT
            await first.aclose()
            assert await body_of(await pool.post(b"{}")) == EVENT
            assert server.connections == 2
            await pool.aclose()

    run(scenario)


def test_an_answer_without_a_length_ends_with_its_connection() -> None:
    async def scenario() -> None:
        async for server in serving([SSE + b"\r\n" + EVENT + EVENT], close=True):
            pool = pool_for(server.url)
            assert await body_of(await pool.post(b"{}")) == EVENT + EVENT
            await pool.aclose()

    run(scenario)


def test_a_kept_connection_the_server_dropped_is_retried_once_on_a_new_one() -> None:
    """The server's keep-alive ran out as the chat was sent: no byte came back, so the model
    never saw it, and it goes out again on a new connection."""
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([answer, None, answer]):
            pool = pool_for(server.url)
            assert await body_of(await pool.post(b"{}")) == EVENT
            assert await body_of(await pool.post(b"{}")) == EVENT
            assert server.connections == 2
            await pool.aclose()

    run(scenario)


def test_a_new_connection_closed_without_an_answer_is_an_error_not_a_retry() -> None:
    async def scenario() -> None:
        async for server in serving([None, None]):
            pool = pool_for(server.url)
            with pytest.raises(httpx.RemoteProtocolError):
                await pool.post(b"{}")
            assert len(server.requests) == 1
            await pool.aclose()

    run(scenario)


def test_a_server_that_hangs_up_mid_answer_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async for server in serving([CHUNKED + b"9\r\n" + EVENT + b"\r\n"], close=True):
            pool = pool_for(server.url)
            response = await pool.post(b"{}")
            with pytest.raises(httpx.RemoteProtocolError):
                await body_of(response)
            await pool.aclose()

    run(scenario)


def test_an_answer_that_is_not_http_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async for server in serving([b"SSH-2.0-OpenSSH_9.2\r\n\r\n"]):
            pool = pool_for(server.url)
            with pytest.raises(httpx.RemoteProtocolError):
                await pool.post(b"{}")
            await pool.aclose()

    run(scenario)


def test_a_refused_port_is_a_connect_error() -> None:
    async def scenario() -> None:
        async for server in serving([]):
            url = server.url
        pool = pool_for(url)  # the server is gone: its port refuses
        with pytest.raises(httpx.ConnectError):
            await pool.post(b"{}")

    run(scenario)


def test_idle_connections_past_their_expiry_are_not_reused() -> None:
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([answer, answer]):
            pool = pool_for(server.url, keepalive_expiry=0.05)
            assert await body_of(await pool.post(b"{}")) == EVENT
            await asyncio.sleep(0.1)
            assert await body_of(await pool.post(b"{}")) == EVENT
            assert server.connections == 2
            await pool.aclose()

    run(scenario)


def test_a_slow_reader_still_gets_a_large_answer_whole() -> None:
    """Past the pause threshold the socket is not read until the relay catches up."""
    big = bytes(range(256)) * 8192  # 2 MiB
    answer = SSE + sized(big)

    async def scenario() -> None:
        async for server in serving([answer]):
            pool = pool_for(server.url)
            response = await pool.post(b"{}")
            received = b""
            async for chunk in response.aiter_raw():
                received += chunk
                await asyncio.sleep(0.01)
            await response.aclose()
            assert received == big
            await pool.aclose()

    run(scenario)


def test_a_gzipped_answer_is_decoded_and_an_unknown_encoding_is_a_decoding_error() -> None:
    packed = gzip.compress(EVENT * 3)
    gzipped = SSE + b"Content-Encoding: gzip\r\n" + sized(packed)
    weird = SSE + b"Content-Encoding: snappy\r\nContent-Length: 3\r\n\r\nabc"

    async def scenario() -> None:
        async for server in serving([gzipped, weird]):
            pool = pool_for(server.url)
            assert await body_of(await pool.post(b"{}")) == EVENT * 3
            with pytest.raises(httpx.DecodingError):
                await body_of(await pool.post(b"{}"))
            await pool.aclose()

    run(scenario)


def test_a_header_value_with_a_line_break_is_not_sent() -> None:
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([answer]):
            pool = pool_for(server.url)
            await body_of(await pool.post(b"{}", {"tracestate": "a=b\r\nX-Injected: yes"}))
            assert b"X-Injected" not in server.requests[0]
            await pool.aclose()

    run(scenario)


def test_an_error_answer_is_classified_from_its_status_and_body() -> None:
    """A 502 from nginx says the model server is down; its body is read, the connection kept."""
    body = b'{"error":"bad gateway"}'
    bad = b"HTTP/1.1 502 Bad Gateway\r\nServer: nginx\r\n" + sized(body)
    good = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([bad, good]):
            async with UpstreamClient(base_url=server.url) as client:
                with pytest.raises(UpstreamUnavailable) as raised:
                    await open_stream(client, b"{}")
                assert raised.value.outage is OutageClass.MODEL_SERVER_DOWN
                response = await open_stream(client, b"{}")
                assert await body_of(response) == EVENT  # type: ignore[arg-type]
            assert server.connections == 1

    run(scenario)


def test_chats_go_through_the_proxy_httpx_would_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY and the like are honoured for chats, as for everything else the client sends."""
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for proxy in serving([answer]):
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            async with UpstreamClient(base_url="http://model.invalid:1234") as client:
                response = await open_stream(client, b"{}")
                assert await body_of(response) == EVENT  # type: ignore[arg-type]
            assert proxy.requests[0].startswith(b"POST http://model.invalid:1234/v1/responses ")

    run(scenario)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


def test_tls_is_verified_and_its_connection_kept(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    answer = SSE + sized(EVENT)

    async def scenario() -> None:
        async for server in serving([answer, answer], server_tls):
            pool = pool_for(server.url, ssl.create_default_context(cafile=str(cert)))
            for _ in range(2):
                assert await body_of(await pool.post(b"{}")) == EVENT
            assert server.connections == 1
            await pool.aclose()
        async for server in serving([answer], server_tls):
            untrusting = pool_for(server.url, ssl.create_default_context())
            with pytest.raises(httpx.ConnectError):
                await untrusting.post(b"{}")

    run(scenario)
