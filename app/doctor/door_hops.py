"""The doors in front of the model: nginx itself, then the tokens of the way through it.

A 401/403 is told apart door by door (app/protection/outage.py): nginx's own refusal carries the
code `nginx_token_invalid` (gateway → nginx); any other 401 is LM Studio's, behind nginx when the
answer came through it (nginx → LM Studio), or straight from it when nothing is in front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.doctor.findings import (
    FORWARDED_TOKEN_ADVICE,
    HOME,
    LMSTUDIO_TOKENS,
    MIN_TOKEN_CHARS,
    OUTAGE_ADVICE,
    REFUSED_ADVICE,
    Clients,
    Finding,
    HopFailed,
    ok,
    warn,
)
from app.doctor.upstream_calls import (
    BODY_LIMIT,
    auth_headers,
    fetch,
    from_nginx,
    unexpected_endpoint,
)
from app.protection.outage import OutageClass, TokenDoor, token_door

if TYPE_CHECKING:
    import httpx

    from app.settings import Settings

TOKEN_MAP_ADVICE = f"set LLMGW_UPSTREAM_TOKEN to a token of {HOME}/nginx/tokens.map"
DIRECT_TOKEN_ADVICE = (
    f"LM Studio's Require Authentication is on: set LLMGW_UPSTREAM_TOKEN to {LMSTUDIO_TOKENS}, "
    f"or put {HOME}'s nginx in front"
)


async def check_nginx(_: Settings, clients: Clients) -> Finding:
    """nginx answers its own /healthz, without a token."""
    response = await fetch(clients, "/healthz", {})
    server = response.headers.get("server", "")
    if unexpected_endpoint(response):  # LM Studio's 200 for a path it lacks is no health
        return ok(
            f"no nginx here: /healthz got LM Studio's {response.status_code} 'Unexpected "
            "endpoint or method' (its answer to any unknown path): the URL reaches LM Studio"
        )
    if response.status_code == 200:
        return ok(f"/healthz answered 200 without a token (Server: {server or 'not sent'})")
    if response.status_code >= 500 and not from_nginx(response):
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
    if from_nginx(response):
        return warn(
            f"nginx answers, but /healthz is {response.status_code}",
            f"use the site config of {HOME}/nginx, which answers /healthz without a token",
        )
    return ok(f"no nginx here (/healthz: {response.status_code}): the URL reaches the model server")


async def check_token(settings: Settings, clients: Clients) -> Finding:
    """The token is accepted at every door, and the door is shut to requests without one."""
    answer = await fetch(clients, "/v1/models", auth_headers(settings))
    if answer.status_code in (401, 403):
        raise refused(settings, answer)
    token = settings.upstream_token
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


def refused(settings: Settings, answer: httpx.Response) -> HopFailed:
    """Which door refused, and the token that opens it."""
    status, unset = answer.status_code, settings.upstream_token is None
    if token_door(answer.content[:BODY_LIMIT]) is TokenDoor.GATEWAY_NGINX:
        if unset:
            return HopFailed(
                f"nginx asks for a token ({status}) and LLMGW_UPSTREAM_TOKEN is not set",
                TOKEN_MAP_ADVICE,
            )
        return HopFailed(
            f"door gateway → nginx: nginx refused LLMGW_UPSTREAM_TOKEN ({status})", REFUSED_ADVICE
        )
    if from_nginx(answer):
        return HopFailed(
            f"door nginx → LM Studio: nginx let the gateway in, LM Studio refused what nginx "
            f"forwards ({status}: its Require Authentication is on)",
            FORWARDED_TOKEN_ADVICE,
        )
    if unset:
        return HopFailed(
            f"the model server asks for a token ({status}) and none is set",
            f"set LLMGW_UPSTREAM_TOKEN: behind nginx, a token of {HOME}/nginx/tokens.map; "
            f"straight to LM Studio (Require Authentication on), {LMSTUDIO_TOKENS}",
        )
    return HopFailed(
        f"door gateway → LM Studio: the model server refused LLMGW_UPSTREAM_TOKEN ({status}); "
        "no nginx in front, so the token goes to LM Studio itself",
        DIRECT_TOKEN_ADVICE,
    )


def open_door_finding(settings: Settings, detail: str) -> Finding:
    if settings.upstream_url.startswith("https://"):
        return warn(
            f"{detail}: the public URL answers anyone",
            f"put {HOME}'s nginx with tokens.map in front, and set LLMGW_UPSTREAM_TOKEN",
        )
    return ok(detail)
