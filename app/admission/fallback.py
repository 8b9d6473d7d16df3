"""The in-process fallback: fixed windows (requests and tokens) and an in-flight count, for
while Redis is away."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from dataclasses import replace
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import Decision, Limit, Limits, Reservation, public_scopes, refusal

if TYPE_CHECKING:
    from collections.abc import Sequence

    from app.admission.decision import Scope

TOKENS = "tokens:"  # a token window's key: beside the scope's request window, as in Redis
# Windows are pruned once this many keys are held, so a flood of visitors cannot grow memory.
PRUNE_AT = 10_000


class LocalAdmitter:
    """Fixed windows and in-flight leases kept in this process only."""

    def __init__(self, window_seconds: int) -> None:
        self._window = float(window_seconds)
        self._windows: dict[str, tuple[float, int]] = {}
        # lease -> its key's name ('' for the public), and its host
        self._leases: dict[str, tuple[str, str]] = {}
        self._conversations: OrderedDict[str, str] = OrderedDict()

    def admit(
        self,
        visitor_ids: Sequence[str],
        limits: Limits,
        continues: str | None = None,
        owner: str = "",
        *,
        tokens: int = 0,
        scopes: Sequence[Scope] = (),
        lane: Lane = Lane.PUBLIC,
        concurrency: tuple[str, int] | None = None,
        host: str = "",
    ) -> Decision:
        """Same rules as the Redis script: check everything, then spend; a keyed lane counts
        in its own scopes only, and in its key's streams at once; the in-flight cap counts
        the streams on `host` (the one chosen by the caller). A conversation continued here
        reserves no size on record (that record is in Redis)."""
        if continues is not None and self._conversations.get(continues) != owner:
            return refusal(Limit.CONVERSATION, 0, 0, path="fallback")
        if lane is not Lane.PUBLIC:
            decision = self._decide((*scopes,), limits, tokens, concurrency or ("", 0), host)
            return replace(decision, lane=lane)
        every = public_scopes(visitor_ids, limits, scopes)
        return self._decide(every, limits, tokens, ("", 0), host)

    def _decide(
        self,
        every: tuple[Scope, ...],
        limits: Limits,
        tokens: int,
        concurrency: tuple[str, int],
        host: str,
    ) -> Decision:
        now = time.monotonic()
        if len(self._windows) > PRUNE_AT:
            self._prune(now)
        windows = [(s.name, s.requests, 1, s) for s in every if s.requests > 0]
        if tokens > 0:
            windows += [(TOKENS + s.name, s.tokens, tokens, s) for s in every if s.tokens > 0]
        windows.sort(key=lambda window: every.index(window[3]))
        for key, quota, cost, scope in reversed(windows):
            reset_at, used = self._window_of(key, now)
            if used + cost > quota:
                return self._refusal(scope, key, tokens, reset_at - now)
        name, streams = concurrency
        if streams > 0 and sum(held == name for held, _ in self._leases.values()) >= streams:
            return refusal(Limit.CONCURRENCY, streams, 1.0, path="fallback")
        if sum(on == host for _, on in self._leases.values()) >= limits.inflight_cap:
            return refusal(Limit.INFLIGHT, limits.inflight_cap, 1.0, path="fallback")
        ends = []
        for key, _, cost, _ in windows:
            reset_at, used = self._window_of(key, now)
            self._windows[key] = (reset_at, used + cost)
            if key.startswith(TOKENS):
                ends.append((key.removeprefix(TOKENS), reset_at))
        lease = "local:" + secrets.token_hex(8)
        self._leases[lease] = (name, host)
        admitted = self._admitted(every, lease, now)
        return replace(admitted, reservation=Reservation(tokens, tuple(ends))) if ends else admitted

    def _admitted(self, every: tuple[Scope, ...], lease: str, now: float) -> Decision:
        """An admission, with the broadest scope's window for the RateLimit headers (a key
        without windows: none)."""
        if not every:
            return Decision(True, Limit.KEY, 0, 0, 0.0, lease, path="fallback")  # noqa: FBT003
        broadest = every[0]
        reset_at, used = self._windows.get(broadest.name, (now, 0))
        return Decision(
            admitted=True,
            limit=broadest.whose,
            quota=broadest.requests,
            remaining=broadest.requests - used,
            reset_seconds=reset_at - now,
            lease=lease,
            path="fallback",
        )

    @staticmethod
    def _refusal(scope: Scope, key: str, tokens: int, reset: float) -> Decision:
        if not key.startswith(TOKENS):
            return refusal(scope.whose, scope.requests, reset, path="fallback")
        refused = refusal(Limit.TOKENS, scope.tokens, reset, path="fallback")
        return replace(refused, reservation=Reservation(tokens), whose=scope.whose)

    def remember_conversation(self, response_id: str, owner: str) -> None:
        """Bind a response to its visitor here too, for follow-ups while Redis is away."""
        self._conversations[response_id] = owner
        self._conversations.move_to_end(response_id)
        while len(self._conversations) > PRUNE_AT:
            self._conversations.popitem(last=False)

    def release(self, lease: str, reservation: Reservation | None = None, spent: int = 0) -> None:
        """Give an in-flight place back, and settle the reservation in each window that is
        still the one it was made in."""
        self._leases.pop(lease, None)
        if reservation is None:
            return
        for name, end in reservation.windows:
            reset_at, used = self._windows.get(TOKENS + name, (0.0, 0))
            if reset_at == end:
                self._windows[TOKENS + name] = (reset_at, used + spent - reservation.tokens)

    def _window_of(self, key: str, now: float) -> tuple[float, int]:
        reset_at, used = self._windows.get(key, (0.0, 0))
        return (reset_at, used) if reset_at > now else (now + self._window, 0)

    def _prune(self, now: float) -> None:
        self._windows = {key: value for key, value in self._windows.items() if value[0] > now}
