"""Entries of the model listings: OpenAI's `/v1/models`, REST v0 and LM Studio 0.4's REST v1."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sim.context import ARCH

if TYPE_CHECKING:
    from sim.model_host import DownloadedModel
    from sim.state import SimState

MAX_CONTEXT_LENGTH = 32768
EMBEDDING_CONTEXT_LENGTH = 2048  # nomic-embed-text-v1.5 in both REST docs' examples


def openai_entry(model: DownloadedModel) -> dict[str, Any]:
    """`GET /v1/models`: id, object, owner."""
    return {"id": model.key, "object": "model", "owned_by": "organization_owner"}


def rest_v0_entry(state: SimState, model: DownloadedModel) -> dict[str, Any]:
    """`GET /api/v0/models` (docs `1_developer/2_rest/endpoints.mdx`); v0 spells the embedding
    type "embeddings"."""
    loaded = state.model_loaded if model.kind == "llm" else state.host.is_loaded(model)
    llm = model.kind == "llm"
    return {
        "id": model.key,
        "object": "model",
        "type": "llm" if llm else "embeddings",
        "publisher": _publisher(model.key) if llm else "nomic-ai",
        "arch": ARCH if llm else "nomic-bert",
        "compatibility_type": "gguf",
        "quantization": "Q4_K_M" if llm else "Q4_0",
        "state": "loaded" if loaded else "not-loaded",
        "max_context_length": MAX_CONTEXT_LENGTH if llm else EMBEDDING_CONTEXT_LENGTH,
        # LM Studio 0.3.16 (docs api-changelog.md): "a `capabilities` array ... (e.g. "tool_use")".
        "capabilities": ["tool_use"] if llm and state.config.trained_for_tool_use else [],
    }


def rest_v1_entry(state: SimState, model: DownloadedModel) -> dict[str, Any]:
    """`GET /api/v1/models` (LM Studio 0.4, docs `1_developer/2_rest/list.md`)."""
    llm = model.kind == "llm"
    loaded = state.model_loaded if llm else state.host.is_loaded(model)
    entry: dict[str, Any] = {
        "type": model.kind,
        "publisher": _publisher(model.key) if llm else "nomic-ai",
        "key": model.key,
        "display_name": model.key.rsplit("/", 1)[-1],
        "quantization": {"name": "Q4_K_M", "bits_per_weight": 4} if llm else _f16(),
        "size_bytes": 24_000_000_000 if llm else 274_290_560,
        "params_string": "30B-A3B" if llm else None,
        "loaded_instances": [_instance(state, iid, llm=llm) for iid in _ids(model, loaded)],
        "max_context_length": MAX_CONTEXT_LENGTH if llm else EMBEDDING_CONTEXT_LENGTH,
        "format": "gguf",
    }
    if llm:  # "Absent for embedding models"
        entry["architecture"] = ARCH
        tool_use = state.config.trained_for_tool_use  # `--not-trained-for-tool-use` turns it off
        entry["capabilities"] = {"vision": False, "trained_for_tool_use": tool_use}
        entry["description"] = None
    return entry


def loaded_context_length(state: SimState, *, llm: bool) -> int:
    """The context an instance was loaded with."""
    if not llm:
        return EMBEDDING_CONTEXT_LENGTH
    return state.config.context_length or MAX_CONTEXT_LENGTH


def _instance(state: SimState, instance_id: str, *, llm: bool) -> dict[str, Any]:
    config: dict[str, Any] = {"context_length": loaded_context_length(state, llm=llm)}
    if llm:
        config |= {"eval_batch_size": 512, "parallel": state.config.parallel}
        config |= {"flash_attention": True, "offload_kv_cache_to_gpu": True}
    return {"id": instance_id, "config": config}


def _ids(model: DownloadedModel, loaded: bool) -> list[str]:
    return model.instance_ids() if loaded else []


def _f16() -> dict[str, Any]:
    return {"name": "F16", "bits_per_weight": 16}


def _publisher(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else "lmstudio-community"
