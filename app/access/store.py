"""The keys in Redis, by their HMAC only, with a short in-process cache in front of the lookups.

Layout (one hash tag, so a cluster keeps both in one slot):
`{prefix}:api-keys`      hash: HMAC of a key -> its record (JSON: name, lane, limits, created)
`{prefix}:api-key-names` hash: name -> HMAC, so names stay unique and a key is revoked by name
"""

from __future__ import annotations

import time
from importlib import resources
from typing import TYPE_CHECKING

import msgspec

from app.access.keys import ApiKey, KeyLimits, Lane, key_digest, new_key

if TYPE_CHECKING:
    from collections.abc import Callable

    import redis.asyncio as aioredis

CREATE_SCRIPT = resources.files("app.access").joinpath("lua/create_key.lua").read_text()
REVOKE_SCRIPT = resources.files("app.access").joinpath("lua/revoke_key.lua").read_text()
# A revoked key is refused on every replica once its cached answer is this old: well within 1 s.
CACHE_SECONDS = 0.5
# Answers kept at most; random keys sprayed at the gateway cannot grow the cache past this.
CACHE_ENTRIES = 4096


class DuplicateName(Exception):
    """A key of that name exists already."""


class KeyStore:
    """Create, list, revoke and look up keys. Lookups are cached for CACHE_SECONDS, unknown keys
    too, so a client retrying a revoked key costs Redis one read per replica and interval."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        prefix: str,
        secret: bytes,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._secret = secret
        self._clock = clock
        self._records = f"{{{prefix}}}:api-keys"
        self._names = f"{{{prefix}}}:api-key-names"
        self._create = redis.register_script(CREATE_SCRIPT)
        self._revoke = redis.register_script(REVOKE_SCRIPT)
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._decoder = msgspec.json.Decoder(ApiKey)

    async def create(self, name: str, lane: Lane, limits: KeyLimits) -> str:
        """Record a new key and return it: the only time it exists outside its holder's hands."""
        key = new_key()
        record = ApiKey(name, lane, limits, created=int(time.time()))
        digest = key_digest(self._secret, key)
        args: list[str | bytes] = [name, digest, msgspec.json.encode(record)]
        if not await self._create(keys=[self._records, self._names], args=args):
            raise DuplicateName(name)
        return key

    async def revoke(self, name: str) -> bool:
        """Forget the key of that name; False when there was none."""
        return bool(await self._revoke(keys=[self._records, self._names], args=[name]))

    async def list(self) -> list[ApiKey]:
        """Every key's record, by name."""
        records = [self._decoder.decode(raw) for raw in await self._redis.hvals(self._records)]
        return sorted(records, key=lambda record: record.name)

    async def find(self, key: str) -> ApiKey | None:
        """The record of a key, None when unknown or revoked; Redis errors are raised."""
        digest = key_digest(self._secret, key)
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        raw = await self._redis.hget(self._records, digest)
        record = None if raw is None else self._decoder.decode(raw)
        self._remember(digest, now, record)
        return record

    def _remember(self, digest: str, now: float, record: ApiKey | None) -> None:
        if len(self._cache) >= CACHE_ENTRIES:
            self._cache = {d: e for d, e in self._cache.items() if now - e[0] < CACHE_SECONDS}
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache.clear()
        self._cache[digest] = (now, record)
