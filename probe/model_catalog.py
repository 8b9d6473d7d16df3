"""What the model server says about one model: loaded, loadable (asleep), missing or not an LLM.

Read by the gateway's health check, the probe and the doctor alike (this module imports nothing
but the standard library, so the probe's own wheel carries it). Three listings, newest first:

- `GET /api/v1/models`, LM Studio 0.4's native API (docs `1_developer/2_rest/list.md`):
  `models[]` with `key`, `type` ("llm" | "embedding"), `loaded_instances[].config.context_length`;
- `GET /api/v0/models`, the older REST API (docs `1_developer/2_rest/endpoints.mdx`): `data[]`
  with `id`, `type` ("llm" | "vlm" | "embeddings"), `state` ("loaded" | "not-loaded");
- `GET /v1/models`, OpenAI's, for servers that are not LM Studio: ids only, no loaded state.

An LM Studio that lacks a path answers it with 200 and `{"error": "Unexpected endpoint or
method."}` (lmstudio-bug-tracker #618, #1323, #2085): such a body is no listing, and the next
path is asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

CHAT_KINDS = frozenset({"llm", "vlm"})  # v0 lists vision models as "vlm"; both chat


class ModelState(StrEnum):
    READY = "ready"  # loaded: chats stream now
    SLEEPING = "sleeping"  # downloaded, not loaded: the next request loads it (JIT)
    MISSING = "missing"  # not downloaded: nothing wakes it
    NOT_AN_LLM = "not_an_llm"  # an embedding model: it cannot chat
    UNKNOWN = "unknown"  # the server does not say (an OpenAI-only listing without it)


class Listing(StrEnum):
    REST_V1 = "/api/v1/models"
    REST_V0 = "/api/v0/models"
    OPENAI = "/v1/models"


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    kind: str
    loaded: bool | None  # None: the listing does not say
    context_length: int | None = None  # of the loaded instance
    instance_ids: tuple[str, ...] = ()
    tool_use: bool | None = None  # trained for tool use; None: the listing does not say


@dataclass(frozen=True, slots=True)
class ModelView:
    """One model, as the catalog sees it."""

    state: ModelState
    listing: Listing
    context_length: int | None = None
    loaded_llms: tuple[str, ...] = ()
    tool_use: bool | None = None  # the model is trained for tool use; None: not said


@dataclass(frozen=True, slots=True)
class Catalog:
    listing: Listing
    entries: tuple[Entry, ...] = field(default=())

    def view(self, model: str | None) -> ModelView:
        """The state of `model` (None: whichever LLM is loaded, as LM Studio then picks one)."""
        loaded = tuple(e.key for e in self.entries if e.kind in CHAT_KINDS and e.loaded)
        entry = self._find(model) if model else _first_loaded(self.entries)
        if entry is None:
            missing = self.listing is not Listing.OPENAI and model is not None
            state = ModelState.MISSING if missing else ModelState.UNKNOWN
            return ModelView(state, self.listing, loaded_llms=loaded)
        return ModelView(
            _state(entry), self.listing, entry.context_length, loaded, tool_use=entry.tool_use
        )

    def _find(self, model: str) -> Entry | None:
        for entry in self.entries:
            if model == entry.key or model in entry.instance_ids:
                return entry
        return None


def parse(listing: Listing, body: object) -> Catalog | None:
    """The catalog in a listing's JSON body, or None when the body is no such listing."""
    if not isinstance(body, dict):
        return None
    rows = body.get("models" if listing is Listing.REST_V1 else "data")
    if not isinstance(rows, list):
        return None
    read = {Listing.REST_V1: _v1_entry, Listing.REST_V0: _v0_entry, Listing.OPENAI: _openai_entry}
    entries = (read[listing](row) for row in rows if isinstance(row, dict))
    return Catalog(listing, tuple(entry for entry in entries if entry is not None))


def _state(entry: Entry) -> ModelState:
    if entry.kind not in CHAT_KINDS:
        return ModelState.NOT_AN_LLM
    if entry.loaded is None:
        return ModelState.UNKNOWN
    return ModelState.READY if entry.loaded else ModelState.SLEEPING


def _first_loaded(entries: tuple[Entry, ...]) -> Entry | None:
    chat = [entry for entry in entries if entry.kind in CHAT_KINDS]
    return next((entry for entry in chat if entry.loaded), chat[0] if chat else None)


def _v1_entry(row: dict[str, Any]) -> Entry | None:
    key, instances = row.get("key"), row.get("loaded_instances")
    if not isinstance(key, str) or not isinstance(instances, list):
        return None
    live = [item for item in instances if isinstance(item, dict)]
    configs = [item.get("config") for item in live]
    context = next((_int(c.get("context_length")) for c in configs if isinstance(c, dict)), None)
    ids = tuple(str(item.get("id")) for item in live if item.get("id"))
    # docs `1_developer/2_rest/list.md`: `capabilities.trained_for_tool_use`, for LLMs.
    capabilities = row.get("capabilities")
    said = capabilities.get("trained_for_tool_use") if isinstance(capabilities, dict) else None
    tool_use = said if isinstance(said, bool) else None
    return Entry(key, str(row.get("type", "llm")), bool(live), context, ids, tool_use)


def _v0_entry(row: dict[str, Any]) -> Entry | None:
    key = row.get("id")
    if not isinstance(key, str):
        return None
    kind = {"embeddings": "embedding"}.get(str(row.get("type")), str(row.get("type", "llm")))
    loaded = row.get("state") == "loaded"
    # LM Studio 0.3.16 (docs api-changelog.md): a `capabilities` array, "tool_use" among them.
    capabilities = row.get("capabilities")
    tool_use = "tool_use" in capabilities if isinstance(capabilities, list) else None
    context = _int(row.get("loaded_context_length")) if loaded else None
    return Entry(key, kind, loaded, context, tool_use=tool_use)


def _openai_entry(row: dict[str, Any]) -> Entry | None:
    key = row.get("id")  # a server that is not LM Studio lists what it serves
    return Entry(key, "llm", loaded=True) if isinstance(key, str) else None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
