"""The body of POST /api/chat: decoded with msgspec, then checked against the configured bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import msgspec

from app.chat.tokens import estimate
from app.errors import BadRequest

RESPONSE_ID = re.compile(r"resp_[A-Za-z0-9_-]{1,128}")
# Control characters other than tab and newlines: nothing a person types, often a probe.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class Message(msgspec.Struct, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: str


class ChatRequest(msgspec.Struct, forbid_unknown_fields=True):
    """What a visitor may send. Model, temperature and token limits are the gateway's to pin."""

    input: str | list[Message]
    previous_response_id: str | None = None

    def estimated_tokens(self) -> int:
        """A guess of the input's tokens before the model counts them (`app.chat.tokens`)."""
        texts = [self.input] if isinstance(self.input, str) else [m.content for m in self.input]
        return estimate(sum(len(text) for text in texts))


@dataclass(frozen=True, slots=True)
class InputBounds:
    max_chars: int
    max_messages: int


_decoder = msgspec.json.Decoder(ChatRequest)


def parse_chat_request(body: bytes, bounds: InputBounds) -> ChatRequest:
    """Decode and check a request body, or raise BadRequest saying what is wrong."""
    if not body.strip():
        raise BadRequest('the request body is empty; send JSON like {"input": "Hello"}')
    try:
        request = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid request: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    _check_input(request.input, bounds)
    _check_previous(request.previous_response_id)
    return request


def _check_input(value: str | list[Message], bounds: InputBounds) -> None:
    texts = [value] if isinstance(value, str) else [message.content for message in value]
    if isinstance(value, list) and len(value) > bounds.max_messages:
        raise BadRequest(f"too many messages: at most {bounds.max_messages}")
    if not any(_visible(text) for text in texts):
        raise BadRequest("input is empty")
    if isinstance(value, list) and not any(message.role == "user" for message in value):
        raise BadRequest("input has no user message")
    if sum(len(text) for text in texts) > bounds.max_chars:
        raise BadRequest(f"input is too long: at most {bounds.max_chars} characters")
    if any(CONTROL.search(text) for text in texts):
        raise BadRequest("input contains control characters")


def _visible(text: str) -> bool:
    # Zero-width and other format characters are not words: "\u200b" alone is empty input.
    return any(char.isprintable() and not char.isspace() for char in text)


def _check_previous(value: str | None) -> None:
    if value is not None and not RESPONSE_ID.fullmatch(value):
        raise BadRequest("previous_response_id must look like resp_ followed by letters or digits")
