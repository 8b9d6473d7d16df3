"""Conversations' transcripts on a real redis-server: saved turn by turn, each conversation
bounded by tokens and bytes with its newest turns kept, gone after its seconds, and Redis
failing never failing a chat. The embedded fakeredis runs the same script."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import fakeredis
import msgspec
import pytest
from support import free_port

from app.chat.openai_bodies import ResponsesBody
from app.chat.tokens import estimate
from app.chat.transcripts import Transcripts
from app.server import services

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    import redis
    import redis.asyncio as aioredis

    Scenario = Callable[[Transcripts], Awaitable[Any]]

ROOMY = {"seconds": 600, "max_tokens": 10_000, "max_bytes": 100_000}


def user(content: str) -> dict[str, str]:
    return {"role": "user", "content": content}


def assistant(content: str) -> dict[str, str]:
    return {"role": "assistant", "content": content}


def run(client: aioredis.Redis, scenario: Scenario, **caps: int) -> Any:
    """Run a scenario on transcripts kept in `client`, with these caps (roomy ones else)."""

    async def go() -> Any:
        try:
            return await scenario(Transcripts(client, prefix="llmgw", **{**ROOMY, **caps}))
        finally:
            await client.aclose()

    return asyncio.run(go())


def on_redis(url: str, scenario: Scenario, **caps: int) -> Any:
    """Run a scenario on the Redis at `url`, through the gateway's own client."""
    return run(services.redis_client(url), scenario, **caps)


THREE_TURNS = [
    user("Hello"),
    assistant("Hi, what can I do?"),
    user("Name a colour"),
    assistant("Blue."),
    user("Another"),
    assistant("Green."),
]


async def three_turns(transcripts: Transcripts) -> list[dict[str, str]] | None:
    await transcripts.save("resp_1", None, [user("Hello")], "Hi, what can I do?")
    await transcripts.save("resp_2", "resp_1", [user("Name a colour")], "Blue.")
    await transcripts.save("resp_3", "resp_2", [user("Another")], "Green.")
    return await transcripts.load("resp_3")


def test_a_saved_turn_loads_as_its_messages_then_the_answer(redis_url: str) -> None:
    """A first turn's transcript is the visitor's messages, in order, and the answer."""
    turn = [{"role": "system", "content": "Be brief."}, user("Héllo 👋")]

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        await transcripts.save("resp_1", None, turn, "Hi!")
        return await transcripts.load("resp_1")

    assert on_redis(redis_url, scenario) == [*turn, assistant("Hi!")]


def test_a_chain_of_turns_holds_the_whole_conversation(redis_url: str) -> None:
    """Each response's transcript is its previous one's and its own turn."""
    assert on_redis(redis_url, three_turns) == THREE_TURNS


def test_the_embedded_redis_keeps_transcripts_too() -> None:
    """Without a redis-server (the embedded fakeredis), the same script runs."""
    assert run(fakeredis.FakeAsyncRedis(), three_turns) == THREE_TURNS


def test_a_redis_that_forgot_the_script_still_saves(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """After a restart or SCRIPT FLUSH, the next save sends the script again and is kept."""

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        await transcripts.save("resp_1", None, [user("Hello")], "Hi!")
        redis_client.script_flush()
        await transcripts.save("resp_2", "resp_1", [user("Again")], "Hi again!")
        return await transcripts.load("resp_2")

    assert on_redis(redis_url, scenario) == [
        user("Hello"),
        assistant("Hi!"),
        user("Again"),
        assistant("Hi again!"),
    ]


def test_a_transcript_is_valid_input_for_the_responses_api(redis_url: str) -> None:
    """What is sent instead of previous_response_id passes as the `input` of a Responses body."""
    messages = on_redis(redis_url, three_turns)
    body = msgspec.json.decode(json.dumps({"input": messages}), type=ResponsesBody)
    assert body.input == messages


def turns_of(size: int, count: int) -> list[str]:
    """`count` answers of `size` characters, each told apart by its first letter."""
    return [chr(ord("a") + index) * size for index in range(count)]


async def saved_in_turns(transcripts: Transcripts, answers: list[str]) -> list[dict[str, str]]:
    """Save one turn per answer, each continuing the last, and load the last transcript."""
    previous = None
    for number, answer in enumerate(answers):
        await transcripts.save(f"resp_{number}", previous, [user("go on")], answer)
        previous = f"resp_{number}"
    loaded = await transcripts.load(f"resp_{len(answers) - 1}")
    assert loaded is not None
    return loaded


def characters(messages: list[dict[str, str]]) -> int:
    return sum(len(message["content"]) for message in messages)


def test_a_long_conversation_keeps_its_newest_turns_within_the_tokens(redis_url: str) -> None:
    """Over the token cap, the oldest turns go first: the newest stay, at most the cap."""
    answers = turns_of(150, 6)  # 157 characters a turn, 100 tokens (400 characters) kept

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]]:
        return await saved_in_turns(transcripts, answers)

    kept = on_redis(redis_url, scenario, max_tokens=100)
    assert kept == [user("go on"), assistant(answers[-2]), user("go on"), assistant(answers[-1])]
    assert estimate(characters(kept)) <= 100


