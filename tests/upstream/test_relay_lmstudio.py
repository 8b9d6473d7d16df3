"""Every event LM Studio sends, relayed to the visitor (issue 18): the simulated LM Studio as a real
process, each behaviour behind its flag, read by the gateway's own client and relay; a real gateway
in front where it matters what the breaker makes of it. Shapes the sim never sends are played at
the relay's seam with httpx."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import msgspec
import pytest
from chat_client import Received, chat
from gateway_server import running_gateway
from sim_process import SimHandle, running_sims
from support import eventually, sample

from app.upstream.client import Timeouts, UpstreamClient, open_stream
from app.upstream.relay import StreamRecord, error_frame, relay

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping

    from app.upstream.client import StreamedAnswer

MODEL = "nvidia/nemotron-3-nano"
HEADERS = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
# A model that thinks for 1.5 s (30 reasoning tokens at 20 a second) and sends its reasoning
# whole, then answers in 0.3 s; cut at its cap, it ends with response.incomplete, and a cut
# reasoning answer spends the whole cap thinking.
THINKING = (
    "--reasoning-done-only",
    "--incomplete-at-limit",
    "--reasoning-eats-budget",
    "--reasoning-tokens", "30",
    "--output-tokens", "6",
    "--decode-rate", "20",
    "--prefill-rate", "20000",
)  # fmt: skip
FIRST_TOKEN_TIMEOUT = 0.5  # a third of the think
ROOMY = Timeouts(connect=2, first_token=FIRST_TOKEN_TIMEOUT, idle=5, total=20)
FAST = ("--decode-rate", "400", "--prefill-rate", "20000", "--output-tokens", "20")
REBUILT = (b"event: response.created\n", b"event: response.in_progress\n")
ENDS = (b"event: response.completed\n", b"event: response.incomplete\n")
LONG_INPUT = "word " * 64  # 80 tokens
CRASH = "Model crashed: out of memory"
# LM Studio's three forms of a context overflow, each with an input it fails on: the first two
# refuse an input longer than the context (160 tokens in 100), the last fails once input and
# output fill it (80 tokens, then 20 more).
OVERFLOWS = {"400": "word " * 128, "200": "word " * 128, "mid-generation": LONG_INPUT}
T = TypeVar("T")


@dataclass
class Taped:
    """The model server's answer, keeping every byte the relay reads of it."""

    answer: StreamedAnswer
    read: list[bytes] = field(default_factory=list)

    @property
    def status_code(self) -> int:
        return self.answer.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self.answer.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        async for chunk in self.answer.aiter_raw():
            self.read.append(chunk)
            yield chunk

    def aiter_bytes(self) -> AsyncIterator[bytes]:
        return self.aiter_raw()

    async def aclose(self) -> None:
        await self.answer.aclose()


@dataclass
class Relayed:
    """A relayed stream: each write to the visitor, and whether the first output had been
    counted by then; what the model server sent; what the relay recorded."""

    writes: list[tuple[bytes, bool]]
    upstream: bytes
    record: StreamRecord

    @property
    def out(self) -> bytes:
        return b"".join(write for write, _ in self.writes)

    def events(self) -> list[dict[str, Any]]:
        lines = self.out.decode().splitlines()
        return [json.loads(line[6:]) for line in lines if line.startswith("data: ")]

    def kinds(self) -> list[str]:
        return [str(event["type"]) for event in self.events()]

    def event(self, kind: str) -> dict[str, Any]:
        (found,) = [event for event in self.events() if event["type"] == kind]
        return found


def run(scenario: Coroutine[object, object, T]) -> T:
    return asyncio.run(asyncio.wait_for(scenario, 30))


async def relay_all(answer: StreamedAnswer, timeouts: Timeouts) -> Relayed:
    """Relay an answer to its end, noting after each write whether a first output was seen."""
    taped = Taped(answer)
    record = StreamRecord(started=time.monotonic())
    writes = [
        (chunk, record.first_token_at is not None) async for chunk in relay(taped, timeouts, record)
    ]
    return Relayed(writes, b"".join(taped.read), record)


