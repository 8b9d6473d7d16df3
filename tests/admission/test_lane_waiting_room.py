"""The waiting room's lanes: higher lanes are served first, arrival order within a lane, and a
line full of visitors never turns the owner away."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from app.access.keys import Lane
from app.admission.decision import Decision, Limit, refusal
from app.admission.waiting_room import WaitingRoom

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

SHED = refusal(Limit.INFLIGHT, 1, 1.0)
ADMITTED = Decision(admitted=True, limit=Limit.GLOBAL, quota=10, remaining=9, reset_seconds=60)


class Places:
    """A stand-in for the admission script: `free` places, and who took them, in order."""

    def __init__(self) -> None:
        self.free = 0
        self.taken: list[str] = []

    def attempt_for(self, name: str) -> Callable[[], Awaitable[Decision]]:
        async def attempt() -> Decision:
            if self.free == 0:
                return SHED
            self.free -= 1
            self.taken.append(name)
            return ADMITTED

        return attempt


async def queue_up(
    room: WaitingRoom, places: Places, arrivals: list[tuple[str, Lane]]
) -> list[asyncio.Task[tuple[Decision, float | None]]]:
    """Put each (name, lane) in line, in this order."""
    waits = []
    for name, lane in arrivals:
        attempt = places.attempt_for(name)
        waits.append(asyncio.create_task(room.admit(attempt, SHED, lane=lane)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    return waits


def test_higher_lanes_are_served_first_and_arrival_order_within_a_lane() -> None:
    """Visitors, then a member, then the owner, then another of each arrive; each released
    place goes to the owner's first, then the members', then the visitors', each in order."""
    seen: list[Mapping[str, int]] = []
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=30, on_change=seen.append)
    places = Places()
    arrivals = [
        ("visitor-1", Lane.PUBLIC),
        ("visitor-2", Lane.PUBLIC),
        ("member-1", Lane.MEMBER),
        ("owner-1", Lane.OWNER),
        ("member-2", Lane.MEMBER),
        ("owner-2", Lane.OWNER),
    ]

    async def scenario() -> None:
        waits = await queue_up(room, places, arrivals)
        assert room.waiting_by_lane() == {"owner": 2, "member": 2, "public": 2}
        for _ in arrivals:
            places.free += 1
            room.released()
            await asyncio.sleep(0.01)
        async with asyncio.timeout(2):  # far under the 30 s poll: the releases woke them
            assert all(decision.admitted for decision, _ in await asyncio.gather(*waits))

    asyncio.run(scenario())
    assert places.taken == ["owner-1", "owner-2", "member-1", "member-2", "visitor-1", "visitor-2"]
    assert room.waiting_by_lane() == {"owner": 0, "member": 0, "public": 0}
    assert seen[5] == {"owner": 2, "member": 2, "public": 2}  # told at each join and leave
    assert seen[-1] == {"owner": 0, "member": 0, "public": 0}
    assert len(seen) == 2 * len(arrivals)


def test_a_line_full_of_visitors_still_takes_the_owner() -> None:
    """Each lane's line is bounded by itself: with the visitors' line full, a visitor is
    shed at once, and the owner waits and gets the next place."""
    room = WaitingRoom(size=2, wait_seconds=30, poll_seconds=30)
    places = Places()

    async def scenario() -> tuple[tuple[Decision, float | None], Decision]:
        waits = await queue_up(room, places, [("v1", Lane.PUBLIC), ("v2", Lane.PUBLIC)])
        assert room.full()
        assert not room.full(Lane.OWNER)
        beyond = await room.admit(places.attempt_for("v3"), SHED)
        owner = asyncio.create_task(room.admit(places.attempt_for("owner"), SHED, lane=Lane.OWNER))
        await asyncio.sleep(0.01)
        places.free = 1
        room.released()
        async with asyncio.timeout(2):
            decision, _ = await owner
        for wait in waits:
            wait.cancel()
        return beyond, decision

    beyond, owner = asyncio.run(scenario())
    assert beyond == (SHED, None)
    assert owner.admitted
    assert places.taken == ["owner"]


def test_an_owner_arriving_behind_a_polling_visitor_takes_the_head() -> None:
    """The owner who arrives after a visitor heads the line at once: the place found by the
    next poll (freed on another replica) is the owner's."""
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=0.02)
    places = Places()

    async def scenario() -> None:
        waits = await queue_up(room, places, [("visitor", Lane.PUBLIC), ("owner", Lane.OWNER)])
        places.free = 1  # no release here: only a poll finds it
        async with asyncio.timeout(2):
            await waits[1]
        places.free = 1
        async with asyncio.timeout(2):
            await waits[0]

    asyncio.run(scenario())
    assert places.taken == ["owner", "visitor"]
