"""A post cut into passages: along its headings first, then its paragraphs, each passage at
most `max_tokens` by the gateway's own estimate (app/chat/tokens.py), so a search's passages
can be capped by the tokens they add to a chat. A passage keeps the heading it sits under.

Paragraphs of one section are packed together while they fit; a paragraph too long for a
passage by itself is cut between words (a word longer than a passage, between characters)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from app.chat.tokens import CHARS_PER_TOKEN

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from app.posts.records import Block


class Piece(msgspec.Struct, frozen=True):
    """One passage before it is stored: the heading it sits under, and its text."""

    heading: str
    text: str


def cut(blocks: Iterable[Block], *, max_tokens: int, heading: str = "") -> list[Piece]:
    """The passages of a post's blocks; `heading` names those before the first heading."""
    most = max_tokens * CHARS_PER_TOKEN
    pieces: list[Piece] = []
    chunk: list[str] = []
    length = 0
    for block in blocks:
        if block.level:
            if chunk:
                pieces.append(Piece(heading, "\n".join(chunk)))
                chunk, length = [], 0
            heading = block.text
            continue
        for part in _fitted(block.text, most):
            if chunk and length + 1 + len(part) > most:
                pieces.append(Piece(heading, "\n".join(chunk)))
                chunk, length = [], 0
            length += len(part) + (1 if chunk else 0)
            chunk.append(part)
    if chunk:
        pieces.append(Piece(heading, "\n".join(chunk)))
    return pieces


def _fitted(text: str, most: int) -> Iterator[str]:
    """The text in parts of at most `most` characters, cut between words."""
    if len(text) <= most:
        yield text
        return
    part = ""
    for word in text.split():
        while len(word) > most:
            if part:
                yield part
                part = ""
            yield word[:most]
            word = word[most:]  # noqa: PLW2901 - the rest of a word too long for a passage
        if part and len(part) + 1 + len(word) > most:
            yield part
            part = ""
        part = f"{part} {word}" if part else word
    if part:
        yield part