def test_a_long_conversation_keeps_its_newest_turns_within_the_bytes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Over the byte cap (reached first by text of two bytes a character), the oldest turns
    go first: the newest stay, and what is stored is at most the cap."""
    answers = [letter * 200 for letter in "éèêëàâ"]  # 400 bytes a turn's answer

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]]:
        return await saved_in_turns(transcripts, answers)

    kept = on_redis(redis_url, scenario, max_bytes=1_024)
    assert [message["content"] for message in kept[1::2]] == answers[-2:]
    assert len(redis_client.get("{llmgw}:transcript:resp_5") or b"") <= 1_024


def test_a_turn_over_the_caps_alone_keeps_its_newest_words(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A turn bigger than the caps is cut to them, its oldest characters first: the answer
    whole, and the end of the visitor's message before it."""
    question = "".join(f"{number:>4}" for number in range(1_000))  # 4,000 characters

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        await transcripts.save("resp_1", None, [user("first"), user(question)], "Done.")
        return await transcripts.load("resp_1")

    kept = on_redis(redis_url, scenario, max_tokens=100, max_bytes=1_024)
    assert kept is not None
    assert [message["role"] for message in kept] == ["user", "assistant"]
    assert question.endswith(kept[0]["content"])
    assert kept[-1] == assistant("Done.")
    assert estimate(characters(kept)) <= 100
    assert len(redis_client.get("{llmgw}:transcript:resp_1") or b"") <= 1_024


def test_a_transcript_lasts_the_configured_seconds(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """Each turn's transcript is kept for the configured seconds from its own save."""
    on_redis(redis_url, three_turns, seconds=900)
    for number in (1, 2, 3):
        assert 890 < redis_client.ttl(f"{{llmgw}}:transcript:resp_{number}") <= 900


def test_a_previous_transcript_gone_starts_afresh(redis_url: str) -> None:
    """A turn continuing a response whose transcript is gone (expired, never saved) starts a
    transcript of its own turn."""

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        await transcripts.save("resp_2", "resp_gone", [user("And then?")], "Then this.")
        return await transcripts.load("resp_2")

    assert on_redis(redis_url, scenario) == [user("And then?"), assistant("Then this.")]


def test_a_response_never_saved_has_no_transcript(redis_url: str) -> None:
    """Loading a transcript nobody saved gives None."""

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        return await transcripts.load("resp_unknown")

    assert on_redis(redis_url, scenario) is None


@pytest.mark.parametrize("stored", [b"not json", b'{"chars":1,"messages":"no"}'])
def test_a_transcript_unreadable_is_none(
    redis_url: str, redis_client: redis.Redis, stored: bytes
) -> None:
    """Whatever else is found under a transcript's key loads as no transcript."""
    redis_client.set("{llmgw}:transcript:resp_1", stored)

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        return await transcripts.load("resp_1")

    assert on_redis(redis_url, scenario) is None


def test_redis_down_saves_nothing_and_fails_nothing() -> None:
    """With Redis unreachable, a save neither raises nor stores, and a load gives None."""

    async def scenario(transcripts: Transcripts) -> list[dict[str, str]] | None:
        await transcripts.save("resp_1", None, [user("Hello")], "Hi!")
        await transcripts.save("resp_2", "resp_1", [user("Again")], "Hi again!")
        return await transcripts.load("resp_2")

    assert on_redis(f"redis://127.0.0.1:{free_port()}/0", scenario) is None
