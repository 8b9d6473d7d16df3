"""The waiting room: a request the in-flight cap sheds waits in line for a freed place instead of
getting its 503 at once; the line is first come, first served, bounded in size and in time."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from chat_client import Received, chat
from gateway_server import running_gateway
from sim_process import running_sim
from support import sample

from app.admission.decision import Decision, Limit, refusal
from app.admission.waiting_room import WaitingRoom

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

SHED = refusal(Limit.INFLIGHT, 1, 1.0)
ADMITTED = Decision(admitted=True, limit=Limit.GLOBAL, quota=10, remaining=9, reset_seconds=60)
# 60 tokens (12 reasoning, 48 answer) at 40 tokens/s: each answer holds its place for 1.5 s.
SLOW_SIM = ("--decode-rate", "40")
# One place, and it is the visitors': none held back for the owner's keys.
ONE_PLACE = {"max_inflight": 1, "owner_reserved_inflight": 0}


class Places:
    """A stand-in for the admission script: `free` places, and who took them, in order."""

    def __init__(self) -> None:
        self.free = 0
        self.taken: list[str] = []
        self.attempts = 0

    def attempt_for(self, name: str) -> Callable[[], Awaitable[Decision]]:
        async def attempt() -> Decision:
            self.attempts += 1
            if self.free == 0:
                return SHED
            self.free -= 1
            self.taken.append(name)
            return ADMITTED

        return attempt


def test_a_released_place_goes_to_the_longest_waiting_request() -> None:
    """Three wait; each release admits the next in arrival order, without waiting for a poll."""
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=30)
    places = Places()

    async def scenario() -> list[Decision]:
        waits = []
        for name in ("first", "second", "third"):
            waits.append(asyncio.create_task(room.admit(places.attempt_for(name), SHED)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert room.waiting == 3
        for _ in range(3):
            places.free += 1
            room.released()
            await asyncio.sleep(0.01)
        async with asyncio.timeout(2):  # far under the 30 s poll: the releases woke them
            return [decision for decision, _ in await asyncio.gather(*waits)]

    decisions = asyncio.run(scenario())
    assert places.taken == ["first", "second", "third"]
    assert all(decision.admitted for decision in decisions)
    assert room.waiting == 0


def test_the_head_of_the_line_polls_for_places_freed_elsewhere() -> None:
    """A place freed by another replica (no local release) is found by the head's poll."""
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=0.02)
    places = Places()

    async def scenario() -> Decision:
        waiting = asyncio.create_task(room.admit(places.attempt_for("polling"), SHED))
        await asyncio.sleep(0.05)
        places.free = 1  # nobody calls released(): the place came back on another gateway
        decision, _ = await waiting
        return decision

    assert asyncio.run(scenario()).admitted
    assert places.taken == ["polling"]


def test_when_the_wait_runs_out_the_request_is_shed() -> None:
    """No place within the wait: the original shed decision, and the line is empty again."""
    room = WaitingRoom(size=8, wait_seconds=0.05, poll_seconds=0.01)
    places = Places()
    decision, waited = asyncio.run(room.admit(places.attempt_for("late"), SHED))
    assert decision is SHED
    assert waited is not None
    assert waited >= 0.05
    assert places.attempts >= 1
    assert room.waiting == 0


def test_a_full_line_or_no_wait_sheds_at_once() -> None:
    """Past the line's size, or with no wait configured, nobody queues and nothing is retried."""
    places = Places()

    async def scenario() -> list[tuple[Decision, float | None]]:
        room = WaitingRoom(size=1, wait_seconds=30, poll_seconds=30)
        inside = asyncio.create_task(room.admit(places.attempt_for("inside"), SHED))
        await asyncio.sleep(0)
        beyond = await room.admit(places.attempt_for("beyond"), SHED)
        closed = await WaitingRoom(size=8, wait_seconds=0).admit(places.attempt_for("x"), SHED)
        inside.cancel()
        return [beyond, closed]

    assert asyncio.run(scenario()) == [(SHED, None), (SHED, None)]
    assert places.attempts == 0


