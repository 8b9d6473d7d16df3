"""`llmgw posts eval DIR` on BEIR collections: the one shipped (the project's README cut into
passages, with questions written for them) scores above a floor; fused search with a real
embedding model scores at least as well as lexical search; the measures are trec_eval's, with
a query that finds nothing counted as 0; a folder that is no collection is refused."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from posts_support import ModelEmbeddings
from support import serving

from app.posts import vectors

if TYPE_CHECKING:
    from posts_support import PostsCommand

COLLECTION = Path(__file__).parent / "collection"


def figures(output: str) -> dict[str, tuple[float, float]]:
    """Search -> (nDCG@10, recall@5), as `llmgw posts eval` printed them."""
    rows = re.findall(r"^(lexical|dense|fused)\s+([\d.]+)\s+([\d.]+)$", output, re.MULTILINE)
    return {name: (float(ndcg), float(recall)) for name, ndcg, recall in rows}


def test_the_shipped_collection_scores_above_its_floor(posts_command: PostsCommand) -> None:
    """Lexical search alone: nDCG@10 at least 0.75 and recall@5 at least 0.85 on 45 questions
    over 108 passages of the README; dense and fused are said to be off."""
    done = posts_command("eval", str(COLLECTION))
    assert done.code == 0, done.err
    assert "108 documents, 45 judged queries" in done.out
    ndcg, recall = figures(done.out)["lexical"]
    assert ndcg >= 0.75
    assert recall >= 0.85
    assert "dense and fused: off (set LLMGW_POSTS_EMBEDDINGS_URL)" in done.out


@pytest.mark.skipif(
    not vectors.available() or importlib.util.find_spec("wordllama") is None,
    reason="the posts-dense extra and the dev group's wordllama",
)
def test_fused_search_with_a_real_model_does_not_lose_to_lexical(
    posts_command: PostsCommand,
) -> None:
    """With WordLlama behind /v1/embeddings: dense search ranks sensibly by itself, and
    reciprocal rank fusion of both scores at least lexical's nDCG@10."""
    ModelEmbeddings.reset()
    with serving(ModelEmbeddings) as url:
        done = posts_command("eval", str(COLLECTION), posts_embeddings_url=url)
    assert done.code == 0, done.err
    found = figures(done.out)
    assert set(found) == {"lexical", "dense", "fused"}
    assert found["dense"][0] >= 0.5
    assert found["fused"][0] >= found["lexical"][0]


def write_collection(
    folder: Path, corpus: list[dict[str, str]], queries: dict[str, str], qrels: str
) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(doc) + "\n" for doc in corpus))
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": qid, "text": text}) + "\n" for qid, text in queries.items())
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels)
    return folder


def test_a_query_that_finds_nothing_counts_as_zero(
    posts_command: PostsCommand, tmp_path: Path
) -> None:
    """One query finds its only relevant document first (1.0), the other finds nothing (0):
    the means are 0.5, not 1.0."""
    corpus = [
        {"_id": "d1", "title": "Redis", "text": "Fixed windows in one Lua script."},
        {"_id": "d2", "title": "nginx", "text": "Bearer tokens in a map."},
    ]
    queries = {"q1": "lua windows", "q2": "quantum toaster"}
    folder = write_collection(tmp_path / "tiny", corpus, queries, "q1\td1\t1\nq2\td2\t1\n")
    done = posts_command("eval", str(folder))
    assert figures(done.out)["lexical"] == (0.5, 0.5)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("corpus.jsonl", "cannot read"),
        ("queries.jsonl", "is not JSON"),
        ("qrels/test.tsv", "is not query-id, corpus-id, score"),
    ],
)
def test_a_folder_that_is_no_collection(
    posts_command: PostsCommand, tmp_path: Path, broken: str, message: str
) -> None:
    """A missing or malformed file exits 2, naming the file and what is wrong."""
    corpus = [{"_id": "d1", "title": "Redis", "text": "Fixed windows."}]
    folder = write_collection(tmp_path / "bad", corpus, {"q1": "windows"}, "q1\td1\t1\n")
    target = folder / broken
    if broken == "corpus.jsonl":
        target.unlink()
    else:
        target.write_text(target.read_text() + "{not json\tor tsv\n")
    done = posts_command("eval", str(folder))
    assert done.code == 2
    assert str(target) in done.err
    assert message in done.err
