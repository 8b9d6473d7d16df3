"""Searching the index: lexical (BM25 over Porter stems, app/posts/lexical.py), dense (the
nearest vectors, in memory), and both fused by reciprocal rank fusion. Plain functions over
one connection, its lexical index and its vectors, for the gateway's thread and for
`llmgw posts eval` alike.

A query is its words, less a few stop words: like a BM25 engine's query, a passage need not
hold every word to rank. A word in half the passages or more has no weight (Robertson's IDF,
log((N - n + 0.5) / (n + 0.5)), floored at 0). When every word of a query is such a word (a
small blog's own subject), FTS5's bm25 ranks the passages that hold them instead, as it did
before: it floors that IDF at 1e-6, so how often a passage says the words still ranks it."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Sequence

    from app.posts import vectors
    from app.posts.lexical import LexicalIndex

# Reciprocal rank fusion's constant (Cormack, Clarke and Büttcher, SIGIR 2009).
RRF_K = 60
# Words of a query beyond these are left out: a search's cost stays bounded.
MAX_TERMS = 32
# Lucene's English stop words (EnglishAnalyzer, the analyzer of BEIR's BM25 runs), and the
# words of a question that say nothing about its subject.
LUCENE_STOP_WORDS = (
    "a an and are as at be but by for if in into is it no not of on or such that the their"
    " then there these they this to was will with"
)
QUESTION_WORDS = (
    "what which who whom whose when where why how do does did i you your me my we our us"
    " can could would should about"
)
STOP_WORDS = frozenset(f"{LUCENE_STOP_WORDS} {QUESTION_WORDS}".split())
# FTS5's unicode61 tokenizer splits at every character that is not a letter or a digit.
_WORD = re.compile(r"[^\W_]+")
# bm25's weights of the title, heading and text columns.
WEIGHTS = (1.0, 1.0, 1.0)

Ranked = list[tuple[int, float]]  # (passage id, score), best first


def query_words(query: str) -> list[str]:
    """A visitor's or a model's words, lower-cased, less stop words and repeats."""
    words: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in STOP_WORDS and word not in words:
            words.append(word)
    return words[:MAX_TERMS]


def match_expression(words: Sequence[str]) -> str:
    """The FTS5 query of words: each quoted, OR-ed."""
    return " OR ".join(f'"{word}"' for word in words)


def lexical(connection: sqlite3.Connection, index: LexicalIndex, query: str, limit: int) -> Ranked:
    """The passages BM25 ranks best for the query (score: BM25's, higher is better)."""
    words = query_words(query)
    ranking = index.ranked(words, limit)
    if ranking or not index.holds(words):
        return ranking
    rows = connection.execute(
        "SELECT rowid, bm25(passages_fts, ?, ?, ?) AS score FROM passages_fts"
        " WHERE passages_fts MATCH ? ORDER BY score LIMIT ?",
        (*WEIGHTS, match_expression(words), limit),
    ).fetchall()
    return [(int(rowid), -float(score)) for rowid, score in rows]


def dense(matrix: vectors.Matrix, vector: Sequence[float], limit: int) -> Ranked:
    """The passages nearest the query's vector (score: cosine similarity), from the copy's
    vectors in memory (vectors.py says why not sqlite-vec's own search)."""
    return matrix.nearest(vector, limit)


def fused(*rankings: Ranked, k: int = RRF_K) -> Ranked:
    """Reciprocal rank fusion: each ranking gives a passage 1 / (k + its rank)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (rowid, _) in enumerate(ranking, start=1):
            scores[rowid] = scores.get(rowid, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: item[1], reverse=True)


def rows(
    connection: sqlite3.Connection, ids: Sequence[int]
) -> dict[int, tuple[str, str, str | None, str, str]]:
    """Passage id -> (post title, URL, date, heading, text)."""
    if not ids:
        return {}
    found = connection.execute(
        "SELECT passages.id, posts.title, posts.url, posts.date, passages.heading, passages.text"
        " FROM passages JOIN posts ON posts.id = passages.post"
        " WHERE passages.id IN (SELECT value FROM json_each(?))",
        (json.dumps(list(ids)),),
    ).fetchall()
    return {int(row[0]): tuple(row[1:]) for row in found}
