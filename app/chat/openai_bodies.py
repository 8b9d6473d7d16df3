"""The bodies keyed clients send to `/v1/chat/completions` and `/v1/responses`, decoded with
msgspec against the fields OpenAI's API defines and LM Studio reads, and checked against the
gateway's bounds. A field the gateway does not know is refused by name, as OpenAI's API does
("unknown parameter"), rather than passed on unread. Sampling parameters are the client's,
within OpenAI's ranges; the answer's token cap is lowered to LLMGW_KEY_MAX_OUTPUT_TOKENS (and
is that cap when the client sets none), so every admission reserves a bounded answer."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import msgspec

from app.chat.request import RESPONSE_ID
from app.errors import BadRequest

Temperature = Annotated[float, msgspec.Meta(ge=0, le=2)]
TopP = Annotated[float, msgspec.Meta(ge=0, le=1)]
Penalty = Annotated[float, msgspec.Meta(ge=-2, le=2)]
TokenCap = Annotated[int, msgspec.Meta(ge=1)]
ModelName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
# Keys whose strings are not words the model reads as text (images, files): not counted.
NOT_TEXT = frozenset({"image_url", "url", "file_data", "image", "input_image", "file_id"})


class Api(StrEnum):
    CHAT = "chat"
    RESPONSES = "responses"


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False
    include_obfuscation: bool | None = None  # OpenAI's own; newer SDKs send it


# Fields clients send for OpenAI's own service (caching, tiers, abuse checks, stored
# completions): accepted, so those clients work unchanged, and not passed on (they mean nothing
# to the model server).
OPENAI_ONLY = ("prompt_cache_key", "safety_identifier", "service_tier", "user", "metadata")


class ChatMessage(msgspec.Struct, omit_defaults=True):
    """One message; fields OpenAI's API adds later (and LM Studio ignores) are dropped."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class _Sampling(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """What both APIs share: the model, streaming, sampling and tools."""

    model: ModelName | None = None
    stream: bool = False
    temperature: Temperature | None = None
    top_p: TopP | None = None
    top_k: Annotated[int, msgspec.Meta(ge=-1, le=1_000_000)] | None = None
    min_p: TopP | None = None
    seed: int | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    service_tier: str | None = None


class ChatCompletionBody(_Sampling, forbid_unknown_fields=True, omit_defaults=True):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage] = msgspec.field(default_factory=list)
    stream_options: StreamOptions | None = None
    max_tokens: TokenCap | None = None
    max_completion_tokens: TokenCap | None = None
    stop: str | list[str] | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    repeat_penalty: Annotated[float, msgspec.Meta(ge=0, le=10)] | None = None
    logit_bias: dict[str, Annotated[float, msgspec.Meta(ge=-100, le=100)]] | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None
    n: Literal[1] | None = None  # one choice: the model server generates one answer at a time
    response_format: dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    store: bool | None = None  # OpenAI's stored completions: not passed on
    verbosity: Literal["low", "medium", "high"] | None = None  # not passed on


class ResponsesBody(_Sampling, forbid_unknown_fields=True, omit_defaults=True):
    """`POST /v1/responses`."""

    input: str | list[dict[str, Any]] = ""
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: TokenCap | None = None
    store: bool | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    include: list[str] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    stream_options: StreamOptions | None = None
    max_tool_calls: Annotated[int, msgspec.Meta(ge=1)] | None = None
    top_logprobs: Annotated[int, msgspec.Meta(ge=0, le=20)] | None = None


