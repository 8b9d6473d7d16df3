"""What an admission decides: the limits it is checked against, its outcome, and the
conversations it binds. Shared by the Redis admitter, the local fallback and the waiting room."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Limit(StrEnum):
    """What decided: the visitor's window, everyone's window, the in-flight cap, a
    conversation not the visitor's, or a model being woken by another request."""

    VISITOR = "visitor"
    GLOBAL = "global"
    INFLIGHT = "inflight"
    CONVERSATION = "conversation"
    WAKING = "waking"


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one admission is checked against (the governor's effective values)."""

    global_limit: int
    visitor_limit: int
    inflight_cap: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission, with what the RateLimit headers need."""

    admitted: bool
    limit: Limit
    quota: int
    remaining: int
    reset_seconds: float
    lease: str | None = None
    path: str = "redis"  # redis, local (the remembered full window) or fallback
    waker: bool = False  # this request wakes the model asleep (it alone, across replicas)
    conversation_tokens: int = 0  # the continued conversation's size, when on record

    @property
    def retry_after(self) -> int:
        """Whole seconds until the deciding window resets (never 0 for a refusal)."""
        return max(1, int(-(-self.reset_seconds // 1)))


@dataclass(frozen=True, slots=True)
class Conversation:
    """An answered response and the (hashed) visitor it answered: only they may continue it."""

    response_id: str
    owner: str
    tokens: int = 0  # its size after this answer (input and output), for the context check


def refusal(limit: Limit, quota: int, reset_seconds: float, path: str = "redis") -> Decision:
    """A refused admission."""
    return Decision(False, limit, quota, 0, reset_seconds, path=path)  # noqa: FBT003
