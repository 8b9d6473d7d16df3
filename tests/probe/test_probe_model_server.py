"""Model server signals and the synthetic generation, against the real simulator."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fault_servers import silent_server
from sim_process import SimHandle, running_sim

from probe.collectors.model_server import ModelServerCollector
from probe.collectors.synthetic import SyntheticCollector, SyntheticFailed
from probe.runner import CollectorRunner

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from probe.collectors import Collector, Signals


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    """A fast simulator, shared by the tests that leave it healthy."""
    with running_sim("--decode-rate", "200") as handle:
        yield handle


def collect(url: str, make: Callable[[httpx.AsyncClient], Collector], **client: Any) -> Signals:
    """Run one collection of a collector built on a client for `url`."""

    async def scenario() -> Signals:
        async with httpx.AsyncClient(base_url=url, timeout=5.0, **client) as http:
            return await make(http).collect()

    return asyncio.run(scenario())


def test_up_with_latency_and_a_loaded_model(sim: SimHandle) -> None:
    """A healthy server is up, answers in measurable time and has its model loaded."""
    signals = collect(sim.url, ModelServerCollector)
    assert signals["model_server_up"] == 1
    assert signals["model_loaded"] == 1
    assert 0 < signals["model_server_latency_seconds"] < 5


@pytest.fixture
def faulty(sim: SimHandle) -> Iterator[SimHandle]:
    """The shared simulator, healthy again after the test switched it into a fault."""
    try:
        yield sim
    finally:
        sim.set_fault("ok")


def test_up_without_a_model(faulty: SimHandle) -> None:
    """A server with nothing loaded is up, with model_loaded 0 (from /api/v1/models)."""
    faulty.set_fault("no_model")
    signals = collect(faulty.url, ModelServerCollector)
    assert signals["model_server_up"] == 1
    assert signals["model_loaded"] == 0


def test_nothing_listening_is_down() -> None:
    """No server on the port: down with nothing loaded, not busy, and no latency made up."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        signals = collect(url, ModelServerCollector)
    assert signals == {"model_server_up": 0, "model_loaded": 0, "model_server_busy": 0}


def silent_collections(times: int, *, cut_short: int = 0) -> list[Signals | None]:
    """Collect `times` in a row from a server that accepts and never answers; the first
    `cut_short` are stopped by the agent's time limit before the client's own fires."""

    async def scenario(url: str) -> list[Signals | None]:
        async with httpx.AsyncClient(base_url=url, timeout=0.3) as http:
            collector = ModelServerCollector(http)
            runner = CollectorRunner(collector, timeout=0.1)
            cut = [await runner.run() for _ in range(cut_short)]
            return [*cut, *[await collector.collect() for _ in range(times - cut_short)]]

    with silent_server() as url:
        return asyncio.run(scenario(url))


def test_hung_server_is_down_and_busy_after_the_timeout() -> None:
    """A server that accepts connections but never answers is down for older gateways, and
    busy one more check in a row each time (it may only be overloaded)."""
    collected = silent_collections(3)
    assert [signals["model_server_busy"] for signals in collected if signals] == [1, 2, 3]
    assert {signals["model_server_up"] for signals in collected if signals} == {0}
    assert "model_server_latency_seconds" not in collected[0]  # type: ignore[operator]


def test_a_check_cut_short_by_the_time_limit_counts_in_the_row() -> None:
    """Checks the agent's time limit stopped (published as unknown) count in the busy row."""
    *cut, last = silent_collections(3, cut_short=2)
    assert cut == [None, None]
    assert last is not None
    assert last["model_server_busy"] == 3


def scripted_statuses(*statuses: int) -> httpx.MockTransport:
    """A server whose /v1/models answers these statuses in turn (200: a listing)."""
    answers = iter(statuses)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/models":
            return httpx.Response(404, json={"error": "not found"})
        status = next(answers)
        body = {"data": [{"id": "qwen3-4b"}]} if status == 200 else {"error": "busy"}
        return httpx.Response(status, json=body)

    return httpx.MockTransport(answer)


def test_503s_count_as_busy_until_the_server_answers() -> None:
    """A server answering 503 is busy (one more in a row each time), and an answer ends the
    row: up, busy 0."""

    async def scenario() -> list[Signals]:
        transport = scripted_statuses(503, 503, 200, 503)
        async with httpx.AsyncClient(base_url="http://model", transport=transport) as http:
            collector = ModelServerCollector(http)
            return [await collector.collect() for _ in range(4)]

    collected = asyncio.run(scenario())
    assert [signals["model_server_busy"] for signals in collected] == [1, 2, 0, 1]
    assert [signals["model_server_up"] for signals in collected] == [0, 0, 1, 0]


