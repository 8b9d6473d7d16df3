"""Dense search's parts: connections that can load sqlite-vec, the vectors' table, a copy's
vectors in memory (`Matrix`), and the OpenAI-compatible `/v1/embeddings` client (LM Studio serves
nomic-embed-text there).

The file keeps the vectors in sqlite-vec's table, where the indexer adds and removes them; a
gateway's copy reads them once, when it opens, into one matrix of unit rows, and ranks them by
one product with the query: sqlite-vec's own scan of 10,000 x 768 took 15-20 ms at p99, the
product 1 ms (tests/bench/posts_search.py). The product is numpy's vecdot, a dot product per
row on the calling thread: a matrix-vector product (`@`) goes to OpenBLAS's threads, whose p99
was 9-12 ms on two shared cores, against 1 ms for vecdot.

sqlite-vec is a loadable extension, and some Pythons' sqlite3 may not load any (pyenv's and
macOS's builds leave `enable_load_extension` out): there the posts-dense extra's sqlean.py, a
sqlite3 that may, opens the file instead. The same file opens with either; without the extra
the index is searched lexically only."""

from __future__ import annotations

import importlib
import importlib.util
import math
import sqlite3
import struct
from typing import TYPE_CHECKING, Any, cast

import httpx
import msgspec
import numpy as np

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path
    from types import ModuleType

    from numpy.typing import NDArray
    from pydantic import SecretStr

# One request's texts at index time; LM Studio embeds a batch in one pass.
BATCH = 32
# Indexing waits for the embedding model to load; a chat's search does not wait long for it.
INDEX_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
QUERY_TIMEOUT = httpx.Timeout(3.0, connect=1.0)


class VectorsUnavailable(Exception):
    """Dense search was asked for and cannot be had here; the message says what to install."""


class EmbeddingsFailed(Exception):
    """The embeddings endpoint did not give one vector per text."""


def _dbapi() -> ModuleType | None:
    """The sqlite3 module that may load extensions: the standard one when it can."""
    if hasattr(sqlite3.Connection, "enable_load_extension"):
        return sqlite3
    if importlib.util.find_spec("sqlean") is None:
        return None
    return importlib.import_module("sqlean")


def available() -> bool:
    """Whether sqlite-vec can be loaded here (the posts-dense extra is installed)."""
    return importlib.util.find_spec("sqlite_vec") is not None and _dbapi() is not None


def database_errors() -> tuple[type[Exception], ...]:
    """The errors of both sqlite3 modules a connection may come from."""
    module = _dbapi()
    if module is None or module is sqlite3:
        return (sqlite3.Error,)
    return (sqlite3.Error, module.Error)


def connect(path: Path, *, read_only: bool = False, vectors: bool = False) -> sqlite3.Connection:
    """A connection to the index file, with sqlite-vec loaded when `vectors`. A read-only one
    treats the file as immutable: the indexer never changes a file in place, it replaces it."""
    uri = path.resolve().as_uri() + ("?mode=ro&immutable=1" if read_only else "")
    if not vectors:
        return sqlite3.connect(uri, uri=True)
    module = _dbapi() if available() else None
    if module is None:
        raise VectorsUnavailable("dense search needs sqlite-vec: pip install 'llmgw[posts-dense]'")
    connection = cast("sqlite3.Connection", module.connect(uri, uri=True))
    sqlite_vec = importlib.import_module("sqlite_vec")
    connection.enable_load_extension(True)  # noqa: FBT003 - sqlite3's own signature
    sqlite_vec.load(connection)
    connection.enable_load_extension(False)  # noqa: FBT003
    return connection


def create_table(connection: sqlite3.Connection, dimensions: int) -> None:
    """The vectors' table, one row per passage (its rowid), compared by cosine distance."""
    connection.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS passage_vectors USING vec0("
        f"embedding float[{int(dimensions)}] distance_metric=cosine)"
    )


def packed(vector: Sequence[float]) -> bytes:
    """A vector as sqlite-vec stores it: little-endian float32s."""
    return struct.pack(f"<{len(vector)}f", *vector)


class Matrix(msgspec.Struct, frozen=True):
    """A copy's vectors in memory: one unit float32 row per passage, and the passages' ids in
    the rows' order (4 bytes per dimension: 30.7 MB per 10,000 passages of 768)."""

    ids: NDArray[np.int64]
    rows: NDArray[np.float32]

    def nearest(self, vector: Sequence[float], limit: int) -> list[tuple[int, float]]:
        """The passages nearest the vector: (id, cosine similarity), nearest first. A vector
        of another size than the index's (another model's) is near none."""
        query = np.asarray(vector, dtype=np.float32)
        limit = min(limit, len(self.ids))
        if limit < 1 or query.shape != (self.rows.shape[1],):
            return []
        norm = float(np.linalg.norm(query))
        scores = np.vecdot(self.rows, query / norm if norm > 0 else query)
        best = np.argpartition(scores, -limit)[-limit:]
        best = best[np.argsort(-scores[best], kind="stable")]
        return list(zip(self.ids[best].tolist(), scores[best].tolist(), strict=True))


def loaded(connection: sqlite3.Connection) -> Matrix:
    """The vectors of the index's table in one matrix. They are read from the ordinary tables
    sqlite-vec keeps under its virtual one (chunks of vectors, and each rowid's chunk and place
    in it), a chunk at a time: 44 ms for 10,000 x 768, where a scan of the virtual table took
    1.8 s of the index's thread. A layout of another sqlite-vec is scanned."""
    try:
        return _from_chunks(connection)
    except database_errors():
        return _scanned(connection)


