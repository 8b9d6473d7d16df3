"""`llmgw posts index FOLDER`, `list` and `remove`: Markdown and HTML posts read into
passages with their title, URL and date; re-indexing reads again only what changed."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from app.chat.tokens import estimate

if TYPE_CHECKING:
    from pathlib import Path

    from posts_support import PostsCommand


def listed(posts_command: PostsCommand) -> dict[str, list[str]]:
    """URL -> the other cells of its row in `llmgw posts list`."""
    done = posts_command("list")
    assert done.code == 0, done.err
    rows = [line.split("  ") for line in done.out.splitlines()[1:]]
    return {row[-1].strip(): [cell.strip() for cell in row[:-1] if cell.strip()] for row in rows}


def passages(index_path: Path) -> list[tuple[int, str, str, str]]:
    """Every passage: its id, its post's URL, its heading and its text."""
    with sqlite3.connect(index_path) as connection:
        rows = connection.execute(
            "SELECT passages.id, posts.url, heading, text FROM passages"
            " JOIN posts ON posts.id = passages.post ORDER BY passages.id"
        ).fetchall()
    return [(int(row[0]), str(row[1]), str(row[2]), str(row[3])) for row in rows]


def test_a_folder_of_markdown_and_html_is_indexed(posts_command: PostsCommand, blog: Path) -> None:
    """Three posts: titles from front matter, a first heading and an HTML page; URLs from front
    matter, the base URL plus the path and a canonical link; dates from front matter, a file
    name and the page's published time. The draft and the hidden folder stay out."""
    done = posts_command("index", str(blog))
    assert done.code == 0, done.err
    assert "3 added, 0 changed, 0 unchanged, 0 removed, 0 failed" in done.out
    assert listed(posts_command) == {
        "https://blog.example/2024/05/tailscale-funnel/": [
            "2024-05-01", "2", "Serving a model through Tailscale Funnel",
        ],
        "https://blog.example/nginx-bearer/": ["2024-03-10", "2", "Bearer tokens in nginx"],
        "https://blog.example/2024-02-01-redis-windows/": [
            "2024-02-01", "2", "Fixed windows in Redis",
        ],
    }  # fmt: skip


def test_passages_follow_headings_and_leave_the_page_chrome_out(
    posts_command: PostsCommand, blog: Path, index_path: Path
) -> None:
    """Each section is a passage under its heading; the HTML page's header, navigation,
    footers and script are not in any passage."""
    assert posts_command("index", str(blog)).code == 0
    found = {(url, heading): text for _, url, heading, text in passages(index_path)}
    nginx = "https://blog.example/nginx-bearer/"
    assert found[(nginx, "The preflight")].startswith("Answer the CORS preflight")
    assert (
        "Authorization header against a map of tokens" in found[(nginx, "Bearer tokens in nginx")]
    )
    everything = " ".join(found.values())
    for chrome in ("Archive", "Copyright", "Tags:", "trackVisitor", "About"):
        assert chrome not in everything
    tailscale = "https://blog.example/2024/05/tailscale-funnel/"
    assert found[(tailscale, "Setting it up")] == (
        "Run tailscale funnel 443 on the Mac, and point nginx at LM Studio's port 1234."
    )


def test_reindexing_reads_again_only_the_post_that_changed(
    posts_command: PostsCommand, blog: Path, index_path: Path
) -> None:
    """Unchanged posts keep their passages as they were (same rows); the changed one is read
    again, and its new words are searchable while its old ones are gone."""
    assert posts_command("index", str(blog)).code == 0
    before = passages(index_path)
    again = posts_command("index", str(blog))
    assert "0 added, 0 changed, 3 unchanged, 0 removed" in again.out
    assert passages(index_path) == before

    page = blog / "nginx.html"
    page.write_text(page.read_text().replace("before the auth check", "ahead of the bearer check"))
    changed = posts_command("index", str(blog))
    assert "0 added, 1 changed, 2 unchanged, 0 removed" in changed.out
    after = passages(index_path)
    nginx = "https://blog.example/nginx-bearer/"
    assert [row for row in after if row[1] != nginx] == [row for row in before if row[1] != nginx]
    assert "ahead of the bearer check" in " ".join(
        text for _, url, _, text in after if url == nginx
    )
    assert "ahead" in posts_command("search", "ahead bearer check").out
    assert "nothing found" in posts_command("search", "auth").out


def test_a_deleted_file_is_removed_and_a_draft_stays_out(
    posts_command: PostsCommand, blog: Path
) -> None:
    """A post whose file is gone leaves the index at the next run; a post turned into a draft
    leaves it too."""
    assert posts_command("index", str(blog)).code == 0
    (blog / "nginx.html").unlink()
    tailscale = blog / "2024" / "tailscale.md"
    tailscale.write_text(tailscale.read_text().replace("date: 2024-05-01", "draft: true"))
    done = posts_command("index", str(blog))
    assert "0 added, 0 changed, 1 unchanged, 2 removed" in done.out
    assert list(listed(posts_command)) == ["https://blog.example/2024-02-01-redis-windows/"]


def test_remove_takes_one_post_out_by_its_url(posts_command: PostsCommand, blog: Path) -> None:
    """`remove URL` removes that post (its passages are no longer found); an unknown URL exits
    1 and says how to find the URLs."""
    assert posts_command("index", str(blog)).code == 0
    done = posts_command("remove", "https://blog.example/nginx-bearer/")
    assert done.code == 0, done.err
    assert "https://blog.example/nginx-bearer/" not in listed(posts_command)
    assert "nothing found" in posts_command("search", "preflight").out
    missing = posts_command("remove", "https://blog.example/nginx-bearer/")
    assert missing.code == 1
    assert "no post at https://blog.example/nginx-bearer/" in missing.err
    assert "llmgw posts list" in missing.err


def test_passages_are_bounded_by_tokens(
    posts_command: PostsCommand, tmp_path: Path, index_path: Path
) -> None:
    """A long post is cut so that every passage fits LLMGW_POSTS_PASSAGE_TOKENS (by the chat's
    own token estimate), with none of its words lost."""
    folder = tmp_path / "long"
    folder.mkdir()
    words = [f"word{number}" for number in range(3_000)]
    paragraphs = "\n\n".join(" ".join(words[start : start + 150]) for start in range(0, 3_000, 150))
    (folder / "long.md").write_text(f"# A long post\n\n{paragraphs}\n\n{'x' * 2_000}\n")
    assert posts_command("index", str(folder), posts_passage_tokens="64").code == 0
    texts = [text for _, _, _, text in passages(index_path)]
    assert len(texts) > 10
    assert all(estimate(len(text)) <= 64 for text in texts)
    assert " ".join(texts).split()[:3_000] == words


def test_list_of_an_index_not_built_yet(posts_command: PostsCommand) -> None:
    """`list` before any `index` says how to build one."""
    done = posts_command("list")
    assert done.code == 0
    assert "llmgw posts index SOURCE" in done.out
