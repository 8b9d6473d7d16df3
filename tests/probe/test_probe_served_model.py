"""The probe watches the blog's model (LLMGW_MODEL) and the door of its token, against the
real sim and a real Redis: what it publishes, what it exports, and what it never loads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sim_process import running_sim

from probe.assembly import build_collectors, open_agent
from probe.collectors.synthetic import SyntheticCollector, SyntheticFailed
from probe.settings import load_settings
from sim.config import EMBEDDING_MODEL, SimConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis
    from sim_process import SimHandle

    from probe.settings import ProbeSettings

MODEL = SimConfig().model
SERVED = "blog/served-model"  # a name of the test's own: only LLMGW_MODEL can bring it in
KEY_OF_LM_STUDIO = "lm-studio-api-token"
HOST = "servedhost"


def settings_for(url: str, redis_url: str | None = None, **overrides: Any) -> ProbeSettings:
    """Probe settings watching `url`, publishing to `redis_url`, with `overrides`."""
    return load_settings(
        **{
            "probe_model_url": url,
            "probe_gpu": "none",
            "probe_host": HOST,
            "probe_interval": 30.0,  # tick() is called directly: the interval is only the TTL
            "probe_synthetic_interval": 0,
            "probe_metrics_port": 0,
            "redis_url": redis_url,
            "model": MODEL,
        }
        | overrides
    )


def publish_once(settings: ProbeSettings, client: redis.Redis) -> tuple[dict[str, str], str]:
    """One tick of a running agent: the Redis hash it wrote and its /metrics text."""

    async def tick() -> str:
        async with open_agent(settings) as agent:
            await agent.tick()
            registry = CollectorRegistry()
            assert agent.metrics is not None
            registry.register(agent.metrics)
            return generate_latest(registry).decode()

    metrics = asyncio.run(tick())
    stored = client.hgetall("{llmgw}:probe:" + HOST)
    return {text(k): text(v) for k, v in stored.items()}, metrics


def text(value: bytes | str) -> str:
    """A Redis reply as text."""
    return value.decode() if isinstance(value, bytes) else value


@pytest.fixture(scope="module")
def locked() -> Iterator[SimHandle]:
    """A sim with LM Studio's Require Authentication on."""
    with running_sim("--api-key", KEY_OF_LM_STUDIO) as sim:
        yield sim


