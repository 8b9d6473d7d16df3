"""The governor on a live stack: a host that slows down gets fewer streams, and a stale probe
gives the conservative factor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from chat_client import chat
from gateway_server import GatewayHandle, running_gateway
from probe_process import running_probe
from sim_process import running_sim
from support import eventually

if TYPE_CHECKING:
    import redis


def governor(gateway: GatewayHandle) -> dict[str, Any]:
    detail: dict[str, Any] = httpx.get(f"{gateway.url}/readyz", timeout=10).json()["governor"]
    return detail


def test_slow_answers_shrink_the_inflight_cap(redis_url: str) -> None:
    """When time to first token climbs past the limit, the cap shrinks and status says busy."""
    with (
        running_sim("--decode-rate", "400", "--prefill-rate", "2000") as sim,
        running_probe(redis_url, sim.url),
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            max_inflight=8,
            owner_reserved_inflight=0,  # the public's cap is then all of the base
            global_limit=1000,
            visitor_limit=1000,
            probe_stale_factor=0.5,
            governor_ttft_limit_seconds=0.5,
            governor_relax_per_second=0.2,
        ) as gateway,
    ):
        assert eventually(lambda: governor(gateway)["inflight_cap"] == 8, timeout=15)
        sim.set_fault("slow")
        long_input = {"input": "word " * 1000}  # 1,250 tokens: 6 s of prefill when slow
        assert chat(gateway.url, long_input).status == 200
        assert eventually(lambda: governor(gateway)["inflight_cap"] < 8, timeout=5)
        assert governor(gateway)["pressure"] >= 0.9
        assert httpx.get(f"{gateway.url}/api/status").json()["state"] == "busy"


def test_stale_probe_halves_the_limits(redis_url: str, redis_client: redis.Redis) -> None:
    """With no probe reporting, the effective limits are the stale factor's share of the base."""
    with (
        running_sim() as sim,
        running_gateway(
            upstream_url=sim.url,
            redis_url=redis_url,
            max_inflight=8,
            owner_reserved_inflight=0,  # the public's cap is then all of the base
            global_limit=40,
            probe_stale_factor=0.5,
        ) as gateway,
    ):
        assert eventually(lambda: governor(gateway)["global_limit"] == 20)
        assert governor(gateway)["inflight_cap"] == 4
        assert governor(gateway)["factor"] == 0.5
