"""The index's one SQLite file: posts, their passages, an FTS5 table over the passages
(contentless: the text is kept once, in `passages`), and with dense search sqlite-vec's
vectors. Layout:

`meta`            key -> value: indexed_at (Unix time), and the embeddings' model,
                  dimensions and prefixes when the passages have vectors
`posts`           one row per post: the source it came from and its key there (a file's
                  path, a page's URL), its URL, title, date, content hash and stamp
`passages`        one row per passage: its post, heading and text
`passages_fts`    FTS5 over title, heading and text; rowid = the passage's id; Porter stems
`passage_vectors` vec0, rowid = the passage's id (dense search only)
`lexical_index`   the passages' BM25 index, the lexical search's (app/posts/lexical.py)

The indexer never changes the file in place: it changes a copy and renames it over the old one,
so a gateway may open the file as immutable, and its copy in Redis is always a whole index.
The lexical index is built again from all the passages each time (10,000 in about a second)."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from typing import TYPE_CHECKING

from app.posts import lexical, vectors
from app.posts.records import IndexSize, PostInfo

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from app.posts.passages import Piece

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS posts (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    date TEXT,
    hash TEXT NOT NULL,
    stamp TEXT NOT NULL DEFAULT '',
    UNIQUE (source, key)
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    post INTEGER NOT NULL REFERENCES posts (id),
    heading TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_of_post ON passages (post);
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5 (
    title, heading, text, content = '', tokenize = 'porter unicode61 remove_diacritics 2'
);
"""


# A post's content hash and stamp, as the index has them.
Known = tuple[str, str]


@contextlib.contextmanager
def rewriting(path: Path, *, vectors_on: bool) -> Iterator[sqlite3.Connection]:
    """A writable copy of the index at `path` (a new index if there is none), renamed over it
    when the block ends without an error, and thrown away when it ends with one."""
    work = path.with_name(f".{path.name}.{os.getpid()}.new")
    if path.exists():
        shutil.copyfile(path, work)
    connection = vectors.connect(work, vectors=vectors_on or has_vectors_file(path))
    try:
        connection.executescript(SCHEMA)
        yield connection
        indexed_at = f"{time.time():.3f}"
        set_meta(connection, indexed_at=indexed_at)
        lexical.build(connection).save(connection, indexed_at)
        connection.commit()
        connection.execute("VACUUM")
    except BaseException:
        connection.close()
        work.unlink(missing_ok=True)
        raise
    connection.close()
    work.replace(path)


def has_vectors_file(path: Path) -> bool:
    """Whether the index file at `path` has vectors (so a copy must load sqlite-vec)."""
    if not path.exists():
        return False
    connection = vectors.connect(path, read_only=True)
    try:
        return has_vectors(connection)
    finally:
        connection.close()


def has_vectors(connection: sqlite3.Connection) -> bool:
    """Whether the passages have vectors."""
    row = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE name = 'passage_vectors'"
    ).fetchone()
    return row is not None


def meta(connection: sqlite3.Connection) -> dict[str, str]:
    """The index's own facts (`meta`'s rows)."""
    with contextlib.suppress(*vectors.database_errors()):  # no table: no index yet
        return dict(connection.execute("SELECT key, value FROM meta").fetchall())
    return {}


def set_meta(connection: sqlite3.Connection, **values: str | None) -> None:
    """Set (or, given None, remove) facts of the index."""
    for key, value in values.items():
        if value is None:
            connection.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))


def known(connection: sqlite3.Connection, source: str) -> dict[str, Known]:
    """The posts of one source: key -> (hash, stamp)."""
    rows = connection.execute("SELECT key, hash, stamp FROM posts WHERE source = ?", (source,))
    return {key: (digest, stamp) for key, digest, stamp in rows}


def put(
    connection: sqlite3.Connection,
    *,
    source: str,
    key: str,
    url: str,
    title: str,
    date: str | None,
    digest: str,
    stamp: str,
    pieces: Sequence[Piece],
) -> list[int]:
    """Store a post and its passages in place of its old ones (and of another source's post
    at the same URL); the ids of its new passages."""
    for (post,) in connection.execute(
        "SELECT id FROM posts WHERE (source = ? AND key = ?) OR url = ?", (source, key, url)
    ).fetchall():
        _drop(connection, post)
    post = connection.execute(
        "INSERT INTO posts (source, key, url, title, date, hash, stamp)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (source, key, url, title, date, digest, stamp),
    ).lastrowid
    ids: list[int] = []
    for piece in pieces:
        passage = connection.execute(
            "INSERT INTO passages (post, heading, text) VALUES (?, ?, ?)",
            (post, piece.heading, piece.text),
        ).lastrowid
        assert passage is not None  # noqa: S101 - an INSERT's rowid
        connection.execute(
            "INSERT INTO passages_fts (rowid, title, heading, text) VALUES (?, ?, ?, ?)",
            (passage, title, piece.heading, piece.text),
        )
        ids.append(passage)
    return ids


def restamp(connection: sqlite3.Connection, source: str, key: str, stamp: str) -> None:
    """A post found unchanged under a new stamp (a sitemap's lastmod moved, its text did not)."""
    connection.execute(
        "UPDATE posts SET stamp = ? WHERE source = ? AND key = ?", (stamp, source, key)
    )


def remove(
    connection: sqlite3.Connection, *, url: str | None = None, key: tuple[str, str] | None = None
) -> bool:
    """Remove a post by its URL, or by its source and key; whether there was one."""
    if url is not None:
        row = connection.execute("SELECT id FROM posts WHERE url = ?", (url,)).fetchone()
    elif key is not None:
        row = connection.execute(
            "SELECT id FROM posts WHERE source = ? AND key = ?", key
        ).fetchone()
    else:
        row = None
    if row is None:
        return False
    _drop(connection, row[0])
    return True


def _drop(connection: sqlite3.Connection, post: int) -> None:
    # A contentless FTS5 row is deleted with the values it was inserted with.
    connection.execute(
        "INSERT INTO passages_fts (passages_fts, rowid, title, heading, text)"
        " SELECT 'delete', passages.id, posts.title, passages.heading, passages.text"
        " FROM passages JOIN posts ON posts.id = passages.post WHERE posts.id = ?",
        (post,),
    )
    if has_vectors(connection):
        connection.execute(
            "DELETE FROM passage_vectors WHERE rowid IN (SELECT id FROM passages WHERE post = ?)",
            (post,),
        )
    connection.execute("DELETE FROM passages WHERE post = ?", (post,))
    connection.execute("DELETE FROM posts WHERE id = ?", (post,))


def posts(connection: sqlite3.Connection) -> list[PostInfo]:
    """Every post, newest first (undated last), with its number of passages."""
    rows = connection.execute(
        "SELECT url, title, date, (SELECT count(*) FROM passages WHERE post = posts.id), source"
        " FROM posts ORDER BY date IS NULL, date DESC, title"
    ).fetchall()
    return [PostInfo(*row) for row in rows]


def size(connection: sqlite3.Connection, path: Path) -> IndexSize:
    """Posts, passages and the file's bytes."""
    (count,) = connection.execute("SELECT count(*) FROM posts").fetchone()
    (passages,) = connection.execute("SELECT count(*) FROM passages").fetchone()
    return IndexSize(int(count), int(passages), path.stat().st_size if path.exists() else 0)
