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
    Clients,
    Finding,
    HopFailed,
    ok,
    refused_advice,
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

    from app.doctor.targets import Target
    from app.settings import Settings


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


async def check_token(_: Settings, clients: Clients) -> Finding:
    """The token is accepted at every door, and the door is shut to requests without one."""
    target = clients.target
    answer = await fetch(clients, "/v1/models", auth_headers(target))
    if answer.status_code in (401, 403):
        raise refused(target, answer)
    token = target.token
    if token is None:
        return open_door_finding(target, "no token set, and none asked for")
    if len(token.get_secret_value()) < MIN_TOKEN_CHARS:
        return warn("accepted, but short", "make a new one with `openssl rand -hex 32`")
    without = await fetch(clients, "/v1/models", {})
    if without.status_code < 400:
        return warn(
            f"accepted, but a request without it is answered too ({without.status_code})",
            f"anyone with the URL can use the model: put {HOME}'s nginx (tokens.map) in front",
        )
    return ok(f"not refused ({answer.status_code}); refused without it ({without.status_code})")


def refused(target: Target, answer: httpx.Response) -> HopFailed:
    """Which door refused, and the token that opens it."""
    status, unset, variable = answer.status_code, target.token is None, target.var("token")
    if token_door(answer.content[:BODY_LIMIT]) is TokenDoor.GATEWAY_NGINX:
        if unset:
            return HopFailed(
                f"nginx asks for a token ({status}) and {variable} is not set",
                f"set {variable} to a token of {HOME}/nginx/tokens.map",
            )
        return HopFailed(
            f"door gateway → nginx: nginx refused {variable} ({status})", refused_advice(target)
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
            f"set {variable}: behind nginx, a token of {HOME}/nginx/tokens.map; "
            f"straight to LM Studio (Require Authentication on), {LMSTUDIO_TOKENS}",
        )
    return HopFailed(
        f"door gateway → LM Studio: the model server refused {variable} ({status}); "
        "no nginx in front, so the token goes to LM Studio itself",
        f"LM Studio's Require Authentication is on: set {variable} to {LMSTUDIO_TOKENS}, "
        f"or put {HOME}'s nginx in front",
    )


def open_door_finding(target: Target, detail: str) -> Finding:
    if target.url.startswith("https://"):
        return warn(
            f"{detail}: the public URL answers anyone",
            f"put {HOME}'s nginx with tokens.map in front, and set {target.var('token')}",
        )
    return ok(detail)
