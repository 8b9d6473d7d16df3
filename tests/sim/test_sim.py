"""The simulated LM Studio server, run as a real process and spoken to over HTTP."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from httpx_sse import connect_sse
from sim_process import SimHandle, running_sim
from support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

FAST = ("--decode-rate", "400", "--prefill-rate", "20000")
NO_MODELS = (
    "No models loaded. Please load a model in the developer page or use the 'lms load' command."
)
TEXT_DELTA = "response.output_text.delta"


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimHandle]:
    with running_sim(*FAST) as handle:
        yield handle


@pytest.fixture(scope="module")
def single_slot() -> Iterator[SimHandle]:
    # A long natural answer, so the tests below can cut it with max_output_tokens or leave it.
    with running_sim(*FAST, "--slots", "1", "--queue", "1", "--output-tokens", "4000") as handle:
        yield handle


@pytest.fixture
def sim(shared_sim: SimHandle) -> SimHandle:
    """The shared simulator, healthy, idle and with zeroed counters."""
    return shared_sim.healthy()


@pytest.fixture
def one_slot(single_slot: SimHandle) -> SimHandle:
    """The one-slot simulator, healthy, idle and with zeroed counters."""
    return single_slot.healthy()


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10.0) as http:
        yield http


def _events(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with connect_sse(client, "POST", url, json={**body, "stream": True}) as source:
        return list(source.iter_sse())


def _deltas(events: list[Any], kind: str = TEXT_DELTA) -> list[str]:
    return [event.json()["delta"] for event in events if event.event == kind]


def _first_delta_seconds(url: str, body: dict[str, Any]) -> float:
    """Seconds until the first text delta; reads the stream to its end so it is not cancelled."""
    with httpx.Client(timeout=20.0) as http:
        started = time.monotonic()
        with connect_sse(http, "POST", url, json=body) as source:
            arrivals = [
                time.monotonic() for event in source.iter_sse() if event.event == TEXT_DELTA
            ]
    assert arrivals, "no text delta arrived"
    return arrivals[0] - started


def _events_until_silent(url: str, body: dict[str, Any]) -> list[Any]:
    """Events of a stream until it goes quiet for a second; then the client leaves."""
    seen: list[Any] = []
    with (
        httpx.Client(timeout=httpx.Timeout(5.0, read=1.0)) as http,
        connect_sse(http, "POST", url, json=body) as source,
        suppress(httpx.ReadTimeout),
    ):
        seen.extend(source.iter_sse())  # keeps the events that came before the silence
    return seen


def test_models_list_the_loaded_model(sim: SimHandle, client: httpx.Client) -> None:
    """Both model listings show the configured model, loaded."""
    openai = client.get(f"{sim.url}/v1/models").json()
    assert openai == {
        "object": "list",
        "data": [
            {"id": "nvidia/nemotron-3-nano", "object": "model", "owned_by": "organization_owner"}
        ],
    }
    rest = client.get(f"{sim.url}/api/v0/models").json()["data"][0]
    assert rest["state"] == "loaded"
    assert {"type", "publisher", "arch", "compatibility_type", "quantization"} <= rest.keys()
    assert rest["max_context_length"] > 0


def test_no_model_start_lists_nothing_and_refuses_like_lm_studio(client: httpx.Client) -> None:
    """--no-model: empty /v1/models, not-loaded in v0, LM Studio's 400 on generation."""
    with running_sim("--no-model", *FAST) as sim:
        assert client.get(f"{sim.url}/v1/models").json()["data"] == []
        assert client.get(f"{sim.url}/api/v0/models").json()["data"][0]["state"] == "not-loaded"
        refused = client.post(f"{sim.url}/v1/responses", json={"input": "hi"})
        assert refused.status_code == 400
        assert refused.json()["error"]["message"] == NO_MODELS
        sim.set_fault("ok")
        assert client.get(f"{sim.url}/v1/models").json()["data"] != []


