"""Write the snapshot to Redis (a hash with a TTL) and announce it on a channel."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from probe.snapshot import hash_fields, to_json

if TYPE_CHECKING:
    import redis.asyncio
    from redis.typing import EncodableT

    from probe.snapshot import Snapshot

LOG = logging.getLogger("probe.publisher")
# The hash outlives this many publish intervals: a probe that stops is soon seen as stale.
TTL_INTERVALS = 3


def probe_key(prefix: str, host: str) -> str:
    """`{prefix}:probe:<host>`; the braces are a Redis Cluster hash tag, kept literally."""
    return "{" + prefix + "}:probe:" + host


def probe_channel(prefix: str) -> str:
    """`{prefix}:probe`, where every snapshot is published as JSON."""
    return "{" + prefix + "}:probe"


class RedisPublisher:
    """Publishes snapshots; survives Redis being away and says so once, not every interval."""

    def __init__(
        self, client: redis.asyncio.Redis, *, prefix: str, host: str, interval: float
    ) -> None:
        self._client = client
        self.key = probe_key(prefix, host)
        self.channel = probe_channel(prefix)
        self.ttl_ms = max(1, round(TTL_INTERVALS * interval * 1000))
        self.errors = 0
        self._failing = False

    async def publish(self, snapshot: Snapshot) -> bool:
        """One round trip: DEL, HSET, PEXPIRE, PUBLISH; False (and counted) if Redis failed."""
        try:
            # MULTI/EXEC in the same round trip: a reader never sees the hash between DEL and
            # HSET. DEL first so a signal that became unknown disappears from the hash.
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self.key)
                fields: dict[EncodableT, EncodableT] = dict(hash_fields(snapshot).items())
                pipe.hset(self.key, mapping=fields)
                pipe.pexpire(self.key, self.ttl_ms)
                pipe.publish(self.channel, to_json(snapshot))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True

    async def aclose(self) -> None:
        """Close the Redis connections."""
        await self._client.aclose()

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if not self._failing:
            LOG.warning("cannot publish to Redis, will keep trying: %s", exc)
        self._failing = True

    def _succeeded(self) -> None:
        if self._failing:
            LOG.info("publishing to Redis again")
        self._failing = False
