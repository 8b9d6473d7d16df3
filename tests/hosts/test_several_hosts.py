"""Several model hosts, for real: two sims of unequal capacity behind real gateways sharing one
real Redis. New conversations spread by free places, follow-ups stick to their host, a host
killed mid-traffic leaves no dead end (its streams end with an error event, new conversations
go to the other, its conversations go on there from their transcript), it gets traffic again
when it is back, a pressured host gets fewer, and a model asleep is woken by one request."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from functools import partial
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import redis
from chat_client import chat
from fault_servers import scripted_server
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from sim_process import running_sims
from support import eventually, flushed, serving

from probe.publisher import RedisPublisher
from probe.snapshot import build_snapshot

if TYPE_CHECKING:
    from collections.abc import Iterator

    from chat_client import Received
    from gateway_server import GatewayHandle
    from sim_process import SimHandle

# An answer of 40 tokens at 40 tokens a second: long enough for streams to overlap.
SLOW = ("--decode-rate", "40", "--output-tokens", "40", "--queue", "0")
MODEL = "nvidia/nemotron-3-nano"  # the sims' model, and the gateway's
ROOMY = {"global_limit": 100_000, "visitor_limit": 100_000}


def hosts_settings(
    mac: SimHandle, linux: SimHandle, redis_url: str, **extra: Any
) -> dict[str, Any]:
    """Two hosts: mac1 with 4 slots, linux1 with 2; quick checks, quick recovery."""
    return {
        "upstreams": "mac1,linux1",
        "upstream_mac1_url": mac.url,
        "upstream_mac1_max_inflight": "4",
        "upstream_linux1_url": linux.url,
        "upstream_linux1_max_inflight": "2",
        "owner_reserved_inflight": 0,
        "redis_url": redis_url,
        "health_interval": 0.3,
        "breaker_cooldown": 0.5,
        "breaker_max_cooldown": 1.0,
        "queue_wait_seconds": 10,
        "queue_size": 64,
        **ROOMY,
        **extra,
    }


@contextmanager
def two_hosts(
    redis_url: str, *, gateways: int = 1, mac: tuple[str, ...] = SLOW, **extra: Any
) -> Iterator[tuple[SimHandle, SimHandle, list[GatewayHandle]]]:
    """mac1 (4 slots) and linux1 (2 slots) behind `gateways` gateways on one Redis."""
    url = flushed(redis_url)
    with (
        running_sims(mac=("--slots", "4", *mac), linux=("--slots", "2", *SLOW)) as sims,
        ExitStack() as stack,
    ):
        settings = hosts_settings(sims["mac"], sims["linux"], url, **extra)
        handles = [stack.enter_context(running_gateway(**settings)) for _ in range(gateways)]
        for handle in handles:
            assert eventually(partial(_all_serving, handle))
        yield sims["mac"], sims["linux"], handles


def _all_serving(gateway: GatewayHandle) -> bool:
    return _serving(gateway) == {"mac1", "linux1"}


def _serving(gateway: GatewayHandle) -> set[str]:
    hosts = httpx.get(f"{gateway.url}/readyz", timeout=5).json()["hosts"]
    return {host["name"] for host in hosts if host["serving"] and not host["fallback"]}


def many(urls: list[str], count: int) -> list[Received]:
    """`count` new conversations at once, spread over the gateways."""

    def one(n: int) -> Received:
        return chat(urls[n % len(urls)], headers={"X-Thumbmark-Id": f"v{n}"})

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(one, range(count)))


def answered(received: Received) -> bool:
    return received.status == 200 and "response.completed" in received.types()


def response_id(received: Received) -> str:
    return str(
        next(e["response"]["id"] for e in received.events if e["type"] == "response.created")
    )


def test_new_conversations_spread_by_free_places_and_no_host_passes_its_cap(
    redis_url: str,
) -> None:
    """18 conversations at once through 2 gateways onto 4 + 2 slots: all answered (they wait
    for a place), none refused by a sim (no host ever held more than its slots), and mac1,
    with twice the places, answers about twice as many."""
    with two_hosts(redis_url, gateways=2) as (mac, linux, gateways):
        results = many([g.url for g in gateways], 18)
        assert all(answered(r) for r in results), [r.status for r in results]
        mac_stats, linux_stats = mac.stats(), linux.stats()
        assert mac_stats["rejected"] == linux_stats["rejected"] == 0
        assert mac_stats["started"] + linux_stats["started"] == 18
        assert 10 <= mac_stats["started"] <= 14  # 12 in proportion to its places


def test_follow_ups_stick_to_their_host(redis_url: str) -> None:
    """Each follow-up goes to the host that answered its conversation (the other would not
    know its previous response), whichever gateway it comes through."""
    with two_hosts(redis_url, gateways=2) as (mac, linux, gateways):
        firsts = many([g.url for g in gateways], 6)
        assert all(answered(r) for r in firsts)
        stored = {"mac": mac.stats()["started"], "linux": linux.stats()["started"]}
        assert stored == {"mac": 4, "linux": 2}
        for n, first in enumerate(firsts):
            body = {"input": "And then?", "previous_response_id": response_id(first)}
            follow = chat(gateways[(n + 1) % 2].url, body, headers={"X-Thumbmark-Id": f"v{n}"})
            assert answered(follow), follow.json or follow.events[-1]
        assert (mac.stats()["started"], linux.stats()["started"]) == (8, 4)


def test_a_host_killed_mid_traffic_leaves_no_dead_end(redis_url: str) -> None:
    """mac1 is killed with streams on it: those end with an error event; new conversations
    go to linux1 within 2 s with no 5xx before a stream starts; a conversation mac1 answered
    goes on on linux1 from its transcript; mac1, back, gets traffic again."""
    with two_hosts(redis_url) as (mac, linux, (gateway,)):
        first = chat(gateway.url, headers={"X-Thumbmark-Id": "alice"})
        assert answered(first)
        assert mac.stats()["started"] == 1  # the first conversation went to mac1
        streams: list[Received] = []
        threads = [
            threading.Thread(
                target=lambda n=n: streams.append(
                    chat(gateway.url, headers={"X-Thumbmark-Id": f"s{n}"})
                )
            )
            for n in range(3)
        ]
        for thread in threads:
            thread.start()
        assert eventually(lambda: mac.stats()["active"] >= 2)
        mac.kill()
        for thread in threads:
            thread.join(timeout=30)
        cut = [r for r in streams if not answered(r)]
        assert cut, "some streams were on mac1"
        for received in cut:
            assert received.status == 200
            assert received.types()[-1] == "error"

        # New conversations: linux1 answers them, and none gets a 5xx before its stream (how
        # soon is the benchmark's: tests/bench/hosts.py, failover seconds).
        for n in range(6):
            received = chat(gateway.url, headers={"X-Thumbmark-Id": f"after{n}"})
            assert received.status < 500, received.json
            assert answered(received)
        assert _serving(gateway) == {"linux1"}
        assert httpx.get(f"{gateway.url}/api/status").json() == {"state": "degraded"}

        # alice's conversation, answered by mac1, goes on on linux1 from its transcript.
        before = linux.stats()["started"]
        body = {"input": "Still there?", "previous_response_id": response_id(first)}
        follow = chat(gateway.url, body, headers={"X-Thumbmark-Id": "alice"})
        assert answered(follow), follow.json or follow.events[-1]
        assert linux.stats()["started"] == before + 1

        # mac1 comes back and gets new conversations again.
        mac.restart()
        assert eventually(lambda: _serving(gateway) == {"mac1", "linux1"}, timeout=10)
        assert httpx.get(f"{gateway.url}/api/status").json() == {"state": "ok"}
        for n in range(3):
            assert answered(chat(gateway.url, headers={"X-Thumbmark-Id": f"back{n}"}))
        assert mac.stats()["started"] >= 1


def test_a_pressured_host_gets_fewer_new_conversations(redis_url: str) -> None:
    """mac1's probe reports critical memory pressure: its factor falls to the floor, and new
    conversations, one at a time, go to linux1 instead of the roomier mac1."""
    with two_hosts(redis_url, probe_stale_factor=1.0) as (mac, linux, (gateway,)):
        unpressed = chat(gateway.url, headers={"X-Thumbmark-Id": "first"})
        assert answered(unpressed)
        assert mac.stats()["started"] == 1  # unpressed, mac1 has the most free places
        stop = threading.Event()
        publishing = threading.Thread(target=_publish_pressure, args=(redis_url, "mac1", stop))
        publishing.start()
        try:
            readyz = f"{gateway.url}/readyz"
            assert eventually(
                lambda: httpx.get(readyz, timeout=5).json()["hosts"][0]["factor"] < 0.5
            )
            for n in range(6):
                assert answered(chat(gateway.url, headers={"X-Thumbmark-Id": f"p{n}"}))
        finally:
            stop.set()
            publishing.join()
        assert mac.stats()["started"] == 1
        assert linux.stats()["started"] == 6


def _publish_pressure(redis_url: str, host: str, stop: threading.Event) -> None:
    """The probe's publisher, publishing a host's critical memory pressure until stopped."""

    async def publish() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        publisher = RedisPublisher(client, prefix="llmgw", host=host, interval=0.3)
        try:
            while not stop.is_set():
                signals = {"memory_pressure_level": 4.0, "model_server_up": 1.0}
                snapshot = build_snapshot(
                    signals, ts=time.time(), host=host, interval=0.3, gpu_source="none", unknown=()
                )
                await publisher.publish(snapshot)
                await asyncio.sleep(0.3)
        finally:
            await publisher.aclose()

    asyncio.run(publish())


def test_a_model_asleep_on_one_host_gets_exactly_one_request_until_loaded(
    redis_url: str,
) -> None:
    """mac1's model is asleep (LM Studio's JIT, 3 s to load), and mac1 starts a copy of the
    model for every request that meets it loading (lmstudio-bug-tracker #1751): 8 chats at
    once start exactly one load, the others go to linux1 or wait, and all are answered."""
    jit = ("--jit", "--load-seconds", "3", "--duplicate-jit-loads", *SLOW)
    with two_hosts(redis_url, mac=jit) as (mac, _, (gateway,)):
        assert eventually(lambda: _host(gateway, "mac1")["model"] == "sleeping", timeout=10)
        results = many([gateway.url], 8)
        assert all(answered(r) for r in results)
        stats = mac.stats()
        assert (stats["loads_started"], stats["loaded_instances"]) == (1, 1)
        assert stats["started"] >= 1  # the waker, then others once it was loaded


def _host(gateway: GatewayHandle, name: str) -> dict[str, Any]:
    hosts = httpx.get(f"{gateway.url}/readyz", timeout=5).json()["hosts"]
    return next(host for host in hosts if host["name"] == name)


def test_readyz_names_hosts_by_their_configured_names_only(redis_url: str) -> None:
    """/readyz lists each host by name: no URL, no port."""
    with two_hosts(redis_url) as (mac, linux, (gateway,)):
        body = httpx.get(f"{gateway.url}/readyz", timeout=5).text
        assert [h["name"] for h in json.loads(body)["hosts"]] == ["mac1", "linux1"]
        assert str(mac.port) not in body
        assert str(linux.port) not in body
        assert "127.0.0.1" not in body


@pytest.mark.parametrize("fallback", [True, False])
def test_all_hosts_down(redis_url: str, *, fallback: bool) -> None:
    """Every home host killed: with a fallback (a second sim as the hosted provider), chats
    are answered by it with the marker, until its day's budget is spent: then a 503; with no
    fallback, the breaker's 503 as before."""
    with running_sims(backup=SLOW) as sims:
        extra: dict[str, Any] = {}
        if fallback:
            extra = {
                "fallback_url": sims["backup"].url,
                "fallback_model": "nvidia/nemotron-3-nano",
                "fallback_token": "hosted-secret-key",
                "fallback_daily_tokens": 1_100,
                "fallback_visitor_share": 1.0,  # the day's budget is the limit here
            }
        with two_hosts(redis_url, **extra) as (mac, linux, (gateway,)):
            mac.kill()
            linux.kill()
            assert eventually(lambda: _serving(gateway) == set())
            first = chat(gateway.url, headers={"X-Thumbmark-Id": "late"})
            if not fallback:
                assert first.status == 503
                assert "error" in first.json
                return
            assert answered(first), first.json
            assert first.types()[0] == "llmgw.host"
            assert first.events[0]["fallback"] is True
            assert sims["backup"].stats()["started"] == 1
            # Each answer reserves its 1,024-token cap and spends its usage (some 40 tokens):
            # the second fits in 1,100, the third's reservation no longer does.
            statuses = [chat(gateway.url).status for _ in range(3)]
            assert statuses == [200, 503, 503]
            assert "hosted-secret-key" not in httpx.get(f"{gateway.url}/readyz").text
            assert "hosted-secret-key" not in httpx.get(f"{gateway.url}/metrics").text


def test_the_host_is_named_in_the_log_line_and_the_metrics(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each chat's log line names its host, and the host metrics count it by reason."""
    caplog.set_level(logging.INFO, logger="llmgw.request")
    with two_hosts(redis_url) as (_, _, (gateway,)):
        first = chat(gateway.url, headers={"X-Thumbmark-Id": "carol"})
        body = {"input": "More?", "previous_response_id": response_id(first)}
        assert answered(chat(gateway.url, body, headers={"X-Thumbmark-Id": "carol"}))
        metrics = httpx.get(f"{gateway.url}/metrics").text
    hosts = [getattr(r, "host", None) for r in caplog.records if r.name == "llmgw.request"]
    assert hosts == ["mac1", "mac1"]
    assert 'llmgw_host_routed_total{host="mac1",reason="new"} 1.0' in metrics
    assert 'llmgw_host_routed_total{host="mac1",reason="follow_up"} 1.0' in metrics
    assert 'llmgw_host_requests_total{host="mac1",outcome="ok"} 2.0' in metrics


def test_a_token_refused_on_one_host_raises_its_door(redis_url: str) -> None:
    """One of two hosts refuses the gateway's token at nginx: the door's gauge says so, as it
    does with one host, while the other host serves."""
    refused = b'{"error":{"code":"nginx_token_invalid"}}'
    answer = (
        b"HTTP/1.1 401 Unauthorized\r\nServer: nginx\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(refused), refused)
    )
    with (
        scripted_server() as door,
        running_sims(linux=("--slots", "2")) as sims,
    ):
        door.answer = answer
        settings = hosts_settings(sims["linux"], sims["linux"], flushed(redis_url))
        settings["upstream_mac1_url"] = door.url
        with running_gateway(**settings) as gateway:
            line = 'llmgw_upstream_token_invalid{door="gateway_nginx"} 1.0'
            assert eventually(lambda: line in httpx.get(f"{gateway.url}/metrics").text)
            assert answered(chat(gateway.url))


def test_the_owner_has_a_place_held_back_on_each_host(redis_url: str) -> None:
    """Two hosts, one place of each held back for the owner: visitors fill the other places
    (3 on mac1, 1 on linux1) and no more, and the owner's chat is still admitted at once."""
    with two_hosts(
        redis_url,
        owner_reserved_inflight=1,
        key_secret=KEY_SECRET,
        queue_wait_seconds=0,
        mac=("--decode-rate", "10", "--output-tokens", "30", "--queue", "0"),
    ) as (mac, linux, (gateway,)):
        key = create_key(redis_url, "owner-laptop", lane="owner")
        flood = ThreadPoolExecutor(8)
        visitors = [
            flood.submit(chat, gateway.url, headers={"X-Thumbmark-Id": f"f{n}"}) for n in range(8)
        ]
        assert eventually(lambda: mac.stats()["active"] == 3)
        owner = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            json={
                "model": "nvidia/nemotron-3-nano",
                "messages": [{"role": "user", "content": "hi"}],
            },
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        statuses = [future.result().status for future in visitors]
        flood.shutdown()
        assert mac.stats()["rejected"] == linux.stats()["rejected"] == 0
    assert owner.status_code == 200
    assert statuses.count(200) == 4  # 3 on mac1 and 1 on linux1: the held-back places stayed free
    assert statuses.count(503) == 4


def test_the_fallback_is_checked_as_a_hosted_provider(redis_url: str) -> None:
    """The fallback's active check asks only OpenAI's `/v1/models`, with its key: a hosted
    provider has none of LM Studio's listings; and it serves while its model is listed."""
    paths: list[tuple[str, str | None]] = []
    listing = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()

    class Provider(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            paths.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(listing)))
            self.end_headers()
            self.wfile.write(listing)

        def log_message(self, *_: object) -> None:
            return

    with (
        serving(Provider) as provider,
        running_sims(home=("--slots", "2")) as sims,
        running_gateway(
            upstream_url=sims["home"].url,
            redis_url=flushed(redis_url),
            health_interval=0.3,
            fallback_url=provider,
            fallback_model=MODEL,
            fallback_token="hosted-secret-key",
        ) as gateway,
    ):
        assert eventually(lambda: len(paths) >= 2)
        fallback = _host(gateway, "fallback")
    assert {path for path, _ in paths} == {"/v1/models"}
    assert {key for _, key in paths} == {"Bearer hosted-secret-key"}
    assert (fallback["serving"], fallback["model"]) == (True, "ready")


def test_a_host_that_forgot_the_conversation_goes_on_from_the_transcript(
    redis_url: str,
) -> None:
    """LM Studio restarted on the conversation's host, which is up again but no longer knows
    the previous response: the follow-up is answered there from the transcript kept here."""
    with two_hosts(redis_url) as (mac, _, (gateway,)):
        first = chat(gateway.url, headers={"X-Thumbmark-Id": "dana"})
        assert answered(first)
        assert mac.stats()["started"] == 1
        mac.restart()  # its stored responses are gone
        assert eventually(partial(_all_serving, gateway), timeout=10)
        body = {"input": "Where were we?", "previous_response_id": response_id(first)}
        follow = chat(gateway.url, body, headers={"X-Thumbmark-Id": "dana"})
        assert answered(follow), follow.json or follow.events[-1]
        assert mac.stats()["started"] >= 1
