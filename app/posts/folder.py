"""The posts of a folder: its Markdown (.md, .markdown) and HTML (.html, .htm) files, in every
subfolder but hidden ones and `_drafts`. A file's key is its path in the folder.

A post without a URL of its own (front matter `url:` or `permalink:`, an HTML page's canonical
link) is at the base URL plus its path: `posts/tailscale.md` at `BASE/posts/tailscale/`,
`posts/index.md` at `BASE/posts/`, `blog/a.html` at `BASE/blog/a.html`, `blog/index.html` at
`BASE/blog/`. A file named like Jekyll's posts (`2024-05-01-tailscale.md`) is dated by its
name when nothing inside dates it."""

from __future__ import annotations

import datetime as dt
from functools import partial
from typing import TYPE_CHECKING

from app.posts.records import Found, Loaded

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KINDS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html"}
SKIPPED = ("_drafts", "node_modules")
INDEX_NAMES = ("index", "_index", "readme")


def folder_posts(root: Path, base_url: str | None) -> Iterator[Found]:
    """Each post file under `root`, in path order."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.suffix.lower() not in KINDS or not path.is_file() or _hidden(relative):
            continue
        yield Found(relative.as_posix(), partial(_load, path, relative, base_url))


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") or part in SKIPPED for part in relative.parts)


def _load(path: Path, relative: Path, base_url: str | None) -> Loaded:
    kind = KINDS[path.suffix.lower()]
    text = path.read_bytes().decode("utf-8", errors="replace")
    url = f"{base_url}/{web_path(relative, kind)}" if base_url else None
    return Loaded(text, kind, url=url, date=_date_of_name(path.stem))


def web_path(relative: Path, kind: str) -> str:
    """Where a file of the folder is served below the base URL."""
    parent = relative.parent.as_posix()
    folder = "" if parent == "." else f"{parent}/"
    if relative.stem.lower() in INDEX_NAMES:
        return folder
    if kind == "markdown":
        return f"{folder}{relative.stem}/"
    return relative.as_posix()


def _date_of_name(stem: str) -> str | None:
    try:
        return dt.date.fromisoformat(stem[:10]).isoformat()
    except ValueError:
        return None
