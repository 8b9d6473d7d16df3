"""The upstream token and the Redis password never leave the gateway: not in anything its
process writes (at DEBUG), nor in any body or header of any endpoint, through traffic, bad
input, a refused token, a killed model server and a Redis outage."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_subprocess import GatewayProcess, PasswordRedis, gateway_process, redis_with_password
from sim_process import SimHandle, running_sim
from support import eventually, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TOKEN = "upstream-token-" + secrets.token_hex(20)
OTHER_TOKEN = "other-token-" + secrets.token_hex(20)
REDIS_PASSWORD = "redis-password-" + secrets.token_hex(20)
SECRETS = (TOKEN, REDIS_PASSWORD)
ORIGIN = "https://blog.example.com"
PUBLIC_GETS = ("/", "/llmgw-chat.js", "/healthz", "/readyz", "/api/status", "/metrics")
BAD_BODIES: list[tuple[bytes, dict[str, str]]] = [
    (b"not json", {}),
    (b"", {}),
    (b'{"input": 42}', {}),
    (b'{"input": "hi", "model": "big", "max_output_tokens": 99999}', {}),
    (b'{"input": "hi\\u0000"}', {}),
    (b'{"input": "' + b"a" * 40_000 + b'"}', {}),
    (b'{"input": "hi", "previous_response_id": "resp_unknown"}', {}),
    (b'{"input": "hi", "previous_response_id": "../../etc/passwd"}', {}),
    (b'{"input": "hi"}', {"X-Thumbmark-Id": "bad id;"}),
    (b'{"input": "hi"}', {"X-Forwarded-For": "not-an-address, 999.1.1.1"}),
    (b'{"input": "hi"}', {"Content-Type": "text/plain"}),
]


@dataclass
class Seen:
    """Every response the test got: status line, headers and body, as text to search."""

    responses: list[str] = field(default_factory=list)

    def take(self, response: httpx.Response) -> httpx.Response:
        head = "\n".join(f"{name}: {value}" for name, value in response.headers.multi_items())
        self.responses.append(f"{response.status_code}\n{head}\n{response.text}")
        return response


@dataclass
class Stack:
    sim: SimHandle
    redis: PasswordRedis
    gateway: GatewayProcess
    client: httpx.Client
    seen: Seen


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A sim that wants TOKEN, a Redis that wants REDIS_PASSWORD, and the gateway process with
    both, logging at DEBUG to a file."""
    log = tmp_path_factory.mktemp("gateway") / "gateway.log"
    with (
        running_sim("--api-key", TOKEN, "--decode-rate", "2000") as sim,
        redis_with_password(REDIS_PASSWORD) as redis,
        gateway_process(
            log,
            upstream_url=f"http://localhost:{sim.port}",
            upstream_token=TOKEN,
            redis_url=redis.url(REDIS_PASSWORD),
            log_level="DEBUG",
            cors_origins=ORIGIN,
            health_interval="0.3",
            breaker_cooldown="0.3",
            first_token_timeout="3",
            probe_stale_factor="1",
        ) as gateway,
        httpx.Client(base_url=gateway.url, timeout=15) as client,
    ):
        yield Stack(sim, redis, gateway, client, Seen())


def chat(stack: Stack, body: bytes = b'{"input": "Hello"}', **headers: str) -> httpx.Response:
    headers = {"Content-Type": "application/json", **headers}
    return stack.seen.take(stack.client.post("/api/chat", content=body, headers=headers))


def visit_every_endpoint(stack: Stack) -> None:
    """Each public GET (and /metrics in both formats), a preflight, a 404 and a 405."""
    for path in PUBLIC_GETS:
        stack.seen.take(stack.client.get(path))
    accept = "application/openmetrics-text; version=1.0.0"
    stack.seen.take(stack.client.get("/metrics", headers={"Accept": accept}))
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    stack.seen.take(stack.client.options("/api/chat", headers=preflight))
    stack.seen.take(stack.client.get("/no-such-page"))
    stack.seen.take(stack.client.put("/api/chat", content=b"{}"))


def spawn_sim(port: int, *args: str) -> subprocess.Popen[bytes]:
    """Another simulator on the same port (the model host after a token change)."""
    command = [sys.executable, "-m", "sim", "--port", str(port), *args]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    wait_for_port(port)
    return process


def readyz(stack: Stack) -> dict[str, object]:
    body: dict[str, object] = stack.seen.take(stack.client.get("/readyz")).json()
    return body


def test_no_secret_in_any_output_or_response(stack: Stack) -> None:
    """Traffic, bad input, a token the model side refuses, a killed model server and a Redis
    outage: neither secret appears in the log or in any response, and the faults did get
    logged (so the log was worth searching)."""
    assert all(chat(stack).status_code == 200 for _ in range(3))
    visit_every_endpoint(stack)
    assert all(chat(stack, body, **headers).status_code < 500 for body, headers in BAD_BODIES)

    stack.sim.stop()  # the model host now wants another token: 401 upstream
    refusing = spawn_sim(stack.sim.port, "--api-key", OTHER_TOKEN)
    assert eventually(lambda: readyz(stack)["token_refused"] == ["nginx_lmstudio"], timeout=10)
    statuses = {chat(stack).status_code for _ in range(3)}
    assert readyz(stack)["outage"] == "token_invalid"  # the refused chats shut the door
    visit_every_endpoint(stack)
    refusing.kill()  # and then it is gone altogether
    refusing.wait(timeout=10)
    assert eventually(lambda: readyz(stack)["outage"] == "tunnel", timeout=10)
    statuses |= {chat(stack).status_code for _ in range(3)}
    assert statuses <= {502, 503}, statuses

    healthy = spawn_sim(stack.sim.port, "--api-key", TOKEN, "--decode-rate", "2000")
    # Closed, not merely half-open, and the outage over: a chat now is answered, not refused.
    assert eventually(lambda: readyz(stack)["outage"] is None, timeout=10)
    assert eventually(lambda: readyz(stack)["breaker"] == "closed", timeout=10)
    stack.redis.stop()  # Redis goes away: the fallback admits, and says so in the log
    assert chat(stack).status_code == 200
    visit_every_endpoint(stack)
    healthy.kill()
    healthy.wait(timeout=10)
    time.sleep(0.5)  # let the last log lines out

    log = stack.gateway.log.read_text(errors="replace")
    assert "token_invalid" in log
    assert "Redis unavailable" in log
    for secret in SECRETS:
        assert secret not in log
        assert not [seen for seen in stack.seen.responses if secret in seen]
    assert len(stack.seen.responses) > 50


def test_no_secret_in_the_redis_error_at_start(tmp_path: Path) -> None:
    """A gateway that starts while its Redis refuses it (wrong password) logs the failure by
    kind, never the URL's password."""
    with (
        redis_with_password(REDIS_PASSWORD) as redis,
        gateway_process(
            tmp_path / "gateway.log",
            redis_url=redis.url("wrong-" + REDIS_PASSWORD),
            upstream_token=TOKEN,
            log_level="DEBUG",
        ) as gateway,
    ):
        body = json.dumps(httpx.get(f"{gateway.url}/readyz", timeout=10).json())
        log = gateway.log.read_text()
    assert "Redis unavailable at start" in log
    for secret in SECRETS:
        assert secret not in log
        assert secret not in body
