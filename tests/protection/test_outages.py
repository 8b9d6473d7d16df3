"""Each outage class produced by a real fault, seen in /readyz and /api/status, and the
breaker keeping visitors' requests away from a model side that is down."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from chat_client import chat
from fault_servers import answering_server
from gateway_server import GatewayHandle, running_gateway
from probe_process import running_probe
from sim_process import SimHandle, running_sim
from support import eventually, free_port

from sim.config import SimConfig

if TYPE_CHECKING:
    from collections.abc import Iterator

    import redis

# The cooldown outlasts the monitor's 1 s turn, at which an outage holds the breaker open again.
CHECKS = {"health_interval": 0.3, "breaker_cooldown": 2.0}


def readyz(gateway: GatewayHandle) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.url}/readyz", timeout=10).json()
    return body


def status(gateway: GatewayHandle) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{gateway.url}/api/status", timeout=10).json()
    return body


def wait_for_outage(gateway: GatewayHandle, expected: str | None) -> None:
    assert eventually(lambda: readyz(gateway)["outage"] == expected, timeout=10), readyz(gateway)


@pytest.fixture
def sim() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "400") as handle:
        yield handle


def test_refused_port_is_a_tunnel_outage(
    lone_redis_url: str, lone_redis_client: redis.Redis
) -> None:
    """Nothing listening: tunnel class, status down, and chats refused without Redis."""
    upstream = f"http://127.0.0.1:{free_port()}"
    with running_gateway(upstream_url=upstream, lone_redis_url=lone_redis_url, **CHECKS) as gateway:
        wait_for_outage(gateway, "tunnel")
        assert status(gateway)["state"] == "down"
        lone_redis_client.config_resetstat()
        received = chat(gateway.url)
    assert received.status == 503
    assert received.json["code"] == "breaker_open"
    assert int(received.headers["Retry-After"]) >= 1
    assert "cmdstat_evalsha" not in lone_redis_client.info("commandstats")


def test_bare_502_is_nginx_down(redis_url: str) -> None:
    """The tunnel proxy answering 502 on its own (no nginx behind it) is nginx_down."""
    with (
        answering_server(502, {}, b"Bad Gateway") as upstream,
        running_gateway(upstream_url=upstream, redis_url=redis_url, **CHECKS) as gateway,
    ):
        wait_for_outage(gateway, "nginx_down")


def test_nginx_502_is_model_server_down(redis_url: str) -> None:
    """nginx answering 502 itself means the model server behind it is down."""
    with (
        answering_server(502, {"Server": "nginx"}, b"<html>502</html>") as upstream,
        running_gateway(upstream_url=upstream, redis_url=redis_url, **CHECKS) as gateway,
    ):
        wait_for_outage(gateway, "model_server_down")


def test_wrong_token_is_token_invalid(redis_url: str) -> None:
    """A token the model side refuses is reported as a misconfigured token, at LM Studio's
    door: the health check raises the door's alert, a refused chat the outage."""
    with (
        running_sim("--api-key", "right-token") as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, upstream_token="wrong-token", **CHECKS
        ) as gateway,
    ):
        refused = ["nginx_lmstudio"]
        assert eventually(lambda: readyz(gateway)["token_refused"] == refused, timeout=10)
        assert readyz(gateway)["outage"] is None  # the check alone does not shut the site
        chat(gateway.url)
        wait_for_outage(gateway, "token_invalid")
        body = httpx.get(f"{gateway.url}/readyz").text + httpx.get(f"{gateway.url}/api/status").text
    assert "wrong-token" not in body


def test_no_model_loaded(redis_url: str) -> None:
    """A model server that will not load the model by itself (JIT loading off, none loaded):
    the one chat that tries to wake it is told model_not_loaded, then the outage stands and
    chats get a 503 without reaching the server."""
    with (
        running_sim("--no-model") as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **CHECKS) as gateway,
    ):
        assert eventually(lambda: readyz(gateway)["model"] == "sleeping", timeout=10)
        waker = chat(gateway.url)
        assert [event["error"]["code"] for event in waker.events if "error" in event] == [
            "model_not_loaded"
        ]
        wait_for_outage(gateway, "model_not_loaded")
        time.sleep(3 * CHECKS["health_interval"])  # health checks see it asleep: it stays out
        assert readyz(gateway)["outage"] == "model_not_loaded"
        assert chat(gateway.url).status == 503


def test_killed_sim_then_recovery(sim: SimHandle, redis_url: str) -> None:
    """The sim killed: tunnel (no probe to say more); back again: ok, and chats flow."""
    with running_gateway(upstream_url=sim.url, redis_url=redis_url, **CHECKS) as gateway:
        wait_for_outage(gateway, None)
        assert status(gateway) == {"state": "ok"}
        sim.kill()
        wait_for_outage(gateway, "tunnel")
        sim.restart()
        wait_for_outage(gateway, None)
        assert eventually(lambda: chat(gateway.url).status == 200, timeout=10)
        assert eventually(lambda: readyz(gateway)["breaker"] == "closed")


def test_probe_tells_model_server_down_from_host_offline(sim: SimHandle, redis_url: str) -> None:
    """With a probe: sim killed is model_server_down; the probe silent too is host_offline."""
    with (
        running_probe(redis_url, sim.url) as probe,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, probe_stale_seconds=1.5, **CHECKS
        ) as gateway,
    ):
        assert eventually(lambda: readyz(gateway)["probes_fresh"] == 1, timeout=10)
        sim.kill()
        wait_for_outage(gateway, "model_server_down")
        probe.kill()
        wait_for_outage(gateway, "host_offline")
        public = httpx.get(f"{gateway.url}/api/status").text
        operator = httpx.get(f"{gateway.url}/readyz").text
    assert set(json.loads(public)) <= {"state", "retry_after"}
    for text in (public, operator):
        assert "test-host" not in text
        assert str(sim.port) not in text


def test_a_probe_whose_token_is_refused_raises_its_door_and_chats_keep_working(
    redis_url: str,
) -> None:
    """LM Studio refuses the probe's token (Require Authentication): the door probe_lmstudio
    is raised, no outage (not model_server_down), and visitors still chat."""
    with (
        running_sim("--api-key", "lmstudio-token") as sim,
        running_probe(redis_url, sim.url, model=sim_model()),
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, upstream_token="lmstudio-token", **CHECKS
        ) as gateway,
    ):
        refused = ["probe_lmstudio"]
        assert eventually(lambda: readyz(gateway)["token_refused"] == refused, timeout=10)
        assert readyz(gateway)["outage"] is None
        assert chat(gateway.url).status == 200
        assert readyz(gateway)["breaker"] == "closed"


def test_a_probe_that_finds_the_model_missing_is_model_missing(redis_url: str) -> None:
    """The probe says LLMGW_MODEL is not on the host: the configuration outage model_missing."""
    with (
        running_sim() as sim,
        running_probe(redis_url, sim.url, model="nobody/not-here"),
        running_gateway(upstream_url=sim.url, redis_url=redis_url, probe_poll_seconds=0.3) as gw,
    ):
        wait_for_outage(gw, "model_missing")
        assert chat(gw.url).status == 503


def sim_model() -> str:
    return SimConfig().model
