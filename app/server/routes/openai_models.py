"""GET /v1/models for keyed clients: the chat models the model server has, in OpenAI's list
(app/upstream/model_list.py says which and how they are read)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get

OWNED_BY = "organization_owner"  # what LM Studio's /v1/models says of every model


@get("/models", summary="The models a key may use, in OpenAI's list shape")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, object]:
    """Every chat model the model server lists, loaded or not."""
    names = await request.app.state.services.models.names()
    data = [{"id": name, "object": "model", "created": 0, "owned_by": OWNED_BY} for name in names]
    return {"object": "list", "data": data}
