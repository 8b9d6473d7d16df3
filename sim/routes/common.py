"""What the generation routes share: the state, admission, SSE responses, disconnect watching."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio
from litestar.response import Stream

from sim.errors import ModelCrashed, NoModelsLoaded, ServerOverloaded

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Coroutine

    from litestar import Request

    from sim.capacity import Reservation
    from sim.state import SimState

Result = TypeVar("Result")


def sim_state(request: Request[Any, Any, Any]) -> SimState:
    """The simulator's state, kept on `app.state.sim`."""
    return cast("SimState", request.app.state.sim)


def admit(state: SimState) -> Reservation:
    """Refuse as the server would (no model, no room, injected failure), else hold a place."""
    if not state.model_loaded:
        raise NoModelsLoaded
    if state.pool.saturated():
        state.counters.rejected += 1
        message = f"All {state.pool.slots} slots are busy and {state.pool.queued} requests wait."
        raise ServerOverloaded(message)
    if state.should_fail():
        state.counters.failed += 1
        raise ModelCrashed
    return state.pool.reserve()


def event_stream(frames: AsyncIterator[bytes], reservation: Reservation) -> Stream:
    """A `text/event-stream` response; Litestar cancels `frames` when the client disconnects."""
    # A client gone before the stream starts leaves `frames` unstarted: free its place then.
    weakref.finalize(frames, reservation.release)
    return Stream(frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def unless_disconnected(
    request: Request[Any, Any, Any], work: Coroutine[Any, Any, Result]
) -> Result | None:
    """Await `work`, cancelling it if the client goes away first (then return None)."""
    result: Result | None = None
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_cancel_on_disconnect, request, group.cancel_scope)
            result = await work
            group.cancel_scope.cancel()
    except ExceptionGroup as failure:  # an error of the work itself, e.g. the context filled
        if len(failure.exceptions) == 1:
            raise failure.exceptions[0] from None
        raise
    return result


async def _cancel_on_disconnect(request: Request[Any, Any, Any], scope: anyio.CancelScope) -> None:
    # The body has been read, so the next ASGI message is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
