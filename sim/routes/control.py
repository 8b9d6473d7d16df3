"""`/_sim/*`: switch faults, read and reset counters. Never behind the API key."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get, post

from sim.config import FaultMode  # noqa: TC001 - msgspec resolves it at run time
from sim.errors import InvalidRequest
from sim.routes.common import sim_state
from sim.schemas import decode_body


class FaultBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /_sim/fault`."""

    mode: FaultMode
    share: float | None = None


class ControlController(Controller):
    """Test and demo controls of the simulator."""

    path = "/_sim"

    @get("/fault")
    async def read_fault(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """The current fault mode."""
        return sim_state(request).fault()

    @post("/fault", status_code=200)
    async def set_fault(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """Switch the fault mode (`share` sets the failing share of `error` mode)."""
        body = decode_body(await request.body(), FaultBody)
        if body.share is not None and not 0.0 <= body.share <= 1.0:
            raise InvalidRequest("share must be between 0 and 1", "share")
        state = sim_state(request)
        state.set_mode(body.mode, body.share)
        return state.fault()

    @get("/stats")
    async def read_stats(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """Counters and gauges."""
        return sim_state(request).stats()

    @post("/reset", status_code=200)
    async def reset(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """Zero the counters."""
        state = sim_state(request)
        state.reset_counters()
        return state.stats()
