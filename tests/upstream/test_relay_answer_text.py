"""The answer's own text, kept by the relay for the conversation's transcript (issue 15): from
the simulated LM Studio as a real process, the output text the visitor was sent, without the
model's reasoning, up to the cap asked for; nothing when not asked."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import msgspec
import pytest
from sim_process import SimHandle, running_sim

from app.upstream.client import Timeouts, UpstreamClient, open_stream
from app.upstream.relay import StreamRecord, relay

if TYPE_CHECKING:
    from collections.abc import Iterator

HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
TIMEOUTS = Timeouts(connect=2, first_token=5, idle=5, total=20)
# A model that thinks in streamed reasoning deltas, then answers in text deltas.
REASONING = ("--reasoning-tokens", "10", "--output-tokens", "20")
FAST = ("--decode-rate", "400", "--prefill-rate", "20000")
OUTPUT_DELTA = "response.output_text.delta"
REASONING_DELTA = "response.reasoning_text.delta"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim(*REASONING, *FAST) as handle:
        yield handle


def relayed(sim: SimHandle, record: StreamRecord) -> bytes:
    """What the visitor is sent of one answer that reasons first, relayed into `record`."""
    body = {"model": "m", "stream": True, "input": "Why?", "reasoning": {"effort": "low"}}

    async def scenario() -> bytes:
        async with UpstreamClient(base_url=sim.url, headers=HEADERS) as client:
            answer = await open_stream(client, msgspec.json.encode(body))
            return b"".join([chunk async for chunk in relay(answer, TIMEOUTS, record)])

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def deltas(out: bytes, kind: str) -> str:
    """The text of the deltas of one kind the visitor was sent, joined."""
    lines = [line[6:] for line in out.decode().splitlines() if line.startswith("data: ")]
    return "".join(event["delta"] for event in map(json.loads, lines) if event["type"] == kind)


def test_the_answer_text_sent_is_kept_without_the_reasoning(sim: SimHandle) -> None:
    """Asked to keep it, the relay keeps exactly the output text the visitor was sent, not
    the reasoning, and still counts both for the token windows."""
    record = StreamRecord(started=time.monotonic(), counts_text=True, keeps_text=10_000)
    out = relayed(sim, record)
    reasoning, answer = deltas(out, REASONING_DELTA), deltas(out, OUTPUT_DELTA)
    assert reasoning  # the premise: the model reasoned first
    assert answer
    assert record.answer_text == answer
    assert record.text_chars == len(reasoning) + len(answer)


def test_the_kept_text_stops_at_its_cap(sim: SimHandle) -> None:
    """Kept up to a cap, the text is the answer's beginning, that long; the visitor still
    gets the whole answer."""
    record = StreamRecord(started=time.monotonic(), keeps_text=15)
    out = relayed(sim, record)
    assert len(deltas(out, OUTPUT_DELTA)) > 15
    assert record.answer_text == deltas(out, OUTPUT_DELTA)[:15]


def test_no_text_is_kept_unless_asked(sim: SimHandle) -> None:
    """By default the relay keeps none of the answer's text."""
    record = StreamRecord(started=time.monotonic())
    out = relayed(sim, record)
    assert deltas(out, OUTPUT_DELTA)
    assert (record.answer_text, record.text) == ("", [])
