"""`llmgw doctor` facing a real LM Studio's ways (issue 18), each played by the real sim: a model
asleep, JIT loading off, a model not downloaded or not an LLM, an LM Studio too old for the
Responses API, a server that is not LM Studio, the three token doors, and a host that runs one
prediction at a time or several. Every doctor runs at once (a run is mostly Python's imports);
each test reads the finding its case is about, as the operator reads it."""

from __future__ import annotations

import json
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from doctor_process import (
    Route,
    Run,
    Scene,
    assert_fails_first_at,
    doctors,
    routed_server,
)
from probe_process import running_probe
from sim_process import SimHandle, running_sims
from support import eventually, flushed, require_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
from home_nginx import running_nginx

if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager

MODEL = "nvidia/nemotron-3-nano"
EMBEDDING = "text-embedding-nomic-embed-text-v1.5"
GATEWAY_TOKEN = secrets.token_hex(32)  # a line of nginx's tokens.map
WRONG_TOKEN = secrets.token_hex(32)
LMSTUDIO_TOKEN = f"sk-lm-{secrets.token_hex(8)}:{secrets.token_hex(16)}"
JSON = {"Content-Type": "application/json"}
LISTING = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
NOT_STREAMED = json.dumps({"object": "response", "status": "completed", "output": []}).encode()
SIMS = {
    "asleep": ("--jit", "--load-seconds", "1"),
    "slow_load": ("--jit", "--load-seconds", "5"),
    "jit_off": ("--no-model",),
    "catalog": ("--embedding-model",),
    # LM Studio 0.3.2x: /api/v0 but no /api/v1, no /v1/responses, 200 for paths it lacks
    "old": ("--no-rest-v1", "--no-responses-api", "--unknown-path-200"),
    "mlx": ("--engine", "mlx"),
    "llama": ("--engine", "llama.cpp"),
    "locked": ("--api-key", LMSTUDIO_TOKEN),  # Require Authentication on
}


def not_lm_studio(responses: Route) -> AbstractContextManager[str]:
    """A server with an OpenAI model list and this answer to POST /v1/responses."""
    listing: Route = (200, JSON, LISTING)
    return routed_server({("GET", "/v1/models"): listing, ("POST", "/v1/responses"): responses})


def runs(
    sims: dict[str, SimHandle], nginx: str, redis_url: str, others: list[str]
) -> dict[str, Run]:
    """Each case's doctor run."""
    shown = (GATEWAY_TOKEN, WRONG_TOKEN, LMSTUDIO_TOKEN)  # never
    locked = sims["locked"].url
    return {
        "asleep": Run({"upstream_url": sims["asleep"].url}),
        "slow_load": Run({"upstream_url": sims["slow_load"].url, "model_load_timeout": "1"}),
        "jit_off": Run({"upstream_url": sims["jit_off"].url}),
        "missing": Run({"upstream_url": sims["catalog"].url, "model": "qwen/qwen3-4b"}),
        "embedding": Run({"upstream_url": sims["catalog"].url, "model": EMBEDDING}),
        "old": Run({"upstream_url": sims["old"].url}),
        "json_200": Run({"upstream_url": others[0]}),
        "method_405": Run({"upstream_url": others[1]}),
        "mlx": Run({"upstream_url": sims["mlx"].url}),
        "llama": Run({"upstream_url": sims["llama"].url}),
        "nginx_refuses": Run({"upstream_url": nginx, "upstream_token": WRONG_TOKEN}, shown),
        "behind_nginx": Run({"upstream_url": nginx, "upstream_token": GATEWAY_TOKEN}, shown),
        "lmstudio_refuses": Run({"upstream_url": locked, "upstream_token": WRONG_TOKEN}, shown),
        "probe_refused": Run(
            {"upstream_url": locked, "upstream_token": LMSTUDIO_TOKEN, "redis_url": redis_url},
            shown,
            options=("--no-concurrency",),
        ),
    }


