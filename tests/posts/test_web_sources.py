"""`llmgw posts index URL` over a blog served on loopback: an RSS feed with whole contents, an
Atom feed, a summary-only entry read from its page, and a sitemap whose unchanged pages (by
lastmod) are not fetched again."""

from __future__ import annotations

import gzip
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, ClassVar

import pytest
from posts_support import NGINX
from support import serving

if TYPE_CHECKING:
    from collections.abc import Iterator

    from posts_support import PostsCommand

RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>A blog</title><link>{base}/</link>
<item><title>Waking a sleeping model</title><link>{base}/waking/</link>
<pubDate>Tue, 02 Apr 2024 08:00:00 GMT</pubDate>
<description>Short.</description>
<content:encoded><![CDATA[<p>LM Studio unloads an idle model after an hour.</p>
<h2>One waker</h2><p>Exactly one chat wakes it; the others wait.</p>]]></content:encoded>
</item>
<item><title>Bearer tokens in nginx</title><link>{base}/nginx-bearer/</link>
<pubDate>Sun, 10 Mar 2024 09:00:00 GMT</pubDate>
<description>How nginx checks tokens (read on).</description>
</item>
</channel></rss>
"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>A blog</title><id>urn:blog</id>
<updated>2024-06-01T00:00:00Z</updated>
<entry><title>Probing the Mac</title><id>urn:probe</id><link href="{base}/probe/"/>
<published>2024-06-01T00:00:00Z</published><updated>2024-06-01T00:00:00Z</updated>
<content type="html">&lt;p&gt;The probe reads GPU utilisation and memory pressure.&lt;/p&gt;
</content>
</entry></feed>
"""


# Ten to the fifth a's from a few hundred bytes (the billion laughs, smaller).
XML_BOMB = (
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + "".join(
        f'<!ENTITY {name} "{f"&{previous};" * 10}">'
        for previous, name in zip("abcd", "bcde", strict=True)
    )
    + ']><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>&e;</loc>'
    "</url></urlset>"
)


def page(title: str, words: str) -> str:
    return (
        f"<html><head><title>{title} | A blog</title></head><body><nav>Home</nav>"
        f"<main><h1>{title}</h1><p>{words}</p></main></body></html>"
    )


class Blog(BaseHTTPRequestHandler):
    """A blog's server: `pages` path -> (content type, body); it counts each path's GETs."""

    pages: ClassVar[dict[str, tuple[str, bytes]]] = {}
    fetched: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.fetched.append(self.path)
        found = self.pages.get(self.path)
        if found is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        kind, body = found
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        """Quiet."""


@pytest.fixture
def base() -> Iterator[str]:
    """The blog's URL; its pages start empty."""
    Blog.pages.clear()
    Blog.fetched.clear()
    with serving(Blog) as url:
        yield url


def put(path: str, kind: str, body: str | bytes) -> None:
    Blog.pages[path] = (kind, body.encode() if isinstance(body, str) else body)


def sitemap(base: str, entries: dict[str, str]) -> str:
    urls = "".join(
        f"<url><loc>{base}{path}</loc><lastmod>{lastmod}</lastmod></url>"
        for path, lastmod in entries.items()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'
    )


def test_an_rss_feed_with_contents_and_a_summary_only_entry(
    posts_command: PostsCommand, base: str
) -> None:
    """An entry's whole content is read from the feed (no page fetched); a summary-only entry
    is read from its page. Titles and dates come from the feed; the page's canonical URL wins."""
    put("/feed.xml", "application/rss+xml", RSS.format(base=base))
    put("/nginx-bearer/", "text/html; charset=utf-8", NGINX)
    done = posts_command("index", f"{base}/feed.xml")
    assert done.code == 0, done.err
    assert "2 added" in done.out
    assert sorted(Blog.fetched) == ["/feed.xml", "/nginx-bearer/"]
    listing = posts_command("list").out
    assert f"2024-04-02  2         Waking a sleeping model  {base}/waking/" in listing
    assert (
        "2024-03-10  2         Bearer tokens in nginx   https://blog.example/nginx-bearer/"
        in listing
    )
    assert "One waker" in posts_command("search", "waker").out


def test_a_feed_read_again_fetches_no_unchanged_page(
    posts_command: PostsCommand, base: str
) -> None:
    """The summary-only entry's page is not fetched again while its date stays; an entry
    dropped from the feed is removed."""
    put("/feed.xml", "application/rss+xml", RSS.format(base=base))
    put("/nginx-bearer/", "text/html", NGINX)
    assert posts_command("index", f"{base}/feed.xml").code == 0
    Blog.fetched.clear()
    again = posts_command("index", f"{base}/feed.xml")
    assert "0 added, 0 changed, 2 unchanged, 0 removed" in again.out
    assert Blog.fetched == ["/feed.xml"]
    shorter = RSS.format(base=base)
    start = shorter.index("<item><title>Bearer")
    put("/feed.xml", "application/rss+xml", shorter[:start] + "</channel></rss>")
    assert (
        "0 added, 0 changed, 1 unchanged, 1 removed"
        in posts_command("index", f"{base}/feed.xml").out
    )


