"""The owner's posts, for the model to read (issue 19).

`llmgw posts index` finds the posts of a folder, a feed or a sitemap (`folder`, `web`), reads
each into headings and paragraphs (`markdown_page`, `html_page`), cuts it into passages of a
bounded size (`passages`) and writes them to one SQLite file (`store`): an FTS5 table for
lexical search and, with the posts-dense extra, sqlite-vec vectors for dense search (`vectors`).
Only posts whose content hash changed are read again (`indexer`). The file is published to
Redis as one blob with its version, so replicas on other machines get it (`shared`). The
gateway searches it through `PostsIndex` (`index`), off the event loop.
"""

from app.posts.index import PostsIndex
from app.posts.records import IndexSize, Passage

__all__ = ["IndexSize", "Passage", "PostsIndex"]