@pytest.fixture(scope="module")
def scene(redis_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    """The sims, two servers that are not LM Studio, the home nginx in front of an LM Studio
    that requires its own token (and gets none), a probe without that token; then every case's
    doctor at once."""
    redis_server = flushed(redis_server)
    binary = require_binary("nginx")
    prefix = tmp_path_factory.mktemp("nginx")
    with redis.Redis.from_url(redis_server) as client:
        client.flushdb()
        with (
            running_sims(**SIMS) as sims,
            not_lm_studio((200, JSON, NOT_STREAMED)) as json_200,
            not_lm_studio((405, {}, b"")) as method_405,
            running_nginx(
                binary, prefix, upstream=f"127.0.0.1:{sims['locked'].port}", tokens=[GATEWAY_TOKEN]
            ) as nginx,
            running_probe(redis_server, sims["locked"].url),
        ):
            key = "{llmgw}:probe:test-host"
            assert eventually(lambda: client.hget(key, "model_token_ok") == b"0", timeout=15)
            cases = runs(sims, nginx.url, redis_server, [json_200, method_405])
            yield Scene(doctors(cases), sims)


def test_a_model_asleep_is_fine_and_the_doctor_wakes_it(scene: Scene) -> None:
    """Downloaded, not loaded, JIT on: the model hop passes and says the first chat wakes it
    within LLMGW_MODEL_LOAD_TIMEOUT; the generation wakes it (one load) and says so."""
    model = scene["asleep"].rows["model"]
    assert model.result == "ok", scene["asleep"].output
    assert f"{MODEL} is asleep (downloaded, not loaded; read from /api/v1/models)" in model.detail
    assert "the first chat wakes it" in model.detail
    assert "LLMGW_MODEL_LOAD_TIMEOUT (180 s)" in model.detail
    generation = scene["asleep"].rows["generation"]
    assert generation.result == "ok"
    assert generation.detail.startswith(f"woke {MODEL}: first token after")
    assert generation.detail.endswith("(its load included)")
    stats = scene.sims["asleep"].stats()
    assert (stats["loads_started"], stats["loaded_instances"]) == (1, 1)


def test_a_load_longer_than_its_budget_fails_at_generation(scene: Scene) -> None:
    """A model that takes longer to load than LLMGW_MODEL_LOAD_TIMEOUT: the generation fails
    and says to raise it or keep the model loaded."""
    row = assert_fails_first_at(
        scene["slow_load"], "generation", "raise LLMGW_MODEL_LOAD_TIMEOUT", f"`lms load {MODEL}`"
    )
    assert row.detail == f"{MODEL} did not wake within LLMGW_MODEL_LOAD_TIMEOUT (1 s)"


def test_a_model_not_loaded_with_jit_off_fails_at_model(scene: Scene) -> None:
    """Not loaded, and /v1/models lists only loaded models (JIT off): no chat wakes it, so the
    model hop fails and says `lms load`."""
    row = assert_fails_first_at(scene["jit_off"], "model", f"`lms load {MODEL}` on the model host")
    assert "turn on JIT loading" in row.advice
    assert row.detail.startswith(f"{MODEL} is not loaded, and JIT loading is off")
    assert row.detail.endswith("no chat wakes it")


def test_a_model_not_downloaded_is_model_missing(scene: Scene) -> None:
    """LLMGW_MODEL not downloaded: model_missing, `lms get` it or name a downloaded LLM."""
    row = assert_fails_first_at(scene["missing"], "model", "`lms get qwen/qwen3-4b`", MODEL)
    assert row.detail == (
        "model_missing: qwen/qwen3-4b (LLMGW_MODEL) is not downloaded (read from /api/v1/models)"
    )
    assert EMBEDDING not in row.advice


def test_an_embedding_model_is_not_an_llm(scene: Scene) -> None:
    """LLMGW_MODEL naming an embedding model: model_missing, it cannot chat; name an LLM."""
    row = assert_fails_first_at(scene["embedding"], "model", f"set LLMGW_MODEL to an LLM: {MODEL}")
    assert row.detail.startswith(f"model_missing: {EMBEDDING} (LLMGW_MODEL) is an embedding model")
    assert "not an LLM" in row.detail


def test_an_lm_studio_before_0_3_29_is_upstream_incompatible(scene: Scene) -> None:
    """LM Studio 0.3.2x: its 200 'Unexpected endpoint' on /healthz is no nginx's health, its
    models come from /api/v0, and POST /v1/responses' 200 JSON is upstream_incompatible."""
    diagnosis = scene["old"]
    nginx = diagnosis.rows["nginx"]
    assert nginx.result == "ok"
    assert nginx.detail.startswith(
        "no nginx here: /healthz got LM Studio's 200 'Unexpected endpoint or method'"
    )
    assert "read from /api/v0/models: LM Studio before 0.4" in diagnosis.rows["model"].detail
    row = assert_fails_first_at(diagnosis, "generation", "LM Studio to 0.3.29 or later")
    assert row.detail.startswith("upstream_incompatible: POST /v1/responses answered 200 with")
    assert "no Responses API (before 0.3.29)" in row.detail


def test_a_200_that_is_no_event_stream_is_upstream_incompatible(scene: Scene) -> None:
    """A server that is not LM Studio (no REST listing) and answers /v1/responses with a 200
    JSON body: the model hop says so, and the generation is upstream_incompatible."""
    diagnosis = scene["json_200"]
    model = diagnosis.rows["model"]
    assert model.detail == f"{MODEL} is listed (/v1/models only: not LM Studio, no load state)"
    row = assert_fails_first_at(diagnosis, "generation", "streaming OpenAI Responses API")
    assert row.detail == (
        "upstream_incompatible: POST /v1/responses answered 200 with application/json, "
        "not an event stream"
    )


def test_a_405_on_the_responses_api_is_upstream_incompatible(scene: Scene) -> None:
    """A server without POST /v1/responses (405): upstream_incompatible, with the version."""
    row = assert_fails_first_at(scene["method_405"], "generation", "0.3.29")
    assert (
        row.detail
        == "upstream_incompatible: POST /v1/responses answered 405: no Responses API here"
    )


def test_one_prediction_at_a_time_recommends_one_in_flight(scene: Scene) -> None:
    """MLX runs one prediction at a time: the second answer's first token waits for the first's
    end, and with LLMGW_MAX_INFLIGHT at 4 the doctor warns: one in flight, one waiting."""
    row = scene["mlx"].rows["concurrency"]
    assert row.result == "warn", scene["mlx"].output
    assert row.detail.startswith("one prediction at a time (as LM Studio's MLX engine runs them)")
    assert "after the first answer ended" in row.detail
    assert row.advice.startswith("set LLMGW_MAX_INFLIGHT=1, LLMGW_QUEUE_SIZE=1, ")
    assert "more streams would wait inside LM Studio" in row.advice


def test_parallel_predictions_keep_several_in_flight(scene: Scene) -> None:
    """llama.cpp runs predictions in parallel: the second answer streams while the first does,
    and the doctor keeps LLMGW_MAX_INFLIGHT at the model's parallel slots."""
    row = scene["llama"].rows["concurrency"]
    assert row.result == "ok", scene["llama"].output
    assert row.detail.startswith("in parallel")
    assert "while the first still streamed" in row.detail
    assert row.advice.startswith("set LLMGW_MAX_INFLIGHT=4, LLMGW_QUEUE_SIZE=4, ")
    assert "Max Concurrent Predictions" in row.advice


def test_nginx_refusing_the_gateways_token_names_tokens_map(scene: Scene) -> None:
    """Door gateway → nginx: nginx's own 401 (nginx_token_invalid) points at tokens.map."""
    row = assert_fails_first_at(scene["nginx_refuses"], "token", "infra/home/nginx/tokens.map")
    assert row.detail == "door gateway → nginx: nginx refused LLMGW_UPSTREAM_TOKEN (401)"


def test_lm_studio_behind_nginx_refusing_names_its_token_in_the_nginx_setup(scene: Scene) -> None:
    """Door nginx → LM Studio: nginx lets the gateway in, LM Studio (Require Authentication)
    refuses what nginx forwards: set LLMGW_LMSTUDIO_API_TOKEN in infra/home/.env."""
    row = assert_fails_first_at(
        scene["behind_nginx"],
        "token",
        "LLMGW_LMSTUDIO_API_TOKEN in infra/home/.env",
        "Manage Tokens",
    )
    assert row.detail.startswith("door nginx → LM Studio: nginx let the gateway in")
    assert "docker compose up -d nginx" in row.advice


def test_lm_studio_refusing_the_token_sent_straight_to_it(scene: Scene) -> None:
    """No nginx in front: LM Studio's own 401 means LLMGW_UPSTREAM_TOKEN must be its token."""
    row = assert_fails_first_at(scene["lmstudio_refuses"], "token", "one of LM Studio's API tokens")
    assert row.detail.startswith("door gateway → LM Studio: the model server refused")
    assert "tokens.map" not in row.advice


def test_the_probes_refused_token_is_a_warning_and_the_rest_passes(scene: Scene) -> None:
    """Door probe → LM Studio: the probe publishes model_token_ok = 0; the probe hop warns and
    names LLMGW_PROBE_MODEL_TOKEN, chats pass; --no-concurrency leaves out only that hop."""
    diagnosis = scene["probe_refused"]
    assert diagnosis.code == 0, diagnosis.output
    probe = diagnosis.rows["probe"]
    assert probe.result == "warn"
    assert (
        "door probe → LM Studio: LM Studio refuses the probe's token on test-host" in probe.detail
    )
    assert "LLMGW_PROBE_MODEL_TOKEN" in probe.advice
    concurrency = diagnosis.rows["concurrency"]
    assert (concurrency.result, concurrency.detail) == (
        "skipped",
        "not measured (--no-concurrency)",
    )
    assert diagnosis.rows["generation"].result == "ok"
    assert "all 11 hops passed, 1 with a warning, 1 left out." in diagnosis.output