async def relayed(url: str, body: Mapping[str, object], timeouts: Timeouts = ROOMY) -> Relayed:
    """POST a chat to the model server at `url` as the gateway does, and relay its answer."""
    payload = msgspec.json.encode({"model": MODEL, "stream": True, "store": True, **body})
    async with UpstreamClient(base_url=url, headers=HEADERS) as client:
        return await relay_all(await open_stream(client, payload), timeouts)


async def played(upstream: list[tuple[float, bytes]], timeouts: Timeouts = ROOMY) -> Relayed:
    """Relay a stream the sim never sends: each chunk after its pause."""

    async def body() -> AsyncIterator[bytes]:
        for pause, chunk in upstream:
            await asyncio.sleep(pause)
            yield chunk

    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        request = client.build_request("POST", "http://lmstudio/v1/responses")
        return await relay_all(await client.send(request, stream=True), timeouts)


def frames(stream: bytes) -> list[bytes]:
    return [frame + b"\n\n" for frame in stream.split(b"\n\n") if frame.strip()]


def as_it_came(stream: bytes) -> list[bytes]:
    """The frames of a stream the relay passes on as they are: all but the ones carrying the
    response object, which it rebuilds."""
    return [frame for frame in frames(stream) if not frame.startswith(REBUILT + ENDS)]


def outcome_count(gateway_url: str, outcome: str) -> float:
    """Chats the gateway counted with this outcome (a stream's is counted once it closed)."""
    metrics = httpx.get(f"{gateway_url}/metrics").text
    try:
        return sample(metrics, "llmgw_requests_total", outcome=outcome, route="/api/chat")
    except AssertionError:  # none yet
        return 0.0


def counted(gateway_url: str, outcome: str, times: int = 1) -> bool:
    return eventually(lambda: outcome_count(gateway_url, outcome) == times)


def breaker(gateway_url: str) -> str:
    state: str = httpx.get(f"{gateway_url}/readyz").json()["breaker"]
    return state


def answered(received: Received) -> bool:
    return received.status == 200 and received.types()[-1] == "response.completed"


@pytest.fixture(scope="module")
def sims() -> Iterator[dict[str, SimHandle]]:
    """Every sim this file uses, started together."""
    bare = ("--bare-error-frames", "--context-length", "100", "--overflow", "mid-generation")
    options = {
        "thinking": THINKING,
        "bare": (*bare, *FAST, "--output-tokens", "40"),
        "no-api-404": ("--no-responses-api", *FAST),
        "no-api-200-json": ("--no-responses-api", "--unknown-path-200", *FAST),
        "forgetful": FAST,
        **{
            f"overflow-{form}": ("--context-length", "100", "--overflow", form, *FAST)
            for form in OVERFLOWS
        },
    }
    with running_sims(**options) as handles:
        yield handles


@pytest.fixture
def thinking(sims: dict[str, SimHandle]) -> SimHandle:
    return sims["thinking"].healthy()


@pytest.fixture(scope="module")
def thought(sims: dict[str, SimHandle]) -> Relayed:
    """One answer whose reasoning came whole after a think three times the first-token
    timeout."""
    return run(relayed(sims["thinking"].url, {"input": "Why?", "reasoning": {"effort": "low"}}))


def test_reasoning_sent_whole_reaches_the_visitor_byte_for_byte(thought: Relayed) -> None:
    """The one reasoning_text.done with the whole text, and every event around it, reach the
    visitor exactly as LM Studio sent them; only the response objects are rebuilt."""
    assert "response.reasoning_text.delta" not in thought.kinds()
    assert len(thought.event("response.reasoning_text.done")["text"].split()) == 30
    assert as_it_came(thought.out) == as_it_came(thought.upstream)
    assert thought.kinds()[-1] == "response.completed"


