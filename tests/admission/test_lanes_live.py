"""Lanes on a live gateway: /readyz and the metrics show each lane's cap, streams and line."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from chat_client import chat
from gateway_server import GatewayHandle, running_gateway
from sim_process import running_sim
from support import eventually, sample

# 60 tokens at 40 tokens/s: each answer streams for 1.5 s.
SLOW_SIM = ("--decode-rate", "40")


def lanes(gateway: GatewayHandle) -> dict[str, Any]:
    detail: dict[str, Any] = httpx.get(f"{gateway.url}/readyz", timeout=10).json()["lanes"]
    return detail


def test_readyz_and_metrics_show_each_lanes_cap_streams_and_line(redis_url: str) -> None:
    """The defaults (4 places, 1 held back): public and member 3, owner 4; a visitor's
    stream counts in the public lane while it runs, and the line is empty."""
    with (
        running_sim(*SLOW_SIM) as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway,
    ):
        idle = lanes(gateway)
        streaming = threading.Thread(target=lambda: chat(gateway.url), daemon=True)
        streaming.start()
        assert eventually(lambda: lanes(gateway)["public"]["inflight"] == 1)
        busy = lanes(gateway)
        streaming.join(timeout=30)
        ended = eventually(lambda: lanes(gateway)["public"]["inflight"] == 0)
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=10).text
    assert idle == {
        "owner": {"inflight_cap": 4, "inflight": 0, "queued": 0},
        "member": {"inflight_cap": 3, "inflight": 0, "queued": 0},
        "public": {"inflight_cap": 3, "inflight": 0, "queued": 0},
    }
    assert (busy["owner"]["inflight"], busy["member"]["inflight"]) == (0, 0)
    assert ended  # its place given back at the stream's end
    assert sample(metrics, "llmgw_lane_inflight_cap", lane="owner") == 4
    assert sample(metrics, "llmgw_lane_inflight_cap", lane="public") == 3
    assert sample(metrics, "llmgw_lane_queued", lane="public") == 0