def test_a_refused_token_is_a_server_up_with_its_token_door_shut(
    locked: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """Without LM Studio's token the probe says up, token refused, and the model unknown."""
    stored, metrics = publish_once(settings_for(locked.url, redis_url), redis_client)
    assert (stored["model_server_up"], stored["model_token_ok"]) == ("1", "0")
    assert "model_loaded" not in stored
    assert "model_available" not in stored
    assert "llmgw_probe_model_token_ok 0.0" in metrics
    assert "llmgw_probe_model_server_up 1.0" in metrics


def test_with_the_token_the_door_is_open_and_the_model_seen(
    locked: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """With LLMGW_PROBE_MODEL_TOKEN the probe says up, token taken, model loaded."""
    settings = settings_for(locked.url, redis_url, probe_model_token=KEY_OF_LM_STUDIO)
    stored, metrics = publish_once(settings, redis_client)
    assert (stored["model_server_up"], stored["model_token_ok"]) == ("1", "1")
    assert (stored["model_loaded"], stored["model_available"]) == ("1", "1")
    assert "llmgw_probe_model_token_ok 1.0" in metrics
    assert KEY_OF_LM_STUDIO not in metrics + json.dumps(stored)


@pytest.fixture(scope="module")
def asleep() -> Iterator[SimHandle]:
    """A sim (JIT) whose LLM is downloaded, not loaded, beside an embedding model."""
    with running_sim("--jit", "--load-seconds", "0", "--embedding-model") as sim:
        yield sim


def test_a_sleeping_model_is_not_loaded_but_available(
    asleep: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """The blog's model asleep: model_loaded 0, model_available 1, no context length."""
    stored, metrics = publish_once(settings_for(asleep.url, redis_url), redis_client)
    assert (stored["model_loaded"], stored["model_available"]) == ("0", "1")
    assert "model_context_length" not in stored
    assert "llmgw_probe_model_available 1.0" in metrics


@pytest.mark.parametrize("served", [EMBEDDING_MODEL, "nobody/not-downloaded"])
def test_an_embedding_or_absent_served_model_is_unavailable(
    served: str, asleep: SimHandle, redis_url: str, redis_client: redis.Redis
) -> None:
    """LLMGW_MODEL naming an embedding model, or none downloaded: model_available 0."""
    stored, _ = publish_once(settings_for(asleep.url, redis_url, model=served), redis_client)
    assert (stored["model_loaded"], stored["model_available"]) == ("0", "0")


def test_a_loaded_model_publishes_its_context_length(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """The blog's model loaded: model_loaded 1, and the context it was loaded with."""
    with running_sim("--context-length", "8192") as sim:
        stored, metrics = publish_once(settings_for(sim.url, redis_url), redis_client)
    assert (stored["model_loaded"], stored["model_available"]) == ("1", "1")
    assert stored["model_context_length"] == "8192"
    assert "llmgw_probe_model_context_length 8192.0" in metrics


def test_another_loaded_model_is_not_the_served_one(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """An LLM loaded under another name than LLMGW_MODEL: the blog's model is missing."""
    with running_sim() as sim:
        settings = settings_for(sim.url, redis_url, model="someone/else")
        stored, _ = publish_once(settings, redis_client)
    assert (stored["model_loaded"], stored["model_available"]) == ("0", "0")


class RecordingTransport(httpx.AsyncBaseTransport):
    """The real HTTP transport, noting the model each generation request names."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.models: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Note the generation's model, then send the request to the real server."""
        if request.url.path == "/v1/responses":
            self.models.append(json.loads(request.content).get("model"))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the real transport."""
        await self.inner.aclose()


def measure(settings: ProbeSettings) -> tuple[dict[str, float] | SyntheticFailed, list[Any]]:
    """One synthetic measurement, as the probe builds it from `settings`, and the models named."""
    transport = RecordingTransport()

    async def scenario() -> dict[str, float] | SyntheticFailed:
        async with httpx.AsyncClient(base_url=settings.probe_model_url, transport=transport) as c:
            collectors = build_collectors(settings, c, "none", once=True)
            synthetic = next(x for x in collectors if isinstance(x, SyntheticCollector))
            try:
                return await synthetic.collect()
            except SyntheticFailed as exc:
                return exc
            finally:
                await synthetic.aclose()

    return asyncio.run(scenario()), transport.models


@pytest.fixture
def served() -> Iterator[SimHandle]:
    """A sim (JIT) serving the blog's model under the test's own name, asleep at first."""
    with running_sim("--jit", "--load-seconds", "0", "--embedding-model", "--model", SERVED) as s:
        yield s


def wake(sim: SimHandle, model: str) -> None:
    """One chat for `model`, as a visitor would send it: the sim loads it (JIT)."""
    body = {"model": model, "input": "hello", "max_output_tokens": 2}
    httpx.post(sim.url + "/v1/responses", json=body, timeout=30).raise_for_status()


def loaded_keys(sim: SimHandle) -> set[str]:
    """Keys of the models the sim's /api/v1/models shows loaded."""
    models = httpx.get(sim.url + "/api/v1/models", timeout=5).json()["models"]
    return {m["key"] for m in models if m["loaded_instances"]}


def test_the_synthetic_generation_names_the_served_model(served: SimHandle) -> None:
    """With LLMGW_MODEL set, the sim is asked for that model, and loads no other one."""
    wake(served, SERVED)
    settings = settings_for(served.url, probe_synthetic_interval=30, model=SERVED)
    signals, models = measure(settings)
    assert isinstance(signals, dict)
    assert signals["synthetic_ttft_seconds"] > 0
    assert models == [SERVED]
    assert loaded_keys(served) == {SERVED}
    assert served.stats()["loads_started"] == 1  # the visitor's, not the probe's


def test_a_sleeping_served_model_is_not_woken_by_the_probe(served: SimHandle) -> None:
    """The blog's model asleep: the probe sends no generation and the model stays asleep."""
    settings = settings_for(served.url, probe_synthetic_interval=30, model=SERVED)
    failure, models = measure(settings)
    assert isinstance(failure, SyntheticFailed)
    assert "asleep" in str(failure)
    assert models == []
    assert served.stats()["loads_started"] == 0


def test_without_any_model_set_it_measures_the_loaded_llm(served: SimHandle) -> None:
    """Neither LLMGW_MODEL nor LLMGW_PROBE_MODEL: the loaded LLM is named, nothing is loaded."""
    settings = settings_for(served.url, probe_synthetic_interval=30, model=None)
    failure, models = measure(settings)
    assert isinstance(failure, SyntheticFailed)
    assert models == []  # nothing loaded: nothing named, nothing woken
    wake(served, SERVED)
    signals, models = measure(settings)
    assert isinstance(signals, dict)
    assert models == [SERVED]
    assert served.stats()["loads_started"] == 1


def run_probe_once(sim: SimHandle, **variables: str) -> subprocess.CompletedProcess[str]:
    """`python -m probe --once` against `sim`, with only these LLMGW_* variables and a few."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LLMGW_")}
    env = inherited | {
        "LLMGW_PROBE_MODEL_URL": sim.url,
        "LLMGW_PROBE_GPU": "none",
        "LLMGW_PROBE_SYNTHETIC_INTERVAL": "0",
        **variables,
    }
    command = [sys.executable, "-m", "probe", "--once"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)


def test_a_probe_naming_another_model_is_refused_at_start(served: SimHandle) -> None:
    """LLMGW_PROBE_MODEL other than LLMGW_MODEL: exit 2, and the reason is Auto-Evict."""
    done = run_probe_once(served, LLMGW_MODEL=SERVED, LLMGW_PROBE_MODEL=EMBEDDING_MODEL)
    assert done.returncode == 2
    assert "Auto-Evict" in done.stderr
    assert "unload the blog's model" in done.stderr
    assert "LLMGW_PROBE_ALLOW_OTHER_MODEL=1" in done.stderr
    assert done.stdout == ""


def test_another_model_is_allowed_with_the_flag(served: SimHandle) -> None:
    """LLMGW_PROBE_ALLOW_OTHER_MODEL=1: the probe runs, and says whom it measures."""
    done = run_probe_once(
        served,
        LLMGW_MODEL=SERVED,
        LLMGW_PROBE_MODEL=EMBEDDING_MODEL,
        LLMGW_PROBE_ALLOW_OTHER_MODEL="1",
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model_server_up"] == 1
    assert f"names {EMBEDDING_MODEL}, not the blog's model" in done.stderr
