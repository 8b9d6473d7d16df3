"""The gateway as operators run it (`python -m app serve`), facing a model side that answers
wrong in every way a test can script: each fault gives the visitor a clear JSON error (or, once
the stream has begun, an SSE error event) with its code, never a 500, and nothing of the model
side's host, paths or credentials, in the answer or in the gateway's log."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING

import pytest
from chat_client import Received, chat
from fault_servers import ScriptedServer, scripted_server
from gateway_subprocess import GatewayProcess, gateway_process
from support import flushed

if TYPE_CHECKING:
    from collections.abc import Iterator

TOKEN = "sk-lm-Zx81Qw72Er63Ty54"  # a made-up key the model side echoes back
DELTA = (
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","delta":"Hi"}\n\n'
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    upstream: ScriptedServer, redis_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """One gateway for the whole file. Its breaker cools down within a millisecond, so each
    test's fault reaches the model side instead of a breaker the last one opened."""
    redis_server = flushed(redis_server)
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    settings = {
        "upstream_url": upstream.url,
        "redis_url": redis_server,
        "health_interval": "0",
        "probe_stale_factor": "1",
        "visitor_limit": "1000",
        "global_limit": "1000",
        "breaker_cooldown": "0.001",
        "breaker_max_cooldown": "0.001",
        "breaker_trials": "100",
        "first_token_timeout": "3",
        "idle_timeout": "1",
    }
    with gateway_process(log, **settings) as process:
        yield process


