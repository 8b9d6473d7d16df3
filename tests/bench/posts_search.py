"""What the posts' index costs (issue 19): indexing (posts per second, bytes per 1,000 posts),
search latency over 10,000 passages (lexical, dense alone, and fused with 768-dimension
vectors), and what a replica pays to load a new version, from its file or from Redis, and to hold
its vectors in memory.

    PYTHONPATH=tests:tests/bench .venv/bin/python tests/bench/posts_search.py

The posts are made up from the README's words (2,000 posts of five sections, 10,000 passages,
each post on one of 200 topics); half the searches are the shipped collection's questions. The
vectors come from an embeddings endpoint on loopback (hashed trigrams, as many dimensions as
nomic-embed-text's), so the fused figures are the index's own cost, not a model's."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import redis
import redis.asyncio as aioredis
from processes import redis_server
from support import serving

from app.posts import PostsIndex, indexer, shared, store, vectors
from app.posts.records import Found, Loaded
from app.posts.search import STOP_WORDS

POSTS = 2_000
SECTIONS = 5
DIMENSIONS = 768
SEARCHES = 2_000
README = Path(__file__).resolve().parents[2] / "README.md"
# Half the searches are the shipped collection's questions, half 2 to 6 of the README's words.
QUESTIONS = README.parent / "tests" / "posts" / "collection" / "queries.jsonl"


def vector(text: str) -> list[float]:
    counts = [0.0] * DIMENSIONS
    for start in range(len(text) - 2):
        digest = hashlib.blake2b(text[start : start + 3].encode(), digest_size=4).digest()
        counts[int.from_bytes(digest, "big") % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(value * value for value in counts)) or 1.0
    return [value / norm for value in counts]


class Embeddings(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        data = [{"index": n, "embedding": vector(text)} for n, text in enumerate(body["input"])]
        raw = json.dumps({"data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        """Quiet."""


def made_up_posts(words: list[str], rng: random.Random) -> list[Found]:
    """Posts of SECTIONS sections, each a heading and about 120 words (a passage): two thirds
    from the post's topic (one of 200, of 80 words each), a third from the README's words at their
    frequency, the way a post's own subject and a language's common words mix."""
    distinct = sorted(set(words))
    topics = [rng.sample(distinct, 80) for _ in range(200)]
    found = []
    for number in range(POSTS):
        topic = topics[number % len(topics)]

        def text(count: int, topic: list[str] = topic) -> str:
            picked = rng.choices(topic, k=count * 2 // 3) + rng.choices(words, k=count // 3)
            rng.shuffle(picked)
            return " ".join(picked)

        sections = [f"## {text(4)}\n\n{text(120)}" for _ in range(SECTIONS)]
        body = f"# Post {number}: {text(5)}\n\n" + "\n\n".join(sections)
        loaded = Loaded(body, "markdown", url=f"https://blog.example/{number}/")
        found.append(Found(f"post-{number}.md", partial(lambda value: value, loaded)))
    return found


def percentiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p50 = statistics.median(ordered) * 1000
    p99 = ordered[int(len(ordered) * 0.99) - 1] * 1000
    return f"p50 {p50:.2f} ms, p99 {p99:.2f} ms"


async def searches(index: PostsIndex, queries: list[str]) -> list[float]:
    took = []
    for query in queries:
        started = time.perf_counter()
        await index.search(query, limit=5, max_tokens=1_200)
        took.append(time.perf_counter() - started)
    return took


def thread_part(path: Path, queries: list[str], dense: bool) -> list[float]:
    """The search's part on the index's thread: BM25, numpy's dot products, the rows."""
    from app.posts import lexical, search  # noqa: PLC0415

    connection = vectors.connect(path, read_only=True, vectors=dense)
    words = lexical.of(connection, store.meta(connection)["indexed_at"])  # as a copy loads it
    matrix = vectors.loaded(connection) if dense else None
    query_vectors = [vector(query) for query in queries] if dense else []
    took = []
    for number, query in enumerate(queries):
        started = time.perf_counter()
        ranking = search.lexical(connection, words, query, 20)
        if matrix is not None:
            ranking = search.fused(ranking, search.dense(matrix, query_vectors[number], 20))
        search.rows(connection, [rowid for rowid, _ in ranking])
        took.append(time.perf_counter() - started)
    connection.close()
    return took


def dense_part(path: Path, queries: list[str]) -> list[float]:
    """Dense search alone: the product with the copy's matrix, and the top 20."""
    from app.posts import search  # noqa: PLC0415

    connection = vectors.connect(path, read_only=True, vectors=True)
    matrix = vectors.loaded(connection)
    connection.close()
    took = []
    for query in queries:
        query_vector = vector(query)
        started = time.perf_counter()
        search.dense(matrix, query_vector, 20)
        took.append(time.perf_counter() - started)
    return took


