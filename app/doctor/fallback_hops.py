"""The hosted fallback's doors (LLMGW_FALLBACK_URL): its key accepted, its model listed.

It is an OpenAI-compatible provider, not LM Studio behind the home nginx: the doctor checks no
nginx, no LM Studio catalog, no probe, and sends it no generation (an answer costs the
provider's tokens, and the gateway's budget for them is its own, LLMGW_FALLBACK_DAILY_TOKENS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.doctor.findings import Clients, Finding, HopFailed, ok
from app.doctor.model_hops import listed, model_ids
from app.doctor.upstream_calls import answer_failure, auth_headers, fetch

if TYPE_CHECKING:
    import httpx

    from app.settings import Settings

KEY_ADVICE = "set LLMGW_FALLBACK_TOKEN to an API key the provider gave (its dashboard makes them)"


async def check_fallback_token(_: Settings, clients: Clients) -> Finding:
    """The provider accepts LLMGW_FALLBACK_TOKEN (or asks for none)."""
    response = await model_list(clients)
    status = response.status_code
    if clients.target.token is None:
        return ok(f"no key set, and none asked for ({status})")
    return ok(f"accepted ({status})")


async def check_fallback_model(_: Settings, clients: Clients) -> Finding:
    """LLMGW_FALLBACK_MODEL is among the provider's models."""
    target = clients.target
    ids = model_ids(await model_list(clients), target)
    if target.model in ids:
        return ok(f"{target.model} is listed ({len(ids)} in all)")
    raise HopFailed(
        f"{target.model} (LLMGW_FALLBACK_MODEL) is not among the provider's models "
        f"({len(ids)} listed)",
        f"set LLMGW_FALLBACK_MODEL to one of: {listed(ids)}",
    )


async def model_list(clients: Clients) -> httpx.Response:
    """The provider's `/v1/models`, asked with the key; a refusal or an error fails the hop."""
    target = clients.target
    response = await fetch(clients, "/v1/models", auth_headers(target))
    status = response.status_code
    if status in (401, 403) and target.token is None:
        raise HopFailed(f"the provider asks for a key ({status}) and none is set", KEY_ADVICE)
    if status in (401, 403):
        raise HopFailed(f"the provider refused LLMGW_FALLBACK_TOKEN ({status})", KEY_ADVICE)
    if status != 200:
        raise answer_failure(response, "/v1/models", target)
    return response
