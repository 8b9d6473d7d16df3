"""Streams LM Studio really sent (tests/upstream/captures/, provenance in its README), replayed
through the relay at its seam with httpx: the exact bytes a visitor gets of each, however the
network cuts them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from app.upstream.client import Timeouts
from app.upstream.relay import StreamRecord, relay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

CAPTURES = Path(__file__).parent / "captures"
TIMEOUTS = Timeouts(connect=1, first_token=1, idle=1, total=5)
CONTEXT_OVERFLOW = "lmstudio-0.4.21-chat-completions-context-overflow-error.sse"
CHAT_COMPLETIONS = "lmstudio-chat-completions-gemma-stop-reconstructed.sse"
# Cut sizes for the network: the whole body in one read, and reads cutting lines and fields.
CUTS = [None, 1, 7]


def capture(name: str) -> bytes:
    """The bytes of one captured stream."""
    return (CAPTURES / name).read_bytes()


def chunked(body: bytes, size: int | None) -> list[bytes]:
    """The body as the network reads it: whole, or in pieces of `size` bytes."""
    if size is None:
        return [body]
    return [body[start : start + size] for start in range(0, len(body), size)]


async def replay(chunks: list[bytes]) -> tuple[bytes, StreamRecord]:
    """What the relay writes to the browser when LM Studio answers with these chunks."""

    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    def handler(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await client.send(
            client.build_request("POST", "http://m/v1/responses"), stream=True
        )
        record = StreamRecord(started=time.monotonic())
        out = b"".join([chunk async for chunk in relay(response, TIMEOUTS, record)])
    return out, record


def test_every_capture_has_its_provenance_in_the_readme() -> None:
    """A stream in captures/ is only kept with its source written down next to it."""
    readme = (CAPTURES / "README.md").read_text()
    names = sorted(path.name for path in CAPTURES.glob("*.sse"))
    assert names == sorted([CONTEXT_OVERFLOW, CHAT_COMPLETIONS])
    assert all(f"`{name}`" in readme for name in names)


@pytest.mark.parametrize("size", CUTS)
def test_a_context_overflow_reaches_the_visitor_as_context_full(size: int | None) -> None:
    """LM Studio's `event: error` frame for a prompt over the context becomes the gateway's
    `context_full` (start a new conversation), however the network cuts it; its token counts
    stay on the server, and it is the visitor's outcome, not the host's failure."""
    out, record = asyncio.run(replay(chunked(capture(CONTEXT_OVERFLOW), size)))
    assert out == (
        b'event: error\ndata: {"type":"error","error":{"code":"context_full","message":'
        b'"this conversation has grown too long for the model: start a new one"}}\n\n'
    )
    assert record.outcome == "context_full"


def test_a_context_overflow_is_not_counted_as_a_first_token() -> None:
    """The error frame is not a token: the stream records no first token and no usage."""
    _, record = asyncio.run(replay([capture(CONTEXT_OVERFLOW)]))
    assert record.first_token_at is None
    assert record.usage is None
    assert record.response_id is None


@pytest.mark.parametrize("size", CUTS)
def test_a_chat_completions_stream_is_not_taken_for_an_answer(size: int | None) -> None:
    """A chat-completions stream (no `event:` lines, no `type`) passes nothing to the browser
    and ends in the gateway's "stopped before finishing" error, not in silence."""
    out, record = asyncio.run(replay(chunked(capture(CHAT_COMPLETIONS), size)))
    assert out == (
        b'event: error\ndata: {"type":"error","error":{"code":"upstream_closed","message":'
        b'"the model stopped before finishing"}}\n\n'
    )
    assert record.outcome == "upstream_error"
    assert record.first_token_at is None
