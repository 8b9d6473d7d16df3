"""What checking a key costs a keyed request: `authenticate()` on a cache hit (the header read,
the key's shape, its HMAC, one dict lookup), beside a miss (one HGET on a real Redis).

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/key_check.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

import redis.asyncio as aioredis
from processes import redis_server

from app.access.auth import authenticate
from app.access.keys import KeyLimits, Lane
from app.access.store import KeyStore

SECRET = b"bench-secret-of-at-least-32-characters!"
BATCH = 1_000
BATCHES = 200


async def measure(url: str) -> tuple[list[float], list[float]]:
    """Per-call seconds: the median of each batch of hits, and single misses."""
    async with aioredis.Redis.from_url(url) as client:
        store = KeyStore(client, prefix="bench", secret=SECRET)
        key = await store.create("bench", Lane.OWNER, KeyLimits())
        header = f"Bearer {key}"
        hits = []
        for _ in range(BATCHES):
            await authenticate(store, header)  # fills the cache, should it have aged out
            started = time.perf_counter()
            for _ in range(BATCH):
                await authenticate(store, header)
            hits.append((time.perf_counter() - started) / BATCH)
        misses = []
        for _ in range(200):
            cold = KeyStore(client, prefix="bench", secret=SECRET)
            started = time.perf_counter()
            await authenticate(cold, header)
            misses.append(time.perf_counter() - started)
        return hits, misses


def main() -> None:
    with redis_server() as url:
        hits, misses = asyncio.run(measure(url))
    print(f"authenticate() cache hit: median {statistics.median(hits) * 1e6:.2f} µs per call "
          f"(batches of {BATCH}, best {min(hits) * 1e6:.2f} µs)")  # fmt: skip
    print(f"authenticate() cache miss (one HGET): median {statistics.median(misses) * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
