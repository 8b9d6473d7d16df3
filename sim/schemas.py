"""Request bodies of the generation endpoints, decoded with msgspec; unknown fields are ignored."""

from __future__ import annotations

from typing import TypeVar

import msgspec

from sim.errors import InvalidRequest

Body = TypeVar("Body", bound=msgspec.Struct)


class ContentPart(msgspec.Struct):
    """One part of a message's content; only text parts count."""

    text: str = ""


Content = str | list[ContentPart] | None


class Message(msgspec.Struct):
    """A `{"role", "content"}` item of `input` or `messages`."""

    role: str = "user"
    content: Content = None


class Reasoning(msgspec.Struct):
    """The Responses API's `reasoning` object."""

    effort: str | None = None


class ResponsesBody(msgspec.Struct):
    """`POST /v1/responses`."""

    model: str | None = None
    ttl: float | None = None  # seconds a JIT-loaded model may idle (ttl-and-auto-evict.md)
    input: str | list[Message] | None = None
    instructions: str | None = None
    temperature: float | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    reasoning: Reasoning | None = None

    def wants_reasoning(self) -> bool:
        """A `reasoning` object asks for reasoning unless its effort is "none"."""
        return self.reasoning is not None and self.reasoning.effort != "none"

    def messages(self) -> list[Message]:
        """`input` as a list of messages."""
        if isinstance(self.input, str):
            return [Message(content=self.input)]
        return self.input or []


class StreamOptions(msgspec.Struct):
    """`stream_options` of a chat completion."""

    include_usage: bool = False


class ChatBody(msgspec.Struct):
    """`POST /v1/chat/completions`."""

    model: str | None = None
    ttl: float | None = None
    messages: list[Message] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None

    def include_usage(self) -> bool:
        """Whether a usage chunk goes before `[DONE]`."""
        return self.stream_options is not None and self.stream_options.include_usage

    def token_limit(self) -> int | None:
        """`max_completion_tokens` wins over the older `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens


def decode_body(raw: bytes, body_type: type[Body]) -> Body:
    """Decode and validate a request body, or raise a 400."""
    if not raw.strip():
        raise InvalidRequest("The request body is empty; expected a JSON object.")
    try:
        return msgspec.json.decode(raw, type=body_type)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"Invalid request body: {exc}") from exc


def message_text(message: Message) -> str:
    """The text of one message, its text parts joined."""
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    return " ".join(part.text for part in message.content if part.text)


def prompt_of(messages: list[Message], param: str) -> tuple[str, int]:
    """The text to echo (last user message) and the character count of all messages."""
    texts = [message_text(message) for message in messages]
    chars = sum(len(text) for text in texts)
    if chars == 0:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param)
    users = [text for message, text in zip(messages, texts, strict=True) if message.role == "user"]
    return (users or texts)[-1], chars


class LoadBody(msgspec.Struct):
    """`POST /api/v1/models/load` (docs `1_developer/2_rest/load.md`)."""

    model: str
    context_length: int | None = None
    echo_load_config: bool = False
