"""Model listings: OpenAI's `/v1/models` and LM Studio's REST `/api/v0/models`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Controller, Request, get

from sim.routes.common import sim_state

if TYPE_CHECKING:
    from sim.state import SimState


class ModelsController(Controller):
    """The one simulated model, loaded or not."""

    @get("/v1/models")
    async def openai_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Loaded models only, as LM Studio lists them when just-in-time loading is off."""
        state = sim_state(request)
        data = [_openai_entry(state)] if state.model_loaded else []
        return {"object": "list", "data": data}

    @get("/api/v0/models")
    async def rest_models(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """Downloaded models with their state, as LM Studio's REST API v0 lists them."""
        return {"object": "list", "data": [_rest_entry(sim_state(request))]}


def _openai_entry(state: SimState) -> dict[str, Any]:
    return {"id": state.config.model, "object": "model", "owned_by": "organization_owner"}


def _rest_entry(state: SimState) -> dict[str, Any]:
    # Field set of LM Studio's docs (REST API v0, `GET /api/v0/models`).
    model = state.config.model
    return {
        "id": model,
        "object": "model",
        "type": "llm",
        "publisher": model.split("/", 1)[0] if "/" in model else "lmstudio-community",
        "arch": "nemotron_h",
        "compatibility_type": "gguf",
        "quantization": "Q4_K_M",
        "state": "loaded" if state.model_loaded else "not-loaded",
        "max_context_length": 32768,
    }
