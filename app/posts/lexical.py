"""The passages' BM25 index: bm25s's sparse matrix of each stem's score in each passage, built
when the index file is written and kept in it (table `lexical_index`), so every replica loads
the same one with the file, from disk or from Redis. A search sums the query's columns: about
0.3 ms p99 over 10,000 passages, where FTS5's bm25 took 11-15 ms (tests/bench/posts_search.py).

It scores as FTS5's bm25 did over `passages_fts`: a passage is its post's title, its heading and
its text; words are FTS5's unicode61 tokens (letters and digits, lower-cased, diacritics
removed) under the Porter stemmer; k1 1.2, b 0.75, Robertson's IDF, log((N - n + 0.5) /
(n + 0.5)), floored at 0 (FTS5 floors it at 1e-6). On the shipped collection its top five are
FTS5's for every question, and nDCG@10 and recall@5 are the same.

`lexical_index` rows: `params` (JSON: the scoring's settings, the passages' count and the
`indexed_at` of the file it was built for), `vocabulary` (JSON: stem -> column), `passages`,
`data`, `indices`, `indptr` (.npy: the passages' ids, and the CSC matrix's arrays)."""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from typing import TYPE_CHECKING, Any

import bm25s
import numpy as np
import Stemmer

from app.posts import vectors

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterable, Sequence

    from numpy.typing import NDArray

log = logging.getLogger("llmgw.posts")
PARAMS = {"method": "robertson", "k1": 1.2, "b": 0.75, "stemmer": "porter"}
ARRAYS = ("passages", "data", "indices", "indptr")
TABLE = "CREATE TABLE IF NOT EXISTS lexical_index (name TEXT PRIMARY KEY, value BLOB NOT NULL)"
# A passage as FTS5 indexed it: title, heading and text (its length counts all three).
PASSAGES = (
    "SELECT passages.id, posts.title || ' ' || passages.heading || ' ' || passages.text"
    " FROM passages JOIN posts ON posts.id = passages.post ORDER BY passages.id"
)
# FTS5's unicode61 tokenizer splits at every character that is not a letter or a digit.
_WORD = re.compile(r"[^\W_]+")


class LexicalIndex:
    """BM25 over the passages of one index file (used on one thread: the stemmer is not
    thread-safe)."""

    def __init__(self, retriever: bm25s.BM25 | None, passages: NDArray[np.int64]) -> None:
        self._retriever = retriever  # None: no passages
        self._passages = passages
        self._stemmer = Stemmer.Stemmer(PARAMS["stemmer"])

    @classmethod
    def build(cls, rows: Iterable[tuple[int, str]]) -> LexicalIndex:
        """The index of (passage id, its title, heading and text) rows."""
        stemmer = Stemmer.Stemmer(PARAMS["stemmer"])
        ids, documents = [], []
        for rowid, text in rows:
            ids.append(rowid)
            documents.append(stemmer.stemWords(words_of(text)))
        passages = np.asarray(ids, dtype=np.int64)
        if not documents:
            return cls(None, passages)
        retriever = bm25s.BM25(method=PARAMS["method"], k1=PARAMS["k1"], b=PARAMS["b"])
        retriever.index(documents, show_progress=False)
        return cls(retriever, passages)

    def ranked(self, words: Sequence[str], limit: int) -> list[tuple[int, float]]:
        """The `limit` passages BM25 scores best for the words (a query's, less its stop
        words), best first, as (passage id, score); only passages the words give weight."""
        columns = self._columns(words)
        if self._retriever is None or not columns:
            return []
        scores = self._retriever.get_scores_from_ids(columns)
        found = np.flatnonzero(scores > 0)
        if len(found) > limit:
            found = found[np.argpartition(-scores[found], limit - 1)[:limit]]
        best = found[np.lexsort((found, -scores[found]))]  # ties: the older passage first
        return [(int(self._passages[n]), float(scores[n])) for n in best]

    def holds(self, words: Sequence[str]) -> bool:
        """Whether some passage holds one of the words (BM25 may give it no weight)."""
        return bool(self._columns(words))

    def _columns(self, words: Sequence[str]) -> list[int]:
        if self._retriever is None:
            return []
        vocabulary = self._retriever.vocab_dict
        stems = self._stemmer.stemWords([fold(word) for word in words])
        # Two words of one stem ('token', 'tokens') count twice, as two FTS5 phrases did.
        return [vocabulary[stem] for stem in stems if stem and stem in vocabulary]

    def save(self, connection: sqlite3.Connection, indexed_at: str) -> None:
        """Keep the index in the file's `lexical_index`, for the file's `indexed_at`."""
        connection.execute(TABLE)
        connection.execute("DELETE FROM lexical_index")
        params = {**PARAMS, "passages": len(self._passages), "indexed_at": indexed_at}
        values: dict[str, bytes] = {"params": json.dumps(params).encode()}
        if self._retriever is not None:
            scores = self._retriever.scores
            values["vocabulary"] = json.dumps(self._retriever.vocab_dict).encode()
            arrays = {"passages": self._passages, **{name: scores[name] for name in ARRAYS[1:]}}
            values |= {name: _npy(array) for name, array in arrays.items()}
        connection.executemany("INSERT INTO lexical_index VALUES (?, ?)", values.items())


