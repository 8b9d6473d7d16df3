"""Checking a request's key against a real Redis: the header's forms, the short cache that
bounds how long a revoked key lives, a replica with another secret, and Redis down."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

import pytest
import redis.asyncio as aioredis
from keys_support import KEY_SECRET
from support import free_port

from app.access.auth import authenticate
from app.access.keys import ApiKey, KeyLimits, Lane, key_digest, new_key, valid_name, well_formed
from app.access.store import CACHE_SECONDS, DuplicateName, KeyStore
from app.errors import KeysUnavailable, Unauthorized
from app.settings import SettingsError, load_settings


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def key_store(url: str, clock: Clock | None = None, secret: str = KEY_SECRET) -> KeyStore:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=1)
    return KeyStore(client, prefix="llmgw", secret=secret.encode(), clock=clock or Clock())


def test_keys_are_random_well_formed_and_hashed_with_the_secret() -> None:
    """New keys differ and have the key's shape; the digest is HMAC-SHA256 under the secret."""
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(well_formed(key) for key in keys)
    key = keys.pop()
    expected = hmac.new(b"s" * 32, key.encode(), hashlib.sha256).hexdigest()
    assert key_digest(b"s" * 32, key) == expected
    assert key_digest(b"t" * 32, key) != expected
    assert not well_formed(key + "x")
    assert not well_formed("sk-" + key[6:])


@pytest.mark.parametrize(
    ("name", "valid"),
    [("a", True), ("x" * 32, True), ("open-webui_2.0", True), ("", False), ("x" * 33, False),
     ("Laptop", False), ("my tool", False), ("tool/1", False), ("café", False)],
)  # fmt: skip
def test_names_are_1_to_32_of_a_small_alphabet(name: str, valid: bool) -> None:
    """Names fit a metric label and a log line as they are."""
    assert valid_name(name) is valid


def test_a_short_secret_is_refused_at_start_without_showing_it() -> None:
    """LLMGW_KEY_SECRET under 32 characters stops the gateway, naming the variable only."""
    with pytest.raises(SettingsError, match="LLMGW_KEY_SECRET") as caught:
        load_settings(key_secret="x" * 30 + "!")
    assert "xxxx" not in str(caught.value)
    assert load_settings(key_secret="x" * 32).key_secret is not None


def test_a_key_finds_its_record_until_revoked(redis_url: str) -> None:
    """create, find, list, revoke: the record travels, the key does not."""

    async def scenario() -> tuple[ApiKey | None, list[ApiKey], ApiKey | None]:
        clock = Clock()
        store = key_store(redis_url, clock)
        key = await store.create("webui", Lane.MEMBER, KeyLimits(requests=10, tokens=500))
        found = await store.find(key)
        listed = await store.list()
        await store.revoke("webui")
        clock.now += CACHE_SECONDS
        return found, listed, await store.find(key)

    found, listed, after = asyncio.run(scenario())
    assert found is not None
    assert (found.name, found.lane, found.limits) == ("webui", "member", KeyLimits(10, 500, 0))
    assert listed == [found]
    assert after is None


def test_a_revoked_key_lives_at_most_the_cache_interval(redis_url: str) -> None:
    """Another replica's cached answer stands for CACHE_SECONDS after the revoke, not longer."""

    async def scenario() -> list[bool]:
        clock = Clock()
        replica, admin = key_store(redis_url, clock), key_store(redis_url)
        key = await admin.create("laptop", Lane.OWNER, KeyLimits())
        seen = [await replica.find(key) is not None]
        await admin.revoke("laptop")
        clock.now += CACHE_SECONDS * 0.9
        seen.append(await replica.find(key) is not None)
        clock.now += CACHE_SECONDS * 0.1
        seen.append(await replica.find(key) is not None)
        return seen

    assert asyncio.run(scenario()) == [True, True, False]


def test_names_are_unique(redis_url: str) -> None:
    """A second key of the same name is refused and the first still works."""

    async def scenario() -> ApiKey | None:
        store = key_store(redis_url)
        key = await store.create("tool", Lane.OWNER, KeyLimits())
        with pytest.raises(DuplicateName):
            await store.create("tool", Lane.MEMBER, KeyLimits())
        return await store.find(key)

    found = asyncio.run(scenario())
    assert found is not None
    assert found.lane == "owner"


def test_a_replica_with_another_secret_knows_no_key(redis_url: str) -> None:
    """Keys are found by their HMAC: the same secret on every replica, or no key works."""

    async def scenario() -> ApiKey | None:
        key = await key_store(redis_url).create("tool", Lane.OWNER, KeyLimits())
        return await key_store(redis_url, secret="another-secret-of-forty-characters-00000").find(
            key
        )

    assert asyncio.run(scenario()) is None


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token {key}", "{key}",
     "Bearer not-a-key", "Bearer {key}x", "Bearer {stranger}"],
)  # fmt: skip
def test_missing_malformed_or_unknown_keys_are_unauthorized(
    redis_url: str, header: str | None
) -> None:
    """Every header but `Bearer <a key we know>` is a 401, whatever it looks like."""

    async def scenario() -> None:
        store = key_store(redis_url)
        key = await store.create("tool", Lane.OWNER, KeyLimits())
        given = None if header is None else header.format(key=key, stranger=new_key())
        with pytest.raises(Unauthorized):
            await authenticate(store, given)

    asyncio.run(scenario())


def test_the_bearer_scheme_is_case_insensitive(redis_url: str) -> None:
    """RFC 6750 schemes ignore case, and spaces around the key do not matter."""

    async def scenario() -> list[str]:
        store = key_store(redis_url)
        key = await store.create("tool", Lane.OWNER, KeyLimits())
        headers = [f"Bearer {key}", f"bearer {key}", f"BEARER  {key} "]
        return [(await authenticate(store, header)).name for header in headers]

    assert asyncio.run(scenario()) == ["tool"] * 3


def test_without_a_secret_no_key_is_accepted() -> None:
    """No LLMGW_KEY_SECRET: every keyed request is told keys are not configured."""
    with pytest.raises(Unauthorized, match="API keys are not configured"):
        asyncio.run(authenticate(None, f"Bearer {new_key()}"))


def test_redis_down_is_keys_unavailable_with_a_retry() -> None:
    """A Redis that refuses: 503 keys_unavailable, retry after 1 s, not a 401 or a 500."""
    store = key_store(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(KeysUnavailable) as caught:
        asyncio.run(authenticate(store, f"Bearer {new_key()}"))
    assert (caught.value.status_code, caught.value.retry_after) == (503, 1)
