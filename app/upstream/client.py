"""The model server's side: one shared httpx client, the pinned payload, and error mapping."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import msgspec

from app.errors import (
    ContextFull,
    ConversationExpired,
    GatewayError,
    ModelNotLoaded,
    UpstreamBusy,
    UpstreamError,
    UpstreamIncompatible,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.protection.outage import OutageClass, classify_response
from app.upstream.answer_errors import (
    CONTEXT_FULL_MESSAGE,
    EXPIRED_MESSAGE,
    RequestFault,
    public_message,
    request_fault,
)
from app.upstream.http_client import UpstreamPool

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping

    from app.chat.request import ChatRequest
    from app.settings import Settings, UpstreamHost

RESPONSES_PATH = "/v1/responses"
# How much of an error body we read to classify it; the rest is not our business.
ERROR_BODY_LIMIT = 4096
CONNECT_TIMEOUT = 5.0  # when the client's own timeout leaves connecting unbounded
# Statuses that say the request was at fault, not the host (other than the faults named).
REJECTED_STATUSES = frozenset({400, 413, 422})
# Statuses that say there is no `POST /v1/responses` here: a server too old for it (LM Studio
# before 0.3.29), or not LM Studio at all. Every chat would fail alike: it is the setup's fault.
MISSING_API_STATUSES = frozenset({404, 405})
INCOMPATIBLE_MESSAGE = "the model server cannot stream answers (it needs LM Studio 0.3.29 or later)"


class StreamedAnswer(Protocol):
    """What the relay reads of an answer: the lean pool's, or httpx's through a proxy."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def aiter_raw(self) -> AsyncIterator[bytes]: ...
    def aiter_bytes(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_token: float
    idle: float
    total: float


def create_client(settings: Settings, host: UpstreamHost | None = None) -> UpstreamClient:
    """The client the gateway talks to a model host with (the single host's by default; made
    in the lifespan)."""
    # Identity: events must flow as they come (and the relay then reads the raw body).
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    url, token = settings.upstream_url, settings.upstream_token
    if host is not None:
        url, token = host.url, host.token
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.idle_timeout,
        write=settings.connect_timeout,
        pool=settings.connect_timeout,
    )
    return UpstreamClient(base_url=url, headers=headers, timeout=timeout)


class UpstreamClient(httpx.AsyncClient):
    """The shared client. Chats go through its own lean pool (`http_client`) with the
    client's URL, headers and TLS settings; everything else (the health check) through httpx.
    When httpx would send chats through a proxy (HTTPS_PROXY and the like), so do chats."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.responses_url = self._merge_url(RESPONSES_PATH)
        # One lean pool per path chats are posted to (the Responses API; Chat Completions for
        # keyed clients), made when first used; none when chats go through a proxy.
        self._pools: dict[str, UpstreamPool] = {}
        self._direct = self._transport_for_url(self.responses_url) is self._transport
        self._pool(RESPONSES_PATH)

    def _pool(self, path: str) -> UpstreamPool | None:
        if not self._direct:
            return None
        if (pool := self._pools.get(path)) is None:
            pool = self._pools[path] = UpstreamPool(
                self._merge_url(path),
                self.headers.items(),
                connect_timeout=self.timeout.connect or CONNECT_TIMEOUT,
                ssl_context=httpx.create_ssl_context(),
            )
        return pool

    async def open_responses(
        self, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> StreamedAnswer:
        """POST a chat; return its streaming answer once the head is in."""
        return await self.open_post(RESPONSES_PATH, payload, headers)

    async def open_post(
        self, path: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> StreamedAnswer:
        """POST to `path`; return the answer once its head is in, its body still to read."""
        if (pool := self._pool(path)) is not None:
            return await pool.post(payload, headers)
        request = self.build_request(
            "POST",
            self._merge_url(path),
            content=payload,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        return await self.send(request, stream=True)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        await super().aclose()


def build_payload(
    chat: ChatRequest,
    settings: Settings,
    host: UpstreamHost | None = None,
    transcript: list[dict[str, str]] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The upstream request: the visitor's words, everything else pinned by configuration;
    for `host`, its model. A conversation that moved from the host that answered it is sent
    as its `transcript` followed by the new words, instead of the previous response's id.
    `extra` fields are set last."""
    model = settings.model if host is None else host.model
    words: Any = chat.input
    if transcript is not None:
        turn = [{"role": "user", "content": words}] if isinstance(words, str) else words
        words = [*transcript, *msgspec.to_builtins(turn)]
    payload: dict[str, Any] = {
        "model": model,
        "input": words,
        "stream": True,
        "store": True,
        "temperature": settings.temperature,
        "max_output_tokens": settings.max_output_tokens,
    }
    if settings.reasoning_effort != "none":
        payload["reasoning"] = {"effort": settings.reasoning_effort}
    if settings.instructions:
        payload["instructions"] = settings.instructions
    if chat.previous_response_id is not None and transcript is None:
        payload["previous_response_id"] = chat.previous_response_id
    # LM Studio's `ttl` (docs `1_developer/0_core/ttl-and-auto-evict.md`); a hosted fallback
    # is not LM Studio.
    fallback = host is not None and host.fallback
    if settings.model_ttl is not None and not fallback:
        payload["ttl"] = settings.model_ttl
    if extra:  # the posts' tool or passages (app/rag/plan.py)
        payload.update(extra)
    return msgspec.json.encode(payload)


