"""Every bad input is a clear 4xx JSON error, and nothing of it reaches the model."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from gateway_server import GatewayHandle, running_gateway
from sim_process import SimHandle, running_sim

if TYPE_CHECKING:
    from collections.abc import Iterator

JSON = {"Content-Type": "application/json"}
CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    ("not json", b"hello", JSON, 400, "not valid JSON"),
    ("invalid utf-8", b'{"input": "\xff\xfe"}', JSON, 400, "not valid JSON"),
    ("empty body", b"", JSON, 400, "empty"),
    ("array body", b"[1, 2]", JSON, 400, "Expected `object`"),
    ("input missing", b"{}", JSON, 400, "missing required field `input`"),
    ("input wrong type", b'{"input": 42}', JSON, 400, "$.input"),
    ("input empty", b'{"input": "   "}', JSON, 400, "input is empty"),
    ("input only invisible", b'{"input": "\\u200b\\u200b"}', JSON, 400, "input is empty"),
    (
        "no user message",
        b'{"input": [{"role": "assistant", "content": "hi"}]}',
        JSON,
        400,
        "no user message",
    ),
    ("input too long", b'{"input": "' + b"a" * 2001 + b'"}', JSON, 400, "too long"),
    (
        "too many messages",
        b'{"input": [' + b",".join([b'{"role": "user", "content": "hi"}'] * 6) + b"]}",
        JSON,
        400,
        "too many messages",
    ),
    ("unknown role", b'{"input": [{"role": "system", "content": "x"}]}', JSON, 400, "role"),
    ("message without content", b'{"input": [{"role": "user"}]}', JSON, 400, "content"),
    ("model chosen by visitor", b'{"input": "hi", "model": "big"}', JSON, 400, "unknown field"),
    (
        "limit raised by visitor",
        b'{"input": "hi", "max_output_tokens": 9999}',
        JSON,
        400,
        "unknown",
    ),
    ("control characters", b'{"input": "hi\\u0000there"}', JSON, 400, "control characters"),
    (
        "bad previous id",
        b'{"input": "hi", "previous_response_id": "../../etc"}',
        JSON,
        400,
        "resp_",
    ),
    (
        "previous id wrong type",
        b'{"input": "hi", "previous_response_id": 7}',
        JSON,
        400,
        "previous",
    ),
    ("body over the byte cap", b'{"input": "' + b"a" * 5000 + b'"}', JSON, 413, "too large"),
    ("odd thumbmark", b'{"input": "hi"}', {**JSON, "X-Thumbmark-Id": "a b;c"}, 400, "Thumbmark"),
    (
        "huge thumbmark",
        b'{"input": "hi"}',
        {**JSON, "X-Thumbmark-Id": "a" * 4000},
        400,
        "Thumbmark",
    ),
]


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[GatewayHandle, SimHandle]]:
    with (
        running_sim() as sim,
        running_gateway(
            upstream_url=sim.url, max_input_chars=2000, max_messages=5, max_body_bytes=4096
        ) as gateway,
    ):
        yield gateway, sim


@pytest.mark.parametrize(
    ("body", "headers", "status", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_chat_request(
    stack: tuple[GatewayHandle, SimHandle],
    body: bytes,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    """The request is refused with a JSON error saying what is wrong; the model never sees it."""
    gateway, sim = stack
    before = sim.stats()["started"]
    response = httpx.post(f"{gateway.url}/api/chat", content=body, headers=headers, timeout=10)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["error"]
    assert sim.stats()["started"] == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/chat", 405), ("PUT", "/api/chat", 405), ("GET", "/nope", 404)],
)
def test_wrong_route_or_method(
    stack: tuple[GatewayHandle, SimHandle], method: str, path: str, status: int
) -> None:
    """Wrong methods and unknown paths get JSON errors too."""
    gateway, _ = stack
    response = httpx.request(method, f"{gateway.url}{path}", timeout=10)
    assert response.status_code == status
    assert "error" in response.json()


def test_a_good_request_still_passes(stack: tuple[GatewayHandle, SimHandle]) -> None:
    """The same gateway streams a well-formed request (the cases above are not all refusals)."""
    gateway, _ = stack
    body = {"input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    response = httpx.post(f"{gateway.url}/api/chat", json=body, timeout=30)
    assert response.status_code == 200
    assert "response.completed" in response.text
