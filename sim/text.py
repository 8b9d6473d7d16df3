"""Deterministic filler text, one word per token, whose first words echo the prompt."""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence

FILLER_SENTENCE = (
    "The simulated model answers with steady filler text so that the gateway, its dashboards "
    "and its benchmarks see tokens arrive at a realistic pace while nothing is computed on any "
    "graphics card, and every run with the same seed says the same thing."
)
REASONING_SENTENCE = "Let me think about what was asked and how to answer it briefly and clearly."
FILLER = FILLER_SENTENCE.split()
REASONING = REASONING_SENTENCE.split()
ECHOED_WORDS = 5
LONGEST_ECHOED_WORD = 24
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Script:
    """The token pieces a generation will emit: reasoning first, then the answer."""

    reasoning: tuple[str, ...]
    answer: tuple[str, ...]


def count_tokens(chars: int) -> int:
    """Rough tokenizer: about four characters a token, never zero."""
    return max(1, math.ceil(chars / CHARS_PER_TOKEN))


def write_script(
    prompt: str,
    reasoning_tokens: int,
    answer_tokens: int,
    offset: int,
    opening: Sequence[str] | None = None,
) -> Script:
    """Reasoning words, then an answer that opens with `opening` (by default, by quoting the
    prompt) and goes on with filler."""
    if opening is None:
        echo = [word[:LONGEST_ECHOED_WORD] for word in prompt.split()[:ECHOED_WORDS]]
        opening = ["You", "said:", *echo, "—"]
    answer_words = itertools.chain(opening, _cycle_from(FILLER, offset))
    return Script(
        reasoning=_pieces(itertools.cycle(REASONING), reasoning_tokens),
        answer=_pieces(answer_words, answer_tokens),
    )


def fixed_script(answer: tuple[str, ...], reasoning_tokens: int, answer_tokens: int) -> Script:
    """Reasoning words, then the first `answer_tokens` of pieces written beforehand."""
    return Script(
        reasoning=_pieces(itertools.cycle(REASONING), reasoning_tokens),
        answer=answer[:answer_tokens],
    )


@functools.lru_cache(maxsize=8192)
def json_string(piece: str) -> bytes:
    """A piece of text as a JSON string literal; cached because filler words repeat."""
    return msgspec.json.encode(piece)


def _cycle_from(words: list[str], offset: int) -> Iterator[str]:
    start = offset % len(words)
    return itertools.cycle(words[start:] + words[:start])


def _pieces(words: Iterable[str], count: int) -> tuple[str, ...]:
    chosen = list(itertools.islice(words, count))
    return tuple(word if index == 0 else " " + word for index, word in enumerate(chosen))