def test_streamed_response_events_come_in_order_with_usage(
    sim: SimHandle, client: httpx.Client
) -> None:
    """A streamed response opens, streams one word per delta, closes, and reports usage."""
    events = _events(client, f"{sim.url}/v1/responses", {"input": "Tell me about llamas"})
    kinds = [event.event for event in events]
    assert kinds[:5] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        TEXT_DELTA,
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    data = [event.json() for event in events]
    assert [item["sequence_number"] for item in data] == list(range(len(data)))
    assert [item["type"] for item in data] == kinds
    response = data[-1]["response"]
    deltas = _deltas(events)
    assert response["id"].startswith("resp_")
    assert (response["status"], response["model"]) == ("completed", "nvidia/nemotron-3-nano")
    assert response["output"][0]["content"][0]["text"] == "".join(deltas)
    assert "llamas" in "".join(deltas[:8])
    usage = response["usage"]
    assert usage["output_tokens"] == len(deltas) == 48
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_reasoning_request_streams_reasoning_before_the_answer(
    sim: SimHandle, client: httpx.Client
) -> None:
    """A `reasoning` object brings reasoning deltas first; effort "none" brings none."""
    body = {"input": "Why?", "reasoning": {"effort": "medium"}, "max_output_tokens": 30}
    events = _events(client, f"{sim.url}/v1/responses", body)
    kinds = [event.event for event in events]
    reasoning = _deltas(events, "response.reasoning_text.delta")
    assert len(reasoning) == 12
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.content_part.added")
    usage = events[-1].json()["response"]["usage"]
    assert usage["output_tokens"] == 30
    assert usage["output_tokens_details"]["reasoning_tokens"] == 12
    plain = _events(
        client, f"{sim.url}/v1/responses", {"input": "Why?", "reasoning": {"effort": "none"}}
    )
    assert _deltas(plain, "response.reasoning_text.delta") == []


def test_non_streamed_response_returns_the_final_object(
    sim: SimHandle, client: httpx.Client
) -> None:
    """Without `stream`, the completed response comes back as JSON, capped by max_output_tokens."""
    body = {"input": [{"role": "user", "content": "Count to seven"}], "max_output_tokens": 7}
    response = client.post(f"{sim.url}/v1/responses", json=body).json()
    assert response["status"] == "completed"
    assert response["usage"]["output_tokens"] == 7
    assert response["output"][0]["content"][0]["text"].startswith("You said: Count to seven")


def test_previous_response_id_counts_the_stored_conversation(
    sim: SimHandle, client: httpx.Client
) -> None:
    """A follow-up's input tokens include the stored conversation, and its answer differs."""
    url = f"{sim.url}/v1/responses"
    first = client.post(url, json={"input": "My name is Ada"}).json()
    alone = client.post(url, json={"input": "What is my name?"}).json()
    body = {"input": "What is my name?", "previous_response_id": first["id"]}
    follow_up = client.post(url, json=body).json()
    context = first["usage"]["input_tokens"] + first["usage"]["output_tokens"]
    assert follow_up["usage"]["input_tokens"] == alone["usage"]["input_tokens"] + context
    assert follow_up["previous_response_id"] == first["id"]
    text = follow_up["output"][0]["content"][0]["text"]
    assert text != first["output"][0]["content"][0]["text"]


def test_instructions_are_prefilled_with_the_input_but_not_carried_into_a_follow_up(
    sim: SimHandle, client: httpx.Client
) -> None:
    """A system prompt counts as input (about four characters a token), as on a real model
    server; a follow-up carries the earlier conversation but not the earlier instructions."""
    url = f"{sim.url}/v1/responses"
    instructions = "Answer briefly. " * 50  # 800 characters: 200 tokens
    bare = client.post(url, json={"input": "Hi there"}).json()
    briefed = client.post(url, json={"input": "Hi there", "instructions": instructions}).json()
    assert briefed["usage"]["input_tokens"] == bare["usage"]["input_tokens"] + 200
    body = {"input": "Hi there", "instructions": instructions, "previous_response_id": bare["id"]}
    follow_up = client.post(url, json=body).json()
    context = bare["usage"]["input_tokens"] + bare["usage"]["output_tokens"]
    assert follow_up["usage"]["input_tokens"] == briefed["usage"]["input_tokens"] + context
    second = {"input": "Hi there", "previous_response_id": briefed["id"]}
    carried = client.post(url, json=second).json()
    briefed_context = bare["usage"]["input_tokens"] + briefed["usage"]["output_tokens"]
    assert carried["usage"]["input_tokens"] == bare["usage"]["input_tokens"] + briefed_context


