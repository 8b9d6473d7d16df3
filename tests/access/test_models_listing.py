"""GET /v1/models in front of model servers that are not the sim: one that speaks only OpenAI's
API (vLLM, llama.cpp, Ollama), and one whose door refuses the gateway's token."""

from __future__ import annotations

import json
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

import httpx
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from support import serving

if TYPE_CHECKING:
    from collections.abc import Iterator

OPENAI_LISTING = {
    "object": "list",
    "data": [
        {"id": "qwen3-8b", "object": "model", "created": 1, "owned_by": "vllm"},
        {"id": "llama-3.1-8b", "object": "model", "created": 2, "owned_by": "vllm"},
    ],
}


@contextmanager
def model_server(answers: dict[str, tuple[int, object]]) -> Iterator[str]:
    """An HTTP server with these (status, JSON body) answers by path; 404 for any other."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.get(self.path, (404, {"error": "not found"}))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: object) -> None:
            return

    with serving(Handler) as url:
        yield url


def listed(upstream: str, redis_url: str) -> httpx.Response:
    key = create_key(redis_url, "tool")
    with running_gateway(upstream_url=upstream, redis_url=redis_url, key_secret=KEY_SECRET) as gw:
        return httpx.get(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {key}"})


def test_a_server_without_lm_studios_listings_gets_its_openai_list_read(redis_url: str) -> None:
    """No /api/v1 or /api/v0 (404): the ids of its /v1/models, in its order."""
    with model_server({"/v1/models": (200, OPENAI_LISTING)}) as upstream:
        answer = listed(upstream, redis_url)
    assert answer.status_code == 200
    assert [model["id"] for model in answer.json()["data"]] == ["qwen3-8b", "llama-3.1-8b"]


def test_a_refused_gateway_token_is_no_401_for_the_client(redis_url: str) -> None:
    """The model side's 401 is the gateway's problem: a 502, so the SDK does not blame its key."""
    refusal = (401, {"error": "nginx_token_invalid"})
    paths = ("/api/v1/models", "/api/v0/models", "/v1/models")
    with model_server(dict.fromkeys(paths, refusal)) as upstream:
        answer = listed(upstream, redis_url)
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "upstream_unavailable"
    assert "www-authenticate" not in answer.headers
