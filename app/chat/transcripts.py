"""Each conversation's transcript, kept in Redis so that it can go on with another model host
when its own host is gone (issue 15).

A model host keeps its conversations itself: the next turn names the previous one by
`previous_response_id`, and only that host knows it. When the conversation moves to another
host, the transcript is sent as the `input` of `POST /v1/responses` instead: its messages are
the Responses API's EasyInputMessage items, `{"role", "content"}`, as they are.

The transcript of a response is the transcript of the one before it plus this turn: the
visitor's messages and the answer. It is bounded by tokens (estimated from its characters) and
by bytes, the oldest turns dropped first, and saved in one round trip
(lua/save_transcript.lua), so two replicas cannot interleave a read and a write, and the
stream's end waits for one trip only. The script goes by redis-py's `Script`, not the admission
scripts' `LuaScript`: app/chat sits below app/admission, and one script a chat is not the
admission's hot path. A transcript is a convenience: Redis failing never fails a chat."""

from __future__ import annotations

import logging
from importlib import resources
from typing import TYPE_CHECKING

import msgspec
from redis.exceptions import RedisError

from app.chat.tokens import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from redis.asyncio import Redis

log = logging.getLogger("llmgw.transcripts")

SAVE_SCRIPT = resources.files("app.chat").joinpath("lua/save_transcript.lua").read_text()


class Message(msgspec.Struct):
    """One message of a transcript, as the Responses API takes it in `input`."""

    role: str
    content: str


class Turn(msgspec.Struct):
    """One turn, stored as one JSON line: `chars` first, which the save script reads."""

    chars: int
    messages: list[Message]


_encode = msgspec.json.Encoder().encode
_decode_turn = msgspec.json.Decoder(Turn).decode


class Transcripts:
    """The transcripts of one gateway's conversations, each for `seconds` after its last turn,
    at most `max_tokens` (estimated) and `max_bytes` of JSON."""

    def __init__(
        self, redis: Redis, *, prefix: str, seconds: int, max_tokens: int, max_bytes: int
    ) -> None:
        self._redis = redis
        self._save = redis.register_script(SAVE_SCRIPT)
        # Under the admission keys' hash tag: a Redis Cluster keeps a script's keys in one slot.
        self._prefix = f"{{{prefix}}}:transcript:"
        self._seconds = seconds
        # At most max_tokens by app.chat.tokens.estimate: at most this many characters.
        self._max_chars = max_tokens * CHARS_PER_TOKEN
        self._max_bytes = max_bytes

    def key(self, response_id: str) -> str:
        """The Redis key of a response's transcript."""
        return self._prefix + response_id

    async def save(
        self,
        response_id: str,
        previous_id: str | None,
        turn: Sequence[Mapping[str, str]],
        answer: str,
    ) -> None:
        """Save the transcript of `response_id`: that of `previous_id` (when it is still
        stored) and this turn, the visitor's messages (`{"role", "content"}`) and the answer."""
        messages = [Message(message["role"], message["content"]) for message in turn]
        messages.append(Message("assistant", answer))
        fitted = _fitted(messages, self._max_chars, self._max_bytes)
        if fitted is None:
            log.debug("transcript of %s not saved: its caps are too small", response_id)
            return
        keys = [self.key(response_id)] + ([self.key(previous_id)] if previous_id else [])
        line, chars = fitted
        args: list[bytes | int] = [line, chars, self._seconds, self._max_chars, self._max_bytes]
        try:
            await self._save(keys, args)
        except (RedisError, OSError) as exc:
            log.debug("transcript of %s not saved: %s", response_id, type(exc).__name__)

    async def load(self, response_id: str) -> list[dict[str, str]] | None:
        """The messages of a response's transcript, oldest first: the `input` of
        `POST /v1/responses` sent instead of `previous_response_id` when the conversation
        moves to another host. None when there is none (expired, never saved, Redis down)."""
        try:
            stored: bytes | str | None = await self._redis.get(self.key(response_id))
        except (RedisError, OSError) as exc:
            log.debug("transcript of %s not loaded: %s", response_id, type(exc).__name__)
            return None
        if stored is None:
            return None
        data = stored.encode() if isinstance(stored, str) else stored
        try:
            turns = [_decode_turn(line) for line in data.split(b"\n")]
        except msgspec.DecodeError:  # a ValidationError too
            log.debug("transcript of %s is not readable", response_id)
            return None
        return [
            {"role": message.role, "content": message.content}
            for turn in turns
            for message in turn.messages
        ]


def _fitted(messages: list[Message], max_chars: int, max_bytes: int) -> tuple[bytes, int] | None:
    """A turn as one JSON line within both caps, and its characters: its oldest characters
    cut when it is over them; None when not even the bare answer fits `max_bytes`."""
    room = max_chars
    while True:
        turn = _newest(messages, room)
        line = _encode(turn)
        if len(line) <= max_bytes:
            return line, turn.chars
        if turn.chars == 0:
            return None
        # Each character cut takes at least a byte off the line.
        room = max(0, turn.chars - (len(line) - max_bytes))


def _newest(messages: list[Message], room: int) -> Turn:
    """The newest `room` characters of a turn: the messages before them dropped, the oldest
    one kept cut to its end. The last message, the answer, is always kept, empty if need be."""
    kept: list[Message] = []
    chars = 0
    for message in reversed(messages):
        left = room - chars
        if kept and left <= 0:
            break
        content = message.content[max(0, len(message.content) - left) :]
        kept.append(Message(message.role, content))
        chars += len(content)
    kept.reverse()
    return Turn(chars, kept)
