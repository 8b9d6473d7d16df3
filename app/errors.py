"""The gateway's errors, each one a JSON answer a visitor can read.

GatewayError            any refusal or failure, with status, code and a safe message
├── BadRequest          400: the client sent something we will not pass on
│   └── TooManyTokens   400: the chat needs more tokens than a whole token window holds
├── Unauthorized        401: no API key, or one we do not know (or keys are not configured)
├── NotFound            404: a conversation that is not this visitor's (or none at all)
│   └── ModelNotFound   404: a keyed client's model is not among those listed
├── VisitorsError       the model server refused what this request asked: never the host's fault
│   ├── ContextFull           400: the conversation outgrew the model's context
│   ├── ConversationExpired   410: the model server no longer has the conversation
│   └── UpstreamRejected      502: the model server refused the request for another reason
├── ServiceUnavailable  503: we cannot take the request now
│   ├── BreakerOpen     503: the model's side is down; we do not even try
│   ├── Shed            503: the in-flight cap is full (distinct from a 429)
│   └── KeysUnavailable 503: Redis, where the keys live, cannot be asked
└── UpstreamError       the model's side failed before the stream started (with its outage class)
    ├── UpstreamUnavailable   502: DNS, connect, TLS, reset, or an error status
    ├── ModelNotLoaded        503: the model server answers but has no model loaded
    ├── UpstreamIncompatible  502: no event stream for a chat, or no Responses API (404, 405)
    └── UpstreamTimeout       504: connect, first token or total timeout

Messages never carry upstream URLs, host names or tokens: they are shown to the public.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from app.protection.outage import OutageClass


class GatewayError(Exception):
    """A failure with an HTTP status, a stable code and a message safe for the public."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        outage: OutageClass | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.outage = outage
        self.param = param  # the request field at fault, where one is (OpenAI's `param`)

    def body(self) -> dict[str, object]:
        """The JSON body a client gets."""
        body: dict[str, object] = {"error": self.message, "code": self.code}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
        return body


class BadRequest(GatewayError):
    status_code = 400
    code = "bad_request"


class TooManyTokens(BadRequest):
    """Waiting would not help: shorter input, or a new conversation, would."""

    code = "too_many_tokens"


class Unauthorized(GatewayError):
    status_code = 401
    code = "invalid_api_key"


class PassRequired(GatewayError):
    """The anonymous chat needs a visitor pass now (LLMGW_PASS): the widget fetches one and
    retries by itself."""

    status_code = 401
    code = "pass_required"


class _Reasoned(GatewayError):
    """A refusal whose body says why, by one of a few fixed `reason` words."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def body(self) -> dict[str, object]:
        return {**super().body(), "reason": self.reason}


class PassInvalid(_Reasoned):
    """The X-Visitor-Pass sent is not good here (`reason`: malformed, bad_signature, expired,
    foreign_network, spent)."""

    status_code = 401
    code = "pass_invalid"


class PassRefused(_Reasoned):
    """A proof of work that buys no pass (`reason`: malformed, bad_signature, wrong_answer,
    expired, spent)."""

    status_code = 400
    code = "pass_refused"


class NotFound(GatewayError):
    status_code = 404
    code = "unknown_conversation"


class ModelNotFound(NotFound):
    """A keyed client asked for a model the model server does not list (or the key may not use)."""

    code = "model_not_found"


class VisitorsError(GatewayError):
    """The model server refused this request because of what it asked (its size, its history):
    the host works, so the breaker and the outage diagnosis are not told."""

    status_code = 400
    code = "visitors_error"


class ContextFull(VisitorsError):
    code = "context_full"


class ConversationExpired(VisitorsError):
    status_code = 410
    code = "conversation_expired"


class UpstreamRejected(VisitorsError):
    status_code = 502
    code = "upstream_rejected"


class ServiceUnavailable(GatewayError):
    status_code = 503
    code = "unavailable"


class BreakerOpen(ServiceUnavailable):
    code = "breaker_open"


class Shed(ServiceUnavailable):
    code = "shed"


class KeysUnavailable(ServiceUnavailable):
    code = "keys_unavailable"


class UpstreamError(GatewayError):
    status_code = 502
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    code = "upstream_unavailable"


class UpstreamBusy(UpstreamError):
    """The model server answered 503: up, and shedding load (its queue full). Not its failure:
    the breaker is not told, and the visitor is shed as when the gateway's own cap is full."""

    status_code = 503
    code = "shed"


class ModelNotLoaded(UpstreamError):
    status_code = 503
    code = "model_not_loaded"


class UpstreamIncompatible(UpstreamError):
    code = "upstream_incompatible"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "upstream_timeout"
