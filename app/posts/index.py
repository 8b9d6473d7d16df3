"""The posts' index as a gateway replica reads it: `PostsIndex`.

It serves one read-only, immutable copy of the SQLite file, opened on a thread of its own (one
thread: every sqlite3 call of the index runs there, so the event loop never waits on SQLite and
no connection is shared between threads). `refresh()` swaps in a new copy when the source's
version changed: the file's identity (`file` sharing), or the hash in Redis (`redis` sharing,
where the file is fetched to a private folder of this process). A search under way finishes on
the copy it started on.

    index = PostsIndex.from_settings(settings, redis)
    await index.refresh()              # load it, if there is one yet
    task = asyncio.create_task(index.watch())   # then follow its updates
    passages = await index.search("tailscale funnel", limit=5, max_tokens=1200)
    index.size(), index.age            # for metrics
    await index.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import httpx
import msgspec
from redis.exceptions import RedisError

from app.chat.tokens import estimate
from app.posts import lexical, search, shared, store, vectors
from app.posts.records import IndexSize, Passage

if TYPE_CHECKING:
    import sqlite3

    import redis.asyncio as aioredis

    from app.settings import Settings

log = logging.getLogger("llmgw.posts")
# A query longer than this is cut: it is words to look for, not a document.
MAX_QUERY_CHARS = 1_000
EMPTY = IndexSize(0, 0, 0)
# What a refresh survives (the copy in use stays): Redis or the disk failing, a bad file.
REFRESH_ERRORS: tuple[type[Exception], ...] = (
    RedisError,
    OSError,
    vectors.VectorsUnavailable,
    *vectors.database_errors(),
)


class _Copy(msgspec.Struct):
    """One opened copy of the index (touched only on the index's thread)."""

    connection: sqlite3.Connection
    path: Path
    version: str
    size: IndexSize
    indexed_at: float | None
    query_embedder: vectors.Embedder | None  # None: this copy is searched lexically only
    lexical_index: lexical.LexicalIndex
    matrix: vectors.Matrix | None  # its vectors, when it is searched densely too


class PostsIndex:
    """Search the owner's posts; the index follows its file or its copy in Redis."""

    def __init__(
        self,
        *,
        share: Literal["file", "redis"],
        path: Path,
        redis: aioredis.Redis | None = None,
        key_prefix: str = "llmgw",
        embedder: vectors.Embedder | None = None,
        refresh_seconds: float = 30.0,
    ) -> None:
        if share == "redis" and redis is None:
            raise ValueError("an index shared through Redis needs a Redis client")
        self._share = share
        self._path = path
        self._redis = redis
        self._prefix = key_prefix
        self._embedder = embedder
        self._refresh_seconds = refresh_seconds
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmgw-posts")
        self._http = httpx.AsyncClient() if embedder is not None else None
        self._copies = Path(tempfile.mkdtemp(prefix="llmgw-posts-")) if share == "redis" else None
        self._copy: _Copy | None = None

    @classmethod
    def from_settings(cls, settings: Settings, redis: aioredis.Redis | None) -> PostsIndex:
        """The index as LLMGW_POSTS_* say: shared through Redis (auto: when LLMGW_REDIS_URL is
        set) or the file LLMGW_POSTS_INDEX, dense search when an embeddings URL is set."""
        share = settings.posts_share
        if share == "auto":
            share = "redis" if settings.redis_url is not None else "file"
        return cls(
            share=share,
            path=Path(settings.posts_index),
            redis=redis if share == "redis" else None,
            key_prefix=settings.key_prefix,
            embedder=embedder_of(settings),
            refresh_seconds=settings.posts_refresh_seconds,
        )

    @property
    def loaded(self) -> bool:
        """Whether there is an index to search (RAG stays off until there is)."""
        return self._copy is not None

    @property
    def dense(self) -> bool:
        """Whether searches fuse dense search with lexical search."""
        return self._copy is not None and self._copy.query_embedder is not None

    @property
    def indexed_at(self) -> float | None:
        """When the index in use was built (Unix time), None when there is none."""
        return self._copy.indexed_at if self._copy is not None else None

    @property
    def age(self) -> float | None:
        """Seconds since the index in use was built, None when there is none."""
        built = self.indexed_at
        return max(0.0, time.time() - built) if built is not None else None

    def size(self) -> IndexSize:
        """Posts, passages and bytes of the index in use (all 0 when there is none)."""
        return self._copy.size if self._copy is not None else EMPTY

    async def search(self, query: str, *, limit: int = 5, max_tokens: int = 1_200) -> list[Passage]:
        """The passages that best answer `query`, best first: at most `limit`, and at most
        `max_tokens` together (by app/chat/tokens.py's estimate). Never raises for the query's
        sake: no index, no words, or a failing embeddings endpoint give fewer results."""
        copy = self._copy
        query = " ".join(query.split())[:MAX_QUERY_CHARS]
        if copy is None or not query or limit < 1:
            return []
        vector = await self._query_vector(copy, query)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, self._search_now, query, vector, limit, max_tokens
        )

    async def refresh(self) -> bool:
        """Load the index, or a newer version of it; whether a new copy is now in use. A
        source that cannot be read now leaves the copy in use as it is."""
        try:
            if self._share == "redis":
                return await self._refresh_from_redis()
            return await self._refresh_from_file()
        except REFRESH_ERRORS as exc:
            log.warning("posts index not refreshed: %s: %s", type(exc).__name__, exc)
            return False

    async def watch(self) -> None:
        """Refresh every LLMGW_POSTS_REFRESH_SECONDS, until cancelled (run it as a task)."""
        while True:
            await asyncio.sleep(self._refresh_seconds)
            await self.refresh()

    async def aclose(self) -> None:
        """Close the copy in use and the embeddings client; remove this process's copies."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._swap, None)
        self._thread.shutdown(wait=False)
        if self._http is not None:
            await self._http.aclose()
        if self._copies is not None:
            shutil.rmtree(self._copies, ignore_errors=True)

    async def _query_vector(self, copy: _Copy, query: str) -> list[float] | None:
        if copy.query_embedder is None or self._http is None:
            return None
        try:
            return await copy.query_embedder.query(self._http, query)
        except (httpx.HTTPError, vectors.EmbeddingsFailed) as exc:
            log.warning("posts search lexical only: embeddings failed (%s)", type(exc).__name__)
            return None

    async def _refresh_from_file(self) -> bool:
        try:
            stat = self._path.stat()
        except FileNotFoundError:
            return False  # not built yet, or being replaced: the copy in use stays
        version = f"{stat.st_ino}:{stat.st_mtime_ns}:{stat.st_size}"
        if self._copy is not None and self._copy.version == version:
            return False
        return await self._open(self._path, version)

    async def _refresh_from_redis(self) -> bool:
        assert self._redis is not None  # noqa: S101 - checked in __init__
        assert self._copies is not None  # noqa: S101
        version = await shared.latest_version(self._redis, self._prefix)
        if version is None or (self._copy is not None and self._copy.version == version):
            return False
        blob = await shared.latest_blob(self._redis, self._prefix)
        if blob is None:
            return False
        version = shared.version_of(blob)  # a newer one may have been published meanwhile
        path = self._copies / f"posts-{version}.sqlite3"
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, path.write_bytes, blob)
        return await self._open(path, version)

    async def _open(self, path: Path, version: str) -> bool:
        loop = asyncio.get_running_loop()
        copy = await loop.run_in_executor(self._thread, _opened, path, version, self._embedder)
        if copy is None:
            return False
        await loop.run_in_executor(self._thread, self._swap, copy)
        log.info(
            "posts index %s: %d posts, %d passages, %s search",
            version,
            copy.size.posts,
            copy.size.passages,
            "fused" if copy.query_embedder else "lexical",
        )
        return True

    def _search_now(
        self, query: str, vector: list[float] | None, limit: int, max_tokens: int
    ) -> list[Passage]:
        """One search, on the index's thread, of the copy in use now (a refresh that came
        between the call and this turn closed the copy that was in use then)."""
        copy = self._copy
        if copy is None:
            return []
        return _search(copy, query, vector if copy.query_embedder else None, limit, max_tokens)

    def _swap(self, copy: _Copy | None) -> None:
        """Put `copy` in use and close the one it replaces (on the index's thread)."""
        old, self._copy = self._copy, copy
        if old is None:
            return
        old.connection.close()
        if (
            self._copies is not None
            and old.path.parent == self._copies
            and (copy is None or copy.path != old.path)
        ):
            with contextlib.suppress(OSError):
                old.path.unlink()


def embedder_of(settings: Settings) -> vectors.Embedder | None:
    """The embeddings endpoint of LLMGW_POSTS_EMBEDDINGS_*, None when dense search is off."""
    if settings.posts_embeddings_url is None:
        return None
    return vectors.Embedder(
        settings.posts_embeddings_url,
        settings.posts_embeddings_model,
        settings.posts_embeddings_token,
        settings.posts_query_prefix,
        settings.posts_document_prefix,
    )


def _opened(path: Path, version: str, embedder: vectors.Embedder | None) -> _Copy | None:
    """A copy of the index opened read-only, or None when the file is no posts index."""
    connection = vectors.connect(path, read_only=True)
    facts = store.meta(connection)
    if "indexed_at" not in facts:
        connection.close()
        log.error("posts index %s is not an index `llmgw posts index` built", path)
        return None
    query_embedder = matrix = None
    if embedder is not None and store.has_vectors(connection):
        if vectors.available():
            connection.close()
            connection = vectors.connect(path, read_only=True, vectors=True)
            matrix = vectors.loaded(connection)
            query_embedder = msgspec.structs.replace(
                embedder,
                model=facts.get("embeddings_model", embedder.model),
                query_prefix=facts.get("query_prefix", embedder.query_prefix),
            )
        else:
            log.warning("posts index has vectors, but sqlite-vec is not installed: lexical only")
    size = store.size(connection, path)
    words = lexical.of(connection, facts["indexed_at"])
    indexed_at = float(facts["indexed_at"])
    return _Copy(connection, path, version, size, indexed_at, query_embedder, words, matrix)


def _search(
    copy: _Copy, query: str, vector: list[float] | None, limit: int, max_tokens: int
) -> list[Passage]:
    """One search on the index's thread."""
    depth = max(20, limit * 4)
    ranking = search.lexical(copy.connection, copy.lexical_index, query, depth)
    if vector is not None and copy.matrix is not None:
        ranking = search.fused(ranking, search.dense(copy.matrix, vector, depth))
    found = search.rows(copy.connection, [rowid for rowid, _ in ranking])
    passages: list[Passage] = []
    spent = 0
    for rowid, score in ranking:
        title, url, date, heading, text = found[rowid]
        tokens = estimate(len(text))
        if spent + tokens > max_tokens:
            continue
        spent += tokens
        passages.append(Passage(title, url, date, heading, text, score))
        if len(passages) == limit:
            break
    return passages