def test_a_window_refusal_while_waiting_ends_the_wait_with_that_refusal() -> None:
    """If a retry meets a spent window (the minute filled meanwhile), that answer is final."""
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=0.01)
    spent = refusal(Limit.GLOBAL, 10, 42.0)

    async def refused() -> Decision:
        return spent

    decision, _ = asyncio.run(room.admit(refused, SHED))
    assert decision is spent


def test_a_request_that_leaves_the_line_passes_its_turn_on() -> None:
    """A visitor who gives up while at the head does not hold up the one behind them."""
    room = WaitingRoom(size=8, wait_seconds=30, poll_seconds=30)
    places = Places()

    async def scenario() -> Decision:
        leaving = asyncio.create_task(room.admit(places.attempt_for("leaving"), SHED))
        await asyncio.sleep(0)
        staying = asyncio.create_task(room.admit(places.attempt_for("staying"), SHED))
        await asyncio.sleep(0.01)
        places.free = 1
        leaving.cancel()  # gone before the place came back: the next in line tries at once
        async with asyncio.timeout(2):  # far under the 30 s poll: the turn was passed on
            decision, _ = await staying
        return decision

    assert asyncio.run(scenario()).admitted
    assert places.taken == ["staying"]


@dataclass
class Timed:
    """A chat as received, and the monotonic time it was sent at (its `times` count from it)."""

    sent: float
    received: Received

    def first_event_at(self) -> float:
        return self.sent + self.received.times[0]

    def last_event_at(self) -> float:
        return self.sent + self.received.times[-1]


def timed_chat(url: str) -> Timed:
    sent = time.monotonic()
    return Timed(sent, chat(url))


def second_while_first_streams(first_url: str, second_url: str) -> tuple[Timed, Timed]:
    """A first chat, and a second one sent while the first is streaming."""
    results: list[Timed] = []
    first = threading.Thread(target=lambda: results.append(timed_chat(first_url)), daemon=True)
    first.start()
    time.sleep(0.3)  # the first answer is streaming (it takes 1.5 s)
    second = timed_chat(second_url)
    first.join(timeout=30)
    assert results[0].received.status == 200
    return results[0], second


def _queue_waits(url: str, result: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sample(text, "llmgw_queue_wait_seconds_count", result=result)


def test_a_shed_chat_is_streamed_once_the_running_one_ends(redis_url: str) -> None:
    """Real gateway, Redis and sim with one place: a second visitor is not turned away but
    served as soon as the first answer ends, and the wait is counted."""
    with (
        running_sim(*SLOW_SIM) as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, **ONE_PLACE, queue_wait_seconds=20
        ) as gateway,
    ):
        first, second = second_while_first_streams(gateway.url, gateway.url)
        assert second.received.status == 200
        assert second.received.types()[-1] == "response.completed"
        # The second answer began only after the first one ended: the cap held throughout.
        assert second.first_event_at() >= first.last_event_at()
        assert sim.stats()["completed"] == 2
        assert _queue_waits(gateway.url, "admitted") == 1


def test_past_the_wait_the_shed_chat_gets_its_503(redis_url: str) -> None:
    """A wait shorter than the running answer ends in the usual 503 with Retry-After."""
    with (
        running_sim(*SLOW_SIM) as sim,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, **ONE_PLACE, queue_wait_seconds=0.2
        ) as gateway,
    ):
        _, second = second_while_first_streams(gateway.url, gateway.url)
        assert second.received.status == 503
        assert second.received.json["code"] == "shed"
        assert int(second.received.headers["retry-after"]) >= 1
        assert _queue_waits(gateway.url, "refused") == 1
        assert sim.stats()["started"] == 1


def test_a_place_freed_on_another_replica_reaches_the_waiting_one(redis_url: str) -> None:
    """Two gateways share one Redis and one place: a chat waiting on the second gateway gets
    the place the first gateway's answer gives back (found by polling, with no local release)."""
    with (
        running_sim(*SLOW_SIM) as sim,
        running_gateway(upstream_url=sim.url, redis_url=redis_url, **ONE_PLACE) as one,
        running_gateway(
            upstream_url=sim.url, redis_url=redis_url, **ONE_PLACE, queue_wait_seconds=20
        ) as two,
    ):
        _, second = second_while_first_streams(one.url, two.url)
        assert second.received.status == 200
        assert second.received.types()[-1] == "response.completed"
        assert _queue_waits(two.url, "admitted") == 1
