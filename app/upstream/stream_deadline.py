"""The deadline of a stream's waits for the next upstream chunk, on one timer per stream.

`asyncio.timeout_at` around each wait makes a timeout, looks up the task, and sets and cancels
a loop timer for every chunk; the relay waits a dozen times per answer and the deadline only
moves forward (the idle gap restarts with each token). Here the timer set for a deadline stays
set while later waits push the deadline on; when it fires early it is set again for the
deadline then in force, and only a wait that is still in progress at its deadline is
cancelled, the same way and with the same `TimeoutError` as `asyncio.timeout_at`.
"""

from __future__ import annotations

import asyncio
import math


class StreamDeadline:
    """Made in the task that waits (the relay's): `begin(at)` before each wait, `end()` after
    it, `expired()` to tell our cancellation from anyone else's, `close()` when done."""

    __slots__ = ("_armed_at", "_at", "_cancelling", "_expired", "_handle", "_loop", "_task")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a stream deadline needs a task to cancel")
        self._task = task
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at = math.inf  # when the timer fires; inf while none is set
        self._at = math.inf  # the deadline of the wait in progress; inf between waits
        self._cancelling = 0
        self._expired = False

    def begin(self, at: float) -> None:
        """A wait starts that must end by `at` (on the loop's clock)."""
        self._at = at
        self._cancelling = self._task.cancelling()
        if at < self._armed_at:
            self._arm(at)

    def end(self) -> None:
        """The wait is over, however it ended."""
        self._at = math.inf
        if self._expired:  # fired as the wait ended anyway: take our request back, as
            self._expired = False  # asyncio.timeout does
            self._task.uncancel()

    def expired(self) -> bool:
        """Whether the CancelledError the wait got is this deadline's (and only this one's),
        to be turned into a TimeoutError; call once, from the wait's handler."""
        if not self._expired:
            return False
        self._expired = False
        return self._task.uncancel() <= self._cancelling

    def close(self) -> None:
        """No more waits: drop the timer."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._armed_at = math.inf

    def _arm(self, at: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop.call_at(at, self._fire)
        self._armed_at = at

    def _fire(self) -> None:
        fired_at = self._armed_at
        self._handle, self._armed_at = None, math.inf
        if self._at == math.inf:  # between waits: the next one sets the timer again
            return
        if self._at > fired_at:  # the deadline moved on since the timer was set
            self._arm(self._at)
            return
        self._expired = True
        self._task.cancel()
