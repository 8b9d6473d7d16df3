"""Fixtures of the posts-reading tests: a blog indexed by the real `llmgw posts index`
command, and the sim (function tools on)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from posts_support import write_posts
from rag_support import FAST, INJECTED, index_posts
from sim_process import SimHandle, running_sim

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def blog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of posts: the posts' tests' samples and one with an injected instruction."""
    folder = write_posts(tmp_path_factory.mktemp("blog"))
    (folder / "prompts.md").write_text(INJECTED)
    return folder


@pytest.fixture(scope="module")
def posts_index(blog: Path) -> Path:
    """The blog's index file."""
    index = blog.parent / "index" / "posts.sqlite3"
    index.parent.mkdir(exist_ok=True)
    index_posts(blog, index)
    return index


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimHandle]:
    with running_sim(*FAST) as handle:
        yield handle


@pytest.fixture
def sim(shared_sim: SimHandle) -> SimHandle:
    """The shared sim: healthy, zeroed, its tools as its command line says."""
    httpx.post(f"{shared_sim.url}/_sim/tools", json={}, timeout=10).raise_for_status()
    return shared_sim.healthy()
