"""The home machine's nginx (Debian's binary, infra/home's config) in front of the sim LM Studio."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from home_nginx import NginxHandle, running_nginx
from httpx_sse import connect_sse
from sim_process import SimHandle, running_sim
from support import eventually, require_binary

if TYPE_CHECKING:
    from collections.abc import Iterator

# openssl rand -hex 32, as the README says; fresh for each run, so no test can rely on a fixed one.
TOKENS = (secrets.token_hex(32), secrets.token_hex(32))
WRONG_TOKEN = secrets.token_hex(32)
ALLOWED_ORIGIN = "https://blog.example.com"
TEXT_DELTA = "response.output_text.delta"
BODY_CAP = 1024 * 1024
OUTPUT_TOKENS = 40
STALL_AT = OUTPUT_TOKENS // 2  # where the sim's `stall` fault freezes an answer


@pytest.fixture(scope="module")
def paced_sim() -> Iterator[SimHandle]:
    # 40 tokens at 40 tokens/s: a one-second answer, long enough to see streaming and to leave.
    with running_sim("--decode-rate", "40", "--output-tokens", str(OUTPUT_TOKENS)) as handle:
        yield handle


@pytest.fixture(scope="module")
def home_nginx(
    paced_sim: SimHandle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxHandle]:
    binary = require_binary("nginx")
    with running_nginx(
        binary,
        tmp_path_factory.mktemp("nginx"),
        upstream=f"127.0.0.1:{paced_sim.port}",
        tokens=TOKENS,
        origins=(ALLOWED_ORIGIN,),
    ) as handle:
        yield handle


@pytest.fixture
def sim(paced_sim: SimHandle) -> SimHandle:
    """The simulator, idle and with zeroed counters."""
    paced_sim.set_fault("ok")
    assert eventually(lambda: paced_sim.stats()["active"] == 0)
    paced_sim.reset()
    return paced_sim


@pytest.fixture
def client(home_nginx: NginxHandle) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=home_nginx.url, timeout=10.0) as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def chat(**extra: Any) -> dict[str, Any]:
    return {"input": "Hello, Mac Studio", "stream": True, **extra}


def timed_events(client: httpx.Client, body: dict[str, Any]) -> list[tuple[float, str]]:
    """Each SSE event's name with the monotonic time it arrived at."""
    with connect_sse(client, "POST", "/v1/responses", json=body, headers=bearer(TOKENS[0])) as sse:
        sse.response.raise_for_status()
        return [(time.monotonic(), event.event) for event in sse.iter_sse()]


