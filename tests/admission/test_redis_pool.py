"""The gateway's Redis connection pool on a real redis-server: connections reused, bursts
bounded and queued, waits and reads given up in time, and Redis restarts survived."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import HIREDIS_AVAILABLE
from support import free_port, start_redis, stop_process

from app.admission.redis_pool import LeanConnectionPool

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

NAME = "pool-under-test"


def client(url: str, **settings: Any) -> aioredis.Redis:
    """A client on the pool under test; its connections carry a name of this client's own (NAME
    and a random tail), so the server counts them and no earlier test's closing ones."""
    options: dict[str, Any] = {"max_connections": 4, "timeout": 5, "socket_timeout": 5}
    options.update(settings)
    name = f"{NAME}-{secrets.token_hex(4)}"
    return aioredis.Redis(
        connection_pool=LeanConnectionPool.from_url(url, client_name=name, **options)
    )


def pool_of(redis: aioredis.Redis) -> LeanConnectionPool:
    pool = redis.connection_pool
    assert isinstance(pool, LeanConnectionPool)
    return pool


def run(scenario: Callable[[], Awaitable[object]]) -> Any:
    return asyncio.run(scenario())  # type: ignore[arg-type]


async def ping(redis: aioredis.Redis) -> bool:
    return bool(await redis.ping())


async def named_connections(redis: aioredis.Redis) -> int:
    """How many connections the server has from clients of the pool under test."""
    listing = await redis.client_list()
    name = redis.connection_pool.connection_kwargs["client_name"]
    return sum(entry["name"] == name for entry in listing)


def test_replies_are_parsed_by_hiredis() -> None:
    """hiredis (a dependency, `redis[hiredis]`) is importable, so redis-py parses replies in
    C: without it redis-py quietly falls back to its much slower pure-Python parser."""
    assert HIREDIS_AVAILABLE


def test_one_connection_serves_sequential_commands(redis_url: str) -> None:
    """Commands one after another reuse one connection instead of opening new ones."""

    async def scenario() -> set[int]:
        redis = client(redis_url)
        ids = {await redis.client_id() for _ in range(20)}
        await redis.aclose()
        return ids

    assert len(run(scenario)) == 1


def test_a_burst_waits_for_one_of_few_connections(redis_url: str) -> None:
    """Ten requests of three commands each, at once, on a pool of two: all are answered,
    over two connections only, even though each asks again as soon as it gives one back."""

    async def request(redis: aioredis.Redis) -> list[Any]:
        return [await redis.blpop(["nothing"], 0.02) for _ in range(3)]

    async def scenario() -> tuple[list[Any], int]:
        redis = client(redis_url, max_connections=2)
        replies = await asyncio.gather(*(request(redis) for _ in range(10)))
        opened = await named_connections(redis)
        await redis.aclose()
        return replies, opened

    replies, opened = run(scenario)
    assert replies == [[None] * 3] * 10
    assert opened == 2


def test_waiting_for_a_connection_gives_up(redis_url: str) -> None:
    """With every connection held, a command fails after the pool's timeout instead of
    hanging, and the pool works again once the connection is back."""

    async def scenario() -> bool:
        redis = client(redis_url, max_connections=1, timeout=0.2)
        pool = pool_of(redis)
        held = await pool.get_connection()
        with pytest.raises(RedisConnectionError, match="No connection available"):
            await redis.ping()
        await pool.release(held)
        answered = bool(await redis.ping())
        await redis.aclose()
        return answered

    assert run(scenario) is True