def test_an_atom_feed(posts_command: PostsCommand, base: str) -> None:
    """Atom's entries, with their HTML content, are posts too."""
    put("/atom.xml", "application/atom+xml", ATOM.format(base=base))
    done = posts_command("index", f"{base}/atom.xml")
    assert "1 added" in done.out, done.err
    assert f"2024-06-01  1         Probing the Mac  {base}/probe/" in posts_command("list").out


def test_a_sitemap_fetches_only_pages_whose_lastmod_moved(
    posts_command: PostsCommand, base: str
) -> None:
    """First run: every page listed (within --include) is fetched. Then only the page whose
    lastmod changed is fetched and read again; a page left out of the sitemap is removed."""
    entries = {"/posts/a/": "2024-01-01", "/posts/b/": "2024-01-02", "/about/": "2024-01-03"}
    put("/sitemap.xml", "application/xml", sitemap(base, entries))
    put("/posts/a/", "text/html", page("Alpha", "The alpha post is about admission scripts."))
    put("/posts/b/", "text/html", page("Beta", "The beta post is about breakers."))
    done = posts_command("index", f"{base}/sitemap.xml", "--include", "/posts/*")
    assert "2 added, 0 changed, 0 unchanged, 0 removed, 0 failed" in done.out, done.err
    assert "/about/" not in Blog.fetched
    assert "2024-01-01  1         Alpha" in posts_command("list").out

    Blog.fetched.clear()
    entries["/posts/b/"] = "2024-02-01"
    put("/sitemap.xml", "application/xml", sitemap(base, entries))
    put("/posts/b/", "text/html", page("Beta", "The beta post is about half-open breakers."))
    again = posts_command("index", f"{base}/sitemap.xml", "--include", "/posts/*")
    assert "0 added, 1 changed, 1 unchanged, 0 removed" in again.out
    assert Blog.fetched == ["/sitemap.xml", "/posts/b/"]
    assert "half-open" in posts_command("search", "half-open").out

    del entries["/posts/a/"]
    put("/sitemap.xml", "application/xml", sitemap(base, entries))
    gone = posts_command("index", f"{base}/sitemap.xml", "--include", "/posts/*")
    assert "0 added, 0 changed, 1 unchanged, 1 removed" in gone.out


def test_a_gzipped_sitemap_index(posts_command: PostsCommand, base: str) -> None:
    """A sitemap index's sitemaps are followed, a gzipped one too."""
    put("/posts/a/", "text/html", page("Alpha", "Alpha's words."))
    put(
        "/posts.xml.gz",
        "application/gzip",
        gzip.compress(sitemap(base, {"/posts/a/": "2024-01-01"}).encode()),
    )
    put(
        "/sitemap_index.xml",
        "application/xml",
        '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
        f"<sitemap><loc>{base}/posts.xml.gz</loc></sitemap></sitemapindex>",
    )
    done = posts_command("index", f"{base}/sitemap_index.xml")
    assert "1 added" in done.out, done.err


def test_a_page_that_fails_stays_as_it_was(posts_command: PostsCommand, base: str) -> None:
    """A page that cannot be fetched now fails (named, with its status) and is not removed."""
    put("/sitemap.xml", "application/xml", sitemap(base, {"/posts/a/": "2024-01-01"}))
    put("/posts/a/", "text/html", page("Alpha", "Alpha's words."))
    assert posts_command("index", f"{base}/sitemap.xml").code == 0
    put("/sitemap.xml", "application/xml", sitemap(base, {"/posts/a/": "2024-03-01"}))
    del Blog.pages["/posts/a/"]
    done = posts_command("index", f"{base}/sitemap.xml")
    assert done.code == 1
    assert f"{base}/posts/a/ answered 404" in done.err
    assert "Alpha" in posts_command("list").out


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<html><body>Not a feed</body></html>", "is neither a feed with entries nor a sitemap"),
        (XML_BOMB, "is neither a feed with entries nor a sitemap"),
    ],
)
def test_what_is_no_feed_nor_sitemap_is_refused(
    posts_command: PostsCommand, base: str, body: str, message: str
) -> None:
    """A page that is neither, and an XML bomb, exit 2 with the URL named."""
    put("/feed", "application/xml", body)
    done = posts_command("index", f"{base}/feed")
    assert done.code == 2
    assert f"{base}/feed {message}" in done.err


def test_a_source_that_cannot_be_reached(posts_command: PostsCommand, base: str) -> None:
    """A 404 or a closed port exits 2 with the URL named."""
    missing = posts_command("index", f"{base}/nothing.xml")
    assert missing.code == 2
    assert f"{base}/nothing.xml answered 404" in missing.err
    closed = posts_command("index", "http://127.0.0.1:9/feed.xml")
    assert closed.code == 2
    assert "cannot fetch http://127.0.0.1:9/feed.xml (ConnectError)" in closed.err