@dataclass(frozen=True, slots=True)
class KeyedBounds:
    max_input_chars: int
    max_output_tokens: int


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """A keyed client's request, checked: what to forward and what admission needs of it."""

    api: Api
    body: ChatCompletionBody | ResponsesBody
    input_chars: int
    max_output_tokens: int  # what the answer may use: the client's, lowered to the cap

    @property
    def stream(self) -> bool:
        return self.body.stream

    @property
    def include_usage(self) -> bool:
        """Whether the client asked for the usage chunk (Chat Completions' stream_options)."""
        body = self.body
        return isinstance(body, ChatCompletionBody) and bool(
            body.stream_options and body.stream_options.include_usage
        )

    @property
    def previous_response_id(self) -> str | None:
        body = self.body
        return body.previous_response_id if isinstance(body, ResponsesBody) else None

    def payload(self, model: str, ttl: int | None) -> bytes:
        """The upstream request: the client's, with the model resolved, the token cap set and,
        for a streamed chat completion, the usage chunk asked for (tokens settle from it)."""
        fields = msgspec.to_builtins(self.body)
        fields["model"] = model
        for name in OPENAI_ONLY:
            fields.pop(name, None)
        fields.pop("stream_options", None)  # the client's; a stream asks for the usage below
        if isinstance(self.body, ChatCompletionBody):
            for name in ("max_completion_tokens", "store", "verbosity"):
                fields.pop(name, None)
            fields["max_tokens"] = self.max_output_tokens
            if self.stream:
                fields["stream_options"] = {"include_usage": True}
        else:
            fields["max_output_tokens"] = self.max_output_tokens
        if ttl is not None:  # LM Studio's idle time before it unloads a model it loaded
            fields["ttl"] = ttl
        return msgspec.json.encode(fields)


_decoders: dict[Api, msgspec.json.Decoder[Any]] = {
    Api.CHAT: msgspec.json.Decoder(ChatCompletionBody),
    Api.RESPONSES: msgspec.json.Decoder(ResponsesBody),
}
_AT = re.compile(r"at `\$\.([A-Za-z_]+)")
_UNKNOWN = re.compile(r"unknown field `([^`]{1,64})`")


def parse_keyed_request(body: bytes, api: Api, bounds: KeyedBounds) -> KeyedRequest:
    """Decode and check a keyed client's body, or raise BadRequest naming the field at fault."""
    if not body.strip():
        raise BadRequest("the request body is empty", param=None)
    try:
        decoded = _decoders[api].decode(body)
        if isinstance(decoded, ChatCompletionBody):
            return _chat(decoded, bounds)
        return _responses(decoded, bounds)
    except msgspec.ValidationError as exc:
        raise _invalid(str(exc)) from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise BadRequest("the request body is not valid JSON") from None
    except RecursionError:  # JSON nested hundreds deep: no chat looks like that
        raise BadRequest("the request body is nested too deeply") from None


def _invalid(said: str) -> BadRequest:
    if unknown := _UNKNOWN.search(said):
        name = unknown.group(1)
        return BadRequest(f"unknown parameter: {name}", param=name)
    at = _AT.search(said)
    return BadRequest(f"invalid request: {said}", param=at.group(1) if at else None)


def _chat(body: ChatCompletionBody, bounds: KeyedBounds) -> KeyedRequest:
    if not body.messages:
        raise BadRequest("messages must hold at least one message", param="messages")
    chars = _text_chars(msgspec.to_builtins(body))  # messages, tools, schemas: all read
    _check_size(chars, bounds, "messages")
    asked = body.max_completion_tokens or body.max_tokens
    return KeyedRequest(Api.CHAT, body, chars, _capped(asked, bounds))


def _responses(body: ResponsesBody, bounds: KeyedBounds) -> KeyedRequest:
    if not _text_chars(body.input) and body.previous_response_id is None:
        raise BadRequest("input is empty", param="input")
    chars = _text_chars(msgspec.to_builtins(body))  # input, instructions, tools: all read
    _check_size(chars, bounds, "input")
    previous = body.previous_response_id
    if previous is not None and not RESPONSE_ID.fullmatch(previous):
        raise BadRequest(
            "previous_response_id must look like resp_ followed by letters or digits",
            param="previous_response_id",
        )
    return KeyedRequest(Api.RESPONSES, body, chars, _capped(body.max_output_tokens, bounds))


def _check_size(chars: int, bounds: KeyedBounds, param: str) -> None:
    if chars > bounds.max_input_chars:
        message = f"input is too long: at most {bounds.max_input_chars} characters"
        raise BadRequest(message, param=param)


def _capped(asked: int | None, bounds: KeyedBounds) -> int:
    return min(asked or bounds.max_output_tokens, bounds.max_output_tokens)


def _text_chars(value: object) -> int:
    """Characters of text the model reads in a body or a part of it: strings, parts, items,
    tools and their arguments, but not images or files (their strings are data, not words).
    Keys and the few short settings among the strings count too: a few characters over."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    if isinstance(value, dict):
        return sum(_text_chars(item) for key, item in value.items() if key not in NOT_TEXT)
    return 0
