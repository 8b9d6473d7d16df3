"""Bad input to `llmgw posts` gets a clear message and an exit code a script can rely on
(1: some posts failed or no such post, 2: misused or misconfigured), never a traceback, and a
failed run leaves the index as it was."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

    from posts_support import PostsCommand


def test_a_source_that_is_neither_a_folder_nor_a_url(
    posts_command: PostsCommand, tmp_path: Path, index_path: Path
) -> None:
    """A missing folder, or a file, is refused naming it; no index is made."""
    for source in (str(tmp_path / "nowhere"), str(__file__)):
        done = posts_command("index", source)
        assert done.code == 2
        assert f"{source} is not a folder, nor an http(s) URL of a feed or a sitemap" in done.err
    assert not index_path.exists()


def test_a_post_without_a_url_names_the_file_and_the_fix(
    posts_command: PostsCommand, blog: Path
) -> None:
    """Without a base URL, the posts that have no absolute URL of their own (none, or a path in
    their front matter) fail, each named with the setting that would give it one; the page
    with a canonical link is indexed."""
    done = posts_command("index", str(blog), posts_base_url="")
    assert done.code == 1
    assert "1 added, 0 changed, 0 unchanged, 0 removed, 2 failed" in done.out
    assert "2024-02-01-redis-windows.md: it has no URL" in done.err
    assert "2024/tailscale.md: it has no URL" in done.err
    assert "LLMGW_POSTS_BASE_URL or --base-url" in done.err
    with_base = posts_command("index", str(blog), "--base-url", "https://blog.example/")
    # A new base URL may move every post: all are read again.
    assert "2 added, 1 changed, 0 unchanged, 0 removed, 0 failed" in with_base.out


def test_broken_front_matter_fails_that_post_only(posts_command: PostsCommand, blog: Path) -> None:
    """A post whose front matter is no YAML fails with that reason, and stays as it was."""
    assert posts_command("index", str(blog)).code == 0
    post = blog / "2024" / "tailscale.md"
    post.write_text(post.read_text().replace("title: Serving", "title: [Serving"))
    done = posts_command("index", str(blog))
    assert done.code == 1
    assert "2024/tailscale.md: its front matter is not YAML" in done.err
    assert "0 added, 0 changed, 2 unchanged, 0 removed, 1 failed" in done.out
    assert "Tailscale Funnel" in posts_command("search", "funnel").out


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"posts_passage_tokens": "1"}, "LLMGW_POSTS_PASSAGE_TOKENS"),
        ({"posts_base_url": "blog.example"}, "LLMGW_POSTS_BASE_URL: "),
        ({"posts_share": "everywhere"}, "LLMGW_POSTS_SHARE"),
        ({"posts_share": "redis"}, "LLMGW_POSTS_SHARE=redis needs LLMGW_REDIS_URL"),
        ({"posts_embeddings_url": "localhost:1234"}, "LLMGW_POSTS_EMBEDDINGS_URL"),
    ],
)
def test_bad_settings_name_the_variable(
    posts_command: PostsCommand, blog: Path, settings: dict[str, str], message: str
) -> None:
    """A bad LLMGW_POSTS_* value exits 2 with its variable named."""
    done = posts_command("index", str(blog), **settings)
    assert done.code == 2
    assert message in done.err


def test_unreachable_redis_is_named_without_its_url(
    posts_command: PostsCommand, blog: Path
) -> None:
    """A Redis that cannot be reached exits 2, saying so without the URL (it may carry a
    password)."""
    url = "redis://:hunter2hunter2@127.0.0.1:9/0"
    done = posts_command("index", str(blog), redis_url=url, posts_share="redis")
    assert done.code == 2
    assert "cannot reach Redis at LLMGW_REDIS_URL" in done.err
    assert "hunter2" not in done.err + done.out


def test_unknown_commands_and_options_are_usage_errors(posts_command: PostsCommand) -> None:
    """argparse's own exit 2 for an unknown command or a bad --limit."""
    for args in (("reindex",), ("search", "x", "--limit", "0"), ("index", "--include")):
        with pytest.raises(SystemExit) as exited:
            posts_command(*args)
        assert exited.value.code == 2


def test_include_is_for_urls(posts_command: PostsCommand, blog: Path) -> None:
    """--include with a folder is refused: it filters a feed's or sitemap's URLs."""
    done = posts_command("index", str(blog), "--include", "/posts/*")
    assert done.code == 2
    assert "--include is for a feed's or a sitemap's URLs" in done.err


def test_the_gateways_command_runs_it(tmp_path: Path) -> None:
    """`llmgw posts` is wired into the `llmgw` command, with its own help."""
    done = subprocess.run(
        [sys.executable, "-m", "app", "posts", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    for command in ("index", "list", "remove", "search", "eval"):
        assert command in done.stdout
