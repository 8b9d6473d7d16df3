"""The in-process fallback: fixed windows and an in-flight count, for while Redis is away."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

from app.admission.decision import Decision, Limit, Limits, refusal

if TYPE_CHECKING:
    from collections.abc import Sequence

GLOBAL = "global"
# Windows are pruned once this many keys are held, so a flood of visitors cannot grow memory.
PRUNE_AT = 10_000


class LocalAdmitter:
    """Fixed windows and in-flight leases kept in this process only."""

    def __init__(self, window_seconds: int) -> None:
        self._window = float(window_seconds)
        self._windows: dict[str, tuple[float, int]] = {}
        self._leases: set[str] = set()
        self._conversations: OrderedDict[str, str] = OrderedDict()

    def admit(
        self,
        visitor_ids: Sequence[str],
        limits: Limits,
        continues: str | None = None,
        owner: str = "",
    ) -> Decision:
        """Same rules as the Redis script: check everything, then spend."""
        now = time.monotonic()
        if continues is not None and self._conversations.get(continues) != owner:
            return refusal(Limit.CONVERSATION, 0, 0, path="fallback")
        if len(self._windows) > PRUNE_AT:
            self._prune(now)
        checks = [
            (GLOBAL, limits.global_limit),
            *((vid, limits.visitor_limit) for vid in visitor_ids),
        ]
        for key, quota in reversed(checks):
            reset_at, used = self._window_of(key, now)
            if used >= quota:
                limit = Limit.GLOBAL if key == GLOBAL else Limit.VISITOR
                return refusal(limit, quota, reset_at - now, path="fallback")
        if len(self._leases) >= limits.inflight_cap:
            return refusal(Limit.INFLIGHT, limits.inflight_cap, 1.0, path="fallback")
        for key, _ in checks:
            reset_at, used = self._window_of(key, now)
            self._windows[key] = (reset_at, used + 1)
        lease = "local:" + secrets.token_hex(8)
        self._leases.add(lease)
        reset_at, used = self._windows[GLOBAL]
        return Decision(
            admitted=True,
            limit=Limit.GLOBAL,
            quota=limits.global_limit,
            remaining=limits.global_limit - used,
            reset_seconds=reset_at - now,
            lease=lease,
            path="fallback",
        )

    def remember_conversation(self, response_id: str, owner: str) -> None:
        """Bind a response to its visitor here too, for follow-ups while Redis is away."""
        self._conversations[response_id] = owner
        self._conversations.move_to_end(response_id)
        while len(self._conversations) > PRUNE_AT:
            self._conversations.popitem(last=False)

    def release(self, lease: str) -> None:
        """Give an in-flight place back."""
        self._leases.discard(lease)

    def _window_of(self, key: str, now: float) -> tuple[float, int]:
        reset_at, used = self._windows.get(key, (0.0, 0))
        return (reset_at, used) if reset_at > now else (now + self._window, 0)

    def _prune(self, now: float) -> None:
        self._windows = {key: value for key, value in self._windows.items() if value[0] > now}