async def open_stream(
    client: UpstreamClient,
    payload: bytes,
    headers: Mapping[str, str] | None = None,
    path: str = RESPONSES_PATH,
) -> StreamedAnswer:
    """Send the request and return the streaming response once its status and content type
    say it is an event stream."""
    with mapped_transport_errors():
        response = await client.open_post(path, payload, headers)
        if response.status_code == 200 and is_event_stream(response.headers):
            return response
        try:
            body = await read_some(response)
        finally:
            await response.aclose()
    if response.status_code == 200:
        raise not_a_stream(body)
    raise classify_status(response.status_code, response.headers.get("server"), body)


def is_event_stream(headers: Mapping[str, str]) -> bool:
    """Whether an answer is Server-Sent Events, as a chat's must be."""
    return headers.get("content-type", "").lower().startswith("text/event-stream")


def not_a_stream(body: bytes) -> GatewayError:
    """A 200 that is not an event stream: an error carried with a 200 (lmstudio-bug-tracker
    #2322), or a server that has no streaming `/v1/responses` (LM Studio before 0.3.29 answers
    an unknown path with 200 and an "Unexpected endpoint" error: #618, #1323, #2085)."""
    fault = fault_error(body)
    if fault is not None:
        return fault
    return UpstreamIncompatible(INCOMPATIBLE_MESSAGE)


def fault_error(body: bytes) -> GatewayError | None:
    """The visitor's error for a body that names the request's own fault, else None."""
    match request_fault(body):
        case RequestFault.CONTEXT_FULL:
            return ContextFull(CONTEXT_FULL_MESSAGE)
        case RequestFault.CONVERSATION_EXPIRED:
            return ConversationExpired(EXPIRED_MESSAGE)
        case None:
            return None


@contextmanager
def mapped_transport_errors() -> Iterator[None]:
    """Turn httpx's low-level failures into the gateway's own, with public-safe messages."""
    try:
        yield
    except httpx.ConnectTimeout as exc:
        raise UpstreamTimeout(
            "the model server did not answer in time", outage=OutageClass.TUNNEL
        ) from exc
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout("the model server did not answer in time") from exc
    except httpx.HTTPError as exc:
        raise UpstreamUnavailable(
            "the model server cannot be reached", outage=OutageClass.TUNNEL
        ) from exc


def classify_status(status: int, server: str | None, body: bytes) -> GatewayError:
    """The gateway error for a non-200 answer from the model's side: an outage with its class,
    the request's own fault (which is the visitor's, not the host's), a server without the
    Responses API, or a plain failure."""
    outage = classify_response(status, server, body)
    if outage is None and (fault := fault_error(body)) is not None:
        return fault
    if outage is None and status in MISSING_API_STATUSES and b"model_not_found" not in body:
        return UpstreamIncompatible(INCOMPATIBLE_MESSAGE)
    if outage is None and status in REJECTED_STATUSES and b"model_not_found" not in body:
        said = public_message(body)
        return UpstreamRejected(
            f"the model server refused this request{f': {said}' if said else ''}"
        )
    if outage is OutageClass.MODEL_NOT_LOADED:
        return ModelNotLoaded(
            "no model is loaded on the model server", retry_after=30, outage=outage
        )
    if outage is not None:
        return UpstreamUnavailable("the model server is unavailable", retry_after=10, outage=outage)
    return _not_an_outage(status)


def _not_an_outage(status: int) -> GatewayError:
    """A failure that is no outage: a 503 is the server up and shedding load (llama.cpp's busy
    slots, a full queue), anything else a plain failure."""
    if status == 503:
        return UpstreamBusy("the model is busy right now, try again in a moment", retry_after=5)
    return UpstreamError(f"the model server answered with an error ({status})")


async def read_some(response: StreamedAnswer) -> bytes:
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]
