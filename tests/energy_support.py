"""What the energy ledger's tests and its bench give it by hand: a clock of their own, and
ended chats as the relay records them."""

from __future__ import annotations

from typing import Any

from app.upstream.relay import StreamRecord


class Clock:
    """A clock the caller moves (`now`)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def ended(
    started: float, first_token_at: float | None, usage: dict[str, Any] | None
) -> StreamRecord:
    """A chat's record at its end: begun, its first token, the model's usage."""
    return StreamRecord(started=started, first_token_at=first_token_at, usage=usage)
