"""The simulator's opt-in LM Studio behaviours, each against a real sim process over HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from httpx_sse import connect_sse
from sim_process import SimHandle, running_sim
from support import eventually

if TYPE_CHECKING:
    from collections.abc import Iterator

FAST = ("--decode-rate", "400", "--prefill-rate", "20000")
MODEL = "nvidia/nemotron-3-nano"
EMBEDDING = "text-embedding-nomic-embed-text-v1.5"
TEXT_DELTA = "response.output_text.delta"
LONG_INPUT = "word " * 64  # 320 characters: 80 tokens


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=20.0) as http:
        yield http


def _events(client: httpx.Client, url: str, body: dict[str, Any]) -> list[Any]:
    with connect_sse(client, "POST", url, json={**body, "stream": True}) as source:
        return list(source.iter_sse())


def _raw_stream(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[int, str]:
    with client.stream("POST", url, json={**body, "stream": True}) as response:
        return response.status_code, response.read().decode()


def _v0_state(client: httpx.Client, sim: SimHandle, key: str = MODEL) -> str:
    entries = client.get(f"{sim.url}/api/v0/models").json()["data"]
    state: str = next(entry["state"] for entry in entries if entry["id"] == key)
    return state


def _v1_entry(client: httpx.Client, sim: SimHandle, key: str = MODEL) -> dict[str, Any]:
    entries = client.get(f"{sim.url}/api/v1/models").json()["models"]
    return next(entry for entry in entries if entry["key"] == key)


def test_jit_lists_downloaded_models_as_not_loaded_in_both_rest_apis(client: httpx.Client) -> None:
    """--jit --embedding-model: v0 says not-loaded, v1 lists no instances and both types, and
    /v1/models lists both, as LM Studio does with JIT loading on (docs 0_core/headless.md)."""
    with running_sim("--jit", "--embedding-model", *FAST) as sim:
        openai = client.get(f"{sim.url}/v1/models").json()["data"]
        assert [entry["id"] for entry in openai] == [MODEL, EMBEDDING]
        v0 = {entry["id"]: entry for entry in client.get(f"{sim.url}/api/v0/models").json()["data"]}
        assert (v0[MODEL]["state"], v0[EMBEDDING]["state"]) == ("not-loaded", "not-loaded")
        assert (v0[MODEL]["type"], v0[EMBEDDING]["type"]) == ("llm", "embeddings")
        llm, embedding = _v1_entry(client, sim), _v1_entry(client, sim, EMBEDDING)
        assert (llm["type"], embedding["type"]) == ("llm", "embedding")
        assert llm["loaded_instances"] == embedding["loaded_instances"] == []
        assert llm["capabilities"]["trained_for_tool_use"] is True
        assert "capabilities" not in embedding
        assert llm["max_context_length"] > 0


def test_first_request_loads_the_model_once_while_concurrent_requests_wait(
    client: httpx.Client,
) -> None:
    """Three requests during a 1 s JIT load all succeed on one load, then the model is listed."""
    with running_sim("--jit", "--load-seconds", "1", "--context-length", "4096", *FAST) as sim:
        url = f"{sim.url}/v1/responses"
        with ThreadPoolExecutor(max_workers=3) as pool:
            statuses = list(
                pool.map(lambda _: client.post(url, json={"input": "hi"}).status_code, range(3))
            )
        assert statuses == [200, 200, 200]
        stats = sim.stats()
        assert (stats["loads_started"], stats["loaded_instances"]) == (1, 1)
        assert stats["reached_generation"] == 3
        assert _v0_state(client, sim) == "loaded"
        (instance,) = _v1_entry(client, sim)["loaded_instances"]
        assert (instance["id"], instance["config"]["context_length"]) == (MODEL, 4096)
        assert client.get(f"{sim.url}/v1/models").json()["data"][0]["id"] == MODEL


def test_duplicate_jit_loads_start_a_copy_per_concurrent_request(client: httpx.Client) -> None:
    """--duplicate-jit-loads (#1751): three concurrent requests load three instances."""
    with running_sim("--jit", "--load-seconds", "0.5", "--duplicate-jit-loads", *FAST) as sim:
        url = f"{sim.url}/v1/chat/completions"
        body = {"messages": [{"content": "hi"}]}
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda _: client.post(url, json=body).raise_for_status(), range(3)))
        assert sim.stats()["loads_started"] == 3
        ids = [instance["id"] for instance in _v1_entry(client, sim)["loaded_instances"]]
        assert ids == [MODEL, f"{MODEL}:2", f"{MODEL}:3"]


