"""`create_app(settings)`: the Litestar application of the gateway."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response, Router
from litestar.config.cors import CORSConfig
from litestar.exceptions import HTTPException

from app.access.auth import key_guard
from app.errors import GatewayError
from app.server.openai_errors import OPENAI_ERROR_HANDLERS, OPENAI_PREFIX, openai_http_error
from app.server.routes.chat import chat
from app.server.routes.health import healthz, readyz
from app.server.routes.metrics import metrics
from app.server.routes.openai_chat import chat_completions, responses
from app.server.routes.openai_models import list_models
from app.server.routes.passes import pass_challenge, visitor_pass
from app.server.routes.status import status
from app.server.routes.widget import demo_page, widget_script
from app.server.services import running_services
from app.telemetry import GatewayMetrics

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar.connection import ASGIConnection

    from app.access.store import KeyStore
    from app.settings import Settings

log = logging.getLogger("llmgw")


def create_app(settings: Settings) -> Litestar:
    """Build the gateway for these settings; clients are opened in the lifespan."""

    gateway_metrics = GatewayMetrics()
    gateway_metrics.hosts_configured([host.name for host in settings.hosts()])

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.metrics = gateway_metrics
        async with running_services(settings, gateway_metrics) as services:
            app.state.services = services
            _freeze_start_up_objects()
            yield

    cors = None
    if settings.cors_origins:
        cors = CORSConfig(
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "X-Thumbmark-Id", "X-Visitor-Pass", "Authorization"],
            expose_headers=[
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    return Litestar(
        route_handlers=[
            chat,
            pass_challenge,
            visitor_pass,
            healthz,
            readyz,
            status,
            metrics,
            demo_page,
            widget_script,
            _openai_router(settings),
        ],
        lifespan=[lifespan],
        cors_config=cors,
        request_max_body_size=settings.max_body_bytes,
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        openapi_config=None,
        # Logging is set up once by the command (`llmgw serve`), not by each app instance.
        logging_config=None,
    )


def _openai_router(settings: Settings) -> Router:
    """The OpenAI-compatible routes: keyed, answering errors in OpenAI's shape, and taking the
    larger bodies of the owner's tools (LLMGW_KEY_MAX_BODY_BYTES)."""
    return Router(
        OPENAI_PREFIX.rstrip("/"),
        route_handlers=[list_models, chat_completions, responses],
        guards=[key_guard(_key_store)],
        request_max_body_size=settings.key_max_body_bytes,
        exception_handlers=OPENAI_ERROR_HANDLERS,
    )


def _key_store(connection: ASGIConnection[Any, Any, Any, Any]) -> KeyStore | None:
    store: KeyStore | None = connection.app.state.services.keys
    return store


def _freeze_start_up_objects() -> None:
    """Leave what start-up made (modules, the app, its clients: most of the heap) out of the
    garbage collector's full passes, once per process. Requests promote a few thousand
    short-lived objects a second to the oldest generation, so a full pass over everything
    ran every second or two under load, each as long as a hundred refusals."""
    global _frozen  # noqa: PLW0603 - once per process, whatever number of apps it starts
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


_frozen = False


def _gateway_error(_: Request[Any, Any, Any], exc: GatewayError) -> Response[dict[str, object]]:
    headers = {} if exc.retry_after is None else {"Retry-After": str(exc.retry_after)}
    return Response(exc.body(), status_code=exc.status_code, headers=headers)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, object]]:
    if request.scope["path"].startswith(OPENAI_PREFIX):  # no route matched there: a 404 or a 405
        return openai_http_error(request, exc)
    message = exc.detail
    if exc.status_code == 413:
        message = "the request body is too large"
    return Response(
        {"error": message, "code": f"http_{exc.status_code}"},
        status_code=exc.status_code,
        headers=exc.headers,
    )


def _unexpected_error(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, object]]:
    log.error("unexpected error", exc_info=exc)
    return Response({"error": "internal error", "code": "internal_error"}, status_code=500)