def build(connection: sqlite3.Connection) -> LexicalIndex:
    """The index of the file's passages, as they are now."""
    return LexicalIndex.build(connection.execute(PASSAGES))


def of(connection: sqlite3.Connection, indexed_at: str) -> LexicalIndex:
    """The index kept in the file; built now from its passages when it has none (a file that
    an older llmgw wrote: it searches as it did, and `llmgw posts index` keeps one in it)."""
    kept = load(connection, indexed_at)
    if kept is None:
        log.warning(
            "posts index has no lexical index of its own (written by an older llmgw):"
            " built it at load; run `llmgw posts index` again to keep one in the file"
        )
        kept = build(connection)
    return kept


def load(connection: sqlite3.Connection, indexed_at: str) -> LexicalIndex | None:
    """The index kept in the file, None when it has none for its `indexed_at` (a file built
    before there was one, or rewritten by such a version since)."""
    try:
        values = dict(connection.execute("SELECT name, value FROM lexical_index").fetchall())
    except vectors.database_errors():  # no such table
        return None
    return _loaded(values, indexed_at)


def _loaded(values: dict[str, bytes], indexed_at: str) -> LexicalIndex | None:
    try:
        params = json.loads(values["params"])
        if params["indexed_at"] != indexed_at or any(params[k] != v for k, v in PARAMS.items()):
            return None
        if params["passages"] == 0:
            return LexicalIndex(None, np.zeros(0, dtype=np.int64))
        arrays = {name: np.load(io.BytesIO(values[name]), allow_pickle=False) for name in ARRAYS}
        vocabulary: dict[str, int] = json.loads(values["vocabulary"])
    except (KeyError, ValueError, TypeError):
        return None
    retriever = bm25s.BM25(method=PARAMS["method"], k1=PARAMS["k1"], b=PARAMS["b"])
    # What bm25s.BM25.load sets from its folder of files.
    retriever.scores = {name: arrays[name] for name in ARRAYS[1:]}
    retriever.scores["num_docs"] = len(arrays["passages"])
    retriever.vocab_dict = vocabulary
    retriever.unique_token_ids_set = set(vocabulary.values())
    retriever.nonoccurrence_array = None
    return LexicalIndex(retriever, arrays["passages"])


def words_of(text: str) -> list[str]:
    """FTS5's unicode61 tokens of a text: runs of letters and digits, lower-cased, without
    diacritics."""
    return _WORD.findall(fold(text))


def fold(text: str) -> str:
    """Lower case, without diacritics (as unicode61's remove_diacritics)."""
    text = text.lower()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _npy(array: Any) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
