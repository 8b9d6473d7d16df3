"""/v1/chat/completions and /v1/responses for keyed clients, driven by the official openai SDK
against a gateway in front of the sim: streams and whole answers with their usage, follow-ups,
typed errors for every refusal (nothing of which reaches the sim), the key's own windows, the
answer's token cap, a stream failing midway, and a client that leaves."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import httpx
import openai
import pytest
from gateway_server import running_gateway
from keys_support import KEY_SECRET, create_key, revoke_key
from sim_process import SimHandle, running_sim
from support import eventually, flushed

from app.access.keys import new_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from gateway_server import GatewayHandle
    from openai.types.chat import ChatCompletionMessageParam

pytestmark = pytest.mark.slow

MODEL = "nvidia/nemotron-3-nano"
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
LONG: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x" * 400}]


@pytest.fixture(scope="module")
def sim() -> Iterator[SimHandle]:
    # Answers longer than the keys' cap (64) unless capped; fast, so a test takes little time.
    with running_sim("--decode-rate", "2000", "--output-tokens", "200") as handle:
        yield handle


@pytest.fixture(scope="module")
def gateway(sim: SimHandle, redis_server: str) -> Iterator[GatewayHandle]:
    with running_gateway(
        upstream_url=sim.url,
        redis_url=flushed(redis_server),
        key_secret=KEY_SECRET,
        key_max_output_tokens=64,
        idle_timeout=1.0,
    ) as handle:
        yield handle


def client(gateway: GatewayHandle, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def sim_count(sim: SimHandle, counter: str = "started") -> int:
    """One of the sim's counters (`GET /_sim/stats`): generations started, cancelled..."""
    stats: dict[str, Any] = httpx.get(f"{sim.url}/_sim/stats", timeout=5).json()
    return int(stats[counter])


def sim_fault(sim: SimHandle, mode: str) -> None:
    httpx.post(f"{sim.url}/_sim/fault", json={"mode": mode}, timeout=5).raise_for_status()


