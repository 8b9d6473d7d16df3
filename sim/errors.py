"""Error bodies in the shapes LM Studio and the OpenAI API use, and the exception that carries them.

The simulator raises one exception type, `SimError`; an app-level handler turns it into JSON:

    SimError                   {"error": {"message", "type", "param", "code"}}
    ├── InvalidRequest         400, bad JSON or a missing / malformed field
    ├── PreviousResponseUnknown 400, `previous_response_id` not stored (OpenAI's code)
    ├── NoModelsLoaded         400, LM Studio's own message when no model is loaded
    ├── ServerOverloaded       503, every slot busy and the queue full
    ├── ModelCrashed           500, injected by `error` fault mode
    └── MissingApiKey          401, `--api-key` set and the bearer token absent or wrong
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import MediaType, Request, Response

# LM Studio 0.4.x, observed in its server log (lmstudio-bug-tracker#1730): HTTP 400 with this body.
NO_MODELS_LOADED = (
    "No models loaded. Please load a model in the developer page or use the 'lms load' command."
)
# LM Studio 0.4.x with "Require Authentication" on (opencode-lmstudio#41).
API_KEY_REQUIRED = (
    "An LM Studio API token is required to make requests to this server, but none was provided "
    "using the Authorization header using the 'Bearer' scheme "
    "(i.e., 'Authorization: Bearer $LM_API_TOKEN')."
)


class SimError(Exception):
    """An error answered as OpenAI-style JSON."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def body(self) -> dict[str, Any]:
        """The JSON body: `{"error": {...}}`."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(SimError):
    """The request body is not JSON or misses or mistypes a field."""


class PreviousResponseUnknown(SimError):
    """`previous_response_id` names no stored response."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(
            f"Previous response with id '{response_id}' not found.", "previous_response_id"
        )


class NoModelsLoaded(SimError):
    """LM Studio answers generation requests this way while no model is loaded."""

    def __init__(self) -> None:
        super().__init__(NO_MODELS_LOADED, "model")


class ServerOverloaded(SimError):
    """Every slot is busy and the waiting line is full."""

    status_code = 503
    error_type = "server_error"
    code = "server_overloaded"


class ModelCrashed(SimError):
    """The `error` fault: the model fails this request."""

    status_code = 500
    error_type = "server_error"

    def __init__(self) -> None:
        super().__init__("The model has crashed without additional information. (Exit code: 1)")


class MissingApiKey(SimError):
    """The server requires a bearer token and did not get the right one."""

    status_code = 401
    error_type = "invalid_request"
    code = "invalid_api_key"

    def __init__(self) -> None:
        super().__init__(API_KEY_REQUIRED)

    def body(self) -> dict[str, Any]:
        """LM Studio's 401 body has no `param`."""
        return {"error": {"type": self.error_type, "code": self.code, "message": self.message}}


def json_response(content: object, status_code: int = 200) -> Response[bytes]:
    """Encode once with msgspec and send the bytes as they are."""
    return Response(
        content=msgspec.json.encode(content), status_code=status_code, media_type=MediaType.JSON
    )


def error_response(error: SimError) -> Response[bytes]:
    """The JSON response for a `SimError`."""
    return json_response(error.body(), error.status_code)


def handle_sim_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """App-level exception handler for `SimError`."""
    if not isinstance(exc, SimError):  # pragma: no cover - registered for SimError only
        raise exc
    return error_response(exc)


def handle_unknown_route(request: Request[Any, Any, Any], _: Exception) -> Response[bytes]:
    """LM Studio's wording for a path or method it does not serve."""
    message = f"Unexpected endpoint or method. ({request.method} {request.url.path})"
    return json_response({"error": message}, 404)
