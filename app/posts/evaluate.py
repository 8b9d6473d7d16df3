"""`llmgw posts eval DIR`: how well the index's search finds what a labelled collection says it
should, in BEIR's format (corpus.jsonl, queries.jsonl, qrels/test.tsv). Each document is
indexed as a post (its id as its URL), cut into passages like any post; a document ranks where
its best passage does. nDCG@10 and recall@5 come from trec_eval's own code (pytrec-eval, the
posts-eval extra), as BEIR's published figures do; like BEIR, a document with the query's own
id is left out of its results. A judged query that finds nothing counts as 0."""

from __future__ import annotations

import importlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from app.posts import indexer, lexical, search, store, vectors
from app.posts.passages import cut
from app.posts.records import Block

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator

MEASURES = {"ndcg_cut_10": "nDCG@10", "recall_5": "recall@5"}
DEPTH = 100  # documents ranked per query
PASSAGE_DEPTH = 400  # passages looked at to rank them


class CollectionError(Exception):
    """The folder is not a BEIR collection; the message says what is missing or wrong."""


@dataclass(frozen=True, slots=True)
class Collection:
    """A BEIR collection: documents (id -> title, text), queries (id -> text), judgements."""

    documents: dict[str, tuple[str, str]]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load(folder: Path) -> Collection:
    """Read a BEIR collection; only the queries with judgements are kept."""
    documents = {
        str(row["_id"]): (str(row.get("title") or ""), str(row.get("text") or ""))
        for row in _jsonl(folder / "corpus.jsonl")
    }
    queries = {str(row["_id"]): str(row["text"]) for row in _jsonl(folder / "queries.jsonl")}
    qrels = _qrels(folder / "qrels" / "test.tsv")
    judged = {qid: text for qid, text in queries.items() if qid in qrels}
    if not documents or not judged:
        raise CollectionError(f"{folder} has no documents, or no query with a judgement")
    return Collection(documents, judged, {qid: qrels[qid] for qid in judged})


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CollectionError(f"cannot read {path} ({exc.strerror})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise CollectionError(f"{path}:{number} is not JSON") from None
        if not isinstance(row, dict) or "_id" not in row:
            raise CollectionError(f"{path}:{number} has no _id")
        yield row


def _qrels(path: Path) -> dict[str, dict[str, int]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CollectionError(f"cannot read {path} ({exc.strerror})") from None
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines, start=1):
        cells = line.split("\t")
        if (number == 1 and cells[0] == "query-id") or not line.strip():
            continue
        if len(cells) != 3 or not cells[2].strip().lstrip("-").isdigit():
            raise CollectionError(f"{path}:{number} is not query-id, corpus-id, score")
        qrels.setdefault(cells[0], {})[cells[1]] = int(cells[2])
    return qrels


def evaluate(
    collection: Collection, *, passage_tokens: int, embedder: vectors.Embedder | None
) -> dict[str, dict[str, float]]:
    """Search name -> measure name -> its mean over the judged queries."""
    with tempfile.TemporaryDirectory(prefix="llmgw-eval-") as folder:
        path = Path(folder) / "eval.sqlite3"
        _build(path, collection, passage_tokens, embedder)
        connection = vectors.connect(path, read_only=True, vectors=embedder is not None)
        try:
            runs = _runs(connection, collection, embedder)
        finally:
            connection.close()
    return {name: _measures(collection, run) for name, run in runs.items()}


def _build(
    path: Path, collection: Collection, passage_tokens: int, embedder: vectors.Embedder | None
) -> None:
    with store.rewriting(path, vectors_on=embedder is not None) as connection:
        for doc_id, (title, text) in collection.documents.items():
            heading = title or doc_id
            pieces = cut([Block(text)], max_tokens=passage_tokens, heading=heading)
            store.put(
                connection, source="eval", key=doc_id, url=doc_id, title=heading, date=None,
                digest="", stamp="", pieces=pieces,
            )  # fmt: skip
        report = indexer.Report()
        indexer.add_vectors(connection, embedder, report)
        if report.problems:
            raise CollectionError("; ".join(report.problems))


def _runs(
    connection: sqlite3.Connection, collection: Collection, embedder: vectors.Embedder | None
) -> dict[str, dict[str, dict[str, float]]]:
    passage_docs = dict(
        connection.execute(
            "SELECT passages.id, posts.url FROM passages JOIN posts ON posts.id = passages.post"
        ).fetchall()
    )
    runs: dict[str, dict[str, dict[str, float]]] = {"lexical": {}}
    if embedder is not None:
        runs |= {"dense": {}, "fused": {}}
    query_vectors = _query_vectors(collection, embedder)
    matrix = vectors.loaded(connection) if embedder is not None else None
    words = lexical.of(connection, store.meta(connection)["indexed_at"])
    for qid, text in collection.queries.items():
        ranked = search.lexical(connection, words, text, PASSAGE_DEPTH)
        rankings = {"lexical": ranked}
        if matrix is not None and qid in query_vectors:
            dense = search.dense(matrix, query_vectors[qid], PASSAGE_DEPTH)
            rankings |= {"dense": dense, "fused": search.fused(ranked, dense)}
        for name, ranking in rankings.items():
            runs[name][qid] = _documents(ranking, passage_docs, qid)
    return runs


def _query_vectors(
    collection: Collection, embedder: vectors.Embedder | None
) -> dict[str, list[float]]:
    if embedder is None:
        return {}
    ids = list(collection.queries)
    try:
        with httpx.Client() as client:
            made = embedder.queries(client, [collection.queries[qid] for qid in ids])
    except (httpx.HTTPError, vectors.EmbeddingsFailed) as exc:
        raise CollectionError(f"the queries' embeddings failed ({exc})") from None
    return dict(zip(ids, made, strict=True))


def _documents(ranking: search.Ranked, passage_docs: dict[int, str], qid: str) -> dict[str, float]:
    """Each document at its best passage's rank, as trec_eval scores (higher ranks first)."""
    documents: dict[str, float] = {}
    for rowid, _ in ranking:
        doc = passage_docs[rowid]
        if doc not in documents and doc != qid:
            documents[doc] = float(DEPTH - len(documents))
            if len(documents) == DEPTH:
                break
    return documents


def _measures(collection: Collection, run: dict[str, dict[str, float]]) -> dict[str, float]:
    pytrec_eval = _pytrec_eval()
    evaluator = pytrec_eval.RelevanceEvaluator(collection.qrels, set(MEASURES))
    per_query = evaluator.evaluate({qid: docs for qid, docs in run.items() if docs})
    return {
        label: sum(scores.get(measure, 0.0) for scores in per_query.values())
        / len(collection.queries)
        for measure, label in MEASURES.items()
    }


def _pytrec_eval() -> Any:
    try:
        return importlib.import_module("pytrec_eval")
    except ImportError:
        raise CollectionError(
            "the measures need pytrec-eval: pip install 'llmgw[posts-eval]'"
        ) from None
