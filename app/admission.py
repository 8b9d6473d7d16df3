"""Admission: the global and per-visitor fixed windows, checked and spent in one round trip."""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

ADMIT_SCRIPT = resources.files("app").joinpath("lua/admit.lua").read_text()


class Limit(StrEnum):
    """Which window decided: the visitor's own or everyone's."""

    VISITOR = "visitor"
    GLOBAL = "global"


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission, with what the RateLimit headers need."""

    admitted: bool
    limit: Limit
    quota: int
    remaining: int
    reset_seconds: float

    @property
    def retry_after(self) -> int:
        """Whole seconds until the deciding window resets (never 0 for a refusal)."""
        return max(1, int(-(-self.reset_seconds // 1)))


class Admitter:
    """Runs the admission script; remembers a full global window so floods skip Redis."""

    def __init__(
        self,
        redis: Redis,
        *,
        prefix: str,
        global_limit: int,
        visitor_limit: int,
        window_seconds: int,
    ) -> None:
        self._redis = redis
        self._script = redis.register_script(ADMIT_SCRIPT)
        # One hash tag for every key of an admission, so a Redis Cluster keeps them in one slot.
        self._global_key = f"{{{prefix}}}:window:global"
        self._visitor_prefix = f"{{{prefix}}}:window:visitor:"
        self.global_limit = global_limit
        self.visitor_limit = visitor_limit
        self._window_ms = window_seconds * 1000
        self._global_closed_until = 0.0

    async def load(self) -> None:
        """Load the script into Redis now, so the first request needs a single EVALSHA."""
        await self._redis.script_load(ADMIT_SCRIPT)

    async def admit(self, visitor_ids: Sequence[str]) -> Decision:
        """Admit one request for a visitor known by these (hashed) ids, or say why not."""
        now = time.monotonic()
        if now < self._global_closed_until:
            return self._refusal(Limit.GLOBAL, self._global_closed_until - now)
        keys = [self._global_key, *(self._visitor_prefix + vid for vid in visitor_ids)]
        args = [self._window_ms, self.global_limit, self.visitor_limit]
        status, ttl_ms, remaining, binding = await self._script(keys=keys, args=args)
        reset = max(int(ttl_ms), 0) / 1000
        if status == 2:
            self._global_closed_until = now + reset
        limit = Limit.GLOBAL if binding == 1 else Limit.VISITOR
        if status != 0:
            return self._refusal(limit, reset)
        return Decision(
            admitted=True,
            limit=limit,
            quota=self._quota(limit),
            remaining=int(remaining),
            reset_seconds=reset,
        )

    def _refusal(self, limit: Limit, reset: float) -> Decision:
        return Decision(
            admitted=False, limit=limit, quota=self._quota(limit), remaining=0, reset_seconds=reset
        )

    def _quota(self, limit: Limit) -> int:
        return self.global_limit if limit is Limit.GLOBAL else self.visitor_limit
