"""Model listings (OpenAI's `/v1/models`, LM Studio's REST v0 and v1) and the load endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, get, post

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
        """The loaded LLM only, as LM Studio lists it when just-in-time loading is off."""
        state = _listed(request)
        llm = state.host.models[state.config.model]
        data = [openai_entry(llm)] if state.model_loaded else []
        return {"object": "list", "data": data}

    @get("/api/v0/models")
    async def rest_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Downloaded models with their state, as LM Studio's REST API v0 lists them."""
        state = _listed(request)
        return {"object": "list", "data": [rest_v0_entry(state, m) for m in _models(request)]}

    @get("/api/v1/models")
    async def rest_v1_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Downloaded models with their loaded instances (LM Studio 0.4's REST API v1)."""
        state = _listed(request)
        return {"models": [rest_v1_entry(state, m) for m in _models(request)]}

    @post("/api/v1/models/load", status_code=200)
    async def load_model(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Load a model (docs `1_developer/2_rest/load.md`); no TTL, as with `lms load`."""
        state = sim_state(request)
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
        return answer


def _listed(request: Request[Any, Any, Any]) -> SimState:
    state = sim_state(request)
    state.counters.listings += 1
    return state


def _models(request: Request[Any, Any, Any]) -> list[Any]:
    return list(sim_state(request).host.models.values())
