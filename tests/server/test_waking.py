"""A model LM Studio unloaded is woken by one chat, across gateway replicas: the others wait in
the waiting room with a status event, then stream (sim with JIT loading, real Redis)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from chat_client import Received, chat
from gateway_server import GatewayHandle, running_gateway
from sim_process import running_sim
from support import eventually

LOAD_SECONDS = 5.0
# --duplicate-jit-loads: every request that reaches the sim while the model is not loaded
# starts a load of its own (lmstudio-bug-tracker #1751), so loads_started counts exactly the
# requests that got through before the load ended.
ASLEEP = ("--jit", "--load-seconds", str(LOAD_SECONDS), "--duplicate-jit-loads")
WATCHED = {"health_interval": 0.3, "queue_size": 8, "visitor_limit": 50}


def model_state(gateway: GatewayHandle) -> Any:
    return httpx.get(f"{gateway.url}/readyz", timeout=10).json()["model"]


def statuses(received: Received) -> list[str]:
    return [event["state"] for event in received.events if event.get("type") == "llmgw.status"]


def answered(received: Received) -> bool:
    return received.status == 200 and "response.completed" in received.types()


def test_one_chat_wakes_the_model_and_the_others_wait_across_two_replicas(
    redis_url: str,
) -> None:
    """The first chat wakes the model and streams; chats meanwhile, on either replica, wait
    and then stream; none gets a 503; exactly one request reaches the sim before the load ends."""
    with (
        running_sim(*ASLEEP) as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **WATCHED) as one,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **WATCHED) as two,
        ThreadPoolExecutor(8) as pool,
    ):
        assert eventually(lambda: model_state(one) == model_state(two) == "sleeping", timeout=10)
        first = pool.submit(chat, one.url, timeout=60)
        time.sleep(0.5)
        others = [pool.submit(chat, gateway.url, timeout=60) for gateway in (one, two) * 3]
        results = [first.result(), *(other.result() for other in others)]
        assert all(answered(received) for received in results), [r.status for r in results]
        assert all(statuses(received) == ["waking"] for received in results)
        assert sim.stats()["loads_started"] == 1
        assert eventually(lambda: model_state(one) == model_state(two) == "ready", timeout=10)


def test_an_awake_model_sends_no_status_event(redis_url: str) -> None:
    """Once loaded, chats stream as before: no waking event, no wait."""
    with (
        running_sim(*ASLEEP) as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **WATCHED) as gateway,
    ):
        assert eventually(lambda: model_state(gateway) == "sleeping", timeout=10)
        assert statuses(chat(gateway.url, timeout=60)) == ["waking"]
        assert eventually(lambda: model_state(gateway) == "ready", timeout=10)
        later = chat(gateway.url)
        assert answered(later)
        assert statuses(later) == []


def test_a_full_waiting_room_gets_a_503_with_retry_after(redis_url: str) -> None:
    """While the model loads, a chat that finds the waiting room full is told to come back."""
    with (
        running_sim(*ASLEEP) as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, health_interval=0.3, queue_size=0
        ) as gateway,
        ThreadPoolExecutor(2) as pool,
    ):
        assert eventually(lambda: model_state(gateway) == "sleeping", timeout=10)
        waker = pool.submit(chat, gateway.url, timeout=60)
        assert eventually(lambda: sim.stats()["loads_started"] == 1, timeout=10)
        refused = chat(gateway.url)
        assert (refused.status, refused.json["code"]) == (503, "shed")
        assert refused.headers["retry-after"]
        assert answered(waker.result())


def test_a_model_not_downloaded_is_model_missing(redis_url: str) -> None:
    """LLMGW_MODEL names a model the server does not have: a configuration outage, not ready."""
    with (
        running_sim("--jit") as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, model="nobody/not-here", health_interval=0.3
        ) as gateway,
    ):
        url = f"{gateway.url}/readyz"
        assert eventually(lambda: httpx.get(url).json()["outage"] == "model_missing", timeout=10)
        assert httpx.get(url).status_code == 503
        assert chat(gateway.url).status == 503
        assert sim.stats()["started"] == 0
