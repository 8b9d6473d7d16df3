"""CORS: only the origins of LLMGW_CORS_ORIGINS may call the API from a browser; any other
origin gets no Access-Control-Allow-Origin, on the preflight or on the request itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_server import GatewayHandle, running_gateway
from sim_process import SimHandle, running_sim

if TYPE_CHECKING:
    from collections.abc import Iterator

ALLOWED = ("https://blog.example.com", "https://www.example.org:8443")
OTHERS = (
    "https://evil.example.net",
    "https://blog.example.com.evil.example.net",  # a suffix of an allowed origin
    "http://blog.example.com",  # the allowed host, another scheme
    "https://blog.example.com:444",  # another port
    "null",  # sandboxed frames and file:// pages
)
API = ("/api/chat", "/api/status")


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    with running_sim("--decode-rate", "2000") as handle:
        yield handle


@pytest.fixture
def gateway(sim: SimHandle, redis_url: str) -> Iterator[GatewayHandle]:
    with running_gateway(
        upstream_url=sim.url, redis_url=redis_url, cors_origins=",".join(ALLOWED)
    ) as handle:
        yield handle


def preflight(gateway: GatewayHandle, path: str, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-thumbmark-id",
    }
    return httpx.options(f"{gateway.url}{path}", headers=headers, timeout=10)


@pytest.mark.parametrize("origin", ALLOWED)
@pytest.mark.parametrize("path", API)
def test_allowed_origin_preflight_gets_the_headers(
    gateway: GatewayHandle, origin: str, path: str
) -> None:
    """A configured origin's preflight is answered with that exact origin (never `*`), POST,
    the two request headers the widget sends, and no credentials."""
    response = preflight(gateway, path, origin)
    assert response.status_code in (200, 204)
    assert response.headers["access-control-allow-origin"] == origin
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "content-type" in allowed_headers
    assert "x-thumbmark-id" in allowed_headers
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origin", OTHERS)
@pytest.mark.parametrize("path", API)
def test_other_origin_preflight_gets_no_allow_origin(
    gateway: GatewayHandle, origin: str, path: str
) -> None:
    """Any other origin, including near misses of an allowed one, gets no
    Access-Control-Allow-Origin on its preflight: the browser will not send the request."""
    response = preflight(gateway, path, origin)
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code < 500


@pytest.mark.parametrize("origin", OTHERS)
def test_other_origin_cannot_read_a_chat(gateway: GatewayHandle, origin: str) -> None:
    """A simple request from another origin gets no Access-Control-Allow-Origin, so its page
    cannot read the answer."""
    headers = {"Origin": origin, "Content-Type": "application/json"}
    response = httpx.post(
        f"{gateway.url}/api/chat", json={"input": "hi"}, headers=headers, timeout=10
    )
    assert "access-control-allow-origin" not in response.headers


def test_allowed_origin_reads_a_chat_and_its_limit_headers(gateway: GatewayHandle) -> None:
    """The allowed origin gets its origin back on the answer, and may read the RateLimit and
    Retry-After headers the widget shows."""
    headers = {"Origin": ALLOWED[0]}
    response = httpx.post(
        f"{gateway.url}/api/chat", json={"input": "hi"}, headers=headers, timeout=10
    )
    assert response.headers["access-control-allow-origin"] == ALLOWED[0]
    exposed = response.headers["access-control-expose-headers"].lower()
    assert {"retry-after", "ratelimit-remaining"} <= set(map(str.strip, exposed.split(",")))


def test_no_configured_origin_allows_none(sim: SimHandle, redis_url: str) -> None:
    """Without LLMGW_CORS_ORIGINS the API answers no browser origin at all."""
    with running_gateway(upstream_url=sim.url, redis_url=redis_url) as gateway:
        for path in API:
            response = preflight(gateway, path, ALLOWED[0])
            assert "access-control-allow-origin" not in response.headers
