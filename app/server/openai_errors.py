"""Errors on the OpenAI-compatible routes in OpenAI's own shape,
`{"error": {"message", "type", "param", "code"}}`, with the same statuses, so an SDK raises its
usual exception (openai.AuthenticationError for a 401, and so on)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from litestar import Request, Response
from litestar.exceptions import HTTPException

from app.errors import GatewayError

if TYPE_CHECKING:
    from litestar.types import ExceptionHandlersMap

log = logging.getLogger("llmgw")
OPENAI_PREFIX = "/v1/"


def openai_error(
    status: int, message: str, code: str, param: str | None = None
) -> dict[str, object]:
    """The body OpenAI's API sends for an error."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[dict[str, object]]:
    headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    if exc.status_code == 401:  # RFC 6750: the scheme the client should have used
        headers["WWW-Authenticate"] = "Bearer"
    body = openai_error(exc.status_code, exc.message, exc.code, exc.param)
    return Response(body, status_code=exc.status_code, headers=headers)


def openai_http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    """Litestar's own refusals (404, 405, 413) in OpenAI's shape."""
    body = openai_error(exc.status_code, exc.detail, f"http_{exc.status_code}")
    return Response(body, status_code=exc.status_code, headers=exc.headers)


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.error("unexpected error", exc_info=exc)
    return Response(openai_error(500, "internal error", "internal_error"), status_code=500)


OPENAI_ERROR_HANDLERS: ExceptionHandlersMap = {
    GatewayError: _gateway_error,
    HTTPException: openai_http_error,
    Exception: _unexpected_error,
}
