"""Redis dying mid-traffic and a gateway dying mid-stream: nobody sees a 5xx, nothing leaks."""

from __future__ import annotations

import subprocess
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
from chat_client import chat
from gateway_server import running_gateway
from gateway_subprocess import gateway_processes
from sim_process import SimHandle, running_sim
from support import eventually, free_port, require_binary, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


INFLIGHT_KEY = "{llmgw}:inflight"


@contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen[bytes]]:
    """A redis-server of this test's own, on a fixed port, so it can be killed and restarted."""
    binary = require_binary("redis-server")
    command = [binary, "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--slots", "16", "--decode-rate", "2000", "--output-tokens", "8") as handle:
        yield handle


def test_redis_killed_mid_traffic(sim: SimHandle) -> None:
    """Redis killed under traffic: no 5xx, the fallback shows, and Redis is used again later."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    statuses: list[int] = []
    stop = threading.Event()

    def traffic(gateway_url: str) -> None:
        while not stop.is_set():
            statuses.append(chat(gateway_url).status)

    with own_redis(port) as first, running_gateway(
        upstream_url=sim.url, redis_url=url, global_limit=10_000, visitor_limit=10_000,
        lease_seconds=3,
    ) as gateway:  # fmt: skip
        driver = threading.Thread(target=traffic, args=(gateway.url,))
        driver.start()
        try:
            assert eventually(lambda: len(statuses) >= 5)
            first.kill()
            assert eventually(lambda: readyz(gateway.url)["fallback_active"] is True)
            served_in_fallback = len(statuses)
            assert eventually(lambda: len(statuses) >= served_in_fallback + 5)
            with own_redis(port):
                assert eventually(lambda: not readyz(gateway.url)["fallback_active"], timeout=10)
                before = len(statuses)
                assert eventually(lambda: len(statuses) >= before + 3)
                with redis.Redis.from_url(url) as client:
                    assert int(client.get("{llmgw}:window:global") or 0) >= 1
        finally:
            stop.set()
            driver.join(timeout=30)
    assert statuses
    assert all(status < 500 for status in statuses), sorted(set(statuses))


def readyz(url: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{url}/readyz", timeout=10).json()
    return body


def test_gateway_killed_mid_stream_leaks_no_lease(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A gateway killed mid-stream holds its in-flight place only until the lease expires:
    a second replica sheds at once after the kill, and admits again once the lease is gone."""
    settings = {
        "redis_url": redis_url,
        "max_inflight": "1",
        "owner_reserved_inflight": "0",  # the one place is the visitors': none held back
        "lease_seconds": "3",
        "queue_wait_seconds": "0",  # shed at once: the test reads the cap, not the line
        "probe_stale_factor": "1",
        "health_interval": "0",
    }
    logs = [tmp_path / "doomed.log", tmp_path / "survivor.log"]
    with (
        running_sim("--decode-rate", "10", "--output-tokens", "300") as slow,
        gateway_processes(logs, upstream_url=slow.url, **settings) as (doomed, survivor),
    ):
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", f"{doomed.url}/api/chat", json={"input": "hi"}) as stream,
        ):
            # Keep the line iterator referenced: a discarded one is closed, and closing it
            # hangs up the connection, which would release the lease before the kill.
            lines = stream.iter_lines()
            next(line for line in lines if "delta" in line)
            assert redis_client.zcard(INFLIGHT_KEY) == 1  # the stream's lease
            doomed.process.kill()
            doomed.process.wait(timeout=10)
        first = chat(survivor.url, timeout=5)
        assert (first.status, first.json["code"]) == (503, "shed")
        assert redis_client.zcard(INFLIGHT_KEY) == 1  # the dead gateway's lease, not renewed
        assert eventually(lambda: chat(survivor.url, timeout=60).status == 200, timeout=15)
