"""The model server's lists: `/v1/models` answers, and what the catalog says of LLMGW_MODEL.

The catalog (probe/model_catalog.py, shared with the health check and the probe) is read newest
first: LM Studio 0.4's `/api/v1/models`, the older `/api/v0/models`, then OpenAI's `/v1/models`
for a server that is not LM Studio. Asleep (downloaded, not loaded) is fine while JIT loading is
on, which `/v1/models` shows: with it on, it lists every downloaded model, with it off only the
loaded ones (docs `1_developer/0_core/headless.md`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.doctor.findings import Clients, Finding, HopFailed, ok
from app.doctor.upstream_calls import (
    answer_failure,
    auth_headers,
    fetch,
    json_body,
    unexpected_endpoint,
)
from probe.model_catalog import CHAT_KINDS, Catalog, Listing, ModelState, parse

if TYPE_CHECKING:
    import httpx

    from app.doctor.targets import Target
    from app.settings import Settings

LISTINGS = (Listing.REST_V1, Listing.REST_V0, Listing.OPENAI)
ANSWERED_BY = {
    Listing.REST_V1: "read from /api/v1/models",
    Listing.REST_V0: "read from /api/v0/models: LM Studio before 0.4",
    Listing.OPENAI: "/v1/models only: not LM Studio, no load state",
}
SHOWN = 5


def model_ids(response: httpx.Response, target: Target) -> list[str]:
    """The ids of an OpenAI-style model list, or a failed hop when it is not one."""
    try:
        entries = response.json()["data"]
        return [str(entry["id"]) for entry in entries]
    except (ValueError, KeyError, TypeError):
        said = " (LM Studio's 'Unexpected endpoint')" if unexpected_endpoint(response) else ""
        raise HopFailed(
            f"{response.request.url.path} is not an OpenAI-style model list{said}",
            compatible_advice(target),
        ) from None


def compatible_advice(target: Target) -> str:
    return (
        f"{target.var('url')} must reach an OpenAI-compatible server (LM Studio, llama.cpp, "
        "Ollama, vLLM)"
    )


def listed(names: list[str] | tuple[str, ...]) -> str:
    more = ", ..." if len(names) > SHOWN else ""
    return (", ".join(names[:SHOWN]) + more) or "none"


async def check_models(_: Settings, clients: Clients) -> Finding:
    """/v1/models answers with a model list."""
    target = clients.target
    response = await fetch(clients, "/v1/models", auth_headers(target))
    if response.status_code != 200:
        raise answer_failure(response, "/v1/models", target)
    ids = model_ids(response, target)
    if not ids:
        return ok("answers, lists none (LM Studio with JIT loading off lists only loaded models)")
    return ok(f"{len(ids)} listed: {listed(ids)}")


async def read_catalog(clients: Clients) -> Catalog:
    """The first listing that parses; a path LM Studio lacks (an error, or its 200 'Unexpected
    endpoint') sends the doctor on to the next."""
    target = clients.target
    for listing in LISTINGS:
        response = await fetch(clients, listing.value, auth_headers(target))
        if response.status_code == 200 and (found := parse(listing, json_body(response))):
            return found
        if listing is Listing.OPENAI and response.status_code != 200:
            raise answer_failure(response, listing.value, target)
    raise HopFailed(
        "no model list: /api/v1/models, /api/v0/models and /v1/models list no models",
        compatible_advice(target),
    )


async def check_model(settings: Settings, clients: Clients) -> Finding:
    """LLMGW_MODEL is an LLM that is loaded, or asleep with JIT loading on to wake it."""
    catalog = await read_catalog(clients)
    model, variable = clients.target.model, clients.target.var("model")
    view = catalog.view(model)
    answered = ANSWERED_BY[catalog.listing]
    llms = listed([entry.key for entry in catalog.entries if entry.kind in CHAT_KINDS])
    match view.state:
        case ModelState.READY if catalog.listing is Listing.OPENAI:
            return ok(f"{model} is listed ({answered})")
        case ModelState.READY:
            context = f", context {view.context_length} tokens" if view.context_length else ""
            return ok(f"{model} is loaded{context} ({answered})")
        case ModelState.SLEEPING:
            return await asleep(settings, clients, answered, view.loaded_llms)
        case ModelState.MISSING:
            raise HopFailed(
                f"model_missing: {model} ({variable}) is not downloaded ({answered})",
                f"`lms get {model}` on the model host, or set {variable} to a downloaded LLM: "
                f"{llms}",
            )
        case ModelState.NOT_AN_LLM:
            raise HopFailed(
                f"model_missing: {model} ({variable}) is an embedding model, not an LLM: it "
                f"cannot chat ({answered})",
                f"set {variable} to an LLM: {llms}",
            )
        case ModelState.UNKNOWN:
            raise HopFailed(
                f"{model} ({variable}) is not among the listed models ({answered})",
                f"set {variable} to one of: {llms}",
            )


async def asleep(
    settings: Settings, clients: Clients, answered: str, loaded: tuple[str, ...]
) -> Finding:
    """Downloaded, not loaded: fine when JIT loading will load it for the first chat."""
    target = clients.target
    model = target.model
    openai = await fetch(clients, "/v1/models", auth_headers(target))
    jit = openai.status_code == 200 and model in model_ids(openai, target)
    if not jit:
        raise HopFailed(
            f"{model} is not loaded, and JIT loading is off (/v1/models lists only loaded "
            f"models; {answered}): no chat wakes it",
            f"`lms load {model}` on the model host, or turn on JIT loading in LM Studio's "
            "server settings (Developer tab)",
        )
    clients.notes.model_asleep = True
    others = f"; loaded now: {listed(loaded)}" if loaded else ""
    return ok(
        f"{model} is asleep (downloaded, not loaded; {answered}{others}); JIT loading is on: "
        f"the first chat wakes it, its first token within LLMGW_MODEL_LOAD_TIMEOUT "
        f"({settings.model_load_timeout:g} s)",
        f"`lms load {model}` keeps it loaded, with no idle TTL",
    )