def test_chat_completions_stream_and_whole_answers_with_usage(
    gateway: GatewayHandle, redis_server: str
) -> None:
    """A streamed chat completion gives text and, asked for, a usage chunk; one not asked for
    gets none; a whole answer carries its usage."""
    sdk = client(gateway, create_key(redis_server, "chat-streams"))
    chunks = list(
        sdk.chat.completions.create(
            model=MODEL, messages=HI, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    plain = list(sdk.chat.completions.create(model=MODEL, messages=HI, stream=True))
    whole = sdk.chat.completions.create(model=MODEL, messages=HI)
    assert text.startswith("You said: hi")
    assert len(usage) == 1
    assert usage[0].completion_tokens > 0
    assert all(c.usage is None for c in plain)
    assert whole.choices[0].message.content
    assert whole.usage is not None
    assert whole.usage.completion_tokens > 0


def test_responses_stream_whole_and_follow_up(gateway: GatewayHandle, redis_server: str) -> None:
    """The SDK's stream helper builds the final response (text, usage) from the relayed
    events; a whole response too; a follow-up continues it; another key cannot."""
    sdk = client(gateway, create_key(redis_server, "responses"))
    with sdk.responses.stream(model=MODEL, input="hello") as stream:
        final = stream.get_final_response()
    whole = sdk.responses.create(model=MODEL, input="again")
    follow_up = sdk.responses.create(model=MODEL, input="more", previous_response_id=final.id)
    stranger = client(gateway, create_key(redis_server, "stranger", lane="member"))
    with pytest.raises(openai.NotFoundError) as refused:
        stranger.responses.create(model=MODEL, input="mine?", previous_response_id=final.id)
    assert final.output_text.startswith("You said: hello")
    assert final.usage is not None
    assert final.usage.output_tokens > 0
    assert whole.output_text.startswith("You said: again")
    assert follow_up.output_text.startswith("You said: more")
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_bad_revoked_and_missing_keys_are_401s_that_reach_nothing(
    gateway: GatewayHandle, sim: SimHandle, redis_server: str
) -> None:
    """A stranger's key, a malformed one, none at all and a revoked one: AuthenticationError
    in OpenAI's shape, and the sim starts no generation."""
    key = create_key(redis_server, "soon-revoked")
    client(gateway, key).chat.completions.create(model=MODEL, messages=HI)
    revoke_key(redis_server, "soon-revoked")
    before = sim_count(sim)
    for bad in (new_key(), "not-a-key", key):
        sdk = client(gateway, bad)
        with pytest.raises(openai.AuthenticationError) as refused:
            eventually_refused(sdk)
        assert refused.value.code == "invalid_api_key"
    bare = httpx.post(f"{gateway.url}/v1/responses", json={"input": "hi"}, timeout=5)
    assert bare.status_code == 401
    assert bare.json()["error"]["type"] == "invalid_request_error"
    assert sim_count(sim) == before


def eventually_refused(sdk: openai.OpenAI) -> None:
    """Chat until refused (a revoked key is refused within the key cache's half second)."""
    for _ in range(20):
        sdk.chat.completions.create(model=MODEL, messages=HI)
        threading.Event().wait(0.1)


BAD_REQUESTS = (
    ({"model": "no-such-model"}, openai.NotFoundError, "model"),
    ({"temperature": 5}, openai.BadRequestError, "temperature"),
    ({"n": 3}, openai.BadRequestError, "n"),
    ({"max_tokens": 0}, openai.BadRequestError, "max_tokens"),
)


def test_a_bad_request_is_a_typed_error_naming_its_field(
    gateway: GatewayHandle, sim: SimHandle, redis_server: str
) -> None:
    """A model the server does not list is a 404 model_not_found; a value out of range a 400;
    each names the field, and nothing reaches the sim."""
    sdk = client(gateway, create_key(redis_server, "bad-requests"))
    before = sim_count(sim)
    for extra, status, param in BAD_REQUESTS:
        with pytest.raises(status) as refused:
            sdk.chat.completions.create(messages=HI, **{"model": MODEL, **extra})  # type: ignore[call-overload]
        assert refused.value.body["param"] == param  # type: ignore[index]
    assert sim_count(sim) == before


def test_an_unknown_parameter_is_refused_by_name(gateway: GatewayHandle, redis_server: str) -> None:
    """A field the gateway does not know is a 400 naming it, not passed on unread."""
    key = create_key(redis_server, "unknown-field")
    answer = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        json={"model": MODEL, "messages": HI, "temprature": 0.2},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "temprature"
    assert "unknown parameter" in answer.json()["error"]["message"]


def test_the_keys_request_window_is_a_429_naming_it(
    gateway: GatewayHandle, redis_server: str
) -> None:
    """A key made with --requests 2 gets a RateLimitError on its third request, naming the
    key's limit and when to come back."""
    sdk = client(gateway, create_key(redis_server, "two-a-window", "--requests", "2"))
    for _ in range(2):
        sdk.responses.create(model=MODEL, input="hi")
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.responses.create(model=MODEL, input="hi")
    error = refused.value.body
    assert error["limit"] == "key"  # type: ignore[index]
    assert error["type"] == "requests"  # type: ignore[index]
    assert int(refused.value.response.headers["Retry-After"]) >= 1


def test_the_answers_token_cap_is_the_keys_setting(
    gateway: GatewayHandle, redis_server: str
) -> None:
    """max_tokens above LLMGW_KEY_MAX_OUTPUT_TOKENS (64 here) is lowered to it, and an absent
    one is it: the sim, which answers 200 tokens unless told less, answers 64."""
    sdk = client(gateway, create_key(redis_server, "capped"))
    asked_more = sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=100_000)
    asked_none = sdk.responses.create(model=MODEL, input="hi")
    asked_less = sdk.responses.create(model=MODEL, input="hi", max_output_tokens=20)
    assert asked_more.usage is not None
    assert asked_none.usage is not None
    assert asked_less.usage is not None
    assert asked_more.usage.completion_tokens == 64
    assert asked_none.usage.output_tokens == 64
    assert asked_less.usage.output_tokens == 20


def test_a_token_window_refuses_what_can_never_fit_and_what_does_not_fit_now(
    gateway: GatewayHandle, redis_server: str
) -> None:
    """A key with --tokens 100: a request reserving more than 100 is a 400 too_many_tokens;
    while one reserving 60 streams, a second is a 429 naming the token limit."""
    key = create_key(redis_server, "hundred-tokens", "--tokens", "100")
    sdk = client(gateway, key)
    with pytest.raises(openai.BadRequestError) as never:  # 100 input tokens and the cap, 64
        sdk.chat.completions.create(model=MODEL, messages=LONG)
    stream = sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=60, stream=True)
    with stream:
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as now:
            sdk.chat.completions.create(model=MODEL, messages=HI, max_tokens=60)
    assert never.value.code == "too_many_tokens"
    assert now.value.body["limit"] == "tokens"  # type: ignore[index]
    assert now.value.body["type"] == "tokens"  # type: ignore[index]


