"""Who is calling: the key of `Authorization: Bearer <key>`, checked before any handler runs.
The key itself is never logged, stored or put in an answer; only its record travels on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from app.access.keys import well_formed
from app.errors import KeysUnavailable, Unauthorized

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.connection import ASGIConnection
    from litestar.handlers import BaseRouteHandler
    from litestar.types import Guard

    from app.access.keys import ApiKey
    from app.access.store import KeyStore

KEYS_RETRY_SECONDS = 1


async def authenticate(store: KeyStore | None, authorization: str | None) -> ApiKey:
    """The record of the key in an Authorization header, or Unauthorized (401) for a missing,
    malformed, unknown or revoked one; KeysUnavailable (503) when Redis cannot be asked."""
    if store is None:
        raise Unauthorized("API keys are not configured")
    scheme, _, key = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("an API key is needed: send Authorization: Bearer <key>")
    key = key.strip()
    if not well_formed(key):
        raise Unauthorized("invalid API key")
    try:
        record = await store.find(key)
    except (RedisError, OSError) as exc:
        raise KeysUnavailable(
            "API keys cannot be checked right now", retry_after=KEYS_RETRY_SECONDS
        ) from exc
    if record is None:
        raise Unauthorized("invalid API key")
    return record


def key_guard(store_of: Callable[[ASGIConnection[Any, Any, Any, Any]], KeyStore | None]) -> Guard:
    """A guard that lets a request through only with a valid key, and leaves its record in
    `connection.state.api_key` for the handler."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        authorization = connection.headers.get("authorization")
        connection.state.api_key = await authenticate(store_of(connection), authorization)

    return guard
