"""Both HTTP parsers the gateway offers cap a request's head at LLMGW_MAX_HEADER_BYTES: h11 by
itself, httptools (the faster default) through app/server/http_protocol.py. Real `llmgw serve`
processes, raw sockets."""

from __future__ import annotations

import socket
import time
from typing import TYPE_CHECKING

import pytest
from gateway_subprocess import GatewayProcess, gateway_process

if TYPE_CHECKING:
    from collections.abc import Iterator

CAP = 16_384
HEAD = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n"


@pytest.fixture(scope="module", params=["httptools", "h11"])
def gateway(
    request: pytest.FixtureRequest, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    log = tmp_path_factory.mktemp(f"parser-{request.param}") / "gateway.log"
    with gateway_process(
        log,
        redis_url=redis_server,
        http_parser=request.param,
        max_header_bytes=str(CAP),
        health_interval="0",
    ) as process:
        yield process
        assert "Traceback" not in log.read_text(errors="replace")


def port_of(gateway: GatewayProcess) -> int:
    return int(gateway.url.rsplit(":", 1)[1])


def exchange(gateway: GatewayProcess, request: bytes, *rest: bytes) -> bytes:
    """Send requests on a fresh connection (the last says `Connection: close`), in one write
    or, with `rest`, in several a moment apart; read until the server closes it."""
    received = b""
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=10) as sock:
        sock.sendall(request)
        for part in rest:
            time.sleep(0.2)  # the server has read what came before
            sock.sendall(part)
        while chunk := sock.recv(65536):
            received += chunk
    return received


def pad(size: int) -> bytes:
    return b"X-Pad: " + b"a" * size + b"\r\n"


def test_a_head_within_the_cap_is_served(gateway: GatewayProcess) -> None:
    """Headers of 12 KB in all are an ordinary request."""
    answer = exchange(gateway, HEAD + pad(12_000) + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200")


@pytest.mark.parametrize("gateway", ["httptools"], indirect=True)
def test_a_head_over_the_cap_is_refused_with_a_400(gateway: GatewayProcess) -> None:
    """A 20 KB header, sent whole: 400 and the connection closed, before any route runs.
    (h11 caps only what it holds of an incomplete head, so there a head read whole passes.)"""
    answer = exchange(gateway, HEAD + pad(20_000) + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert b"healthz" not in answer


def never_ending(gateway: GatewayProcess, opening: bytes) -> bytes:
    """Send `opening`, then a megabyte 1 KB at a time; what the server answered, or b"" when
    it closed the connection. A server that keeps reading makes this time out."""
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=5) as sock:
        sock.sendall(opening)
        try:
            for _ in range(1024):
                sock.sendall(b"a" * 1024)
            # The kernel's buffers may have taken it all before the server read any: then the
            # server's 400 or close comes now.
            return sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            return b""  # the server closed: our writes were refused


def test_a_never_ending_header_is_cut_off_near_the_cap(gateway: GatewayProcess) -> None:
    """A header that never ends: the server closes the connection instead of buffering whatever
    comes (what it took is bounded by the cap plus the sockets' buffers, and test_fuzz
    measures the memory)."""
    answer = never_ending(gateway, HEAD + b"X-Pad: ")
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400")


def test_a_never_ending_trailer_is_cut_off_too(gateway: GatewayProcess) -> None:
    """After a chunked body, trailers are headers as well: one that never ends is cut off."""
    opening = (
        b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\nX-Trailer: "
    )
    answer = never_ending(gateway, opening)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400")


def test_a_body_larger_than_the_cap_is_not_taken_for_a_head(gateway: GatewayProcess) -> None:
    """A 30 KB body sent with its head in one write, and a second request pipelined behind it
    whose head starts in the same write and ends in the next: both reach the gateway (a JSON
    400 from its own validation, then the health answer), not the parser's head cap."""
    body = b'{"input": 1, "pad": "' + b"a" * 30_000 + b'"}'
    head = (
        b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    )
    answer = exchange(gateway, head + body + HEAD, b"Connection: close\r\n\r\n")
    first, second = answer.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"400")
    assert b"application/json" in first.split(b"\r\n\r\n", 1)[0].lower()
    assert second.startswith(b"200")


def test_pipelined_answers_keep_their_order_and_a_head_answer_has_no_body(
    gateway: GatewayProcess,
) -> None:
    """GET, HEAD and GET in one write: three answers in order, the HEAD one (uptime monitors
    often send HEAD) without a body, each head followed by its own body (the head waits for
    the body written with it)."""
    head_request = b"HEAD /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"
    answer = exchange(gateway, HEAD + b"\r\n" + head_request + HEAD + b"Connection: close\r\n\r\n")
    parts = answer.split(b"HTTP/1.1 ")[1:]
    assert [part[:3] for part in parts] == [b"200", b"200", b"200"]
    first, headed, last = (part.split(b"\r\n\r\n", 1) for part in parts)
    assert first[1] == last[1] != b""
    assert headed[1] == b""


def test_a_client_expecting_100_continue_gets_it_then_the_answer(gateway: GatewayProcess) -> None:
    """`Expect: 100-continue`: the interim answer comes before the body is sent, and the
    real answer (here the JSON 400 for a chat without input) after it."""
    body = b"{}"
    head = (
        b"POST /api/chat HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
        b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
    )
    with socket.create_connection(("127.0.0.1", port_of(gateway)), timeout=10) as sock:
        sock.sendall(head)
        interim = sock.recv(65536)
        sock.sendall(body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    final = (interim + received).split(b"\r\n\r\n", 1)[1]
    assert final.startswith(b"HTTP/1.1 400")
    assert b'"error"' in final