def test_a_stream_that_stalls_ends_in_an_error_the_sdk_raises(
    gateway: GatewayHandle, sim: SimHandle, redis_server: str
) -> None:
    """The model stops sending mid-answer: after the idle deadline the client gets an error
    event in OpenAI's shape, which the SDK raises as APIError, on both APIs."""
    sdk = client(gateway, create_key(redis_server, "stalled"))
    sim_fault(sim, "stall")
    try:
        with pytest.raises(openai.APIError) as chat:
            list(sdk.chat.completions.create(model=MODEL, messages=HI, stream=True))
        with pytest.raises(openai.APIError) as responses:
            list(sdk.responses.create(model=MODEL, input="hi", stream=True))
    finally:
        sim_fault(sim, "ok")
    assert "stopped sending" in chat.value.message
    assert "stopped sending" in responses.value.message


def test_a_client_that_leaves_cancels_the_generation(
    gateway: GatewayHandle, sim: SimHandle, redis_server: str
) -> None:
    """Closing the stream after its first chunk stops the sim's generation."""
    key = create_key(redis_server, "leaver")
    cancelled = sim_count(sim, "cancelled")
    body = {"model": MODEL, "messages": HI, "stream": True, "max_tokens": 60}
    headers = {"Authorization": f"Bearer {key}"}
    sim_fault(sim, "slow")
    try:
        with httpx.stream(
            "POST", f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=10
        ) as answer:
            assert answer.status_code == 200
            next(answer.iter_raw())
        assert eventually(lambda: sim_count(sim, "cancelled") > cancelled, timeout=5)
    finally:
        sim_fault(sim, "ok")


def test_a_client_that_leaves_a_whole_answer_cancels_it_too(
    gateway: GatewayHandle, sim: SimHandle, redis_server: str
) -> None:
    """A client that gives up on an answer not streamed (its own timeout) stops the sim's
    generation too, and its place is given back: the key's next chat is admitted."""
    key = create_key(redis_server, "impatient", "--concurrency", "1")
    cancelled = sim_count(sim, "cancelled")
    body = {"model": MODEL, "messages": HI}
    headers = {"Authorization": f"Bearer {key}"}
    sim_fault(sim, "slow")
    try:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                f"{gateway.url}/v1/chat/completions", json=body, headers=headers, timeout=0.1
            )  # the slow sim takes 0.3 s for the answer's 64 tokens
        assert eventually(lambda: sim_count(sim, "cancelled") > cancelled, timeout=5)
    finally:
        sim_fault(sim, "ok")
    again = client(gateway, key).chat.completions.create(model=MODEL, messages=HI, max_tokens=5)
    assert again.choices[0].message.content
