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
    handle_unknown_route,
)
from sim.routes.control import ControlController
from sim.routes.generation import GenerationController
from sim.routes.models import ModelsController
from sim.state import SimState

if TYPE_CHECKING:
    from litestar.types import BeforeRequestHookHandler

__all__ = ["SimConfig", "create_sim_app"]


def create_sim_app(config: SimConfig) -> Litestar:
    """Build the app; its state (`app.state.sim`) lives as long as the app."""
    return Litestar(
        route_handlers=[ModelsController, GenerationController, ControlController],
        state=State({"sim": SimState(config)}),
        before_request=_bearer_check(config.api_key) if config.api_key else None,
        exception_handlers={
            SimError: handle_sim_error,
            HTTP_404_NOT_FOUND: handle_unknown_route,
            HTTP_405_METHOD_NOT_ALLOWED: handle_unknown_route,
        },
        openapi_config=None,
    )


def _bearer_check(api_key: str) -> BeforeRequestHookHandler:
    expected = f"Bearer {api_key}".encode()

    def check(request: Request[Any, Any, Any]) -> Response[bytes] | None:
        if request.url.path.startswith("/_sim/"):
            return None  # the test controls are not part of the simulated server
        given = request.headers.get("authorization", "").encode()
        return None if hmac.compare_digest(given, expected) else error_response(MissingApiKey())

    return check
