"""The waiting room: a request the in-flight cap sheds waits here briefly for a place to free
up, instead of getting its 503 at once; higher lanes first (owner, member, public), and within a
lane in arrival order.

Without it a slot of the model server stays idle from the end of one stream until the next
visitor happens to arrive; with it the place goes to a request already waiting, within a
millisecond of its release. Only the head of the line (the highest lane's earliest) tries again:
when this process gives a place back (`released`), and every `poll` seconds for a place freed by
another replica or by the governor raising the cap. A retry is one more admission script, which
spends nothing while the cap is full. The head's lane has the largest cap of all who wait
(PressureGovernor.limits), so no one behind it could take a place it cannot. The wait is bounded
(`LLMGW_QUEUE_WAIT_SECONDS`), and so is each lane's line (`LLMGW_QUEUE_SIZE`): past either, the
503 comes as before. Bounding each lane's line by itself means a line full of visitors never
turns the owner away, and no waiting visitor is pushed out to make room.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import Limit

# What a request waits out in line: a full in-flight cap, or a model another request wakes.
WAITING = frozenset({Limit.INFLIGHT, Limit.WAKING})

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from app.admission.decision import Decision


class WaitingRoom:
    """A bounded FIFO line per lane of shed requests; the head retries when a place frees."""

    def __init__(
        self,
        *,
        size: int,
        wait_seconds: float,
        poll_seconds: float = 0.1,
        on_change: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self.size = size
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self._on_change = on_change  # told each lane's line whenever one changes
        # In the lanes' order of priority: the first event of the first line is the head.
        self._lines: dict[Lane, deque[asyncio.Event]] = {lane: deque() for lane in Lane}

    @property
    def waiting(self) -> int:
        """Requests in the line now, of every lane."""
        return sum(map(len, self._lines.values()))

    def waiting_by_lane(self) -> dict[str, int]:
        """Requests in the line now, per lane."""
        return {str(lane): len(line) for lane, line in self._lines.items()}

    def _head(self) -> asyncio.Event | None:
        for line in self._lines.values():
            if line:
                return line[0]
        return None

    def released(self) -> None:
        """This process gave an in-flight place back: the head of the line tries now."""
        if (head := self._head()) is not None:
            head.set()

    def full(self, lane: Lane = Lane.PUBLIC) -> bool:
        """Whether one more request of this lane would find no place in its line."""
        return len(self._lines[lane]) >= self.size

    async def admit(
        self,
        attempt: Callable[[], Awaitable[Decision]],
        shed: Decision,
        wait_seconds: float | None = None,
        lane: Lane = Lane.PUBLIC,
    ) -> tuple[Decision, float | None]:
        """Wait in this lane's line for a place, retrying with `attempt`; return the last
        decision (the first that is neither a shed nor a wait for the model to wake, or `shed`
        itself when the wait ran out) and the time waited, None when the line was closed (no
        wait configured) or full. `wait_seconds` overrides the configured wait (a model
        waking takes longer)."""
        wait = self.wait_seconds if wait_seconds is None else wait_seconds
        if wait <= 0 or self.full(lane):
            return shed, None
        started = time.monotonic()
        deadline = started + wait
        turn = asyncio.Event()
        self._join(lane, turn)
        decision = shed
        try:
            while (left := deadline - time.monotonic()) > 0:
                head = self._head() is turn
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(left, self.poll_seconds) if head else left):
                        await turn.wait()
                turn.clear()
                if self._head() is not turn:
                    continue
                decision = await attempt()
                if decision.admitted or decision.limit not in WAITING:
                    break
        finally:
            was_head = self._head() is turn
            self._leave(lane, turn)
            if was_head:
                self.released()  # the next in line tries at once: more may have freed
        return decision, time.monotonic() - started

    def _join(self, lane: Lane, turn: asyncio.Event) -> None:
        self._lines[lane].append(turn)
        self._changed()

    def _leave(self, lane: Lane, turn: asyncio.Event) -> None:
        self._lines[lane].remove(turn)
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.waiting_by_lane())