def answer(status: int, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A whole HTTP/1.1 answer with its length, after which the server hangs up."""
    fields = {**headers, "Content-Length": str(len(body)), "Connection": "close"}
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n{head}\r\n".encode() + body


def chunked(*pieces: bytes, ended: bool = True) -> bytes:
    """A 200 event stream in chunks; not `ended`: the connection drops inside the body."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces)
    return head + b"Connection: close\r\n\r\n" + body + (b"0\r\n\r\n" if ended else b"")


def error_json(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


def visit(gateway: GatewayProcess, upstream: ScriptedServer, fault: bytes) -> Received:
    """One chat while the model side answers with `fault`; what the visitor got never tells
    where the model side is."""
    upstream.answer = fault
    before = upstream.requests
    received = chat(gateway.url, timeout=10)
    assert upstream.requests == before + 1  # the fault was met, not a breaker left open
    assert received.status != HTTPStatus.INTERNAL_SERVER_ERROR
    shown = json.dumps(received.json) + json.dumps(received.events)
    assert upstream.url.rsplit(":", 1)[1] not in shown
    return received


def refused(received: Received, status: int, code: str) -> str:
    """The JSON error's message, once its status, shape and code are as they should be."""
    assert received.status == status
    assert received.headers["content-type"].startswith("application/json")
    assert received.json["code"] == code
    assert set(received.json) <= {"error", "code", "retry_after"}
    message: str = received.json["error"]
    return message


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_the_responses_api_is_upstream_incompatible(
    gateway: GatewayProcess, upstream: ScriptedServer, status: int
) -> None:
    """No POST /v1/responses there (LM Studio before 0.3.29, or another server): a 502 that
    says what the model server needs, not a generic upstream error."""
    body = b'{"detail":"Not Found"}'
    received = visit(gateway, upstream, answer(status, {"Content-Type": "application/json"}, body))
    assert "0.3.29" in refused(received, 502, "upstream_incompatible")


def test_a_page_that_is_not_an_event_stream_is_upstream_incompatible(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """A 200 HTML page where the event stream should be (a tunnel's sign-in page) is no answer:
    a 502 upstream_incompatible, and none of the page reaches the visitor."""
    page = b"<html><title>Sign in to your tunnel</title><body>/home/owner</body></html>"
    received = visit(gateway, upstream, answer(200, {"Content-Type": "text/html"}, page))
    refused(received, 502, "upstream_incompatible")
    assert "tunnel" not in received.json["error"]


def test_an_overflow_carried_by_a_200_json_body_is_context_full(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """LM Studio's context overflow in a 200 JSON body (lmstudio-bug-tracker#2322) is the
    conversation's size, told as context_full with a 400, its token counts left out."""
    message = "Input does not fit in context length. The input has 31430 tokens."
    body = json.dumps({"error": {"message": message}, "message": message}).encode()
    received = visit(gateway, upstream, answer(200, {"Content-Type": "application/json"}, body))
    assert "31430" not in refused(received, 400, "context_full")


def test_a_refusal_that_echoes_the_token_never_shows_it(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """A 400 whose message quotes the request's Authorization header: the visitor reads why,
    without the key, and the gateway's log has no trace of it either."""
    body = error_json(f"Bad header 'Authorization: Bearer {TOKEN}' for model x")
    received = visit(gateway, upstream, answer(400, {"Content-Type": "application/json"}, body))
    message = refused(received, 502, "upstream_rejected")
    assert "Bearer …" in message
    assert TOKEN not in message
    assert TOKEN[6:] not in gateway.log.read_text()


def test_a_token_the_model_server_refuses_is_unavailable_with_retry_after(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """LM Studio's 401 (Require Authentication, a wrong token): the visitor is told the model
    is unavailable and when to come back, not that a token was refused."""
    body = error_json("Invalid API token")
    received = visit(gateway, upstream, answer(401, {"Content-Type": "application/json"}, body))
    assert "token" not in refused(received, 502, "upstream_unavailable").lower()
    assert int(received.headers["Retry-After"]) > 0


def test_nginx_gone_behind_the_tunnel_is_unavailable_with_retry_after(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """A 502 from the tunnel itself (no nginx answering behind it) is a JSON 502 with
    Retry-After, its HTML left out."""
    page = b"<html><body><h1>502 Bad Gateway</h1>cloudflared: origin refused</body></html>"
    received = visit(gateway, upstream, answer(502, {"Content-Type": "text/html"}, page))
    assert "cloudflared" not in refused(received, 502, "upstream_unavailable")
    assert int(received.headers["Retry-After"]) > 0


@pytest.mark.parametrize(
    "fault",
    [b"", b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 200 OK\r\nContent-Ty"],
    ids=["hang-up", "not-http", "head-cut-short"],
)
def test_no_answer_before_the_stream_is_a_502(
    gateway: GatewayProcess, upstream: ScriptedServer, fault: bytes
) -> None:
    """A model side that hangs up at once, speaks another protocol, or stops inside its answer's
    head: a JSON 502 upstream_unavailable."""
    refused(visit(gateway, upstream, fault), 502, "upstream_unavailable")


def test_a_stream_cut_mid_answer_ends_with_an_error_event(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """The connection drops inside the event stream: the visitor keeps the text so far, then
    an error event saying the connection to the model was lost."""
    received = visit(gateway, upstream, chunked(DELTA, DELTA, ended=False))
    assert received.status == 200
    assert received.types() == ["response.output_text.delta"] * 2 + ["error"]
    assert received.events[-1]["error"] == {
        "code": "upstream_failed",
        "message": "the connection to the model was lost",
    }


def test_a_stream_that_ends_before_completing_says_so(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """An event stream that ends properly but without response.completed: an error event,
    not an answer that silently stops."""
    received = visit(gateway, upstream, chunked(DELTA))
    assert received.types() == ["response.output_text.delta", "error"]
    assert received.events[-1]["error"]["code"] == "upstream_closed"


def test_an_error_event_is_told_without_the_hosts_details(
    gateway: GatewayProcess, upstream: ScriptedServer
) -> None:
    """The model server's error event mid-answer: its words reach the visitor, without the
    paths, addresses and keys they carried."""
    said = (
        "Model crashed in /Users/owner/.lmstudio/models/x.gguf on 192.168.1.20:1234 "
        f"(api_key={TOKEN})"
    )
    error = b"event: error\ndata: " + json.dumps({"type": "error", "message": said}).encode()
    received = visit(gateway, upstream, chunked(DELTA, error + b"\n\n"))
    assert received.events[-1]["error"] == {
        "code": "upstream_failed",
        "message": "the model failed to answer: Model crashed in … on … (api_key=…)",
    }
    assert TOKEN[6:] not in gateway.log.read_text()
