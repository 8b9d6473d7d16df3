"""`/_sim/*`: switch faults and tool behaviour, read and reset counters, read the last request
bodies. Never behind the API key."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import msgspec
from litestar import Controller, Request, get, post

from sim.config import (
    BadToolCalls,
    FaultMode,
    ToolBehaviour,
)
from sim.errors import InvalidRequest
from sim.routes.common import sim_state
from sim.schemas import decode_body


class FaultBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /_sim/fault`."""

    mode: FaultMode
    share: float | None = None


class ToolsBody(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """`POST /_sim/tools`: what is left out takes the command line's value."""

    trigger: str | None = None
    bad_calls: BadToolCalls | None = None
    call_every_turn: bool | None = None
    long_arguments: int | None = None


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

    @get("/tools")
    async def read_tools(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """How the model uses function tools."""
        return _tools(sim_state(request).tools)

    @post("/tools", status_code=200)
    async def set_tools(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """Set how the model uses function tools; an empty body restores the command line's."""
        body = decode_body(await request.body(), ToolsBody)
        if body.long_arguments is not None and body.long_arguments < 1:
            raise InvalidRequest("long_arguments must be at least 1", "long_arguments")
        state = sim_state(request)
        given = {
            key: value for key, value in msgspec.structs.asdict(body).items() if value is not None
        }
        state.tools = ToolBehaviour.from_config(state.config, **given)
        return _tools(state.tools)

    @get("/requests")
    async def read_requests(self, request: Request[Any, Any, Any]) -> dict[str, object]:
        """The last generation request bodies, oldest first: what the model was sent."""
        return {"requests": [_recorded(path, raw) for path, raw in sim_state(request).requests]}

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


def _tools(behaviour: ToolBehaviour) -> dict[str, object]:
    return asdict(behaviour)


def _recorded(path: str, raw: bytes) -> dict[str, object]:
    try:
        return {"path": path, "body": msgspec.json.decode(raw)}
    except msgspec.DecodeError:
        return {"path": path, "raw": raw.decode(errors="replace")}
