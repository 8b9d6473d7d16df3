"""The two answers of POST /api/chat that matter for speed, as bare ASGI apps: the SSE stream
and the 429. The chat handler returns them to Litestar as they are, so Litestar still routes,
reads the body (with its size cap), applies CORS and turns raised errors into JSON; what is
skipped is its response layer (header maps, a task group per stream), a third of the cost
of a refusal. The bytes on the wire are the same as Litestar's `Response` and `Stream` gave.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Coroutine, Mapping

    from litestar.types import HTTPResponseBodyEvent, Receive, Scope, Send

_T = TypeVar("_T")
JSON = b"application/json"
EVENT_STREAM = b"text/event-stream; charset=utf-8"
_END: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}


# The names this module has sent, as ASGI wants them; they come from the gateway's own code
# (a handful: RateLimit-*, Retry-After, Cache-Control...), never from a request.
_NAMES: dict[str, bytes] = {}


def encoded(headers: Mapping[str, str], content_type: bytes) -> list[tuple[bytes, bytes]]:
    """ASGI headers: names in lower case (as Litestar sends them), content type last."""
    pairs = [(_name(name), value.encode("latin-1")) for name, value in headers.items()]
    pairs.append((b"content-type", content_type))
    return pairs


def _name(name: str) -> bytes:
    if (raw := _NAMES.get(name)) is None:
        raw = _NAMES[name] = name.lower().encode("latin-1")
    return raw


class JsonAnswer:
    """A JSON body (an object to encode, or bytes already JSON) with its status and headers,
    sent in one go."""

    __slots__ = ("_body", "_headers", "status_code")

    def __init__(self, body: object, status_code: int, headers: Mapping[str, str]) -> None:
        self._body = body if isinstance(body, bytes) else msgspec.json.encode(body)
        self.status_code = status_code
        self._headers = encoded(headers, JSON)
        self._headers.append((b"content-length", str(len(self._body)).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - the ASGI signature
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self._headers}
        )
        await send({"type": "http.response.body", "body": self._body, "more_body": False})


class EventStream:
    """An SSE body, one write per chunk; the stream is cancelled the moment the client leaves
    (as Litestar's `Stream` does), so the relay closes the upstream and releases the lease."""

    __slots__ = ("_body", "_headers")

    def __init__(self, body: AsyncGenerator[bytes, None], headers: Mapping[str, str]) -> None:
        self._body = body
        self._headers = encoded(headers, EVENT_STREAM)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002 - the ASGI signature
        await send({"type": "http.response.start", "status": 200, "headers": self._headers})
        with anyio.CancelScope() as stream_scope:
            watcher = asyncio.ensure_future(_disconnect(receive))
            watcher.add_done_callback(lambda done: _gone(done, stream_scope))
            try:
                async for chunk in self._body:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send(_END)
            finally:
                watcher.cancel()
                await self._body.aclose()  # its cleanup is shielded: it runs to the end


def _gone(watcher: asyncio.Future[None], stream_scope: anyio.CancelScope) -> None:
    if watcher.cancelled():  # the stream ended first
        return
    watcher.exception()  # retrieved: a failed receive means the client is gone too
    stream_scope.cancel()


async def until_gone(receive: Receive, work: Coroutine[Any, Any, _T]) -> _T | None:
    """The result of `work` (an answer not streamed), or None when the client left first: the
    work is then cancelled (its cleanup gives back what it held) and waited for."""
    job = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((job, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not job.done():
            job.cancel()
    if job.done():  # it ended first (an answer, or its error to raise)
        return job.result()
    with contextlib.suppress(asyncio.CancelledError):
        await job  # its cleanup, to the end
    return None


async def _disconnect(receive: Receive) -> None:
    """Return when the client has gone (or the server says the exchange is over)."""
    message: Any = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()
