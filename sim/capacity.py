"""Parallel decoding slots with a FIFO queue behind them, the way a local model server schedules."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

# Each extra busy slot slows every slot down by this share: the GPU is shared, so aggregate
# throughput still grows with concurrency, but less than linearly.
SLOWDOWN_PER_EXTRA_SLOT = 0.35


class Reservation:
    """A place held for an admitted request until its generation starts (or never does)."""

    def __init__(self, pool: SlotPool) -> None:
        self._pool = pool
        self._held = True
        pool.reserved += 1

    def release(self) -> None:
        """Give the place back; only the first call counts."""
        if self._held:
            self._held = False
            self._pool.reserved -= 1


class SlotPool:
    """`slots` generations run at once; the others wait in arrival order."""

    def __init__(
        self,
        slots: int,
        queue_limit: int | None,
        on_busy: Callable[[int], None] | None = None,
    ) -> None:
        self.slots = slots
        self.queue_limit = queue_limit
        self.busy = 0
        self._on_busy = on_busy  # told the new number of busy slots whenever it changes
        # Admitted but not yet started: a burst of requests all pass admission before the first
        # of their streams starts, so they must count, or the queue would overshoot its limit.
        self.reserved = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return len(self._waiters)

    def saturated(self) -> bool:
        """True when every slot and queue place is taken or promised: refuse a new request."""
        if self.queue_limit is None:
            return False  # LM Studio queues every request and never answers 503
        return self.busy + self.queued + self.reserved >= self.slots + self.queue_limit

    def reserve(self) -> Reservation:
        """Hold a place for an admitted request; its generation releases it on start."""
        return Reservation(self)

    def slowdown(self) -> float:
        """Divisor of one slot's decode rate given how many slots are busy right now."""
        return 1.0 + SLOWDOWN_PER_EXTRA_SLOT * max(self.busy - 1, 0)

    async def acquire(self) -> None:
        """Take a free slot, or wait in line for one; a cancelled waiter leaves the line."""
        if self.busy < self.slots and not self._waiters:
            self._set_busy(self.busy + 1)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            self._abandon(waiter)
            raise

    def release_at(self, when: float) -> None:
        """Give the slot back at loop time `when`: a cancelled prompt that keeps processing."""
        asyncio.get_running_loop().call_at(when, self.release)

    def release(self) -> None:
        """Give the slot to the longest-waiting request, or mark it free."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: `busy` stays the same
                return
        self._set_busy(self.busy - 1)

    def _set_busy(self, busy: int) -> None:
        self.busy = busy
        if self._on_busy is not None:
            self._on_busy(busy)

    def _abandon(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self.release()  # the slot was handed over just as the waiter was cancelled
        elif waiter in self._waiters:  # `release` may already have dropped it
            self._waiters.remove(waiter)
