"""`create_sim_app(config)`: the simulated LM Studio server as a Litestar app."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from litestar import Litestar, Request, Response
from litestar.datastructures import State
from litestar.status_codes import HTTP_404_NOT_FOUND, HTTP_405_METHOD_NOT_ALLOWED

from sim.config import SimConfig
from sim.errors import (
    MissingApiKey,
    SimError,
    error_response,
    handle_sim_error,
    unknown_route_handler,
)
from sim.routes.control import ControlController
from sim.routes.generation import GenerationController
from sim.routes.models import ModelsController
from sim.state import SimState

if TYPE_CHECKING:
    from collections.abc import Callable

    from litestar.types import BeforeRequestHookHandler

    UnknownRouteHandler = Callable[[Request[Any, Any, Any], Exception], Response[bytes]]

__all__ = ["SimConfig", "create_sim_app"]


def create_sim_app(config: SimConfig) -> Litestar:
    """Build the app; its state (`app.state.sim`) lives as long as the app."""
    state = SimState(config)
    unknown_route = _counting(state, unknown_route_handler(200 if config.unknown_path_200 else 404))
    return Litestar(
        route_handlers=[ModelsController, GenerationController, ControlController],
        state=State({"sim": state}),
        before_request=_bearer_check(state, config.api_key) if config.api_key else None,
        exception_handlers={
            SimError: handle_sim_error,
            HTTP_404_NOT_FOUND: unknown_route,
            HTTP_405_METHOD_NOT_ALLOWED: unknown_route,
        },
        openapi_config=None,
    )


def _bearer_check(state: SimState, api_key: str) -> BeforeRequestHookHandler:
    # LM Studio 0.4 (docs `1_developer/0_core/authentication.mdx`): with Require Authentication
    # on, "all requests made through the REST API" need the token, the model lists included.
    expected = f"Bearer {api_key}".encode()

    def check(request: Request[Any, Any, Any]) -> Response[bytes] | None:
        if request.url.path.startswith("/_sim/"):
            return None  # the test controls are not part of the simulated server
        given = request.headers.get("authorization", "").encode()
        if hmac.compare_digest(given, expected):
            return None
        state.counters.unauthorized += 1
        return error_response(MissingApiKey())

    return check


def _counting(state: SimState, handler: UnknownRouteHandler) -> UnknownRouteHandler:
    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        state.counters.unknown_paths += 1
        return handler(request, exc)

    return handle