def test_reasoning_sent_whole_is_the_first_output(thought: Relayed) -> None:
    """The first-token clock stops at the reasoning's .done, before any answer text."""
    first = next(index for index, (_, counted) in enumerate(thought.writes) if counted)
    before = b"".join(write for write, _ in thought.writes[: first + 1])
    assert b"event: response.reasoning_text.done\n" in thought.writes[first][0]
    assert b"response.output_text.delta" not in before
    assert thought.record.ttft is not None


def test_a_long_think_sent_whole_is_not_cut_by_the_first_token_timeout(thought: Relayed) -> None:
    """A model thinking visibly (its reasoning item begun) and silently for three times the
    first-token timeout is held only to the total deadline: its answer arrives whole."""
    assert thought.record.ttft is not None
    assert thought.record.ttft > FIRST_TOKEN_TIMEOUT  # the premise: a think longer than that
    assert "error" not in thought.kinds()
    assert (thought.record.outcome, thought.record.incomplete) == ("ok", False)


def test_a_visitor_waits_out_a_long_think_sent_whole(thinking: SimHandle, redis_url: str) -> None:
    """Through the gateway, whose first-token timeout is a third of the think: the visitor gets
    the reasoning whole and the answer after it, and the think counts as a success."""
    settings = {"reasoning_effort": "low", "first_token_timeout": FIRST_TOKEN_TIMEOUT}
    with running_gateway(upstream_url=thinking.url, redis_url=redis_url, **settings) as gateway:
        received = chat(gateway.url)
        assert counted(gateway.url, "ok")
    assert received.types().count("response.reasoning_text.done") == 1
    assert received.first_time("response.reasoning_text.done") > FIRST_TOKEN_TIMEOUT
    assert received.types()[-1] == "response.completed"
    assert received.text()


def test_a_long_think_is_still_cut_by_the_total_timeout(thinking: SimHandle) -> None:
    """The total deadline still holds a thinking model: cut off as total_timeout, not as a
    first-token timeout."""
    timeouts = Timeouts(connect=2, first_token=0.3, idle=5, total=1.0)
    body = {"input": "Why?", "reasoning": {"effort": "low"}}
    cut = run(relayed(thinking.url, body, timeouts))
    assert cut.events()[-1]["error"]["code"] == "total_timeout"
    assert "response.reasoning_text.done" not in cut.kinds()
    assert cut.record.outcome == "timeout"


