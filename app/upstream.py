"""The model server's side: one shared httpx client, the pinned payload, and error mapping."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from app.errors import ModelNotLoaded, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from app.network_backend import LeanTransport
from app.outage import OutageClass, classify_response

if TYPE_CHECKING:
    from collections.abc import Iterator

    from app.chat_request import ChatRequest
    from app.settings import Settings

RESPONSES_PATH = "/v1/responses"
# How much of an error body we read to classify it; the rest is not our business.
ERROR_BODY_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Timeouts:
    connect: float
    first_token: float
    idle: float
    total: float


def create_client(settings: Settings) -> httpx.AsyncClient:
    """The one client the gateway talks to the model server with (made in the lifespan)."""
    # Identity: events must flow as they come (and the relay then reads the raw body).
    headers = {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    if settings.upstream_token is not None:
        headers["Authorization"] = f"Bearer {settings.upstream_token.get_secret_value()}"
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.idle_timeout,
        write=settings.connect_timeout,
        pool=settings.connect_timeout,
    )
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=64, keepalive_expiry=30)
    return UpstreamClient(
        base_url=settings.upstream_url,
        headers=headers,
        timeout=timeout,
        transport=LeanTransport(limits),
    )


class UpstreamClient(httpx.AsyncClient):
    """The shared client, with a short way for chats: the request is handed to the transport
    directly, past the client's redirect, auth and cookie layers, which the model server's
    answers never need (no redirects; auth is a default header; cookies are not kept)."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.responses_url = self._merge_url(RESPONSES_PATH)
        self._responses_transport = self._transport_for_url(self.responses_url)

    async def open_responses(self, request: httpx.Request) -> httpx.Response:
        """Send a request built for `responses_url` and return its streaming response."""
        response = await self._responses_transport.handle_async_request(request)
        response.request = request
        return response


def build_payload(chat: ChatRequest, settings: Settings) -> bytes:
    """The upstream request: the visitor's words, everything else pinned by configuration."""
    payload: dict[str, Any] = {
        "model": settings.model,
        "input": chat.input,
        "stream": True,
        "store": True,
        "temperature": settings.temperature,
        "max_output_tokens": settings.max_output_tokens,
    }
    if settings.reasoning_effort != "none":
        payload["reasoning"] = {"effort": settings.reasoning_effort}
    if settings.instructions:
        payload["instructions"] = settings.instructions
    if chat.previous_response_id is not None:
        payload["previous_response_id"] = chat.previous_response_id
    return msgspec.json.encode(payload)


async def open_stream(
    client: httpx.AsyncClient, payload: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Send the request and return the streaming response once its status says it is good."""
    request = client.build_request(
        "POST",
        client.responses_url if isinstance(client, UpstreamClient) else RESPONSES_PATH,
        content=payload,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    with mapped_transport_errors():
        if isinstance(client, UpstreamClient):
            response = await client.open_responses(request)
        else:
            response = await client.send(request, stream=True)
        if response.status_code == 200:
            return response
        try:
            body = await _read_some(response)
        finally:
            await response.aclose()
    raise classify_status(response.status_code, response.headers.get("server"), body)


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


def classify_status(status: int, server: str | None, body: bytes) -> UpstreamError:
    """The gateway error for a non-200 answer from the model's side, with its outage class."""
    outage = classify_response(status, server, body)
    if outage is OutageClass.MODEL_NOT_LOADED:
        return ModelNotLoaded(
            "no model is loaded on the model server", retry_after=30, outage=outage
        )
    if outage is not None:
        return UpstreamUnavailable("the model server is unavailable", retry_after=10, outage=outage)
    return UpstreamError(f"the model server answered with an error ({status})")


async def _read_some(response: httpx.Response) -> bytes:
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= ERROR_BODY_LIMIT:
            break
    return body[:ERROR_BODY_LIMIT]
