"""Fixtures of the posts' tests: `llmgw posts` run in this process with a clean LLMGW_*
environment (the index in the test's own folder), and a folder of sample posts."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from posts_support import Done, PostsCommand, write_posts

from app.posts.cli import main

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def index_path(tmp_path: Path) -> Path:
    """Where the test's index file is."""
    return tmp_path / "index" / "posts.sqlite3"


@pytest.fixture
def posts_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], index_path: Path
) -> PostsCommand:
    """`llmgw posts ARGS` with LLMGW_POSTS_INDEX in the test's folder, the base URL
    https://blog.example, no other LLMGW_* variable but the settings given (redis_url="..."
    sets LLMGW_REDIS_URL); each call's exit code and output."""
    index_path.parent.mkdir(exist_ok=True)

    def run(*args: str, **settings: str) -> Done:
        for name in [name for name in os.environ if name.startswith("LLMGW_")]:
            monkeypatch.delenv(name)
        values = {
            "posts_index": str(index_path),
            "posts_base_url": "https://blog.example",
        }
        for name, value in (values | settings).items():
            monkeypatch.setenv(f"LLMGW_{name.upper()}", value)
        capsys.readouterr()
        code = main(list(args))
        printed = capsys.readouterr()
        return Done(code, printed.out, printed.err)

    return run


@pytest.fixture
def blog(tmp_path: Path) -> Path:
    """A folder of sample posts."""
    return write_posts(tmp_path / "blog")