def test_an_answer_cut_at_its_cap_ends_normally(thinking: SimHandle) -> None:
    """response.incomplete is relayed as the end of a whole answer, not as a failure: its
    status and reason reach the visitor, the text before it is kept, and it can be continued
    (its id and usage are recorded)."""
    cut = run(relayed(thinking.url, {"input": "Hello", "max_output_tokens": 3}))
    assert cut.kinds().count("response.output_text.delta") == 3
    final = cut.events()[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["status"] == "incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "error" not in cut.kinds()
    assert as_it_came(cut.out) == as_it_came(cut.upstream)
    assert (cut.record.outcome, cut.record.incomplete) == ("ok", True)
    assert cut.record.response_id == final["response"]["id"]
    assert cut.record.usage is not None


def test_reasoning_that_eats_the_budget_ends_normally_and_says_so(thinking: SimHandle) -> None:
    """A model that spends its whole cap thinking leaves no text: the visitor gets the
    reasoning and a normal incomplete end whose usage shows every token went to thinking (what
    the widget says as 'ran out of room while thinking')."""
    body = {"input": "Why?", "reasoning": {"effort": "low"}, "max_output_tokens": 5}
    spent = run(relayed(thinking.url, body))
    assert "response.output_text.delta" not in spent.kinds()
    assert spent.kinds().count("response.reasoning_text.done") == 1
    final = spent.events()[-1]["response"]
    assert (final["status"], final["incomplete_details"]) == (
        "incomplete",
        {"reason": "max_output_tokens"},
    )
    usage = final["usage"]
    assert usage["output_tokens"] == usage["output_tokens_details"]["reasoning_tokens"] == 5
    assert spent.record.outcome == "ok"


def test_an_answer_cut_short_is_continued_in_its_conversation(
    thinking: SimHandle, redis_url: str
) -> None:
    """Through a gateway whose breaker opens at one failure: a cut answer is an ordinary end,
    and a follow-up on its id is served with the conversation so far."""
    settings = {"reasoning_effort": "none", "max_output_tokens": 3, "breaker_failures": 1}
    with running_gateway(upstream_url=thinking.url, redis_url=redis_url, **settings) as gateway:
        first = chat(gateway.url)
        assert first.types()[-1] == "response.incomplete"
        response = first.events[-1]["response"]
        again = chat(gateway.url, {"input": "Go on", "previous_response_id": response["id"]})
        assert again.status == 200
        assert again.types()[-1] == "response.incomplete"
        grown = again.events[-1]["response"]["usage"]["input_tokens"]
        assert grown > response["usage"]["input_tokens"]
        assert counted(gateway.url, "ok", 2)
        assert breaker(gateway.url) == "closed"


def test_a_bare_overflow_frame_mid_answer_is_context_full(sims: dict[str, SimHandle]) -> None:
    """--bare-error-frames: the context filling mid-answer arrives as a lone `data:` line; it
    is read by its JSON and ends the answer as context_full, the text before it kept."""
    full = run(relayed(sims["bare"].url, {"input": LONG_INPUT}))
    assert b"event: error" not in full.upstream
    assert full.kinds().count("response.output_text.delta") == 20
    message = "this conversation has grown too long for the model: start a new one"
    assert frames(full.out)[-1] == error_frame("context_full", message)
    assert full.record.outcome == "context_full"


def test_frames_without_an_event_line_are_read_by_their_type() -> None:
    """A frame with only a `data:` line is the event its JSON `type` names: a delta is passed
    on under its own event name with its data as it came, the end is the end."""
    delta = b'{"type":"response.output_text.delta","item_id":"msg_1","delta":"Hi"}'
    done = b'{"type":"response.completed","response":{"id":"resp_1","status":"completed"}}'
    upstream = [(0.0, b"data: " + delta + b"\n\n"), (0.0, b"data: " + done + b"\n\n")]
    bare = run(played(upstream))
    assert bare.out == (
        b"event: response.output_text.delta\ndata: " + delta + b"\n\n"
        b'event: response.completed\ndata: {"type":"response.completed","response":'
        b'{"id":"resp_1","status":"completed"}}\n\n'
    )
    assert bare.record.first_token_at is not None


@pytest.mark.parametrize(
    "error",
    [
        {"error": CRASH},
        {"error": {"message": CRASH, "type": "server_error"}},
        {"type": "error", "code": None, "message": CRASH, "param": None},
    ],
    ids=["error-string", "error-object", "typed-error"],
)
def test_a_bare_error_frame_gives_the_visitor_its_message(error: dict[str, object]) -> None:
    """An error in any of its bare shapes, `{"error": ...}` included, is an error: the
    visitor gets the model server's own words in the gateway's error event."""
    delta = b'{"type":"response.output_text.delta","delta":"Hi"}'
    bare = b"data: " + json.dumps(error).encode() + b"\n\n"
    failed = run(played([(0.0, b"data: " + delta + b"\n\n"), (0.0, bare)]))
    message = f"the model failed to answer: {CRASH}"
    assert frames(failed.out)[-1] == error_frame("upstream_failed", message)
    assert failed.record.outcome == "upstream_error"


def test_a_summary_sent_whole_is_relayed_and_starts_the_answer() -> None:
    """A reasoning summary sent as one reasoning_summary_text.done, with no item event before
    it, is passed on as it came and is the first output: the 1 s that follows it is held to
    the idle deadline (3 s), not to the 0.5 s first-token one."""
    summary = (
        b"event: response.reasoning_summary_text.done\n"
        b'data: {"type":"response.reasoning_summary_text.done","item_id":"rs_1",'
        b'"output_index":0,"summary_index":0,"text":"Thought it over."}\n\n'
    )
    done = b'event: response.completed\ndata: {"type":"response.completed","response":{}}\n\n'
    timeouts = Timeouts(connect=1, first_token=0.5, idle=3, total=10)
    whole = run(played([(0.0, summary), (1.0, done)], timeouts))
    assert frames(whole.out)[0] == summary
    assert whole.kinds() == ["response.reasoning_summary_text.done", "response.completed"]
    assert whole.record.outcome == "ok"


def test_an_unknown_previous_response_mid_stream_is_conversation_expired() -> None:
    """previous_response_not_found as an error event in the stream (lmstudio-bug-tracker#1188)
    is the conversation gone, not the host failing."""
    error = (
        b'event: error\ndata: {"type":"error","code":"previous_response_not_found",'
        b'"message":"Previous response with id \'resp_9\' not found."}\n\n'
    )
    gone = run(played([(0.0, error)]))
    message = "the model no longer keeps this conversation: start a new one"
    assert gone.out == error_frame("conversation_expired", message)
    assert gone.record.outcome == "conversation_expired"


@pytest.mark.parametrize("answer", ["404", "200-json"])
def test_a_server_without_the_responses_api_is_upstream_incompatible(
    answer: str, sims: dict[str, SimHandle], redis_url: str
) -> None:
    """A model server with no /v1/responses (LM Studio before 0.3.29), answering 404 or a 200
    JSON error that is no event stream, gives the visitor a 502 that says what it needs, and
    the outcome upstream_incompatible, not a generic upstream error."""
    sim = sims[f"no-api-{answer}"]
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        received = chat(gateway.url)
        assert (received.status, received.json["code"]) == (502, "upstream_incompatible")
        assert "0.3.29" in received.json["error"]
        assert counted(gateway.url, "upstream_incompatible")


@pytest.mark.parametrize("form", OVERFLOWS)
def test_a_context_overflow_is_context_full_and_no_breaker_failure(
    form: str, sims: dict[str, SimHandle], redis_url: str
) -> None:
    """LM Studio's three forms of a conversation outgrowing the context (a 400, a 200 carrying
    the error, an error mid-answer) each tell the visitor context_full; with a breaker that
    opens at one failure, it stays closed and the next visitor is served."""
    sim = sims[f"overflow-{form}"]
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, breaker_failures=1) as gateway:
        full = chat(gateway.url, {"input": OVERFLOWS[form]})
        if form == "400":
            assert (full.status, full.json["code"]) == (400, "context_full")
        else:  # an event stream whose error event says so, after some text when mid-answer
            assert full.status == 200
            assert full.events[-1]["error"]["code"] == "context_full"
            assert ("response.output_text.delta" in full.types()) == (form == "mid-generation")
        assert sim.stats()["overflows"] == 1
        assert counted(gateway.url, "context_full")
        assert breaker(gateway.url) == "closed"
        assert answered(chat(gateway.url, {"input": "Hi"}))


def test_a_conversation_the_model_server_forgot_is_conversation_expired(
    sims: dict[str, SimHandle], redis_url: str
) -> None:
    """After LM Studio lost a stored response (here: it restarted), a follow-up on it is
    previous_response_not_found: with no transcript kept here (LLMGW_TRANSCRIPTS off; with it
    on, tests/hosts shows the conversation go on), the visitor is told to start afresh (410),
    and with a breaker that opens at one failure, the next chat is served."""
    sim = sims["forgetful"]
    settings = {"breaker_failures": 1, "transcripts": False}
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, **settings) as gateway:
        first = chat(gateway.url)
        response_id = first.events[-1]["response"]["id"]
        sim.restart()
        gone = chat(gateway.url, {"input": "And then?", "previous_response_id": response_id})
        assert (gone.status, gone.json["code"]) == (410, "conversation_expired")
        assert counted(gateway.url, "conversation_expired")
        assert breaker(gateway.url) == "closed"
        assert answered(chat(gateway.url))
