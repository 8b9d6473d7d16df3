"""Dense search (the posts-dense extra) against an OpenAI-compatible /v1/embeddings served on
loopback: passages get vectors at index time (only the new ones on a re-index), searches fuse
both rankings, and an endpoint that fails costs dense search only, never the answer."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from posts_support import Embeddings, ModelEmbeddings, vector, word_llama_vectors
from support import serving

from app.posts import PostsIndex, indexer, search, vectors
from app.posts.index import embedder_of
from app.posts.records import Found, Loaded
from app.settings import load_settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from posts_support import PostsCommand

pytestmark = pytest.mark.skipif(not vectors.available(), reason="the posts-dense extra")
TOKEN = "embeddings-token-for-tests"
COLLECTION = Path(__file__).parent / "collection"


@pytest.fixture
def endpoint() -> Iterator[str]:
    """The embeddings server's root URL, its records cleared."""
    Embeddings.reset()
    with serving(Embeddings) as url:
        yield url


def dense_index(index_path: Path, url: str) -> PostsIndex:
    settings = load_settings(posts_embeddings_url=url, posts_embeddings_token=TOKEN)
    return PostsIndex(share="file", path=index_path, embedder=embedder_of(settings))


def test_passages_get_vectors_and_only_new_ones_later(
    posts_command: PostsCommand, blog: Path, endpoint: str
) -> None:
    """Every passage is embedded once, with the document prefix and the bearer token; after
    one post changes only its passages are embedded again."""
    done = posts_command(
        "index", str(blog), posts_embeddings_url=endpoint, posts_embeddings_token=TOKEN
    )
    assert done.code == 0, done.err
    assert "6 passages embedded" in done.out
    sent = [text for batch in Embeddings.inputs for text in batch]
    assert len(sent) == 6
    assert all(text.startswith("search_document: ") for text in sent)
    assert set(Embeddings.authorizations) == {f"Bearer {TOKEN}"}

    Embeddings.inputs.clear()
    post = blog / "nginx.html"
    post.write_text(post.read_text().replace("CORS preflight", "browser's preflight"))
    again = posts_command("index", str(blog), posts_embeddings_url=endpoint)
    assert "2 passages embedded" in again.out
    assert all("nginx" in text for batch in Embeddings.inputs for text in batch)


def test_fused_search_finds_what_words_alone_miss(
    posts_command: PostsCommand, blog: Path, index_path: Path, endpoint: str
) -> None:
    """A query sharing no word with a passage, only pieces of one (a typo), finds it through
    its vector; the query is embedded with the query prefix."""
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0

    async def scenario() -> tuple[list[str], list[str], bool]:
        index = dense_index(index_path, endpoint)
        await index.refresh()
        fused = [passage.heading for passage in await index.search("preflihgt")]
        lexical_only = PostsIndex(share="file", path=index_path)
        await lexical_only.refresh()
        words = [passage.heading for passage in await lexical_only.search("preflihgt")]
        dense = index.dense
        await index.aclose()
        await lexical_only.aclose()
        return fused, words, dense

    fused, words, dense = asyncio.run(scenario())
    assert dense
    assert words == []  # a typo: no word nor stem in common
    assert fused[0] == "The preflight"
    assert Embeddings.inputs[-1] == ["search_query: preflihgt"]


def test_a_failing_endpoint_at_search_time_leaves_lexical_search(
    posts_command: PostsCommand, blog: Path, index_path: Path, endpoint: str
) -> None:
    """While the endpoint answers 503, searches still find passages by their words."""
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0
    Embeddings.down.set()

    async def scenario() -> list[str]:
        index = dense_index(index_path, endpoint)
        await index.refresh()
        found = [passage.heading for passage in await index.search("the preflight")]
        await index.aclose()
        return found

    assert asyncio.run(scenario())[0] == "The preflight"


def test_a_failing_endpoint_at_index_time_is_caught_up_later(
    posts_command: PostsCommand, blog: Path, endpoint: str
) -> None:
    """The text is indexed anyway (exit 1, saying how many passages lack a vector); the next
    run embeds them."""
    Embeddings.down.set()
    done = posts_command("index", str(blog), posts_embeddings_url=endpoint)
    assert done.code == 1
    assert "3 added" in done.out
    assert "6 passages have no vector yet (index again to add them)" in done.err
    Embeddings.down.clear()
    again = posts_command("index", str(blog), posts_embeddings_url=endpoint)
    assert again.code == 0, again.err
    assert "3 unchanged" in again.out
    assert "6 passages embedded" in again.out


def test_another_model_embeds_everything_again(
    posts_command: PostsCommand, blog: Path, endpoint: str
) -> None:
    """Vectors of one model cannot be compared with another's: a new model re-embeds all, and
    indexing without embeddings drops them."""
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0
    other = posts_command(
        "index", str(blog), posts_embeddings_url=endpoint, posts_embeddings_model="another"
    )
    assert "6 passages embedded" in other.out
    assert posts_command("index", str(blog)).code == 0

    async def scenario() -> bool:
        index = PostsIndex(share="file", path=blog.parent / "index" / "posts.sqlite3")
        await index.refresh()
        dense = index.dense
        await index.aclose()
        return dense

    assert not asyncio.run(scenario())


