"""Keys end to end: `llmgw keys` and two gateway processes on one Redis, in front of the sim.
A key lists the models on every replica, a revoked one is refused within a second on each, a bad
one never reaches the model, and Redis down is a 503 the client can retry."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_subprocess import gateway_process, gateway_processes
from keys_support import KEY_SECRET, create_key, keys_command, revoke_key
from sim_process import SimHandle, running_sim
from support import eventually, flushed, free_port, start_redis, stop_process

from app.access.keys import new_key

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from gateway_subprocess import GatewayProcess

pytestmark = pytest.mark.slow

SIM_MODEL = "nvidia/nemotron-3-nano"  # the sim's LLM; --embedding-model lists one more
REVOKED_WITHIN = 1.0


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--embedding-model") as handle:
        yield handle


@pytest.fixture(scope="module")
def replicas(
    sim: SimHandle, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[GatewayProcess]]:
    """Two gateways sharing one Redis and one LLMGW_KEY_SECRET; no health check lists models
    behind the tests' backs."""
    redis_server = flushed(redis_server)
    folder = tmp_path_factory.mktemp("replicas")
    with gateway_processes(
        [folder / "gateway-0.log", folder / "gateway-1.log"],
        redis_url=redis_server,
        upstream_url=sim.url,
        key_secret=KEY_SECRET,
        health_interval="0",
    ) as gateways:
        yield gateways


def models(url: str, authorization: str | None) -> httpx.Response:
    headers = {} if authorization is None else {"Authorization": authorization}
    return httpx.get(f"{url}/v1/models", headers=headers, timeout=10)


def test_a_key_lists_the_chat_models_on_every_replica(
    replicas: list[GatewayProcess], redis_server: str
) -> None:
    """OpenAI's list of models, the same on both replicas; the embedding model is left out."""
    key = create_key(redis_server, "webui", lane="member")
    for gateway in replicas:
        answer = models(gateway.url, f"Bearer {key}")
        assert answer.status_code == 200
        assert answer.json() == {
            "object": "list",
            "data": [
                {"id": SIM_MODEL, "object": "model", "created": 0, "owned_by": "organization_owner"}
            ],
        }


def test_a_revoked_key_is_refused_within_a_second_on_every_replica(
    replicas: list[GatewayProcess], redis_server: str
) -> None:
    """create, list, use on both, revoke: both refuse it within 1 s of the command's return."""
    key = create_key(redis_server, "laptop")
    listed = keys_command("list", redis_url=redis_server)
    assert "laptop" in listed.stdout
    assert key not in listed.stdout
    assert all(models(g.url, f"Bearer {key}").status_code == 200 for g in replicas)  # cached
    revoke_key(redis_server, "laptop")
    revoked = time.monotonic()
    refused_after = []
    for gateway in replicas:
        while models(gateway.url, f"Bearer {key}").status_code == 200:
            assert time.monotonic() - revoked < 2 * REVOKED_WITHIN, "never refused"
            time.sleep(0.02)
        refused_after.append(time.monotonic() - revoked)
    assert max(refused_after) < REVOKED_WITHIN, refused_after
    answer = models(replicas[0].url, f"Bearer {key}")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer sk-not-ours", f"Bearer {new_key()}"],
    ids=["missing", "empty", "basic", "malformed", "unknown"],
)
def test_a_bad_key_gets_openais_401_and_never_reaches_the_model(
    replicas: list[GatewayProcess], sim: SimHandle, authorization: str | None
) -> None:
    """401 invalid_api_key in OpenAI's error shape with WWW-Authenticate: Bearer; the sim is
    not asked for anything."""
    before = sim.stats()["listings"]
    answer = models(replicas[1].url, authorization)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
    assert error["message"]
    assert sim.stats()["listings"] == before


def test_keys_never_reach_the_logs(replicas: list[GatewayProcess], redis_server: str) -> None:
    """Neither a good key nor a bad one, nor the secret, is written to the gateways' output."""
    key, stranger = create_key(redis_server, "logged"), new_key()
    for gateway in replicas:
        models(gateway.url, f"Bearer {key}")
        models(gateway.url, f"Bearer {stranger}")
    for gateway in replicas:
        text = gateway.log.read_text()
        assert key not in text
        assert stranger not in text
        assert KEY_SECRET not in text


def test_routes_of_the_api_that_do_not_exist_answer_in_openais_shape(
    replicas: list[GatewayProcess], redis_server: str
) -> None:
    """A 404 and a 405 under /v1 are OpenAI errors too, so an SDK reads them."""
    key = create_key(redis_server, "lost")
    headers = {"Authorization": f"Bearer {key}"}
    missing = httpx.get(f"{replicas[0].url}/v1/nothing", headers=headers)
    posted = httpx.post(f"{replicas[0].url}/v1/models", headers=headers)
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "http_404")
    assert (posted.status_code, posted.json()["error"]["code"]) == (405, "http_405")


def test_without_a_secret_keyed_routes_say_keys_are_not_configured(
    sim: SimHandle, redis_server: str, tmp_path: Path
) -> None:
    """A gateway with no LLMGW_KEY_SECRET refuses every key, saying why."""
    key = create_key(redis_server, "unused")
    with gateway_process(
        tmp_path / "gateway.log", redis_url=redis_server, upstream_url=sim.url, health_interval="0"
    ) as gateway:
        answer = models(gateway.url, f"Bearer {key}")
    assert answer.status_code == 401
    assert answer.json()["error"]["message"] == "API keys are not configured"


def test_redis_down_is_a_503_to_retry_and_redis_back_serves_again(
    sim: SimHandle, tmp_path: Path
) -> None:
    """Redis gone: 503 keys_unavailable with Retry-After: 1 once the cache ages out, nothing
    asked of the model; a Redis back (empty) serves the keys made there again."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    redis = start_redis(port)
    try:
        with gateway_process(
            tmp_path / "gateway.log",
            redis_url=url,
            upstream_url=sim.url,
            key_secret=KEY_SECRET,
            health_interval="0",
        ) as gateway:
            key = create_key(url, "laptop")
            assert models(gateway.url, f"Bearer {key}").status_code == 200
            stop_process(redis)
            time.sleep(0.6)  # past the 0.5 s the gateway may answer from its cache
            before = sim.stats()["listings"]
            answer = models(gateway.url, f"Bearer {key}")
            assert answer.status_code == 503
            assert answer.headers["retry-after"] == "1"
            error = answer.json()["error"]
            assert (error["type"], error["code"]) == ("server_error", "keys_unavailable")
            assert sim.stats()["listings"] == before
            redis = start_redis(port)
            key = create_key(url, "laptop")
            # the pool's connections died with Redis: a request that meets one is a 503 to retry
            assert eventually(lambda: models(gateway.url, f"Bearer {key}").status_code == 200)
    finally:
        stop_process(redis)


def test_a_model_server_out_of_reach_is_openais_502_naming_no_address(
    redis_server: str, tmp_path: Path
) -> None:
    """Nothing listens upstream: 502 upstream_unavailable, a server_error, no URL or port."""
    key = create_key(redis_server, "far")
    port = str(free_port())
    with gateway_process(
        tmp_path / "gateway.log",
        redis_url=redis_server,
        upstream_url=f"http://127.0.0.1:{port}",
        key_secret=KEY_SECRET,
        health_interval="0",
    ) as gateway:
        answer = models(gateway.url, f"Bearer {key}")
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert (error["type"], error["code"]) == ("server_error", "upstream_unavailable")
    assert port not in answer.text
    assert "127.0.0.1" not in answer.text