def openai_only_server(models: list[str]) -> httpx.MockTransport:
    """A server without LM Studio's /api/v0 (404), listing `models` on /v1/models."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": name} for name in models]})
        return httpx.Response(404, json={"error": "not found"})

    return httpx.MockTransport(answer)


@pytest.mark.parametrize(("models", "loaded"), [(["qwen3-4b"], 1.0), ([], 0.0)])
def test_without_the_lm_studio_api_listed_models_count_as_loaded(
    models: list[str], loaded: float
) -> None:
    """Where /api/v0/models is 404, a non-empty /v1/models means a model is loaded."""
    signals = collect("http://model", ModelServerCollector, transport=openai_only_server(models))
    assert signals["model_loaded"] == loaded


def lm_studio_0_3() -> httpx.MockTransport:
    """An LM Studio before 0.4: /api/v1 answers 200 "Unexpected endpoint" (#618), v0 lists."""
    v0: list[dict[str, Any]] = [
        {"id": "qwen3-4b", "type": "llm", "state": "loaded", "loaded_context_length": 4096},
        {"id": "nomic-embed", "type": "embeddings", "state": "loaded"},
    ]
    bodies: dict[str, Any] = {
        "/api/v1/models": {"error": "Unexpected endpoint or method. (GET /api/v1/models)"},
        "/api/v0/models": {"object": "list", "data": v0},
        "/v1/models": {"data": [{"id": row["id"]} for row in v0]},
    }
    return httpx.MockTransport(lambda request: httpx.Response(200, json=bodies[request.url.path]))


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("qwen3-4b", {"model_loaded": 1, "model_available": 1, "model_context_length": 4096}),
        ("nomic-embed", {"model_loaded": 0, "model_available": 0}),
    ],
)
def test_an_lm_studio_without_api_v1_is_read_from_api_v0(
    model: str, expected: dict[str, float]
) -> None:
    """/api/v1's 200 "Unexpected endpoint" is no listing: /api/v0 says what is loaded."""
    signals = collect(
        "http://model", lambda http: ModelServerCollector(http, model), transport=lm_studio_0_3()
    )
    assert {name: signals.get(name) for name in expected} == expected
    assert ("model_context_length" in signals) == ("model_context_length" in expected)


def synthetic(every: float = 30.0, **options: Any) -> Callable[[httpx.AsyncClient], Collector]:
    """A factory of synthetic collectors that wait for their measurement."""
    return lambda http: SyntheticCollector(http, every=every, timeout=10.0, wait=True, **options)


def test_synthetic_measures_ttft_and_decode_speed(sim: SimHandle) -> None:
    """One tiny generation gives a TTFT, tokens per second and a fresh age."""
    signals = collect(sim.url, synthetic())
    assert 0 < signals["synthetic_ttft_seconds"] < 10
    assert signals["synthetic_tokens_per_second"] > 0
    assert 0 <= signals["synthetic_age_seconds"] < 10


def test_synthetic_republishes_between_runs_with_a_growing_age(sim: SimHandle) -> None:
    """Within the interval the last values come back, older, and no new generation starts."""

    async def scenario() -> list[Signals]:
        async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as http:
            collector = SyntheticCollector(http, every=3600, timeout=10.0, wait=True)
            first = await collector.collect()
            await asyncio.sleep(0.05)
            return [first, await collector.collect()]

    started = sim.stats()["started"]
    first, second = asyncio.run(scenario())
    assert sim.stats()["started"] == started + 1
    assert second["synthetic_ttft_seconds"] == first["synthetic_ttft_seconds"]
    assert second["synthetic_age_seconds"] > first["synthetic_age_seconds"]


def test_synthetic_runs_in_the_background(sim: SimHandle) -> None:
    """Without waiting, the first collect starts a generation and returns at once."""

    async def scenario(url: str) -> tuple[Signals, Signals]:
        async with httpx.AsyncClient(base_url=url, timeout=5.0) as http:
            collector = SyntheticCollector(http, every=3600, timeout=10.0)
            first = await collector.collect()
            for _ in range(200):
                await asyncio.sleep(0.05)
                if later := await collector.collect():
                    return first, later
            return first, {}

    first, later = asyncio.run(scenario(sim.url))
    assert first == {}
    assert "synthetic_ttft_seconds" in later


def test_synthetic_without_a_loaded_model_fails_with_a_reason(faulty: SimHandle) -> None:
    """Nothing loaded: the measurement fails and says so, rather than reporting 0."""
    faulty.set_fault("no_model")
    with pytest.raises(SyntheticFailed, match="no LLM is loaded"):
        collect(faulty.url, synthetic())


def test_synthetic_failure_drops_the_old_values(faulty: SimHandle) -> None:
    """After a failed run the previous TTFT is not republished as if it were current."""

    async def scenario() -> Signals:
        async with httpx.AsyncClient(base_url=faulty.url, timeout=5.0) as http:
            collector = SyntheticCollector(http, every=0, timeout=10.0, wait=True)
            assert await collector.collect()
            faulty.set_fault("error", share=1.0)
            return await collector.collect()

    with pytest.raises(SyntheticFailed, match="answered 5"):
        asyncio.run(scenario())


def test_synthetic_falls_back_to_a_smaller_effort_the_model_accepts() -> None:
    """A model that rejects reasoning effort 'none' with a 400 is asked again with 'low'."""
    efforts: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":  # no listing: the configured model is measured
            return httpx.Response(404)
        effort = json.loads(request.content)["reasoning"]["effort"]
        efforts.append(effort)
        if effort != "low":
            return httpx.Response(400, json={"error": f"effort {effort} not supported"})
        return httpx.Response(200, content=COMPLETED_STREAM)

    transport = httpx.MockTransport(answer)
    signals = collect("http://model", synthetic(model="gpt-oss-20b"), transport=transport)
    assert efforts == ["none", "minimal", "low"]
    assert signals["synthetic_ttft_seconds"] >= 0


STREAM_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("response.created", {}),
    ("response.reasoning_text.delta", {"delta": "Hm"}),
    ("response.output_text.delta", {"delta": "pong"}),
    ("response.completed", {"response": {"usage": {"output_tokens": 4}}}),
]
COMPLETED_STREAM = b"".join(
    b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps({"type": kind, **data}).encode())
    for kind, data in STREAM_EVENTS
)
