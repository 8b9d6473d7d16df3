"""What a keyed client's body becomes upstream, and what it is refused for, before anything is
sent: the fields LM Studio reads, no nulls it may refuse, no OpenAI-only fields, every text
the model reads counted."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from app.chat.openai_bodies import Api, KeyedBounds, parse_keyed_request
from app.errors import BadRequest

BOUNDS = KeyedBounds(max_input_chars=10_000, max_output_tokens=64)
HI = [{"role": "user", "content": "hi"}]


def upstream(body: dict[str, Any], api: Api = Api.CHAT) -> dict[str, Any]:
    """The payload the model server would get for this body."""
    request = parse_keyed_request(json.dumps(body).encode(), api, BOUNDS)
    sent: dict[str, Any] = msgspec.json.decode(request.payload("m", None))
    return sent


def test_messages_go_without_nulls_and_openai_only_fields_stay_behind() -> None:
    """A message's unset fields are left out (not sent as null), and the fields only OpenAI's
    service reads (caching, tiers, safety ids, stored completions) are accepted, not sent."""
    sent = upstream(
        {
            "messages": HI,
            "prompt_cache_key": "abc",
            "safety_identifier": "u1",
            "service_tier": "auto",
            "store": True,
            "user": "me",
            "min_p": 0.05,
        }
    )
    assert sent["messages"] == HI
    assert not {"prompt_cache_key", "safety_identifier", "service_tier", "store", "user"} & set(
        sent
    )
    assert sent["min_p"] == 0.05
    assert sent["max_tokens"] == 64


def test_a_stream_asks_for_usage_and_a_whole_answer_sends_no_stream_options() -> None:
    """A streamed chat completion asks for the usage chunk whatever the client said; one not
    streamed sends no stream_options (OpenAI refuses them without a stream)."""
    streamed = upstream({"messages": HI, "stream": True})
    whole = upstream({"messages": HI, "stream_options": {"include_usage": True}})
    assert streamed["stream_options"] == {"include_usage": True}
    assert "stream_options" not in whole


def test_tools_and_their_arguments_count_as_input() -> None:
    """Text in tools, tool calls and schemas is read by the model: it counts against the
    input bound (and the token estimate), images do not."""
    tool = {"type": "function", "function": {"name": "f", "description": "d" * 20_000}}
    with pytest.raises(BadRequest, match="too long"):
        parse_keyed_request(
            json.dumps({"messages": HI, "tools": [tool]}).encode(), Api.CHAT, BOUNDS
        )
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 50_000}}
    content = [{"type": "text", "text": "what is this?"}, image]
    body = {"messages": [{"role": "user", "content": content}]}
    request = parse_keyed_request(json.dumps(body).encode(), Api.CHAT, BOUNDS)
    assert request.input_chars < 100


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": HI, "top_k": 2**62}, "top_k"),
        ({"messages": HI, "repeat_penalty": 1e300}, "repeat_penalty"),
        ({"messages": HI, "logit_bias": {"1": 1e300}}, "logit_bias"),
        ({"messages": HI, "n": 2}, "n"),
        ({"messages": []}, "messages"),
        ({"messages": HI, "frobnicate": 1}, "frobnicate"),
    ],
)
def test_out_of_range_and_unknown_fields_are_refused_by_name(
    body: dict[str, Any], param: str
) -> None:
    """Each is a 400 naming the field."""
    with pytest.raises(BadRequest) as refused:
        parse_keyed_request(json.dumps(body).encode(), Api.CHAT, BOUNDS)
    assert refused.value.param == param


@pytest.mark.parametrize("depth", [1_200, 5_000])
def test_a_body_nested_hundreds_deep_is_a_400(depth: int) -> None:
    """JSON nested deeper than any chat is refused, not a 500 (msgspec's own limit, or the
    count of the text in it)."""
    nested = "[" * depth + '"x"' + "]" * depth
    body = f'{{"messages": [{{"role": "user", "content": [{{"t": {nested}}}]}}]}}'.encode()
    with pytest.raises(BadRequest):
        parse_keyed_request(body, Api.CHAT, BOUNDS)
    responses = f'{{"input": [{{"t": {nested}}}]}}'.encode()
    with pytest.raises(BadRequest):
        parse_keyed_request(responses, Api.RESPONSES, BOUNDS)