def test_unknown_model_is_lm_studios_model_not_found(client: httpx.Client) -> None:
    """With JIT, a model that is not downloaded gets 400 model_not_found and loads nothing."""
    with running_sim("--jit", *FAST) as sim:
        refused = client.post(f"{sim.url}/v1/responses", json={"model": "gpt-4o", "input": "x"})
        assert refused.status_code == 400
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("model_not_found", "model")
        assert error["message"].startswith('Invalid model identifier "gpt-4o".')
        assert sim.stats()["loads_started"] == 0


@pytest.mark.parametrize(
    ("args", "body"),
    [
        (("--idle-ttl", "1"), {"input": "x"}),
        ((), {"input": "x", "ttl": 1}),
    ],
    ids=["idle-ttl-flag", "request-ttl-field"],
)
def test_jit_loaded_model_unloads_after_its_idle_ttl(
    client: httpx.Client, args: tuple[str, ...], body: dict[str, Any]
) -> None:
    """A JIT-loaded model idle for its TTL (flag or the request's `ttl`) is listed not-loaded."""
    with running_sim("--jit", *args, *FAST) as sim:
        client.post(f"{sim.url}/v1/responses", json=body).raise_for_status()
        assert _v0_state(client, sim) == "loaded"
        assert eventually(lambda: _v0_state(client, sim) == "not-loaded", timeout=5.0)
        assert _v1_entry(client, sim)["loaded_instances"] == []


def test_load_endpoint_loads_a_model(client: httpx.Client) -> None:
    """POST /api/v1/models/load answers as the docs show and the model is then loaded."""
    with running_sim("--jit", "--embedding-model", *FAST) as sim:
        body = {"model": EMBEDDING, "echo_load_config": True}
        loaded = client.post(f"{sim.url}/api/v1/models/load", json=body).json()
        assert (loaded["type"], loaded["instance_id"], loaded["status"]) == (
            "embedding",
            EMBEDDING,
            "loaded",
        )
        assert loaded["load_config"]["context_length"] > 0
        assert _v0_state(client, sim, EMBEDDING) == "loaded"
        assert _v0_state(client, sim) == "not-loaded"
        missing = client.post(f"{sim.url}/api/v1/models/load", json={"model": "nope"})
        assert missing.json()["error"]["code"] == "model_not_found"


@pytest.fixture(scope="module")
def refusing() -> Iterator[SimHandle]:
    with running_sim("--context-length", "100", *FAST) as handle:
        yield handle


def test_overflowing_input_gets_lm_studios_400(refusing: SimHandle, client: httpx.Client) -> None:
    """--context-length 100: an 80-token input fits; the stored history plus it does not (#237)."""
    sim = refusing.healthy()
    url = f"{sim.url}/v1/responses"
    first = client.post(url, json={"input": "hi"}).json()  # 1 + 48 tokens stored
    assert client.post(url, json={"input": LONG_INPUT}).status_code == 200
    follow_up = {"input": LONG_INPUT, "previous_response_id": first["id"]}
    refused = client.post(url, json=follow_up)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "<LM Studio error> Trying to keep the first 129 tokens when context the "
        "overflows. However, the model is loaded with context length of only 100 tokens, "
        "which is not enough. Try to load the model with a larger context length, or provide "
        "a shorter input. Error Data: n/a, Additional Data: n/a"
    }
    stats = sim.stats()
    assert (stats["overflows"], stats["reached_generation"]) == (1, 2)


