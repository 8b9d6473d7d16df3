"""The chat widget: `GET /llmgw-chat.js` (one script a blog adds) and `GET /`, a demo page."""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from litestar import Request, Response, get

# Every tag of the demo page comes from this origin; its one inline <style> is allowed by hash.
# The widget solves its visitor pass's challenge in a worker made from a Blob URL of its own code.
_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src {style}; connect-src 'self'; "
    "worker-src blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
# The script is public and unversioned: cache for an hour, revalidate by ETag after that.
_SCRIPT_HEADERS = {
    **_COMMON_HEADERS,
    "Cache-Control": "public, max-age=3600, stale-while-revalidate=86400",
    # Blogs on other origins load it, also as a module or with Subresource Integrity.
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
}
_INLINE_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A file served from memory, with the validator that lets browsers revalidate it."""

    body: bytes
    media_type: str
    etag: str


@functools.cache
def static_file(name: str, media_type: str) -> StaticFile:
    """Read a file of app/server/static once, at its first request."""
    body = resources.files("app.server").joinpath("static", name).read_bytes()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    return StaticFile(body=body, media_type=media_type, etag=etag)


@functools.cache
def page_policy() -> str:
    """The demo page's Content-Security-Policy, allowing exactly its inline styles."""
    page = static_file("index.html", "text/html").body.decode()
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(style.encode()).digest()).decode() + "'"
        for style in _INLINE_STYLE.findall(page)
    ]
    return _PAGE_POLICY.format(style=" ".join(hashes) or "'none'")


@get("/", include_in_schema=False)
async def demo_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The demo page: a short article with the chat widget in it."""
    headers = {
        **_COMMON_HEADERS,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": page_policy(),
    }
    return _serve(request, static_file("index.html", "text/html"), headers)


@get("/llmgw-chat.js", include_in_schema=False)
async def widget_script(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The `<llmgw-chat>` web component, one dependency-free script."""
    return _serve(request, static_file("llmgw-chat.js", "text/javascript"), _SCRIPT_HEADERS)


def _serve(
    request: Request[Any, Any, Any], file: StaticFile, headers: dict[str, str]
) -> Response[bytes]:
    headers = {**headers, "ETag": file.etag}
    if file.etag in request.headers.get("if-none-match", ""):
        return Response(b"", status_code=304, headers=headers)
    return Response(file.body, media_type=file.media_type, headers=headers)
