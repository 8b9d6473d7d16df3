"""HTTP through nginx to the model server: nginx, the token, the models, a generation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

import httpx
from httpx_sse import aconnect_sse

from app.doctor.findings import (
    GENERATION_TIMEOUT,
    HOME,
    MIN_TOKEN_CHARS,
    OUTAGE_ADVICE,
    REFUSED_ADVICE,
    TUNNEL_ADVICE,
    Clients,
    Finding,
    HopFailed,
    ok,
    warn,
)
from app.doctor.redaction import reason
from app.protection.outage import OutageClass, classify_response

if TYPE_CHECKING:
    from app.settings import Settings


def auth_headers(settings: Settings) -> dict[str, str]:
    token = settings.upstream_token
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


async def fetch(clients: Clients, path: str, headers: dict[str, str]) -> httpx.Response:
    """GET path; a transport failure fails the hop as a tunnel problem."""
    try:
        return await clients.http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        raise HopFailed(f"GET {path}: no HTTP answer ({reason(exc)})", TUNNEL_ADVICE) from None


def answer_failure(response: httpx.Response, what: str) -> HopFailed:
    """A non-2xx answer, diagnosed as the gateway would (app/protection/outage.py)."""
    server = response.headers.get("server")
    outage = classify_response(response.status_code, server, response.content[:4096])
    via = " (Server: nginx)" if (server or "").lower().startswith("nginx") else ""
    detail = f"{what} answered {response.status_code}{via}"
    if outage is None:
        return HopFailed(detail, "read the model server's log for this request")
    return HopFailed(f"{detail}: {outage}", OUTAGE_ADVICE[outage])


async def check_nginx(_: Settings, clients: Clients) -> Finding:
    """nginx answers its own /healthz, without a token."""
    response = await fetch(clients, "/healthz", {})
    server = response.headers.get("server", "")
    from_nginx = server.lower().startswith("nginx")
    if response.status_code == 200:
        return ok(f"/healthz answered 200 without a token (Server: {server or 'not sent'})")
    if response.status_code >= 500 and not from_nginx:
        raise HopFailed(
            f"/healthz answered {response.status_code} without `Server: nginx`: the tunnel "
            "answers, nginx behind it does not",
            OUTAGE_ADVICE[OutageClass.NGINX_DOWN],
        )
    if response.status_code >= 500:
        raise HopFailed(
            f"nginx answered {response.status_code} to its own /healthz",
            f"`docker compose logs nginx` in {HOME}",
        )
    if from_nginx:
        return warn(
            f"nginx answers, but /healthz is {response.status_code}",
            f"use the site config of {HOME}/nginx, which answers /healthz without a token",
        )
    return ok(f"no nginx here (/healthz: {response.status_code}): the URL reaches the model server")


async def check_token(settings: Settings, clients: Clients) -> Finding:
    """The token is accepted, and the door is shut to requests without one."""
    answer = await fetch(clients, "/v1/models", auth_headers(settings))
    token = settings.upstream_token
    if answer.status_code in (401, 403) and token is None:
        raise HopFailed(
            f"the model server asks for a token ({answer.status_code}) and none is set",
            "set LLMGW_UPSTREAM_TOKEN to a token of infra/home/nginx/tokens.map",
        )
    if answer.status_code in (401, 403):
        raise HopFailed(f"token refused ({answer.status_code})", REFUSED_ADVICE)
    if token is None:
        return open_door_finding(settings, "no token set, and none asked for")
    if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
        return warn("accepted, but short", "make a new one with `openssl rand -hex 32`")
    without = await fetch(clients, "/v1/models", {})
    if without.status_code < 400:
        return warn(
            f"accepted, but a request without it is answered too ({without.status_code})",
            f"anyone with the URL can use the model: put {HOME}'s nginx (tokens.map) in front",
        )
    return ok(f"not refused ({answer.status_code}); refused without it ({without.status_code})")


def open_door_finding(settings: Settings, detail: str) -> Finding:
    if settings.upstream_url.startswith("https://"):
        return warn(
            f"{detail}: the public URL answers anyone",
            f"put {HOME}'s nginx with tokens.map in front, and set LLMGW_UPSTREAM_TOKEN",
        )
    return ok(detail)


def model_ids(response: httpx.Response) -> list[str]:
    """The ids of an OpenAI-style model list, or a failed hop when it is not one."""
    try:
        entries = response.json()["data"]
        return [str(entry["id"]) for entry in entries]
    except (ValueError, KeyError, TypeError):
        raise HopFailed(
            f"{response.request.url.path} is not an OpenAI-style model list",
            "LLMGW_UPSTREAM_URL must reach an OpenAI-compatible server (LM Studio, llama.cpp, "
            "Ollama, vLLM)",
        ) from None


async def check_models(settings: Settings, clients: Clients) -> Finding:
    """/v1/models answers with a model list."""
    response = await fetch(clients, "/v1/models", auth_headers(settings))
    if response.status_code != 200:
        raise answer_failure(response, "/v1/models")
    ids = model_ids(response)
    if not ids:
        return ok("answers, lists none (LM Studio lists only loaded models)")
    return ok(f"{len(ids)} listed: {', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}")


async def check_model_loaded(settings: Settings, clients: Clients) -> Finding:
    """A model is loaded, and it is LLMGW_MODEL: LM Studio's /api/v0/models, else /v1/models."""
    response = await fetch(clients, "/api/v0/models", auth_headers(settings))
    states = lm_studio_states(response)
    if states is None:  # not LM Studio: what /v1/models lists is what can answer
        listed = await fetch(clients, "/v1/models", auth_headers(settings))
        return listed_model(settings, model_ids(listed))
    loaded = [model for model, state in states.items() if state == "loaded"]
    advice = f"load {settings.model} in LM Studio (Developer tab) or `lms load {settings.model}`"
    if not loaded:
        raise HopFailed(f"no model loaded ({len(states)} downloaded)", advice)
    if settings.model not in loaded:
        return warn(
            f"{settings.model} (LLMGW_MODEL) is not loaded; loaded: {', '.join(loaded[:3])}",
            f"{advice}, or set LLMGW_MODEL to a loaded one",
        )
    return ok(f"{settings.model} is loaded")