def _from_chunks(connection: sqlite3.Connection) -> Matrix:
    places = np.array(
        connection.execute(
            "SELECT rowid, chunk_id, chunk_offset FROM passage_vectors_rowids"
            " WHERE chunk_id IS NOT NULL"
        ).fetchall(),
        dtype=np.int64,
    ).reshape(-1, 3)
    rows = np.empty((len(places), 0), dtype=np.float32)
    chunks = connection.execute(
        "SELECT chunks.chunk_id, chunks.size, vectors.vectors FROM passage_vectors_chunks AS chunks"
        " JOIN passage_vectors_vector_chunks00 AS vectors ON vectors.rowid = chunks.chunk_id"
    )
    for chunk_id, size, blob in chunks:
        chunk = np.frombuffer(blob, dtype="<f4").reshape(size, -1)
        if rows.shape[1] != chunk.shape[1]:
            rows = np.empty((len(places), chunk.shape[1]), dtype=np.float32)
        here = places[:, 1] == chunk_id
        rows[here] = chunk[places[here, 2]]
    return _normalised(places[:, 0].copy(), rows)


def _scanned(connection: sqlite3.Connection) -> Matrix:
    (count,) = connection.execute("SELECT count(*) FROM passage_vectors").fetchone()
    ids = np.empty(count, dtype=np.int64)
    rows = np.empty((count, 0), dtype=np.float32)
    for number, (rowid, blob) in enumerate(
        connection.execute("SELECT rowid, embedding FROM passage_vectors")
    ):
        if number == 0:
            rows = np.empty((count, len(blob) // 4), dtype=np.float32)
        ids[number] = rowid
        rows[number] = np.frombuffer(blob, dtype="<f4")
    return _normalised(ids, rows)


def _normalised(ids: NDArray[np.int64], rows: NDArray[np.float32]) -> Matrix:
    norms = np.sqrt(np.vecdot(rows, rows))[:, np.newaxis]  # no temporary of the matrix's size
    rows /= np.where(norms > 0, norms, 1.0)  # a zero vector stays zero: near nothing
    return Matrix(ids, rows)


class _Item(msgspec.Struct):
    embedding: list[float]
    index: int = 0


class _Reply(msgspec.Struct):
    data: list[_Item]


_DECODE = msgspec.json.Decoder(_Reply)


class Embedder(msgspec.Struct, frozen=True):
    """Where the embeddings come from, and the task prefixes of the model (nomic-embed-text
    expects `search_query: ` and `search_document: `)."""

    url: str
    model: str
    token: SecretStr | None = None
    query_prefix: str = ""
    document_prefix: str = ""

    def endpoint(self) -> str:
        """The OpenAI-compatible route under the server's root URL."""
        return f"{self.url}/v1/embeddings"

    def headers(self) -> dict[str, str]:
        """The bearer token, when there is one (never logged)."""
        token = self.token.get_secret_value() if self.token is not None else ""
        return {"Authorization": f"Bearer {token}"} if token else {}

    def body(self, texts: Sequence[str], prefix: str) -> dict[str, Any]:
        """One request's JSON."""
        return {"model": self.model, "input": [prefix + text for text in texts]}

    def documents(self, client: httpx.Client, texts: Sequence[str]) -> list[list[float]]:
        """The passages' vectors, BATCH at a time (indexing, off the gateway)."""
        return self._many(client, texts, self.document_prefix)

    def queries(self, client: httpx.Client, texts: Sequence[str]) -> list[list[float]]:
        """Many queries' vectors at once (`llmgw posts eval`)."""
        return self._many(client, texts, self.query_prefix)

    def _many(self, client: httpx.Client, texts: Sequence[str], prefix: str) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), BATCH):
            batch = texts[start : start + BATCH]
            response = client.post(
                self.endpoint(),
                json=self.body(batch, prefix),
                headers=self.headers(),
                timeout=INDEX_TIMEOUT,
            )
            vectors += vectors_of(response, len(batch))
        return vectors

    async def query(self, client: httpx.AsyncClient, text: str) -> list[float]:
        """The vector of a search's query (at chat time: a short timeout)."""
        response = await client.post(
            self.endpoint(),
            json=self.body([text], self.query_prefix),
            headers=self.headers(),
            timeout=QUERY_TIMEOUT,
        )
        return vectors_of(response, 1)[0]


def vectors_of(response: httpx.Response, count: int) -> list[list[float]]:
    """The reply's vectors in the order of the texts sent, each finite and of one length."""
    if response.status_code != 200:
        raise EmbeddingsFailed(f"the embeddings endpoint answered {response.status_code}")
    try:
        items = sorted(_DECODE.decode(response.content).data, key=lambda item: item.index)
    except msgspec.DecodeError:
        raise EmbeddingsFailed("the embeddings endpoint's reply is not OpenAI's shape") from None
    vectors = [item.embedding for item in items]
    if len(vectors) != count or len({len(vector) for vector in vectors}) != 1 or not vectors[0]:
        raise EmbeddingsFailed(f"the embeddings endpoint gave {len(vectors)} vectors for {count}")
    if not all(math.isfinite(value) for vector in vectors for value in vector):
        raise EmbeddingsFailed("the embeddings endpoint gave a vector that is not finite")
    return vectors
