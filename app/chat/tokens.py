"""What a chat costs in tokens before the model counts them: a cheap estimate from its text.

About four characters a token in English (OpenAI's rule of thumb), rounded up. No tokenizer:
the model's own is on the model host, and a chat is settled from the usage the model reports at
its end anyway; the estimate only has to hold a place until then."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.chat.request import ChatRequest
    from app.settings import Settings

CHARS_PER_TOKEN = 4


def estimate(chars: int) -> int:
    """Tokens of a text `chars` long, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def to_reserve(request: ChatRequest, settings: Settings) -> int:
    """What admission reserves for a chat: its input (the visitor's words and the instructions
    sent with them) and the answer's cap. The conversation on record is added by the admission
    script, which reads it."""
    instructions = estimate(len(settings.instructions)) if settings.instructions else 0
    return request.estimated_tokens() + instructions + settings.max_output_tokens
