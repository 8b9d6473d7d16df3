"""Our Lua scripts' own way to Redis (packed by us, sent on a pooled connection) on a real
redis-server: the same bytes redis-py would send, replies that time out or are cancelled
never read by the next command, and the embedded fakeredis served too."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import fakeredis
import pytest
import redis.asyncio as aioredis
from redis.exceptions import TimeoutError as RedisTimeoutError
from support import SLOW_SCRIPT

from app.admission.decision import Conversation, Limit, Limits
from app.admission.redis_admitter import RedisAdmitter
from app.admission.redis_pool import LeanConnectionPool
from app.admission.redis_script import LuaScript

ECHO = "return {KEYS[1], ARGV[1], ARGV[2], #KEYS, #ARGV}"


def one_connection_client(url: str, socket_timeout: float = 5) -> aioredis.Redis:
    """A client with a single connection, so a half-read one would be handed out again."""
    pool = LeanConnectionPool.from_url(
        url, max_connections=1, timeout=5, socket_timeout=socket_timeout
    )
    return aioredis.Redis(connection_pool=pool)


def test_keys_and_arguments_arrive_as_redis_py_sends_them(redis_url: str) -> None:
    """Text (accented too), numbers and empty strings reach the script byte for byte."""

    async def scenario() -> Any:
        redis = one_connection_client(redis_url)
        reply = await LuaScript(redis, ECHO)(["clé:ü"], [-12345678901, ""])
        await redis.aclose()
        return reply

    assert asyncio.run(scenario()) == [
        "clé:ü".encode(),
        b"-12345678901",
        b"",
        1,
        2,
    ]


def test_a_conversation_named_in_any_script_continues_for_its_owner(redis_url: str) -> None:
    """An owner stored by one route and checked by the admission script matches byte for
    byte, whatever the alphabet of the response id and the owner."""
    limits = Limits(global_limit=100, visitor_limit=100, inflight_cap=100)

    async def scenario() -> list[tuple[bool, Limit]]:
        redis = one_connection_client(redis_url)
        admitter = RedisAdmitter(redis, prefix="llmgw", window_seconds=30, lease_seconds=30)
        await admitter.remember_conversation(Conversation("réponse-1", "visiteur-é"))
        decisions = [
            await admitter.admit(["a"], limits, continues="réponse-1", owner="visiteur-é"),
            await admitter.admit(["b"], limits, continues="réponse-1", owner="visiteur-e"),
        ]
        await redis.aclose()
        return [(d.admitted, d.limit) for d in decisions]

    owner, other = asyncio.run(scenario())
    assert owner[0] is True
    assert other == (False, Limit.CONVERSATION)


def test_a_reply_that_times_out_is_not_read_by_the_next_call(redis_url: str) -> None:
    """A script whose reply takes longer than the socket timeout fails with a Redis
    TimeoutError, and the next call gets its own reply, not the late one."""

    async def scenario() -> Any:
        redis = one_connection_client(redis_url, socket_timeout=0.1)
        with pytest.raises(RedisTimeoutError):
            await LuaScript(redis, SLOW_SCRIPT)([], [])
        await asyncio.sleep(0.4)  # the late reply has arrived by now
        reply = await LuaScript(redis, ECHO)(["key"], ["fresh", 1])
        await redis.aclose()
        return reply

    assert asyncio.run(scenario())[1] == b"fresh"


def test_a_cancelled_call_leaves_no_reply_behind(redis_url: str) -> None:
    """A call cancelled while it waits for its reply (the visitor left) does not leave that
    reply for the next call on the same connection."""

    async def scenario() -> Any:
        redis = one_connection_client(redis_url)
        slow = asyncio.create_task(LuaScript(redis, SLOW_SCRIPT)([], []))
        await asyncio.sleep(0.05)
        slow.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await slow
        await asyncio.sleep(0.4)
        reply = await LuaScript(redis, ECHO)(["key"], ["fresh", 1])
        await redis.aclose()
        return reply

    assert asyncio.run(scenario())[1] == b"fresh"


def test_the_embedded_fakeredis_runs_the_scripts() -> None:
    """Without a redis-server binary the gateway admits through fakeredis: same decisions,
    and scripts it forgot are loaded again."""
    limits = Limits(global_limit=5, visitor_limit=2, inflight_cap=100)

    async def scenario() -> list[bool]:
        redis = fakeredis.FakeAsyncRedis()
        admitter = RedisAdmitter(redis, prefix="llmgw", window_seconds=30, lease_seconds=30)
        admitted = [(await admitter.admit(["a"], limits)).admitted for _ in range(3)]
        await redis.script_flush()
        admitted.append((await admitter.admit(["b"], limits)).admitted)
        await redis.aclose()
        return admitted

    assert asyncio.run(scenario()) == [True, True, False, True]
