"""The response transport of app/http_protocol.py: a head waits for the body written in the same
turn of the event loop, so a short answer costs one write system call; a head with no body
that turn still goes out at its end."""

from __future__ import annotations

import asyncio

from app.http_protocol import HeldHead


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
        held = HeldHead(recorder)
        held.write(HEAD)
        held.write(b"{}")
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == [HEAD + b"{}"]


def test_a_head_without_a_body_that_turn_goes_out_at_its_end() -> None:
    """An SSE stream's head is not held back until its first event."""

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        recorder = Recorder()
        held = HeldHead(recorder)
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
        held = HeldHead(recorder)
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
        held = HeldHead(recorder)
        held.write(HEAD)
        recorder.closed = True  # the connection was lost before the turn ended
        await asyncio.sleep(0)
        return recorder.writes

    assert asyncio.run(scenario()) == []