def test_unknown_previous_response_id_is_an_openai_style_error(
    sim: SimHandle, client: httpx.Client
) -> None:
    """An unknown previous_response_id gets 400 with OpenAI's error code."""
    body = {"input": "again", "previous_response_id": "resp_0000"}
    refused = client.post(f"{sim.url}/v1/responses", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "previous_response_not_found"
    assert refused.json()["error"]["param"] == "previous_response_id"


def test_chat_completion_stream_ends_with_usage_then_done(
    sim: SimHandle, client: httpx.Client
) -> None:
    """Streamed chat: content chunks, a finish chunk, a usage chunk, then [DONE]."""
    body = {
        "messages": [{"role": "user", "content": "hello"}],
        "stream_options": {"include_usage": True},
    }
    events = _events(client, f"{sim.url}/v1/chat/completions", body)
    assert events[-1].data == "[DONE]"
    chunks = [event.json() for event in events[:-1]]
    usage, finish, content = chunks[-1], chunks[-2], chunks[:-2]
    assert usage["choices"] == []
    assert finish["choices"][0]["finish_reason"] == "stop"
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert usage["usage"]["completion_tokens"] == len(content) == 48
    total = usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    assert usage["usage"]["total_tokens"] == total


def test_chat_completion_without_stream_returns_the_message(
    sim: SimHandle, client: httpx.Client
) -> None:
    """Non-streamed chat returns the assistant message, stopped at max_tokens."""
    body = {"messages": [{"role": "user", "content": "hi there"}], "max_tokens": 5}
    completion = client.post(f"{sim.url}/v1/chat/completions", json=body).json()
    choice = completion["choices"][0]
    assert (choice["finish_reason"], choice["message"]["role"]) == ("length", "assistant")
    assert completion["usage"]["completion_tokens"] == 5


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/responses", b"{not json"),
        ("/v1/responses", b""),
        ("/v1/responses", b"{}"),
        ("/v1/responses", b'{"input": 5}'),
        ("/v1/chat/completions", b'{"messages": []}'),
        ("/_sim/fault", b'{"mode": "melting"}'),
        ("/_sim/fault", b'{"mode": "error", "share": 2}'),
    ],
)
def test_bad_requests_get_400_json(
    sim: SimHandle, client: httpx.Client, path: str, content: bytes
) -> None:
    """Malformed JSON, missing input and invalid fault settings get a 400 JSON error, never 500."""
    response = client.post(f"{sim.url}{path}", content=content)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_no_model_fault_unloads_and_ok_reloads(sim: SimHandle, client: httpx.Client) -> None:
    """`no_model` empties the listing and refuses generation until `ok`."""
    sim.set_fault("no_model")
    assert client.get(f"{sim.url}/_sim/fault").json()["model_loaded"] is False
    assert client.get(f"{sim.url}/v1/models").json()["data"] == []
    refused = client.post(f"{sim.url}/v1/chat/completions", json={"messages": [{"content": "x"}]})
    assert (refused.status_code, refused.json()["error"]["message"]) == (400, NO_MODELS)
    sim.set_fault("ok")
    assert sim.stats()["model_loaded"] is True


def test_error_fault_fails_the_configured_share(sim: SimHandle, client: httpx.Client) -> None:
    """`error` with share 0.5 fails every other request with a 500 JSON error."""
    sim.set_fault("error", share=0.5)
    statuses = [
        client.post(f"{sim.url}/v1/responses", json={"input": "x"}).status_code for _ in range(4)
    ]
    assert sorted(statuses) == [200, 200, 500, 500]
    assert sim.stats()["failed"] == 2


def test_slow_fault_makes_generation_much_slower(sim: SimHandle, client: httpx.Client) -> None:
    """`slow` makes the same generation take several times longer."""

    def duration() -> float:
        started = time.monotonic()
        client.post(f"{sim.url}/v1/responses", json={"input": "x"}).raise_for_status()
        return time.monotonic() - started

    healthy = duration()
    sim.set_fault("slow")
    assert duration() > 2 * healthy


def test_stall_fault_stops_the_stream_midway_until_the_client_leaves(sim: SimHandle) -> None:
    """`stall` sends half the tokens, then nothing; the client leaving counts as a cancel."""
    sim.set_fault("stall")
    body = {"input": "x", "stream": True, "max_output_tokens": 20}
    kinds = [event.event for event in _events_until_silent(f"{sim.url}/v1/responses", body)]
    assert kinds.count(TEXT_DELTA) == 10
    assert "response.completed" not in kinds
    assert eventually(lambda: sim.stats()["active"] == 0)
    assert sim.stats()["cancelled"] == 1


def test_client_disconnect_cancels_the_generation_at_once(
    one_slot: SimHandle, client: httpx.Client
) -> None:
    """Closing a stream mid-way frees its slot and counts it as cancelled."""
    body = {"input": "x", "stream": True, "max_output_tokens": 4000}
    with connect_sse(client, "POST", f"{one_slot.url}/v1/responses", json=body) as source:
        events = source.iter_sse()  # kept referenced: dropping it would close the response
        deltas = (event for event in events if event.event == TEXT_DELTA)
        assert len([next(deltas) for _ in range(5)]) == 5
        assert one_slot.stats()["busy_slots"] == 1
    assert eventually(lambda: one_slot.stats()["active"] == 0, timeout=2.0)
    stats = one_slot.stats()
    assert (stats["cancelled"], stats["completed"], stats["busy_slots"]) == (1, 0, 0)
    assert stats["output_tokens"] < 4000


