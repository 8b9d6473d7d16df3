"""The long-lived parts of a running gateway, made in the app's lifespan and closed in `finally`."""

from __future__ import annotations

import logging
import secrets
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis.asyncio as aioredis

from app.admission import Admitter
from app.chat_request import InputBounds
from app.embedded_redis import embedded_redis
from app.upstream import Timeouts, create_client
from app.visitor import VisitorIdentifier

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from app.settings import Settings

log = logging.getLogger("llmgw")


@dataclass(slots=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    admitter: Admitter
    identifier: VisitorIdentifier
    upstream: httpx.AsyncClient
    bounds: InputBounds
    timeouts: Timeouts


@asynccontextmanager
async def running_services(settings: Settings) -> AsyncIterator[Services]:
    """Open Redis (shared or embedded) and the upstream client; close both on the way out."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(_redis(settings))
        upstream = create_client(settings)
        stack.push_async_callback(upstream.aclose)
        admitter = Admitter(
            redis,
            prefix=settings.key_prefix,
            global_limit=settings.global_limit,
            visitor_limit=settings.visitor_limit,
            window_seconds=settings.window_seconds,
        )
        await admitter.load()
        hash_key = await _visitor_hash_key(redis, settings)
        yield Services(
            settings=settings,
            redis=redis,
            admitter=admitter,
            identifier=VisitorIdentifier(settings.trusted_proxies, hash_key),
            upstream=upstream,
            bounds=InputBounds(settings.max_input_chars, settings.max_messages),
            timeouts=Timeouts(
                connect=settings.connect_timeout,
                first_token=settings.first_token_timeout,
                idle=settings.idle_timeout,
                total=settings.total_timeout,
            ),
        )


@asynccontextmanager
async def _redis(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    if settings.redis_url is None:
        async with embedded_redis() as client:
            yield client
        return
    client = redis_client(settings.redis_url.get_secret_value())
    try:
        yield client
    finally:
        await client.aclose()


def redis_client(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool waits for a free connection under bursts instead of failing."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=2,
        socket_connect_timeout=2,
        socket_timeout=2,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


async def _visitor_hash_key(redis: aioredis.Redis, settings: Settings) -> bytes:
    """The configured key, or one shared through Redis so every replica hashes alike."""
    if settings.visitor_hash_key is not None:
        return settings.visitor_hash_key.get_secret_value().encode()
    name = f"{{{settings.key_prefix}}}:visitor-hash-key"
    await redis.set(name, secrets.token_hex(32), nx=True)
    key = await redis.get(name)
    if key is None:  # evicted between the two calls: this process keeps its own
        return secrets.token_bytes(32)
    return key if isinstance(key, bytes) else str(key).encode()
