"""Model listings (OpenAI's `/v1/models`, LM Studio's REST v0 and v1) and the load endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, Response, get, post

from sim.config import FaultMode
from sim.errors import json_response, unknown_route_response
from sim.model_listing import (
    loaded_context_length,
    openai_entry,
    rest_v0_entry,
    rest_v1_entry,
)
from sim.routes.common import sim_state
from sim.schemas import LoadBody, decode_body

if TYPE_CHECKING:
    from sim.state import SimState


class ModelsController(Controller):
    """The downloaded models, loaded or not."""

    @get("/v1/models")
    async def openai_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """With just-in-time loading off, the loaded LLM only; with it on (`--jit`), every
        downloaded model (docs `1_developer/0_core/headless.md`: "Call to `/v1/models` will
        return all downloaded models, not only the ones loaded into memory")."""
        state = _listed(request)
        if state.config.jit and state.mode is not FaultMode.NO_MODEL:
            return {"object": "list", "data": [openai_entry(m) for m in _models(request)]}
        llm = state.host.models[state.config.model]
        data = [openai_entry(llm)] if state.model_loaded else []
        return {"object": "list", "data": data}

    @get("/api/v0/models")
    async def rest_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Downloaded models with their state, as LM Studio's REST API v0 lists them."""
        state = _listed(request)
        return {"object": "list", "data": [rest_v0_entry(state, m) for m in _models(request)]}

    @get("/api/v1/models")
    async def rest_v1_models(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Downloaded models with their loaded instances (LM Studio 0.4's REST API v1)."""
        state = _listed(request)
        if state.config.no_rest_v1:
            return _without_rest_v1(request)
        return json_response({"models": [rest_v1_entry(state, m) for m in _models(request)]})

    @post("/api/v1/models/load", status_code=200)
    async def load_model(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """Load a model (docs `1_developer/2_rest/load.md`); no TTL, as with `lms load`."""
        state = sim_state(request)
        if state.config.no_rest_v1:
            return _without_rest_v1(request)
        body = decode_body(await request.body(), LoadBody)
        model = state.host.find(body.model)
        seconds = await state.host.load(model)
        answer: dict[str, Any] = {
            "type": model.kind,
            "instance_id": model.key,
            "load_time_seconds": round(seconds, 3),
            "status": "loaded",
        }
        if body.echo_load_config:
            context = loaded_context_length(state, llm=model.kind == "llm")
            answer["load_config"] = {"context_length": context}
        return json_response(answer)


def _listed(request: Request[Any, Any, Any]) -> SimState:
    state = sim_state(request)
    state.counters.listings += 1
    return state


def _models(request: Request[Any, Any, Any]) -> list[Any]:
    return list(sim_state(request).host.models.values())


def _without_rest_v1(request: Request[Any, Any, Any]) -> Response[bytes]:
    # LM Studio before 0.4.0 (docs `1_developer/api-changelog.md`: "Official release of LM
    # Studio's native v1 REST API at `/api/v1/*`") answers these as unknown paths.
    state = sim_state(request)
    state.counters.unknown_paths += 1
    return unknown_route_response(request, 200 if state.config.unknown_path_200 else 404)