def test_time_to_first_token_grows_with_input_length(sim: SimHandle) -> None:
    """Prefill takes longer for a longer input, so the first token comes later."""
    url = f"{sim.url}/v1/responses"
    short = _first_delta_seconds(url, {"input": "hi", "stream": True})
    long = _first_delta_seconds(url, {"input": "word " * 12_000, "stream": True})
    assert long > short + 0.3  # 15,000 tokens at 20,000 tokens/s: 0.75 s of prefill


def test_second_request_waits_for_the_only_slot(one_slot: SimHandle) -> None:
    """With one slot, a concurrent second request queues and gets its first token later."""
    url = f"{one_slot.url}/v1/responses"
    body = {"input": "x", "stream": True, "max_output_tokens": 200}
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(_first_delta_seconds, url, body)
        assert eventually(lambda: one_slot.stats()["busy_slots"] == 1)
        second = pool.submit(_first_delta_seconds, url, body)
        assert eventually(lambda: one_slot.stats()["queued"] == 1)
        first_wait, second_wait = first.result(), second.result()
    assert second_wait > first_wait
    assert second_wait > 0.2  # most of the first request's 0.5 s of decoding


def test_full_queue_refuses_and_a_queued_client_can_leave(
    one_slot: SimHandle, client: httpx.Client
) -> None:
    """Slot and queue full: 503; a queued request whose client leaves counts as cancelled."""
    url = f"{one_slot.url}/v1/responses"
    body = {"input": "x", "stream": True, "max_output_tokens": 4000}
    with client.stream("POST", url, json=body) as running:
        assert eventually(lambda: one_slot.stats()["busy_slots"] == 1)
        with httpx.Client(timeout=10.0) as other, other.stream("POST", url, json=body):
            assert eventually(lambda: one_slot.stats()["queued"] == 1)
            refused = client.post(url, json=body)
            assert refused.status_code == 503
            assert refused.json()["error"]["type"] == "server_error"
        assert eventually(lambda: one_slot.stats()["queued"] == 0)
        assert one_slot.stats()["cancelled"] == 1
        assert running.status_code == 200
    assert eventually(lambda: one_slot.stats()["active"] == 0)
    assert one_slot.stats()["rejected"] == 1


def test_a_burst_beyond_slots_and_queue_is_refused(one_slot: SimHandle) -> None:
    """Six streams at once against one slot and one queue place: two served, four get 503."""
    url = f"{one_slot.url}/v1/responses"
    body = {"input": "x", "stream": True, "max_output_tokens": 200}

    def status() -> int:
        with httpx.Client(timeout=20.0) as http, http.stream("POST", url, json=body) as response:
            response.read()
            return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda _: status(), range(6)))
    assert sorted(statuses) == [200, 200, 503, 503, 503, 503]
    assert eventually(lambda: one_slot.stats()["active"] == 0)
    assert one_slot.stats()["reserved"] == 0


def test_api_key_is_required_when_configured(client: httpx.Client) -> None:
    """With --api-key, requests without the bearer token get LM Studio's 401; /_sim stays open."""
    with running_sim("--api-key", "sekrit", *FAST) as sim:
        assert sim.process.stdout is not None
        assert f"listening on {sim.url} (model" in sim.process.stdout.readline().decode()
        refused = client.get(f"{sim.url}/v1/models")
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_api_key")
        wrong = client.get(f"{sim.url}/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        allowed = client.get(f"{sim.url}/v1/models", headers={"Authorization": "Bearer sekrit"})
        assert allowed.status_code == 200
        assert sim.stats()["started"] == 0


def test_reset_zeroes_the_counters(sim: SimHandle, client: httpx.Client) -> None:
    """`/_sim/reset` zeroes the totals but keeps the mode."""
    client.post(f"{sim.url}/v1/responses", json={"input": "x"}).raise_for_status()
    assert sim.stats()["completed"] == 1
    sim.set_fault("slow")
    sim.reset()
    stats = sim.stats()
    assert (stats["completed"], stats["started"], stats["output_tokens"]) == (0, 0, 0)
    assert stats["mode"] == "slow"
