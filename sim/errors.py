"""Error bodies in the shapes LM Studio and the OpenAI API use, and the exception that carries them.

The simulator raises one exception type, `SimError`; an app-level handler turns it into JSON:

    SimError                   {"error": {"message", "type", "param", "code"}}
    ├── InvalidRequest         400, bad JSON or a missing / malformed field
    ├── PreviousResponseUnknown 400, `previous_response_id` not stored (OpenAI's code)
    ├── InvalidField           400, a field LM Studio's schema refuses (`tools`, `tool_choice`,
    │                          `input` items), with its own `param` path and `code`
    ├── ToolCallUnknown        400, a `function_call_output` answers no call (OpenAI's wording)
    ├── NoModelsLoaded         400, LM Studio's own message when no model is loaded
    ├── ModelNotFound          400, `model` names no downloaded model (code `model_not_found`)
    ├── ContextOverflow        400, the conversation does not fit the context; a bare string body
    ├── ContextExhausted       400, the context filled mid-generation (non-streamed requests)
    ├── ServerOverloaded       503, every slot busy and the queue full
    ├── ModelCrashed           500, injected by `error` fault mode
    └── MissingApiKey          401, `--api-key` set and the bearer token absent or wrong
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import MediaType, Request, Response

if TYPE_CHECKING:
    from collections.abc import Callable

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


class InvalidField(SimError):
    """A field LM Studio's request schema refuses: its `param` is the field's path, as in
    `tools.0.strict` (earendil-works/pi#598), and `code` says why."""

    def __init__(self, message: str, param: str, code: str) -> None:
        super().__init__(message, param)
        self.code = code


class ToolCallUnknown(SimError):
    """A `function_call_output` whose `call_id` no call of the conversation has."""

    def __init__(self, call_id: str) -> None:
        # OpenAI's wording (continuedev/continue#10092); LM Studio's own is not on record.
        message = f"No tool call found for function call output with call_id {call_id}."
        super().__init__(message, "input")


class NoModelsLoaded(SimError):
    """LM Studio answers generation requests this way while no model is loaded."""

    def __init__(self) -> None:
        super().__init__(NO_MODELS_LOADED, "model")


class ModelNotFound(SimError):
    """LM Studio 0.3.3x+ (gpt-researcher#1556, qwen-code#10065): 400 for a model not downloaded."""

    code = "model_not_found"

    def __init__(self, key: str, downloaded: list[str]) -> None:
        examples = ", ".join(downloaded)
        super().__init__(
            f'Invalid model identifier "{key}". '
            f"Please specify a valid downloaded model (e.g., {examples}).",
            "model",
        )


class ContextOverflow(SimError):
    """The input alone overflows the context: lmstudio-bug-tracker#237's 400, verbatim."""

    def __init__(self, input_tokens: int, context_length: int) -> None:
        super().__init__(
            f"<LM Studio error> Trying to keep the first {input_tokens} tokens when context the "
            f"overflows. However, the model is loaded with context length of only "
            f"{context_length} tokens, which is not enough. Try to load the model with a larger "
            "context length, or provide a shorter input. Error Data: n/a, Additional Data: n/a"
        )

    def body(self) -> dict[str, Any]:
        """LM Studio sends the message as the bare `error` string (#237, #618's shape)."""
        return {"error": self.message}


class ContextExhausted(SimError):
    """The context filled while generating (lmstudio-bug-tracker#1251's message)."""

    def __init__(self, context_length: int, arch: str) -> None:
        super().__init__(
            f"Reached context length of {context_length} tokens with model (arch: {arch}) that "
            "does not currently support mid-generation context overflow. Try reloading with a "
            "larger context length or shortening the prompt/chat."
        )


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


def unknown_route_response(request: Request[Any, Any, Any], status_code: int) -> Response[bytes]:
    """LM Studio's wording for a path or method it does not serve (lmstudio-bug-tracker#618)."""
    # The query string is part of the message (lmstudio-bug-tracker#1323's log).
    query = f"?{request.url.query}" if request.url.query else ""
    message = f"Unexpected endpoint or method. ({request.method} {request.url.path}{query})"
    return json_response({"error": message}, status_code)


def unknown_route_handler(
    status_code: int,
) -> Callable[[Request[Any, Any, Any], Exception], Response[bytes]]:
    """The handler for unmatched routes: 404 by default; LM Studio's 200 "anyway" (#618, #1323,
    #2085: "Unexpected endpoint or method. (GET /v1/models). Returning 200 anyway")."""

    def handle(request: Request[Any, Any, Any], _: Exception) -> Response[bytes]:
        return unknown_route_response(request, status_code)

    return handle