def matrix_memory(path: Path) -> str:
    """What a copy's vectors hold in memory, and the peak while they are read (tracemalloc
    sees numpy's buffers, and the rows' bytes as sqlite3 hands them over)."""
    connection = vectors.connect(path, read_only=True, vectors=True)
    tracemalloc.start()
    started = time.perf_counter()
    matrix = vectors.loaded(connection)
    seconds = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    connection.close()
    held = matrix.rows.nbytes + matrix.ids.nbytes
    per_10k = held / len(matrix.ids) * 10_000
    return (
        f"{held / 1e6:.1f} MB held ({per_10k / 1e6:.1f} MB per 10,000 passages),"
        f" peak {peak / 1e6:.1f} MB while read, read in {seconds * 1000:.0f} ms"
    )


def made_up_queries(words: list[str], rng: random.Random) -> list[str]:
    questions = [
        json.loads(line)["text"] for line in QUESTIONS.read_text().splitlines() if line.strip()
    ]
    return [
        rng.choice(questions) if number % 2 else " ".join(rng.choices(words, k=rng.randint(2, 6)))
        for number in range(SEARCHES)
    ]


def built(path: Path, posts: list[Found], options: indexer.Options, label: str) -> None:
    started = time.perf_counter()
    indexer.index(path, "bench", posts, options)
    seconds = time.perf_counter() - started
    connection = vectors.connect(path, read_only=True, vectors=options.embedder is not None)
    size = store.size(connection, path)
    connection.close()
    print(
        f"{label}: {size.posts} posts, {size.passages} passages, {size.bytes / 1e6:.1f} MB"
        f" ({size.bytes / POSTS * 1000 / 1e6:.2f} MB per 1,000 posts),"
        f" {POSTS / seconds:.0f} posts/s"
    )


async def whole_searches(
    lexical_path: Path, dense_path: Path, url: str, queries: list[str]
) -> tuple[list[float], list[float]]:
    lexical = PostsIndex(share="file", path=lexical_path)
    fused = PostsIndex(share="file", path=dense_path, embedder=vectors.Embedder(url, "bench"))
    await lexical.refresh()
    await fused.refresh()
    result = await searches(lexical, queries), await searches(fused, queries)
    await lexical.aclose()
    await fused.aclose()
    return result


async def loads(
    path: Path, redis_url: str, embedder: vectors.Embedder | None
) -> tuple[float, float]:
    """Seconds to load a new version: from the file, and from Redis (GET, write, open); with
    an embedder, the copy's vectors are read into memory too."""
    client = aioredis.Redis.from_url(redis_url)
    started = time.perf_counter()
    from_file = PostsIndex(share="file", path=path, embedder=embedder)
    await from_file.refresh()
    assert from_file.dense == (embedder is not None)
    file_seconds = time.perf_counter() - started
    started = time.perf_counter()
    from_redis = PostsIndex(
        share="redis", path=path, redis=client, key_prefix="bench", embedder=embedder
    )
    await from_redis.refresh()
    redis_seconds = time.perf_counter() - started
    await from_file.aclose()
    await from_redis.aclose()
    await client.aclose()
    return file_seconds, redis_seconds


def publish(path: Path, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        connection = vectors.connect(path, read_only=True, vectors=True)
        size, facts = store.size(connection, path), store.meta(connection)
        connection.close()
        shared.publish(client, "bench", path, size, facts["indexed_at"])


def main() -> int:
    rng = random.Random(19)
    words = [w for w in re.findall(r"[A-Za-z]{3,}", README.read_text()) if len(w) < 15]
    words = [word for word in words if word.lower() not in STOP_WORDS]
    queries = made_up_queries(words, rng)
    folder = Path(tempfile.mkdtemp(prefix="llmgw-bench-posts-"))
    lexical_path, dense_path = folder / "lexical.sqlite3", folder / "dense.sqlite3"
    posts = made_up_posts(words, rng)
    built(lexical_path, posts, indexer.Options(), "lexical index")
    with serving(Embeddings) as url:
        options = indexer.Options(embedder=vectors.Embedder(url, "bench"))
        built(dense_path, posts, options, f"dense index ({DIMENSIONS} dimensions, on loopback)")
        print("search, the index's thread part (BM25, the vectors in memory, the rows):")
        print(f"  lexical: {percentiles(thread_part(lexical_path, queries, dense=False))}")
        print(f"  fused:   {percentiles(thread_part(dense_path, queries, dense=True))}")
        print(f"  dense alone: {percentiles(dense_part(dense_path, queries))}")
        print(f"  vectors in memory: {matrix_memory(dense_path)}")
        lexical, fused = asyncio.run(whole_searches(lexical_path, dense_path, url, queries))
        print("PostsIndex.search, whole (the thread hop; fused: the query's embedding call too):")
        print(f"  lexical: {percentiles(lexical)}")
        print(f"  fused:   {percentiles(fused)}")
    with redis_server() as redis_url:
        # The embedder is never called while loading: any URL will do.
        for path, embedder in ((lexical_path, None), (dense_path, vectors.Embedder(url, "bench"))):
            publish(path, redis_url)
            file_seconds, redis_seconds = asyncio.run(loads(path, redis_url, embedder))
            print(
                f"load a new version of {path.name} ({path.stat().st_size / 1e6:.1f} MB):"
                f" from the file {file_seconds * 1000:.1f} ms,"
                f" from Redis (GET, write, open) {redis_seconds * 1000:.1f} ms"
            )
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
