"""The relay at its seam with httpx: what is forwarded, rebuilt, dropped, and when it gives up."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from app.upstream.client import Timeouts
from app.upstream.relay import StreamRecord, relay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

TIMEOUTS = Timeouts(connect=1, first_token=1, idle=1, total=5)
CREATED = {
    "type": "response.created",
    "response": {"id": "resp_abc", "status": "in_progress", "instructions": "SECRET PROMPT"},
}
DELTA = {"type": "response.output_text.delta", "delta": "Hi"}
COMPLETED = {
    "type": "response.completed",
    "response": {
        "id": "resp_abc",
        "status": "completed",
        "instructions": "SECRET PROMPT",
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    },
}


def frame(event: str, data: object) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def collect(
    chunks: list[bytes],
    pauses: list[float] | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[list[dict[str, Any]], StreamRecord]:
    """Relay these upstream chunks (each after its pause) and decode what the browser gets."""

    async def body() -> AsyncIterator[bytes]:
        for chunk, pause in zip(chunks, pauses or [0.0] * len(chunks), strict=True):
            await asyncio.sleep(pause)
            yield chunk

    def handler(_: httpx.Request) -> httpx.Response:
        sent = {"content-type": "text/event-stream", **(headers or {})}
        return httpx.Response(200, headers=sent, content=body())

    out, record = await relay_bytes(handler)
    events = [
        json.loads(line[6:]) for line in out.decode().splitlines() if line.startswith("data: ")
    ]
    return events, record


async def relay_bytes(
    handler: Callable[[httpx.Request], httpx.Response], timeouts: Timeouts = TIMEOUTS
) -> tuple[bytes, StreamRecord]:
    """What the relay writes to the browser for the upstream answer `handler` gives."""
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        response = await client.send(
            client.build_request("POST", "http://m/v1/responses"), stream=True
        )
        record = StreamRecord(started=time.monotonic())
        return b"".join([chunk async for chunk in relay(response, timeouts, record)]), record


def test_passed_events_reach_the_browser_byte_for_byte_whatever_their_shape() -> None:
    """A passed event is sent as the standard frame of its type and data, whether it came in
    the usual shape, with several data lines, fields in another order, or CRLF line ends."""
    delta = b'{"type":"response.output_text.delta","delta":"Hi"}'
    upstream = (
        b"event: response.output_text.delta\ndata: " + delta + b"\n\n"
        b": a comment\n\n"
        b"event: response.output_text.delta\ndata: one\ndata: two\n\n"
        b"data:" + delta + b"\r\nevent: response.output_text.delta\r\n\r\n"
        b"id: 1\nevent: response.output_item.added\ndata: {}\n\n"
        b"event: response.completed\ndata: " + json.dumps(COMPLETED).encode() + b"\n\n"
    )

    async def body() -> AsyncIterator[bytes]:
        yield upstream

    out, record = asyncio.run(relay_bytes(lambda _: httpx.Response(200, content=body())))
    sent = b"event: response.output_text.delta\ndata: " + delta + b"\n\n"
    assert out == (
        sent
        + b"event: response.output_text.delta\ndata: one\ndata: two\n\n"
        + sent
        + b"event: response.output_item.added\ndata: {}\n\n"
        + b'event: response.completed\ndata: {"type":"response.completed","response":'
        + b'{"id":"resp_abc","status":"completed","usage":'
        + b'{"input_tokens":3,"output_tokens":1,"total_tokens":4}}}\n\n'
    )
    assert record.events == 5
    assert record.first_token_at is not None


def test_known_events_pass_and_unknown_are_dropped() -> None:
    """Deltas pass as they are; an event type we do not know never reaches the browser."""
    chunks = [
        frame("response.created", CREATED),
        frame("response.tool_call.secret", {"type": "response.tool_call.secret"}),
        frame("response.output_text.delta", DELTA),
        frame("response.completed", COMPLETED),
    ]
    events, record = asyncio.run(collect(chunks))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.completed",
    ]
    assert record.response_id == "resp_abc"
    assert record.usage == {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    assert record.outcome == "ok"


def test_created_and_completed_carry_no_instructions() -> None:
    """The system prompt and upstream settings in response objects stay on the server."""
    chunks = [frame("response.created", CREATED), frame("response.completed", COMPLETED)]
    events, _ = asyncio.run(collect(chunks))
    assert "SECRET PROMPT" not in json.dumps(events)
    assert events[1]["response"] == {
        "id": "resp_abc",
        "status": "completed",
        "usage": {"input_tokens": 3, "output_tokens": 1, "total_tokens": 4},
    }


def test_frames_split_across_chunks_are_reassembled() -> None:
    """An event cut in the middle by the network arrives whole."""
    whole = frame("response.output_text.delta", DELTA) + frame("response.completed", COMPLETED)
    chunks = [whole[:7], whole[7:30], whole[30:]]
    events, _ = asyncio.run(collect(chunks))
    assert [e["type"] for e in events] == ["response.output_text.delta", "response.completed"]


def test_a_compressed_stream_is_decoded() -> None:
    """An upstream that gzips its events anyway (a proxy in between) is still understood."""
    whole = frame("response.output_text.delta", DELTA) + frame("response.completed", COMPLETED)
    packed = gzip.compress(whole)
    chunks = [packed[:20], packed[20:]]
    events, record = asyncio.run(collect(chunks, headers={"content-encoding": "gzip"}))
    assert [e["type"] for e in events] == ["response.output_text.delta", "response.completed"]
    assert record.outcome == "ok"


def test_upstream_error_event_becomes_a_safe_error() -> None:
    """An upstream failure keeps the model server's words, without the host's paths."""
    failed = {"type": "error", "message": "stack trace at /Users/owner/lmstudio"}
    events, record = asyncio.run(collect([frame("error", failed)]))
    message = "the model failed to answer: stack trace at …"
    assert events == [{"type": "error", "error": {"code": "upstream_failed", "message": message}}]
    assert record.outcome == "upstream_error"


def test_stream_that_ends_early_is_reported() -> None:
    """A stream cut before response.completed ends with an error event, not silence."""
    events, record = asyncio.run(collect([frame("response.output_text.delta", DELTA)]))
    assert events[-1]["error"] == {
        "code": "upstream_closed",
        "message": "the model stopped before finishing",
    }
    assert record.outcome == "upstream_error"


def test_idle_gap_ends_with_an_error_event() -> None:
    """After the first token, a gap longer than the idle timeout ends the stream with an error."""
    chunks = [frame("response.output_text.delta", DELTA), b": keep\n\n", frame("x", {})]
    started = time.monotonic()
    events, record = asyncio.run(collect(chunks, pauses=[0.0, 1.5, 0.0]))
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["code"] == "idle_timeout"
    assert record.outcome == "timeout"
    assert time.monotonic() - started < 1.5 + 1 + 2  # the gap, the idle timeout, slack


def test_gaps_each_within_the_idle_timeout_never_end_the_stream() -> None:
    """The idle deadline restarts with every chunk: gaps of 0.6 s under a 1 s idle timeout,
    2.4 s in all, do not cut the answer."""
    chunks = [frame("response.output_text.delta", DELTA)] * 5 + [
        frame("response.completed", COMPLETED)
    ]
    events, record = asyncio.run(collect(chunks, pauses=[0.0, 0.6, 0.6, 0.6, 0.6, 0.0]))
    assert [e["type"] for e in events][-1] == "response.completed"
    assert record.outcome == "ok"


def test_a_stream_with_no_first_token_ends_at_the_first_token_timeout() -> None:
    """Events that are not tokens do not hold the first-token deadline off."""
    created = frame("response.created", CREATED)
    events, record = asyncio.run(collect([created, created, created], pauses=[0.0, 0.6, 0.6]))
    assert events[-1]["error"]["code"] == "first_token_timeout"
    assert record.outcome == "timeout"


def test_a_long_answer_ends_at_the_total_timeout() -> None:
    """Tokens that keep coming within the idle timeout are cut off at the total timeout."""
    short = Timeouts(connect=1, first_token=1, idle=1, total=1.5)
    delta = frame("response.output_text.delta", DELTA)

    async def run() -> tuple[bytes, StreamRecord]:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(10):
                yield delta
                await asyncio.sleep(0.4)

        return await relay_bytes(lambda _: httpx.Response(200, content=body()), short)

    out, record = asyncio.run(run())
    last = json.loads(out.rstrip(b"\n").rsplit(b"\n", 1)[-1].removeprefix(b"data: "))
    assert last["error"]["code"] == "total_timeout"
    assert record.outcome == "timeout"


def test_the_visitor_leaving_is_a_cancellation_not_a_timeout() -> None:
    """Cancelled while it waits for the model, the relay says the client left, and the
    cancellation goes on."""
    delta = frame("response.output_text.delta", DELTA)

    async def run() -> StreamRecord:
        async def body() -> AsyncIterator[bytes]:
            yield delta
            await asyncio.sleep(10)
            yield delta

        record = StreamRecord(started=time.monotonic())
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(lambda _: httpx.Response(200, content=body()))
        ) as client:
            response = await client.send(client.build_request("POST", "http://m/"), stream=True)

            async def consume() -> None:
                async for _ in relay(response, TIMEOUTS, record):
                    pass

            task = asyncio.create_task(consume())
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        return record

    assert asyncio.run(run()).outcome == "client_cancelled"
