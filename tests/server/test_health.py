"""Liveness and readiness, the embedded Redis, and the demo command."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from typing import TYPE_CHECKING

import httpx
import pytest
from chat_client import chat
from gateway_server import running_gateway
from sim_process import SimHandle, running_sim
from support import eventually, free_port, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "200") as handle:
        yield handle


def test_ready_when_redis_and_upstream_answer(sim: SimHandle, redis_url: str) -> None:
    """/healthz and /readyz are 200 with both dependencies up."""
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        assert httpx.get(f"{gateway.url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["redis"]["ok"] is True
    assert ready.json()["upstream"]["ok"] is True


def test_not_ready_when_upstream_is_down(redis_url: str) -> None:
    """/readyz is 503 naming the failed dependency, but no host or port."""
    port = free_port()
    with running_gateway(upstream_url=f"http://127.0.0.1:{port}", redis_url=redis_url) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz")
        alive = httpx.get(f"{gateway.url}/healthz")
    assert ready.status_code == 503
    assert ready.json()["upstream"]["ok"] is False
    assert ready.json()["redis"]["ok"] is True
    assert str(port) not in ready.text
    assert alive.status_code == 200


def test_embedded_redis_when_none_is_configured(
    sim: SimHandle, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without LLMGW_REDIS_URL the gateway limits with an embedded Redis, and says so."""
    monkeypatch.delenv("LLMGW_REDIS_URL", raising=False)
    caplog.set_level(logging.WARNING, logger="llmgw.redis")
    with running_gateway(upstream_url=sim.url, visitor_limit=1) as gateway:
        statuses = [chat(gateway.url).status for _ in range(2)]
    assert statuses == [200, 429]
    assert "embedded" in caplog.text


def test_demo_command_serves_a_chat() -> None:
    """`llmgw demo` starts the sim and the gateway, prints a URL, and that URL chats."""
    port = free_port()
    env = {**os.environ, "LLMGW_PORT": str(port)}
    env.pop("LLMGW_REDIS_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "demo"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(3)]
        assert f"http://127.0.0.1:{port}" in banner[0]
        assert banner[2].startswith("curl -N")
        wait_for_port(port)
        received = chat(f"http://127.0.0.1:{port}")
        assert received.status == 200
        assert received.text()
        # The demo's sample posts are indexed, and the model reads them for a question.
        asked = chat(f"http://127.0.0.1:{port}", {"input": "What did you write about Tailscale?"})
        sources = [e for e in asked.events if e["type"] == "posts.sources"]
        assert "https://blog.example/2025/03/tailscale-funnel/" in str(sources)
        assert "According to https://blog.example/2025/03/tailscale-funnel/" in asked.text()
    finally:
        process.terminate()
        process.wait(timeout=15)
    # Stopped the way docker and systemd stop it (SIGTERM), the demo leaves no sim behind.
    sim_port = int(banner[0].rsplit("port ", 1)[1])
    assert eventually(lambda: not accepts(sim_port)), "the demo's sim outlived it"


def accepts(port: int) -> bool:
    """Whether something listens on this loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
