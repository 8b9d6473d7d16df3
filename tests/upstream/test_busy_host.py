"""A model server that answers 503 is up and shedding load (llama.cpp's busy slots, a full
queue): the visitor is shed with Retry-After, and the breaker is not told, so a busy host
is never taken for a down one."""

from __future__ import annotations

import httpx
from chat_client import chat
from fault_servers import scripted_server
from gateway_server import running_gateway

BODY = b'{"error":{"message":"no slot available"}}'
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(BODY), BODY)
)


def test_a_busy_host_sheds_the_visitor_and_stays_closed(redis_url: str) -> None:
    """Ten 503s in a row (the breaker opens after 3 failures): each is a 503 `shed` with
    Retry-After, every one reached the model server, and the breaker stays closed."""
    with (
        scripted_server() as server,
        running_gateway(
            upstream_url=server.url, redis_url=redis_url, global_limit=1000, visitor_limit=1000
        ) as gateway,
    ):
        server.answer = BUSY
        received = [chat(gateway.url, timeout=10) for _ in range(10)]
        assert {r.status for r in received} == {503}
        assert {r.json["code"] for r in received} == {"shed"}
        assert all(r.headers.get("retry-after") for r in received)
        assert server.requests == 10
        readyz = httpx.get(f"{gateway.url}/readyz", timeout=5).json()
        assert (readyz["breaker"], readyz["outage"]) == ("closed", None)
