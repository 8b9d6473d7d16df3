"""Whose fault an error from the model server is, read from what it says.

LM Studio answers a conversation that outgrew the loaded context with an error whose message says
so, as a 400 ("Trying to keep the first N tokens when context the overflows...",
lmstudio-bug-tracker #237, #546; "The number of tokens to keep from the initial prompt is greater
than the context length", #2205), as a 200 event stream carrying the error ("Input does not fit in
context length", #2322, captured in tests/upstream/captures), or as an error event mid-generation
("Reached context length of N tokens", #1251); it answers an unknown `previous_response_id` with
`previous_response_not_found`. Those are the request's doing: the visitor gets a code that says
what to do, and the host's breaker is not told.
"""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec

# How a context overflow reads: LM Studio's own message, and llama.cpp's and vLLM's wording.
_OVERFLOW = re.compile(
    rb"context the overflows|does not fit in (?:the )?context|reached context length"
    rb"|greater than the context length|context (?:length|size|window) (?:has been )?exceeded"
    rb"|exceeds? the (?:available |maximum )?context|maximum context length"
    rb"|context overflow|not enough context",
    re.IGNORECASE,
)
_EXPIRED = re.compile(
    rb"previous_response_not_found|previous response .{0,40}not found", re.IGNORECASE
)
# What of an upstream message a visitor may read: no URLs, paths, host names or addresses.
_HOST_DETAILS = re.compile(
    r"""
      \b[a-z][a-z0-9+.-]*://\S+                      # a URL
    | (?<!\w)(?:~|\.{1,2})?/[^\s'"]+                  # a POSIX path
    | \b[a-z]:\\\S+                                  # a Windows path
    | \b(?:[a-z0-9-]+\.)+(?:local|lan|home|internal|arpa|com|net|org|io|dev|app)\b  # a host
    | \b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b             # an IPv4 address
    | \[?[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}\]?(?::\d+)?  # an IPv6 address
    """,
    re.IGNORECASE | re.VERBOSE,
)
# Credentials an error may echo back (a header it quotes, a query string): the secret goes, its
# label stays.
_SECRETS = re.compile(
    r"""
      (?P<label>\bbearer\s+)[^\s,;'"()<>\[\]{}]+          # an Authorization value
    | (?P<basic>\bbasic\s+)(?=(?-i:[A-Za-z0-9+/][a-z0-9+/]*[A-Z0-9+/=]))[a-z0-9+/]{8,}=*
    | (?P<key>\b[\w-]*(?:api[_-]?key|token|secret|password|passwd)\s*[=:]\s*)
      [^\s,;&'"()<>\[\]{}]+
    | \b(?:sk|lm)-(?=[\w-]*\d)[\w:-]{16,}                # a key by its usual prefix
    """,
    re.IGNORECASE | re.VERBOSE,
)
MESSAGE_CHARS = 200
CONTEXT_FULL_MESSAGE = "this conversation has grown too long for the model: start a new one"
EXPIRED_MESSAGE = "the model no longer keeps this conversation: start a new one"


class RequestFault(StrEnum):
    """What the request did wrong, as the model server tells it."""

    CONTEXT_FULL = "context_full"
    CONVERSATION_EXPIRED = "conversation_expired"


def request_fault(body: bytes) -> RequestFault | None:
    """The request's own fault an error body or event names, or None when it names none."""
    if _EXPIRED.search(body):
        return RequestFault.CONVERSATION_EXPIRED
    if _OVERFLOW.search(body):
        return RequestFault.CONTEXT_FULL
    return None


class _Error(msgspec.Struct):
    message: str | None = None
    code: str | None = None


class _Failed(msgspec.Struct):
    error: _Error | None = None


class _ErrorBody(msgspec.Struct):
    """The error shapes seen: `{"error": {...}}`, `{"error": "text"}`, `{"type": "error",
    "message": ...}` and response.failed's `{"response": {"error": {...}}}`."""

    error: _Error | str | None = None
    message: str | None = None
    response: _Failed | None = None


_decode_error = msgspec.json.Decoder(_ErrorBody).decode


def public_message(body: bytes) -> str | None:
    """The model server's own words about its error, shortened and without credentials, paths,
    URLs or addresses (a visitor may read them); None when the body says nothing readable."""
    try:
        parsed = _decode_error(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    error = parsed.error
    if error is None and parsed.response is not None:
        error = parsed.response.error
    text = error if isinstance(error, str) else (error.message if error else parsed.message)
    if not text:
        return None
    text = _HOST_DETAILS.sub("…", _SECRETS.sub(_redacted, " ".join(text.split())))
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def _redacted(match: re.Match[str]) -> str:
    return (match["label"] or match["basic"] or match["key"] or "") + "…"
