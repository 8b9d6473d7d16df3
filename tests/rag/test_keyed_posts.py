"""The owner's /v1 clients read the posts only when they ask (`X-LLMGW-Posts`), through the
real `openai` SDK: real Redis, the real sim, a real gateway, the index built by the command."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key
from rag_support import BASE_URL, sent
from support import flushed

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from gateway_server import GatewayHandle
    from sim_process import SimHandle

QUESTION = "What did you write about Tailscale Funnel?"
TAILSCALE_URL = f"{BASE_URL}/2024/05/tailscale-funnel/"


@pytest.fixture
def gateway(sim: SimHandle, posts_index: Path, redis_url: str) -> Iterator[GatewayHandle]:
    with running_gateway(
        upstream_url=sim.url,
        redis_url=flushed(redis_url),
        key_secret=KEY_SECRET,
        posts_index=str(posts_index),
        posts_share="file",
        reasoning_effort="none",
    ) as handle:
        yield handle


@pytest.fixture
def key(gateway: GatewayHandle, redis_url: str) -> str:
    """An owner's key (made once the gateway runs, on its emptied Redis)."""
    return create_key(redis_url, "editor")


@pytest.fixture
def client(gateway: GatewayHandle, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def _outputs(body: dict[str, Any]) -> list[str]:
    items = body.get("input")
    if not isinstance(items, list):
        return []
    return [str(item["output"]) for item in items if item.get("type") == "function_call_output"]


def test_a_keyed_client_gets_no_tool_unless_it_asks(client: openai.OpenAI, sim: SimHandle) -> None:
    answer = client.responses.create(model="nvidia/nemotron-3-nano", input=QUESTION)
    assert answer.output_text
    body = sent(sim)[-1]
    assert "tools" not in body
    assert "Passages" not in str(body.get("instructions"))


def test_asked_for_tools_the_sdk_streams_an_answer_quoting_the_post(
    client: openai.OpenAI, sim: SimHandle
) -> None:
    with client.responses.stream(
        model="nvidia/nemotron-3-nano",
        input=QUESTION,
        extra_headers={"X-LLMGW-Posts": "tools"},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert f"According to {TAILSCALE_URL}" in final.output_text
    assert all("function_call" not in kind for kind in kinds)
    assert kinds.count("response.completed") == 1
    first, second = sent(sim)[-2:]
    assert [t["name"] for t in first["tools"]] == ["search_posts"]
    assert json.loads(_outputs(second)[0])[0]["source"] == TAILSCALE_URL


def test_asked_for_context_a_chat_completion_gets_the_passages_first(
    client: openai.OpenAI, sim: SimHandle
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="nvidia/nemotron-3-nano",
        messages=[{"role": "user", "content": QUESTION}],
        extra_headers={"X-LLMGW-Posts": "context"},
    )
    assert raw.headers["x-llmgw-posts"] == "context"
    assert raw.parse().choices[0].message.content
    messages = sent(sim)[-1]["messages"]
    assert messages[0]["role"] == "system"
    passages = json.loads(messages[0]["content"].split("Passages (JSON):\n", 1)[1])
    assert passages[0]["source"] == TAILSCALE_URL
    assert messages[1] == {"role": "user", "content": QUESTION}


def test_auto_gives_a_whole_response_the_passages_in_context(
    client: openai.OpenAI, sim: SimHandle
) -> None:
    raw = client.responses.with_raw_response.create(
        model="nvidia/nemotron-3-nano",
        input=QUESTION,
        instructions="Be brief.",
        extra_headers={"X-LLMGW-Posts": "auto"},
    )
    assert raw.headers["x-llmgw-posts"] == "context"  # not streamed: no tool rounds
    body = sent(sim)[-1]
    assert "tools" not in body
    assert str(body["instructions"]).startswith("Be brief.\n\n")


@pytest.mark.parametrize(
    "case",
    [
        ("everything", {}, "must be tools, context or auto"),
        ("tools", {"stream": False}, "needs a streamed /v1/responses"),
        (
            "tools",
            {"tools": [{"type": "function", "name": "mine", "parameters": {"type": "object"}}]},
            "without tools of its own",
        ),
    ],
)
def test_a_posts_header_that_cannot_be_honoured_is_a_400_and_nothing_reaches_the_model(
    gateway: GatewayHandle,
    key: str,
    sim: SimHandle,
    case: tuple[str, dict[str, Any], str],
) -> None:
    value, extra, said = case
    before = sim.stats()["started"]
    answer = httpx.post(
        f"{gateway.url}/v1/responses",
        json={"model": "nvidia/nemotron-3-nano", "input": QUESTION, "stream": True, **extra},
        headers={"Authorization": f"Bearer {key}", "X-LLMGW-Posts": value},
        timeout=10,
    )
    assert answer.status_code == 400
    assert said in answer.json()["error"]["message"]
    assert sim.stats()["started"] == before
