"""The response transport of `http_protocol`: a head waits for the body written in the same
turn of the event loop, so a short answer costs one write system call; a head with no body
that turn still goes out at its end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from typing import Any, Self

import pytest
import uvicorn
from support import wait_for_port

from app.server.http_protocol import HeldHead, capped_httptools


class Recorder:
    """A transport that records each write (each would be a system call)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


HEAD = b"HTTP/1.1 429 Too Many Requests\r\ncontent-length: 2\r\n\r\n"


def test_a_head_and_its_body_in_one_turn_are_one_write() -> None:
    async def scenario() -> list[bytes]:
        recorder = Recorder()
        held = HeldHead(recorder, asyncio.get_running_loop())
        held.write(HEAD)
        held.write(b"{}")
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == [HEAD + b"{}"]


def test_a_head_without_a_body_that_turn_goes_out_at_its_end() -> None:
    """An SSE stream's head is not held back until its first event."""

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        recorder = Recorder()
        held = HeldHead(recorder, asyncio.get_running_loop())
        held.write(HEAD)
        before = list(recorder.writes)
        await asyncio.sleep(0)
        after_turn = list(recorder.writes)
        held.write(b"event: a\n\n")
        return before, after_turn + recorder.writes[len(after_turn) :]

    before, after = asyncio.run(scenario())
    assert before == []
    assert after == [HEAD, b"event: a\n\n"]


def test_an_interim_100_continue_is_never_held_and_close_sends_a_held_head() -> None:
    async def scenario() -> tuple[list[bytes], bool]:
        recorder = Recorder()
        held = HeldHead(recorder, asyncio.get_running_loop())
        held.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        interim = list(recorder.writes)
        held.write(HEAD)
        held.close()
        return interim + recorder.writes[1:], recorder.closed

    writes, closed = asyncio.run(scenario())
    assert writes == [b"HTTP/1.1 100 Continue\r\n\r\n", HEAD]
    assert closed


def test_a_held_head_is_dropped_when_the_client_has_gone() -> None:
    async def scenario() -> list[bytes]:
        recorder = Recorder()
        held = HeldHead(recorder, asyncio.get_running_loop())
        held.write(HEAD)
        recorder.closed = True  # the connection was lost before the turn ended
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == []


def test_a_body_that_looks_like_an_interim_answer_still_follows_its_head() -> None:
    async def scenario() -> list[bytes]:
        recorder = Recorder()
        held = HeldHead(recorder, asyncio.get_running_loop())
        held.write(HEAD)
        held.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # a body: the head went first
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == [HEAD + b"HTTP/1.1 100 Continue\r\n\r\n"]


class UvicornThread:
    """uvicorn with the gateway's protocol (app/server/http_protocol.py) in a thread, on `loop`,
    serving `app`; `server` is there for what the test does to it."""

    def __init__(self, app: Any, loop: str) -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        config = uvicorn.Config(
            app,
            port=self.port,
            loop=loop,
            http=capped_httptools(1024),
            log_level="error",
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)

    def exchange(self, *requests: bytes) -> bytes:
        """Send each request a moment apart; read until closed or quiet for a second."""
        received = b""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
            for request in requests:
                sock.sendall(request)
                time.sleep(0.05)
            with contextlib.suppress(TimeoutError):
                while chunk := sock.recv(65536):
                    received += chunk
        return received


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@LOOPS
def test_a_streams_head_goes_before_a_400_for_the_request_pipelined_behind(loop: str) -> None:
    """An SSE head held to the end of its turn, then a pipelined request too large for the
    cap: the client gets the stream's head, then the 400 (uvloop runs the 400's write before
    the turn's end; the head must not be lost or come second)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        time.sleep(0.2)  # busy: the next request's bytes are waiting when the head is sent
        start = {"type": "http.response.start", "status": 200, "headers": [(b"x-stream", b"1")]}
        await send(start)
        await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"data: x\n\n"})

    too_large = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 3000 + b"\r\n\r\n"
    with UvicornThread(app, loop) as server:
        received = server.exchange(GET, too_large)
    assert received.startswith(b"HTTP/1.1 200")
    assert b"HTTP/1.1 400" in received
    assert received.index(b"x-stream") < received.index(b"HTTP/1.1 400")


@LOOPS
def test_a_head_answer_goes_out_even_when_the_server_shuts_down_in_the_same_turn(
    loop: str,
) -> None:
    """HEAD writes no body, so nothing merges with its head: it leaves when the response
    completes, before a graceful shutdown closes the idle connection."""
    servers: list[uvicorn.Server] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        for connection in list(servers[0].server_state.connections):
            connection.shutdown()  # what uvicorn's shutdown does, landing in this turn

    with UvicornThread(app, loop) as server:
        servers.append(server.server)
        received = server.exchange(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert received.startswith(b"HTTP/1.1 200")
