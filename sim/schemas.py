"""Request bodies of the generation endpoints, decoded with msgspec; unknown fields are ignored."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from sim.errors import InvalidRequest

if TYPE_CHECKING:
    from collections.abc import Sequence

Body = TypeVar("Body", bound=msgspec.Struct)


class ContentPart(msgspec.Struct):
    """One part of a message's content; only text parts count."""

    text: str = ""


Content = str | list[ContentPart] | None


class Message(msgspec.Struct):
    """A `{"role", "content"}` item of `input` or `messages`."""

    role: str = "user"
    content: Content = None


class InputItem(Message):
    """An item of the Responses API's `input`: a message (no `type` means one), a function
    call's output sent back (`function_call_output`), or an earlier call repeated."""

    type: str = "message"
    call_id: str | None = None
    output: Content = None  # of a function_call_output: a string or text parts
    name: str | None = None
    arguments: str | None = None


class Reasoning(msgspec.Struct):
    """The Responses API's `reasoning` object."""

    effort: str | None = None


class ResponsesBody(msgspec.Struct):
    """`POST /v1/responses`."""

    model: str | None = None
    ttl: float | None = None  # seconds a JIT-loaded model may idle (ttl-and-auto-evict.md)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    temperature: float | None = None
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    reasoning: Reasoning | None = None
    # Checked field by field in `sim/tool_requests.py`, to refuse them as LM Studio does.
    tools: list[Any] | None = None
    tool_choice: Any = None

    def wants_reasoning(self) -> bool:
        """A `reasoning` object asks for reasoning unless its effort is "none"."""
        return self.reasoning is not None and self.reasoning.effort != "none"

    def items(self) -> list[InputItem]:
        """`input` as a list of items; a string is one user message."""
        if isinstance(self.input, str):
            return [InputItem(content=self.input)]
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


def content_text(content: Content) -> str:
    """The text of a message's content or a function call's output, its text parts joined."""
    if content is None or isinstance(content, str):
        return content or ""
    return " ".join(part.text for part in content if part.text)


def message_text(message: Message) -> str:
    """The text of one message."""
    return content_text(message.content)


def prompt_of(messages: Sequence[Message], param: str, other_chars: int = 0) -> tuple[str, int]:
    """The text to echo (last user message) and the character count of all messages, plus
    `other_chars` of input that is not a message (function calls and their outputs)."""
    texts = [message_text(message) for message in messages]
    chars = sum(len(text) for text in texts) + other_chars
    if chars == 0:
        raise InvalidRequest(f"Missing required parameter: '{param}'.", param)
    users = [text for message, text in zip(messages, texts, strict=True) if message.role == "user"]
    return (users or texts or [""])[-1], chars


class LoadBody(msgspec.Struct):
    """`POST /api/v1/models/load` (docs `1_developer/2_rest/load.md`)."""

    model: str
    context_length: int | None = None
    echo_load_config: bool = False
