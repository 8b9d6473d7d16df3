"""A keyed client's answer that is not streamed (`"stream": false`): the model server's JSON,
read whole within the chat's deadline, and what the gateway needs of it (its id and usage)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from app.errors import UpstreamError
from app.upstream.client import (
    classify_status,
    fault_error,
    mapped_transport_errors,
    read_some,
)
from app.upstream.openai_streams import chat_usage

if TYPE_CHECKING:
    from collections.abc import Mapping

    from app.upstream.client import UpstreamClient

# An answer larger than this is no chat answer: the connection is dropped.
WHOLE_ANSWER_LIMIT = 32 * 1024 * 1024


class _Whole(msgspec.Struct):
    id: str | None = None
    usage: dict[str, Any] | None = None
    error: Any = None


_whole = msgspec.json.Decoder(_Whole)


async def read_whole(
    client: UpstreamClient, path: str, payload: bytes, headers: Mapping[str, str] | None = None
) -> bytes:
    """POST the request and return the answer's JSON body, or raise the gateway's error for a
    failed one (an error status, or an error carried with a 200)."""
    with mapped_transport_errors():
        response = await client.open_post(path, payload, headers)
        try:
            if response.status_code != 200:
                body = await read_some(response)
                raise classify_status(response.status_code, response.headers.get("server"), body)
            body = await _read_all(response)
        finally:
            await response.aclose()
    if _parsed(body).error is not None:  # lmstudio-bug-tracker #2322: an error with a 200
        raise fault_error(body) or UpstreamError("the model server failed to answer")
    return body


async def _read_all(response: Any) -> bytes:
    parts, size = [], 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > WHOLE_ANSWER_LIMIT:
            raise UpstreamError("the model server's answer is too large")
        parts.append(chunk)
    return b"".join(parts)


def _parsed(body: bytes) -> _Whole:
    try:
        return _whole.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamError("the model server's answer is not JSON") from None


def whole_usage(body: bytes, *, chat: bool) -> tuple[str | None, dict[str, Any] | None]:
    """The answer's id and usage (Chat Completions' usage in the Responses API's names)."""
    whole = _parsed(body)
    if whole.usage is None:
        return whole.id, None
    return whole.id, chat_usage(whole.usage) if chat else whole.usage