@pytest.mark.parametrize("handed_over_first", [False, True])
def test_a_cancelled_wait_takes_no_connection(redis_url: str, *, handed_over_first: bool) -> None:
    """A request cancelled while it waits for a connection leaves the connection to others,
    even when the connection was handed to it just before the cancellation."""

    async def scenario() -> bool:
        redis = client(redis_url, max_connections=1, timeout=1)
        pool = pool_of(redis)
        held = await pool.get_connection()
        waiting = asyncio.create_task(ping(redis))
        await asyncio.sleep(0.05)
        if handed_over_first:
            await pool.release(held)
            waiting.cancel()  # it holds the connection but has not run since
        else:
            waiting.cancel()
            await pool.release(held)
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        answered = bool(await redis.ping())
        await redis.aclose()
        return answered

    assert run(scenario) is True


def test_waiting_requests_are_served_in_order(redis_url: str) -> None:
    """A released connection goes to the request that waited longest."""

    async def scenario() -> list[int]:
        redis = client(redis_url, max_connections=1)
        pool = pool_of(redis)
        held = await pool.get_connection()
        order: list[int] = []

        async def request(number: int) -> None:
            await redis.ping()
            order.append(number)

        tasks = []
        for number in range(5):
            tasks.append(asyncio.create_task(request(number)))
            await asyncio.sleep(0.01)  # queue them one after another
        await pool.release(held)
        await asyncio.gather(*tasks)
        await redis.aclose()
        return order

    assert run(scenario) == [0, 1, 2, 3, 4]


def test_a_failed_connect_gives_its_place_back() -> None:
    """A connection that cannot be made does not stay counted as busy."""
    url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there

    async def scenario() -> list[str]:
        redis = client(url, max_connections=1, timeout=0.2, socket_connect_timeout=1)
        errors = []
        for _ in range(3):
            with pytest.raises(RedisConnectionError) as caught:
                await redis.ping()
            errors.append(str(caught.value))
        await redis.aclose()
        return errors

    assert not [error for error in run(scenario) if "No connection available" in error]


def test_a_read_gives_up_after_the_socket_timeout(redis_url: str) -> None:
    """A reply that does not come within socket_timeout is an error, not a hang, and the
    connection it was read on is not reused half-read."""

    async def scenario() -> tuple[bool, Any]:
        redis = client(redis_url, max_connections=1, socket_timeout=0.2)
        with pytest.raises(RedisTimeoutError):
            await redis.blpop(["nothing"], 5)
        await redis.rpush("something", "value")  # a stale BLPOP reply would pop this
        answered = bool(await redis.ping())
        left = await redis.lrange("something", 0, -1)
        await redis.aclose()
        return answered, left

    assert run(scenario) == (True, [b"value"])


def test_connections_come_back_after_redis_restarts() -> None:
    """After a Redis restart the pool's dead connection is replaced: at most one command
    fails, and the next ones are answered by the new server."""
    port = free_port()
    servers = [start_redis(port)]

    async def failures_before_an_answer(redis: aioredis.Redis) -> int:
        for failures in range(3):
            try:
                await redis.ping()
            except RedisConnectionError:
                continue
            return failures
        return 3

    async def scenario() -> tuple[int, Any]:
        redis = client(f"redis://127.0.0.1:{port}/0", max_connections=1)
        await redis.set("before", 1)
        stop_process(servers[0])
        servers.append(start_redis(port))
        failures = await failures_before_an_answer(redis)
        left = await redis.get("before")  # None: the new, empty server answered
        await redis.aclose()
        return failures, left

    try:
        assert run(scenario) in {(0, None), (1, None)}
    finally:
        for server in servers:
            stop_process(server)


def test_the_password_in_the_url_is_used() -> None:
    """A Redis that wants a password gets the one in the URL, on every new connection."""
    port = free_port()
    server = start_redis(port, "--requirepass", "s3cret")

    async def scenario() -> list[Any]:
        redis = client(f"redis://:s3cret@127.0.0.1:{port}/0", max_connections=2)
        replies = await asyncio.gather(*(redis.blpop(["nothing"], 0.02) for _ in range(4)))
        await redis.aclose()
        return replies

    try:
        assert run(scenario) == [None] * 4
    finally:
        stop_process(server)
