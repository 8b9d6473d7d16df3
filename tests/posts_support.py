"""Helpers of the posts' tests: a folder of sample posts (and its index, built here, or made to
look old), `llmgw posts` run in this process with only the LLMGW_* variables a test gives, and
a small deterministic embeddings endpoint."""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib
import json
import math
import shutil
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar, Protocol

from app.posts.folder import folder_posts
from app.posts.indexer import Options
from app.posts.indexer import index as build

DIMENSIONS = 256
BLOG = "https://blog.example"

TAILSCALE = """---
title: Serving a model through Tailscale Funnel
date: 2024-05-01
url: /2024/05/tailscale-funnel/
---
# Why a funnel

Tailscale Funnel exposes one port of the home machine to the internet, over HTTPS, without
opening the router.

## Setting it up

Run `tailscale funnel 443` on the Mac, and point nginx at LM Studio's port 1234.
"""

WINDOWS = """# Fixed windows in Redis

One Lua script checks the global window and the visitor's window in a single round trip.

## Why not two calls

Two round trips let a hammering visitor spend the global budget before being refused.
"""

NGINX = """<!doctype html>
<html><head><title>Bearer tokens in nginx | A blog</title>
<link rel="canonical" href="https://blog.example/nginx-bearer/">
<meta property="article:published_time" content="2024-03-10T09:00:00+00:00">
</head><body>
<header><a href="/">A blog</a> <a href="/about/">About</a></header>
<nav>Home Archive Tags</nav>
<article>
<h1>Bearer tokens in nginx</h1>
<p>nginx checks the <b>Authorization</b> header against a map of tokens kept out of the
config.</p>
<h2>The preflight</h2>
<p>Answer the CORS preflight before the auth check, or OPTIONS gets a 401.</p>
<footer>Tags: nginx, security</footer>
</article>
<footer>Copyright the author</footer>
<script>trackVisitor()</script>
</body></html>
"""

DRAFT = """---
title: Not ready yet
draft: true
---
A draft about quantum toasters.
"""


def write_posts(folder: Path) -> Path:
    """A blog's folder: two Markdown posts (one with front matter), an HTML page, a draft."""
    (folder / "2024").mkdir(parents=True, exist_ok=True)
    (folder / "2024" / "tailscale.md").write_text(TAILSCALE)
    (folder / "2024-02-01-redis-windows.md").write_text(WINDOWS)
    (folder / "nginx.html").write_text(NGINX)
    (folder / "draft.md").write_text(DRAFT)
    (folder / ".hidden").mkdir(exist_ok=True)
    (folder / ".hidden" / "secret.md").write_text("# Secret\n\nNever indexed.\n")
    return folder


@dataclass
class Done:
    """What a command did: its exit code and what it printed."""

    code: int
    out: str
    err: str


class PostsCommand(Protocol):
    """`llmgw posts ARGS` run with these settings (the fixture posts_command)."""

    def __call__(self, *args: str, **settings: str) -> Done: ...


def vector(text: str) -> list[float]:
    """A unit vector of the text's character trigrams, hashed: texts that share pieces of
    words are near, whatever their whole words."""
    counts = [0.0] * DIMENSIONS
    padded = f"  {text.lower()}  "
    for start in range(len(padded) - 2):
        digest = hashlib.blake2b(padded[start : start + 3].encode(), digest_size=4).digest()
        counts[int.from_bytes(digest, "big") % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(value * value for value in counts)) or 1.0
    return [value / norm for value in counts]


class Embeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible POST /v1/embeddings of `vector`; it records each request's inputs
    and Authorization header, and answers 503 while `down` is set."""

    inputs: ClassVar[list[list[str]]] = []
    authorizations: ClassVar[list[str]] = []
    down = threading.Event()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/embeddings" or self.down.is_set():
            self._answer(503, {"error": "not now"})
            return
        self.inputs.append(list(body["input"]))
        self.authorizations.append(self.headers.get("Authorization", ""))
        data = [
            {"object": "embedding", "index": index, "embedding": made}
            for index, made in enumerate(self.embed(list(body["input"])))
        ]
        self._answer(200, {"object": "list", "data": data, "model": body["model"]})

    def embed(self, texts: list[str]) -> list[list[float]]:
        """The texts' vectors."""
        return [vector(text) for text in texts]

    def _answer(self, status: int, payload: object) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *_: object) -> None:
        """Quiet."""

    @classmethod
    def reset(cls) -> None:
        """A clean slate for a test."""
        cls.inputs.clear()
        cls.authorizations.clear()
        cls.down.clear()


@functools.cache
def word_llama() -> Any:
    """WordLlama's bundled model (256 dimensions), loaded without the network. Its loader looks
    for the bundled tokenizer under tokenizer/ while the wheel ships it under tokenizers/, so
    the file is given to it as a cache of its own."""
    wordllama = importlib.import_module("wordllama")
    cache = Path(tempfile.mkdtemp(prefix="wordllama-"))
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    (cache / "tokenizers").mkdir()
    bundled = (
        Path(str(wordllama.__file__)).parent / "tokenizers" / "l2_supercat_tokenizer_config.json"
    )
    shutil.copy(bundled, cache / "tokenizers")
    return wordllama.WordLlama.load(cache_dir=cache, disable_download=True)


def word_llama_vectors(texts: list[str]) -> list[list[float]]:
    """Unit vectors of a real (if small) embedding model."""
    return [[float(value) for value in row] for row in word_llama().embed(texts, norm=True)]


class ModelEmbeddings(Embeddings):
    """Embeddings as `Embeddings`, from WordLlama instead of trigrams."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        """The texts' vectors."""
        return word_llama_vectors(texts)


def index_folder(folder: Path, index: Path, base_url: str = BLOG) -> Path:
    """Index a folder of posts into the file `index`, as `llmgw posts index FOLDER` does with
    LLMGW_POSTS_BASE_URL=base_url and the index shared as a file."""
    index.parent.mkdir(parents=True, exist_ok=True)
    report = build(index, str(folder.resolve()), folder_posts(folder, base_url), Options(base_url))
    assert not report.failed, report.problems
    return index


def backdate(index: Path, seconds: float) -> None:
    """Make the index look built `seconds` ago (its `indexed_at`), as if nobody re-ran
    `llmgw posts index` since."""
    with contextlib.closing(sqlite3.connect(index)) as connection, connection:
        connection.execute(
            "UPDATE meta SET value = ? WHERE key = 'indexed_at'", (f"{time.time() - seconds:.3f}",)
        )
