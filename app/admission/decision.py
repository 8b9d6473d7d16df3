"""What an admission decides: the scopes and limits it is checked against, its outcome, the
tokens it reserved, and the conversations it binds. Shared by the Redis admitter, the local
fallback and the waiting room."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from app.access.keys import Lane

if TYPE_CHECKING:
    from collections.abc import Sequence


class Limit(StrEnum):
    """What decided: the visitor's window, everyone's window, a key's own window, a token
    window the reservation does not fit, the in-flight cap, a key's streams at once, a
    conversation not the visitor's, or a model being woken by another request."""

    VISITOR = "visitor"
    GLOBAL = "global"
    KEY = "key"
    TOKENS = "tokens"
    INFLIGHT = "inflight"
    CONCURRENCY = "concurrency"
    CONVERSATION = "conversation"
    WAKING = "waking"
    VISITOR_PASS = "visitor_pass"  # noqa: S105 - a limit's name: a pass's chats all used
    PASS_NETWORK = "pass_network"  # noqa: S105 - a network's chats without a pass past normal
    NO_HOST = "no_host"  # no model host is up, and no fallback may answer
    FALLBACK_BUDGET = "fallback_budget"  # the hosted fallback's tokens for the day are spent


# Scopes counting more than one visitor: checked after everyone's and before the visitor's.
BROADER_THAN_A_VISITOR = frozenset({Limit.PASS_NETWORK})


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits one admission is checked against (the governor's effective values for its
    lane); token limits are per window, 0 meaning off. `inflight_cap` counts every lane's
    streams; `reserved_inflight` of it only this lane may fill (the owner's held-back places),
    which a share of the cap keeps whole (Limiter.fallback_limits)."""

    global_limit: int
    visitor_limit: int
    inflight_cap: int
    global_tokens: int = 0
    visitor_tokens: int = 0
    reserved_inflight: int = 0


@dataclass(frozen=True, slots=True)
class Scope:
    """One party an admission counts against, with a request window and a token window of its
    own (a limit of 0 turns that window off). `name` keys its windows: `global`, `visitor:<id>`
    today; a lane's or a key's scope goes the same way. `whose` names a full request window
    in a refusal, and whose budget a full token window was."""

    name: str
    whose: Limit
    requests: int = 0
    tokens: int = 0
    window_ms: int = 0  # its own window's length (a visitor pass's life); 0: the usual one


def public_scopes(
    visitor_ids: Sequence[str], limits: Limits, extra: Sequence[Scope] = ()
) -> tuple[Scope, ...]:
    """Everyone's scope, then one per visitor id (address, thumbmark), with `extra` scopes in
    their place: broadest first, so the narrowest full window is the one a refusal names. A
    network's scope (many visitors) comes before the visitor's own, a pass's after."""
    everyone = Scope("global", Limit.GLOBAL, limits.global_limit, limits.global_tokens)
    visitors = (
        Scope(f"visitor:{vid}", Limit.VISITOR, limits.visitor_limit, limits.visitor_tokens)
        for vid in visitor_ids
    )
    broad = tuple(scope for scope in extra if scope.whose in BROADER_THAN_A_VISITOR)
    narrow = (scope for scope in extra if scope.whose not in BROADER_THAN_A_VISITOR)
    return (everyone, *broad, *visitors, *narrow)


# The one host of the old configuration (LLMGW_UPSTREAM_URL), as app.settings names it.
SINGLE_HOST = "home"


@dataclass(frozen=True, slots=True)
class HostSlot:
    """One model host as one admission sees it: the lane's in-flight cap on it now, the weight
    its free places are scaled by (its configured weight times its governor's factor), whether
    it is up (breaker not open, no outage) and whether its model is asleep (one request wakes
    it). The hosted fallback is a slot too, with its daily tokens (`budget` > 0), chosen only
    when no home host can answer."""

    name: str
    cap: int
    weight: float = 1.0
    up: bool = True
    asleep: bool = False
    budget: int = 0
    share: int = 0  # the fallback: each visitor id's tokens of its day (0: no share)
    recovering: bool = False  # its breaker is half-open: its conversations wait, not move

    @property
    def fallback(self) -> bool:
        return self.budget > 0


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens one admission took from its token windows (or, refused by one, the tokens it
    asked for), and each window by the instant it ends: the stream's end settles into a
    window only while that same window lasts."""

    tokens: int
    windows: tuple[tuple[str, float], ...] = ()


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
    reservation: Reservation | None = None
    whose: Limit | None = None  # refused by tokens: whose token window it was
    lane: Lane = Lane.PUBLIC
    host: str = SINGLE_HOST  # the host chosen to answer (admitted)
    moved: bool = False  # its conversation leaves the host that answered it (that one is out)

    @property
    def retry_after(self) -> int:
        """Whole seconds until the deciding window resets (never 0 for a refusal)."""
        return max(1, int(-(-self.reset_seconds // 1)))

    @property
    def never_fits(self) -> bool:
        """Refused by a token window smaller than the reservation itself: waiting won't help."""
        asked = self.reservation.tokens if self.reservation else 0
        return self.limit is Limit.TOKENS and asked > self.quota


@dataclass(frozen=True, slots=True)
class Conversation:
    """An answered response and the (hashed) visitor it answered: only they may continue it."""

    response_id: str
    owner: str
    tokens: int = 0  # its size after this answer (input and output), for the context check
    host: str = ""  # the host that answered: its follow-ups go there while it is up


def refusal(limit: Limit, quota: int, reset_seconds: float, path: str = "redis") -> Decision:
    """A refused admission."""
    return Decision(False, limit, quota, 0, reset_seconds, path=path)  # noqa: FBT003
