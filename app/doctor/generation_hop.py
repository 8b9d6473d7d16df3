"""A one-token streamed answer through `/v1/responses`, and its time to first token.

A model asleep is woken by it, as by the first chat: that first token gets the gateway's own
budget for a load, LLMGW_MODEL_LOAD_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import httpx

from app.doctor.findings import (
    GENERATION_TIMEOUT,
    TUNNEL_ADVICE,
    Clients,
    Finding,
    HopFailed,
    ok,
    warn,
)
from app.doctor.redaction import reason
from app.doctor.streamed_answer import payload, timed_answer
from app.doctor.upstream_calls import auth_headers

if TYPE_CHECKING:
    from app.settings import Settings

LOAD_WARN_SHARE = 0.8  # a load this close to its budget will not fit a slower day


async def check_generation(settings: Settings, clients: Clients) -> Finding:
    """A one-token answer streams to its end; a model asleep wakes within its budget."""
    asleep = clients.notes.model_asleep
    limit = (
        settings.model_load_timeout
        if asleep
        else min(settings.first_token_timeout, GENERATION_TIMEOUT)
    )
    model = clients.target.model
    if asleep:
        sys.stderr.write(f"waking {model} (up to {limit:g} s)...\n")
    try:
        async with asyncio.timeout(limit):
            times = await timed_answer(
                clients, payload(settings, clients, "Say OK.", 1), auth_headers(clients.target)
            )
    except TimeoutError:
        raise timed_out(model, limit, asleep=asleep) from None
    except httpx.HTTPError as exc:
        raise HopFailed(f"the stream broke ({reason(exc)})", TUNNEL_ADVICE) from None
    detail = f"first token after {times.first_token:.2f} s, done after {times.total:.2f} s"
    if asleep:
        return woken(settings, model, times.first_token, detail)
    if times.first_token > settings.governor_ttft_limit_seconds:
        return warn(detail, "above LLMGW_GOVERNOR_TTFT_LIMIT_SECONDS: the governor sheds load")
    return ok(detail)


def woken(settings: Settings, model: str, first_token: float, detail: str) -> Finding:
    """The model was asleep: this answer's first token waited for its load."""
    detail = f"woke {model}: {detail} (its load included)"
    if first_token > LOAD_WARN_SHARE * settings.model_load_timeout:
        return warn(
            detail,
            f"close to LLMGW_MODEL_LOAD_TIMEOUT ({settings.model_load_timeout:g} s): raise it, "
            f"or `lms load {model}` to keep the model loaded",
        )
    return ok(detail)


def timed_out(model: str, limit: float, *, asleep: bool) -> HopFailed:
    if asleep:
        return HopFailed(
            f"{model} did not wake within LLMGW_MODEL_LOAD_TIMEOUT ({limit:g} s)",
            "the load takes longer than its budget: raise LLMGW_MODEL_LOAD_TIMEOUT, or "
            f"`lms load {model}` on the model host; LM Studio's log shows the load",
        )
    return HopFailed(
        f"no complete answer within {limit:g} s",
        "the model is stuck or very slow: look at LM Studio's server log",
    )