def sqlite_vec_nearest(index_path: Path, query: list[float], limit: int) -> list[tuple[int, float]]:
    """sqlite-vec's own k-nearest search of the file (what dense search was before it held the
    vectors in memory): (id, cosine similarity)."""
    connection = vectors.connect(index_path, read_only=True, vectors=True)
    rows = connection.execute(
        "SELECT rowid, distance FROM passage_vectors WHERE embedding MATCH ? AND k = ?"
        " ORDER BY distance",
        (vectors.packed(query), limit),
    ).fetchall()
    connection.close()
    return [(int(rowid), 1.0 - float(distance)) for rowid, distance in rows]


def in_memory(index_path: Path) -> vectors.Matrix:
    connection = vectors.connect(index_path, read_only=True, vectors=True)
    matrix = vectors.loaded(connection)
    connection.close()
    return matrix


def embedded_texts(index_path: Path) -> dict[int, str]:
    """Passage id -> the text its vector was made of (as the indexer sends it)."""
    connection = vectors.connect(index_path, read_only=True)
    rows = connection.execute(
        "SELECT passages.id, posts.title, passages.heading, passages.text"
        " FROM passages JOIN posts ON posts.id = passages.post"
    ).fetchall()
    connection.close()
    return {
        rowid: "search_document: " + "\n".join(dict.fromkeys((title, heading, text)))
        for rowid, title, heading, text in rows
    }


def test_dense_search_ranks_as_sqlite_vec_does(
    posts_command: PostsCommand, blog: Path, index_path: Path, endpoint: str
) -> None:
    """The vectors in memory give the nearest passage in meaning first (a typo of its word),
    and every passage in sqlite-vec's order with its cosine similarity."""
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0
    matrix = in_memory(index_path)
    query = vector("search_query: preflihgt")
    found = search.dense(matrix, query, 10)
    expected = sqlite_vec_nearest(index_path, query, 10)
    assert [rowid for rowid, _ in found] == [rowid for rowid, _ in expected]
    assert [score for _, score in found] == pytest.approx([s for _, s in expected], abs=1e-5)
    assert "preflight" in embedded_texts(index_path)[found[0][0]]
    assert len(found) == 6  # all the passages there are, no more
    assert search.dense(matrix, [1.0, 0.0], 10) == []  # another model's size: near none


def test_a_reindex_keeps_each_vector_with_its_passage(
    posts_command: PostsCommand, blog: Path, index_path: Path, endpoint: str
) -> None:
    """After one post changes and another is removed, each passage left is nearest its own
    text, and the removed post's passages are nowhere."""
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0
    before = set(embedded_texts(index_path))
    post = blog / "nginx.html"
    post.write_text(post.read_text().replace("CORS preflight", "browser's preflight"))
    (blog / "2024" / "tailscale.md").unlink()
    assert posts_command("index", str(blog), posts_embeddings_url=endpoint).code == 0
    texts = embedded_texts(index_path)
    matrix = in_memory(index_path)
    assert sorted(matrix.ids.tolist()) == sorted(texts)
    assert before - set(texts)  # the changed and removed posts' old passages are gone
    for rowid, text in texts.items():
        (nearest, similarity), *_ = search.dense(matrix, vector(text), 3)
        assert nearest == rowid
        assert similarity == pytest.approx(1.0, abs=1e-5)
    assert not any("tailscale funnel 443" in text for text in texts.values())


@pytest.mark.skipif(importlib.util.find_spec("wordllama") is None, reason="the dev group's")
def test_the_shipped_collection_ranks_as_with_sqlite_vec(index_path: Path) -> None:
    """With a real (small) model's vectors of the README's 108 passages, each of the 45
    questions ranks every passage as sqlite-vec's own search did."""
    corpus = [json.loads(line) for line in (COLLECTION / "corpus.jsonl").open() if line.strip()]
    found = [
        Found(doc["_id"], functools.partial(Loaded, doc["text"], "markdown", doc["_id"], title))
        for doc in corpus
        for title in [doc["title"] or doc["_id"]]
    ]
    ModelEmbeddings.reset()
    index_path.parent.mkdir()
    with serving(ModelEmbeddings) as url:
        options = indexer.Options(embedder=vectors.Embedder(url, "wordllama"))
        report = indexer.index(index_path, "collection", found, options)
    assert not report.problems
    matrix = in_memory(index_path)
    questions = [json.loads(line)["text"] for line in (COLLECTION / "queries.jsonl").open()]
    for query in word_llama_vectors(questions):
        ranked = search.dense(matrix, query, 400)
        expected = sqlite_vec_nearest(index_path, query, 400)
        assert [rowid for rowid, _ in ranked] == [rowid for rowid, _ in expected]
