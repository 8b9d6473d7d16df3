"""What the public can read (/api/status, /readyz, and the errors of /api/chat: 502, 503, 504
and SSE error events) never names the upstream: no URL, host name, port or token, and no text
the model server put in its own error answers."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from chat_client import Received, chat
from fault_servers import answering_server, silent_server
from gateway_server import GatewayHandle, running_gateway
from sim_process import running_sim
from support import free_port

TOKEN = "upstream-token-" + secrets.token_hex(20)
# The model side's own error text: the gateway reads it to classify, never relays it.
UPSTREAM_TEXT = b"upstream-internal-detail at http://localhost/v1/responses"


def public_text(gateway: GatewayHandle, received: Received) -> str:
    """Everything a visitor sees: the chat's status, headers, JSON or events, and the status
    and readiness answers."""
    status = httpx.get(f"{gateway.url}/api/status", timeout=10)
    ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    parts = [
        str(received.status),
        json.dumps(dict(received.headers)),
        json.dumps(received.json),
        json.dumps(received.events),
        status.text,
        ready.text,
        json.dumps(dict(status.headers)),
        json.dumps(dict(ready.headers)),
    ]
    return "\n".join(parts)


def assert_names_no_upstream(text: str, upstream: str) -> None:
    port = upstream.rsplit(":", 1)[1]
    for leak in ("localhost", upstream, f":{port}", TOKEN, "upstream-internal-detail"):
        assert leak not in text, leak


def localhost(url: str) -> str:
    return url.replace("127.0.0.1", "localhost")


@pytest.mark.parametrize(
    ("status", "server", "expected"),
    [(502, None, 502), (502, "nginx", 502), (500, None, 502), (401, "nginx", 502)],
    ids=["bare-502", "nginx-502", "model-500", "token-401"],
)
def test_error_answers_name_no_upstream(
    redis_url: str, status: int, server: str | None, expected: int
) -> None:
    """An upstream error status (with its own text in the body) becomes a generic JSON error;
    neither it nor /api/status or /readyz names the upstream or relays its text."""
    headers = {"Server": server} if server else {}
    with (
        answering_server(status, headers, UPSTREAM_TEXT) as upstream,
        running_gateway(
            upstream_url=localhost(upstream), upstream_token=TOKEN, redis_url=redis_url
        ) as gateway,
    ):
        received = chat(gateway.url)
        text = public_text(gateway, received)
    assert received.status == expected
    assert_names_no_upstream(text, localhost(upstream))


def test_model_not_loaded_503_names_no_upstream(redis_url: str) -> None:
    """LM Studio's "No models loaded" becomes the gateway's own 503 message."""
    with (
        running_sim("--no-model") as sim,
        running_gateway(
            upstream_url=localhost(sim.url), upstream_token=TOKEN, redis_url=redis_url
        ) as gateway,
    ):
        received = chat(gateway.url)
        text = public_text(gateway, received)
    assert received.status == 503
    assert received.json["code"] == "model_not_loaded"
    assert "lms load" not in text  # LM Studio's own wording stays on the server
    assert_names_no_upstream(text, localhost(sim.url))


def test_timeout_504_names_no_upstream(redis_url: str) -> None:
    """An upstream that never answers: a 504 that names nothing."""
    with (
        silent_server() as upstream,
        running_gateway(
            upstream_url=localhost(upstream),
            upstream_token=TOKEN,
            redis_url=redis_url,
            first_token_timeout=0.5,
        ) as gateway,
    ):
        received = chat(gateway.url)
        text = public_text(gateway, received)
    assert received.status == 504
    assert_names_no_upstream(text, localhost(upstream))


def test_refused_connection_names_no_upstream(redis_url: str) -> None:
    """Nothing listening upstream (the tunnel is down): the 502, the status and the readiness
    detail name no host or port."""
    upstream = f"http://localhost:{free_port()}"
    with running_gateway(upstream_url=upstream, upstream_token=TOKEN, redis_url=redis_url) as gw:
        received = chat(gw.url)
        text = public_text(gw, received)
    assert received.status == 502
    assert_names_no_upstream(text, upstream)


@pytest.mark.parametrize("fault", ["stall", "error"])
def test_stream_errors_name_no_upstream(redis_url: str, fault: str) -> None:
    """A stream stalling mid-answer, or a model failing, ends in the gateway's own words."""
    with (
        running_sim("--decode-rate", "40", "--output-tokens", "20") as sim,
        running_gateway(
            upstream_url=localhost(sim.url),
            upstream_token=TOKEN,
            redis_url=redis_url,
            idle_timeout=0.5,
        ) as gateway,
    ):
        sim.set_fault(fault, share=1.0)
        received = chat(gateway.url)
        text = public_text(gateway, received)
    assert received.status >= 400 or received.events[-1]["type"] == "error"
    assert "crashed" not in text  # the sim's own error message
    assert_names_no_upstream(text, localhost(sim.url))


def test_readyz_with_redis_unreachable_names_no_redis(redis_url: str) -> None:
    """Redis unreachable: /readyz names the failure by kind only, not its URL or password."""
    password = "redis-password-" + secrets.token_hex(12)
    port = free_port()
    dead = f"redis://:{password}@127.0.0.1:{port}/0"
    with running_sim() as sim, running_gateway(upstream_url=sim.url, redis_url=dead) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz", timeout=10)
    assert ready.json()["redis"]["ok"] is False
    assert password not in ready.text
    assert f":{port}" not in ready.text


def test_a_whole_answer_never_shows_the_system_prompt_or_settings(redis_url: str) -> None:
    """The model server echoes the request in its response objects (instructions, sampling,
    limits) in response.created, in_progress and completed: none of that reaches the visitor,
    only the answer, the response id and usage."""
    secret = "SYSTEM-PROMPT-" + secrets.token_hex(8)
    with (
        running_sim("--decode-rate", "2000") as sim,
        running_gateway(
            upstream_url=localhost(sim.url),
            upstream_token=TOKEN,
            redis_url=redis_url,
            instructions=f"You are the blog's assistant. {secret}",
            temperature=0.35,
            max_output_tokens=777,
        ) as gateway,
    ):
        received = chat(gateway.url)
        text = public_text(gateway, received)
    assert received.types()[-1] == "response.completed"
    assert received.text()
    for leak in (secret, '"instructions"', '"temperature"', '"max_output_tokens"', "nvidia/"):
        assert leak not in text, leak
    assert_names_no_upstream(text, localhost(sim.url))