def lm_studio_states(response: httpx.Response) -> dict[str, str] | None:
    """{model: state} from LM Studio's REST API, or None when this is not LM Studio."""
    if response.status_code != 200:
        return None
    try:
        return {str(entry["id"]): str(entry["state"]) for entry in response.json()["data"]}
    except (ValueError, KeyError, TypeError):
        return None


def listed_model(settings: Settings, ids: list[str]) -> Finding:
    if settings.model in ids:
        return ok(f"{settings.model} is listed (not LM Studio: load state unknown)")
    raise HopFailed(
        f"{settings.model} (LLMGW_MODEL) is not among the listed models",
        f"set LLMGW_MODEL to one of: {', '.join(ids[:5]) or 'none listed'}",
    )


async def check_generation(settings: Settings, clients: Clients) -> Finding:
    """A one-token streamed answer through /v1/responses, and its time to first token."""
    payload = {
        "model": settings.model,
        "input": "Say OK.",
        "max_output_tokens": 1,
        "stream": True,
        "store": False,
    }
    timeout = min(settings.first_token_timeout, GENERATION_TIMEOUT)
    try:
        async with asyncio.timeout(timeout):
            ttft, total = await one_token(clients, payload, auth_headers(settings))
    except TimeoutError:
        raise HopFailed(
            f"no complete answer within {timeout:g} s",
            "the model is stuck or very slow: look at LM Studio's server log",
        ) from None
    except httpx.HTTPError as exc:
        raise HopFailed(f"the stream broke ({reason(exc)})", TUNNEL_ADVICE) from None
    detail = f"first token after {ttft:.2f} s, done after {total:.2f} s"
    if ttft > settings.governor_ttft_limit_seconds:
        return warn(detail, "above LLMGW_GOVERNOR_TTFT_LIMIT_SECONDS: the governor sheds load")
    return ok(detail)


async def one_token(
    clients: Clients, payload: dict[str, object], headers: dict[str, str]
) -> tuple[float, float]:
    """(time to the first delta, time to the end) of one streamed answer."""
    started = time.perf_counter()
    first: float | None = None
    path = "/v1/responses"
    async with aconnect_sse(clients.http, "POST", path, json=payload, headers=headers) as source:
        if source.response.status_code != 200:
            await source.response.aread()
            raise answer_failure(source.response, path)
        async for event in source.aiter_sse():
            kind = event.event if event.event != "message" else event_type(event.data)
            if first is None and kind.endswith(".delta"):
                first = time.perf_counter() - started
            if kind in ("error", "response.failed"):
                raise HopFailed(f"the model failed: {event.data[:200]}", "see LM Studio's log")
            if kind in ("response.completed", "response.incomplete"):
                total = time.perf_counter() - started
                return (total if first is None else first), total
    raise HopFailed("the stream ended without response.completed", "see LM Studio's log")


def event_type(data: str) -> str:
    try:
        return str(json.loads(data).get("type", ""))
    except (ValueError, AttributeError):
        return ""