def test_unknown_previous_response_id_is_previous_response_not_found(
    refusing: SimHandle, client: httpx.Client
) -> None:
    """An unknown previous_response_id gets 400 previous_response_not_found (#1188)."""
    body = {"input": "x", "previous_response_id": "resp_" + "0" * 48}
    refused = client.post(f"{refusing.url}/v1/responses", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "previous_response_not_found"


def test_overflow_as_a_200_carrying_the_error(client: httpx.Client) -> None:
    """--overflow 200 (#2322): streamed, a 200 with one error event; unstreamed, a 200 JSON."""
    message = (
        "Input does not fit in context length. The input has 80 tokens, "
        "but the context length only supports 50 tokens."
    )
    with running_sim("--context-length", "50", "--overflow", "200", *FAST) as sim:
        body = {"messages": [{"role": "user", "content": LONG_INPUT}]}
        events = _events(client, f"{sim.url}/v1/chat/completions", body)
        assert [(event.event, event.json()) for event in events] == [
            ("error", {"error": {"message": message}, "message": message})
        ]
        answer = client.post(f"{sim.url}/v1/responses", json={"input": LONG_INPUT})
        assert (answer.status_code, answer.json()["message"]) == (200, message)
        assert sim.stats()["overflows"] == 2
        assert sim.stats()["reached_generation"] == 0


def test_overflow_mid_generation_fails_the_stream_when_the_context_fills(
    client: httpx.Client,
) -> None:
    """--overflow mid-generation (#1251): 80 input tokens in 100 give 20 deltas, then an error."""
    with running_sim("--context-length", "100", "--overflow", "mid-generation", *FAST) as sim:
        events = _events(client, f"{sim.url}/v1/responses", {"input": LONG_INPUT})
        kinds = [event.event for event in events]
        assert kinds.count(TEXT_DELTA) == 20
        assert kinds[-1] == "error"
        assert "response.completed" not in kinds
        assert events[-1].json()["message"].startswith("Reached context length of 100 tokens")
        unstreamed = client.post(f"{sim.url}/v1/responses", json={"input": LONG_INPUT})
        assert unstreamed.status_code == 400
        assert "mid-generation context overflow" in unstreamed.json()["error"]["message"]
        stats = sim.stats()
        assert (stats["overflows"], stats["failed"], stats["completed"]) == (2, 2, 0)


def test_bare_error_frames_have_no_event_line(client: httpx.Client) -> None:
    """--bare-error-frames: the error arrives as a lone `data:` line in both APIs."""
    args = ("--context-length", "100", "--overflow", "mid-generation", "--bare-error-frames")
    with running_sim(*args, *FAST) as sim:
        status, text = _raw_stream(client, f"{sim.url}/v1/responses", {"input": LONG_INPUT})
        assert status == 200
        assert "event: error" not in text
        assert text.rstrip().rsplit("\n\n", 1)[-1].startswith('data: {"type":"error",')
        chat = {"messages": [{"content": LONG_INPUT}]}
        status, text = _raw_stream(client, f"{sim.url}/v1/chat/completions", chat)
        assert "event:" not in text
        assert text.rstrip().rsplit("\n\n", 1)[-1].startswith('data: {"error":{')


def test_reasoning_done_only_and_incomplete_at_the_limit(client: httpx.Client) -> None:
    """--reasoning-done-only: one reasoning_text.done inside the reasoning item's own events,
    no deltas; a cut answer is incomplete."""
    with running_sim("--reasoning-done-only", "--incomplete-at-limit", *FAST) as sim:
        body = {"input": "Why?", "reasoning": {"effort": "low"}, "max_output_tokens": 30}
        events = _events(client, f"{sim.url}/v1/responses", body)
        kinds = [event.event for event in events]
        assert "response.reasoning_text.delta" not in kinds
        (done,) = [event.json() for event in events if event.event.startswith("response.reas")]
        assert done["type"] == "response.reasoning_text.done"
        assert len(done["text"].split()) == 12
        items = [e.json() for e in events if e.event.startswith("response.output_item.")]
        assert [(e["type"], e["item"]["type"]) for e in items[:2]] == [
            ("response.output_item.added", "reasoning"),
            ("response.output_item.done", "reasoning"),
        ]
        assert kinds[2] == "response.output_item.added"  # before the think, after the opening
        assert items[0]["item"]["id"] == done["item_id"] == items[1]["item"]["id"]
        assert kinds[-1] == "response.incomplete"
        final = events[-1].json()["response"]
        assert final["status"] == "incomplete"
        assert final["incomplete_details"] == {"reason": "max_output_tokens"}
        whole = client.post(f"{sim.url}/v1/responses", json={"input": "Why?"}).json()
        assert (whole["status"], whole["incomplete_details"]) == ("completed", None)


def test_reasoning_can_eat_the_whole_budget(client: httpx.Client) -> None:
    """--reasoning-eats-budget: a cut reasoning answer has only reasoning and no message item."""
    with running_sim("--reasoning-eats-budget", "--incomplete-at-limit", *FAST) as sim:
        body = {"input": "Why?", "reasoning": {"effort": "high"}, "max_output_tokens": 10}
        events = _events(client, f"{sim.url}/v1/responses", body)
        kinds = [event.event for event in events]
        assert kinds.count("response.reasoning_text.delta") == 10
        assert TEXT_DELTA not in kinds
        final = events[-1].json()["response"]
        assert final["status"] == "incomplete"
        assert [item["type"] for item in final["output"]] == ["reasoning"]
        unstreamed = client.post(f"{sim.url}/v1/responses", json=body).json()
        assert [item["type"] for item in unstreamed["output"]] == ["reasoning"]


def test_unknown_paths_get_200_and_old_servers_have_no_responses_api(
    client: httpx.Client,
) -> None:
    """--unknown-path-200 (#618, #1323) and --no-responses-api (before 0.3.29)."""
    with running_sim("--unknown-path-200", "--no-responses-api", *FAST) as sim:
        unknown = client.get(f"{sim.url}/admin/api/stats?panel=config")
        assert (unknown.status_code, unknown.json()) == (
            200,
            {"error": "Unexpected endpoint or method. (GET /admin/api/stats?panel=config)"},
        )
        responses = client.post(f"{sim.url}/v1/responses", json={"input": "x"})
        assert responses.json() == {"error": "Unexpected endpoint or method. (POST /v1/responses)"}
        assert responses.status_code == 200
        chat = client.post(f"{sim.url}/v1/chat/completions", json={"messages": [{"content": "x"}]})
        assert chat.status_code == 200
        assert sim.stats()["unknown_paths"] == 2
    with running_sim(*FAST) as default:
        assert client.get(f"{default.url}/admin/api/stats").status_code == 404


def test_servers_before_0_4_have_no_native_rest_api(client: httpx.Client) -> None:
    """--no-rest-v1 (before 0.4.0): /api/v1 is an unknown path, /api/v0 still lists."""
    with running_sim("--no-rest-v1", "--unknown-path-200", *FAST) as sim:
        listing = client.get(f"{sim.url}/api/v1/models")
        assert (listing.status_code, listing.json()) == (
            200,
            {"error": "Unexpected endpoint or method. (GET /api/v1/models)"},
        )
        load = client.post(f"{sim.url}/api/v1/models/load", json={"model": MODEL})
        assert load.json()["error"].startswith("Unexpected endpoint")
        assert _v0_state(client, sim) == "loaded"
        assert sim.stats()["unknown_paths"] == 2


def test_require_authentication_covers_every_api(client: httpx.Client) -> None:
    """--api-key: every API, model lists included, answers LM Studio's 401, counted."""
    calls = [
        ("GET", "/v1/models", None),
        ("GET", "/api/v0/models", None),
        ("GET", "/api/v1/models", None),
        ("POST", "/api/v1/models/load", {"model": MODEL}),
        ("POST", "/v1/responses", {"input": "x"}),
        ("POST", "/v1/chat/completions", {"messages": [{"content": "x"}]}),
    ]
    with running_sim("--api-key", "sekrit", *FAST) as sim:
        for method, path, body in calls:
            refused = client.request(method, f"{sim.url}{path}", json=body)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "invalid_api_key"
            assert refused.json()["error"]["message"].startswith("An LM Studio API token")
        stats = sim.stats()
        assert (stats["unauthorized"], stats["started"]) == (len(calls), 0)


def _stream_in_background(url: str, body: dict[str, Any]) -> int:
    with httpx.Client(timeout=20.0) as http, http.stream("POST", url, json=body) as response:
        response.read()
        return response.status_code


@pytest.mark.parametrize(
    ("args", "parallel"),
    [(("--engine", "mlx", "--slots", "4"), 1), (("--engine", "llama.cpp", "--slots", "2"), 2)],
    ids=["mlx", "llama.cpp"],
)
def test_lm_studio_engines_queue_instead_of_refusing(args: tuple[str, ...], parallel: int) -> None:
    """MLX runs one prediction at a time, llama.cpp its slots; the rest queue, none get 503."""
    with running_sim(*args, "--queue", "0", "--output-tokens", "100", *FAST) as sim:
        url = f"{sim.url}/v1/responses"
        body = {"input": "x", "stream": True}
        with ThreadPoolExecutor(max_workers=4) as pool:
            futures = [pool.submit(_stream_in_background, url, body) for _ in range(4)]
            assert eventually(lambda: sim.stats()["queued"] == 4 - parallel)
            assert sim.stats()["busy_slots"] == parallel
            statuses = [future.result() for future in futures]
    assert statuses == [200, 200, 200, 200]


@pytest.mark.parametrize(("survives", "held"), [(True, 1), (False, 0)], ids=["597", "default"])
def test_prompt_processing_outlives_a_cancel_only_when_asked(survives: bool, held: int) -> None:
    """--prefill-survives-cancel (#597): a request cancelled in a 2 s prefill keeps its slot."""
    flags = ("--prefill-survives-cancel",) if survives else ()
    with running_sim("--engine", "mlx", "--prefill-rate", "10000", *flags) as sim:
        body = {"input": "word " * 16_000, "stream": True}  # 20,000 tokens: 2 s of prefill
        with (
            httpx.Client(timeout=10.0) as http,
            http.stream("POST", f"{sim.url}/v1/responses", json=body) as response,
        ):
            next(response.iter_lines())  # response.created: the prefill has begun
            assert eventually(lambda: sim.stats()["reached_generation"] == 1)
        assert eventually(lambda: sim.stats()["cancelled"] == 1)
        assert sim.stats()["busy_slots"] == held
        assert eventually(lambda: sim.stats()["busy_slots"] == 0, timeout=5.0)


def test_lmstudio_preset_turns_on_the_realistic_set(client: httpx.Client) -> None:
    """--lmstudio: JIT (not loaded at start), one slot queueing without limit, 200 for unknowns."""
    with running_sim("--lmstudio", "--load-seconds", "0.2", *FAST) as sim:
        stats = sim.stats()
        assert (stats["model_loaded"], stats["slots"], stats["queue_limit"]) == (False, 1, None)
        assert client.get(f"{sim.url}/nowhere").status_code == 200
        client.post(f"{sim.url}/v1/responses", json={"input": "x"}).raise_for_status()
        assert sim.stats()["loads_started"] == 1
