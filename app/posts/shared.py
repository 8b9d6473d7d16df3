"""The index shared through Redis, for replicas on other machines: the SQLite file as one
blob, beside a hash that says which version it is. `llmgw posts index` publishes both in one
MULTI; each replica checks the version now and then (one HGET), and fetches the blob only when
it changed. Layout (one hash tag, so a cluster keeps both in one slot):

`{prefix}:posts-index`       string: the index's SQLite file
`{prefix}:posts-index-meta`  hash: version (the file's SHA-256, 16 hex digits), indexed_at
                             (Unix time), posts, passages, bytes
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import redis
    import redis.asyncio as aioredis
    from redis.typing import EncodableT, FieldT

    from app.posts.records import IndexSize


def keys(prefix: str) -> tuple[str, str]:
    """The blob's key and its meta hash's."""
    return f"{{{prefix}}}:posts-index", f"{{{prefix}}}:posts-index-meta"


def version_of(blob: bytes) -> str:
    """A file's version: the start of its SHA-256."""
    return hashlib.sha256(blob).hexdigest()[:16]


def publish(client: redis.Redis, prefix: str, path: Path, size: IndexSize, indexed_at: str) -> str:
    """Put the index file in Redis for every replica; its version."""
    blob = path.read_bytes()
    version = version_of(blob)
    blob_key, meta_key = keys(prefix)
    facts: dict[FieldT, EncodableT] = {
        "version": version,
        "indexed_at": indexed_at,
        "posts": size.posts,
        "passages": size.passages,
        "bytes": len(blob),
    }
    with client.pipeline(transaction=True) as pipe:
        pipe.set(blob_key, blob)
        pipe.delete(meta_key)
        pipe.hset(meta_key, mapping=facts)
        pipe.execute()
    return version


def published(client: redis.Redis, prefix: str) -> dict[str, str]:
    """The meta of the index in Redis (empty when none was published)."""
    raw = client.hgetall(keys(prefix)[1])
    return {_text(key): _text(value) for key, value in raw.items()}


def download(client: redis.Redis, prefix: str, path: Path) -> bool:
    """Write the index in Redis to `path` (whole, by a rename); whether there was one."""
    blob = client.get(keys(prefix)[0])
    if not isinstance(blob, bytes):
        return False
    work = path.with_name(f".{path.name}.download")
    work.write_bytes(blob)
    work.replace(path)
    return True


async def latest_version(client: aioredis.Redis, prefix: str) -> str | None:
    """The version of the index in Redis, or None when none was published."""
    value = await client.hget(keys(prefix)[1], "version")
    return _text(value) if value is not None else None


async def latest_blob(client: aioredis.Redis, prefix: str) -> bytes | None:
    """The index file in Redis."""
    blob = await client.get(keys(prefix)[0])
    return blob if isinstance(blob, bytes) else None


def unpublish(client: redis.Redis, prefix: str) -> None:
    """Take the index out of Redis."""
    client.delete(*keys(prefix))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