@pytest.mark.parametrize(
    "headers",
    [{}, bearer(WRONG_TOKEN), {"Authorization": TOKENS[0]}],
    ids=["no-token", "wrong-token", "no-bearer-scheme"],
)
def test_missing_or_wrong_token_is_refused_before_lm_studio(
    client: httpx.Client, sim: SimHandle, headers: dict[str, str]
) -> None:
    """No token, a wrong one or one without `Bearer` gets nginx's JSON 401, never LM Studio."""
    response = client.post("/v1/responses", json=chat(), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "nginx_token_invalid"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert sim.stats()["started"] == 0


@pytest.mark.parametrize("token", TOKENS, ids=["current", "next"])
def test_every_listed_token_streams_from_lm_studio(
    client: httpx.Client, sim: SimHandle, token: str
) -> None:
    """Each token of the map is let through, so one can be rotated while the other serves."""
    body = chat(max_output_tokens=4)
    with connect_sse(client, "POST", "/v1/responses", json=body, headers=bearer(token)) as sse:
        assert sse.response.status_code == 200
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        kinds = [event.event for event in sse.iter_sse()]
    assert TEXT_DELTA in kinds
    assert kinds[-1] == "response.completed"
    assert sim.stats()["completed"] == 1


def test_events_arrive_as_generated_not_when_the_stream_ends(
    client: httpx.Client, sim: SimHandle
) -> None:
    """The first text delta arrives long before the stream's last event, each one as generated."""
    sent = time.monotonic()
    events = timed_events(client, chat())
    deltas = [arrived - sent for arrived, kind in events if kind == TEXT_DELTA]
    duration = events[-1][0] - sent
    # About a second of answer at 40 tokens/s; a proxy holding events back delivers them in lumps.
    assert duration > 0.8
    assert deltas[0] < duration / 4
    assert len({round(arrived, 2) for arrived in deltas}) > len(deltas) / 2


def test_health_answers_without_a_token_and_without_lm_studio(
    client: httpx.Client, sim: SimHandle
) -> None:
    """`GET /healthz` is answered by nginx itself: 200 `ok`, no token, nothing proxied."""
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.text.strip() == "ok"
    assert sim.stats()["started"] == 0


def test_preflight_from_an_allowed_origin_gets_cors_headers_without_a_token(
    client: httpx.Client, sim: SimHandle
) -> None:
    """A CORS preflight from a listed origin gets 204 and the CORS headers, without a token."""
    response = client.options("/v1/responses", headers=preflight(ALLOWED_ORIGIN))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "authorization" in response.headers["access-control-allow-headers"].lower()
    assert sim.stats()["started"] == 0


def test_preflight_from_another_origin_gets_no_allow_origin(
    client: httpx.Client, sim: SimHandle
) -> None:
    """An origin not on the allow-list gets no Access-Control-Allow-Origin, so browsers refuse."""
    response = client.options("/v1/responses", headers=preflight("https://evil.example"))
    assert "access-control-allow-origin" not in response.headers
    refused = client.post("/v1/responses", json=chat(), headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers


def test_answers_to_an_allowed_origin_carry_its_name(client: httpx.Client, sim: SimHandle) -> None:
    """Real answers to a listed origin, refusals included, name that origin (never `*`)."""
    refused = client.post("/v1/responses", json=chat(), headers={"Origin": ALLOWED_ORIGIN})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert refused.headers["vary"] == "Origin"


def preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }


def test_body_over_the_cap_is_refused(client: httpx.Client, sim: SimHandle) -> None:
    """A body over 1 MiB gets 413 from nginx and never reaches LM Studio."""
    oversized = b"x" * (BODY_CAP + 1)
    response = client.post("/v1/responses", content=oversized, headers=bearer(TOKENS[0]))
    assert response.status_code == 413
    assert sim.stats()["started"] == 0


@pytest.mark.parametrize(
    ("fault", "deltas_read"),
    [("ok", 1), ("stall", STALL_AT)],
    ids=["while-tokens-flow", "while-the-model-is-silent"],
)
def test_client_abort_cancels_the_generation(
    client: httpx.Client, sim: SimHandle, fault: str, deltas_read: int
) -> None:
    """A client leaving mid-stream makes nginx close the upstream stream: LM Studio stops decoding.

    In a silence (the `stall` fault freezes the answer halfway) nginx writes nothing, so only
    `proxy_ignore_client_abort off` makes it notice the client is gone.
    """
    sim.set_fault(fault)
    with connect_sse(
        client, "POST", "/v1/responses", json=chat(), headers=bearer(TOKENS[0])
    ) as sse:
        deltas = (event for event in sse.iter_sse() if event.event == TEXT_DELTA)
        for _ in range(deltas_read):
            next(deltas)
    # Leaving the block closed the connection with half the answer or more still to come.
    assert eventually(lambda: sim.stats()["cancelled"] == 1)
    assert eventually(lambda: sim.stats()["active"] == 0)
    assert sim.stats()["completed"] == 0


def test_lm_studio_down_gives_nginx_502_and_health_still_answers(
    client: httpx.Client, sim: SimHandle
) -> None:
    """With LM Studio down the API gets nginx's 502 with `Server: nginx`; /healthz still 200."""
    sim.kill()
    try:
        response = client.post("/v1/responses", json=chat(), headers=bearer(TOKENS[0]))
        assert response.status_code == 502
        assert response.headers["server"] == "nginx"
        assert client.get("/healthz").status_code == 200
    finally:
        sim.restart()


def test_access_log_holds_no_token(
    client: httpx.Client, sim: SimHandle, home_nginx: NginxHandle
) -> None:
    """Requests with right and wrong tokens are logged, the tokens themselves never are."""
    client.post("/v1/responses", json=chat(max_output_tokens=2), headers=bearer(TOKENS[1]))
    client.post("/v1/responses", json=chat(), headers=bearer(WRONG_TOKEN))
    assert eventually(lambda: '" 401 ' in home_nginx.access_log.read_text())
    log = home_nginx.access_log.read_text()
    assert '"POST /v1/responses HTTP/1.1" 200 ' in log
    for token in (*TOKENS, WRONG_TOKEN):
        assert token not in log
