"""The waiting room: a request the in-flight cap sheds waits here briefly, in arrival order,
for a place to free up, instead of getting its 503 at once.

Without it a slot of the model server stays idle from the end of one stream until the next
visitor happens to arrive; with it the place goes to a visitor already waiting, within a
millisecond of its release. Only the head of the line tries again: when this process gives a
place back (`released`), and every `poll` seconds for a place freed by another replica or by
the governor raising the cap. A retry is one more admission script, which spends nothing while
the cap is full. The wait is bounded (`LLMGW_QUEUE_WAIT_SECONDS`), and so is the line
(`LLMGW_QUEUE_SIZE`): past either, the 503 comes as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING

from app.admission.decision import Limit

# What a request waits out in line: a full in-flight cap, or a model another request wakes.
WAITING = frozenset({Limit.INFLIGHT, Limit.WAKING})

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from app.admission.decision import Decision


class WaitingRoom:
    """A bounded FIFO line of shed requests; its head retries admission when a place frees."""

    def __init__(self, *, size: int, wait_seconds: float, poll_seconds: float = 0.1) -> None:
        self.size = size
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._line: deque[asyncio.Event] = deque()

    @property
    def waiting(self) -> int:
        """Requests in the line now."""
        return len(self._line)

    def released(self) -> None:
        """This process gave an in-flight place back: the head of the line tries now."""
        if self._line:
            self._line[0].set()

    def full(self) -> bool:
        """Whether one more request would find no place in the line."""
        return len(self._line) >= self.size

    async def admit(
        self,
        attempt: Callable[[], Awaitable[Decision]],
        shed: Decision,
        wait_seconds: float | None = None,
    ) -> tuple[Decision, float | None]:
        """Wait in line for a place, retrying with `attempt`; return the last decision (the
        first that is neither a shed nor a wait for the model to wake, or `shed` itself when the
        wait ran out) and the time waited, None when the line was closed (no wait configured)
        or full. `wait_seconds` overrides the configured wait (a model waking takes longer)."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        if wait <= 0 or self.full():
            return shed, None
        started = time.monotonic()
        deadline = started + wait
        turn = asyncio.Event()
        self._line.append(turn)
        decision = shed
        try:
            while (left := deadline - time.monotonic()) > 0:
                head = self._line[0] is turn
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, self.poll_seconds) if head else left):
                        await turn.wait()
                turn.clear()
                if self._line[0] is not turn:
                    continue
                decision = await attempt()
                if decision.admitted or decision.limit not in WAITING:
                    break
        finally:
            was_head = self._line[0] is turn
            self._line.remove(turn)
            if was_head and self._line:
                self._line[0].set()  # the next in line tries at once: more may have freed
        return decision, time.monotonic() - started
