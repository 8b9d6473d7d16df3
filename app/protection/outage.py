"""Outage classes, told apart from the caller's side of the tunnel.

connect, DNS, TLS failure or reset        -> tunnel (or host_offline / model_server_down,
                                             when a probe heartbeat says which)
502 without `Server: nginx`               -> nginx_down (the tunnel answers, nginx does not)
502 / 504 from nginx                      -> model_server_down
401 / 403                                 -> token_invalid, at the door its body names
"No models loaded"                        -> model_not_loaded (JIT off: no request wakes it)
LLMGW_MODEL not downloaded, or no LLM     -> model_missing (the health check, or the probe)
503                                       -> none: the server answered that it is busy (its
                                             line is full, a model is loading)
a check that times out, or is told 503    -> tunnel / model_server_down, but only as the
                                             LLMGW_HEALTH_FAILURES-th in a row (a busy host is
                                             slow, not down: `app.protection.monitor`)

A model that is downloaded but not loaded is no outage: the next request loads it (JIT), and
the gateway lets one through to do so (see `app.protection.monitor`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping


class OutageClass(StrEnum):
    TUNNEL = "tunnel"
    NGINX_DOWN = "nginx_down"
    MODEL_SERVER_DOWN = "model_server_down"
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - a class name, not a token
    MODEL_NOT_LOADED = "model_not_loaded"
    HOST_OFFLINE = "host_offline"
    MODEL_MISSING = "model_missing"


class TokenDoor(StrEnum):
    """Which token a refusal was about: three doors on the way to the model."""

    GATEWAY_NGINX = "gateway_nginx"  # LLMGW_UPSTREAM_TOKEN, checked by nginx's token map
    NGINX_LMSTUDIO = "nginx_lmstudio"  # LM Studio's own API token, which nginx forwards
    PROBE_LMSTUDIO = "probe_lmstudio"  # LLMGW_PROBE_MODEL_TOKEN, the probe's for LM Studio


# nginx's own refusal (infra/home/nginx/site.conf.template, today's and the older body), or its
# built-in error page; any other 401 came from behind it, from LM Studio.
NGINX_REFUSALS = (b"nginx_token_invalid", b'{"error":"unauthorized"}', b"<center>nginx")


def token_door(body: bytes) -> TokenDoor:
    """The door a 401/403 the gateway met was shut at."""
    if any(marker in body for marker in NGINX_REFUSALS):
        return TokenDoor.GATEWAY_NGINX
    return TokenDoor.NGINX_LMSTUDIO


def classify_response(status: int, server: str | None, body: bytes) -> OutageClass | None:
    """The outage an error answer shows, or None for an error that is not an outage."""
    if b"no models loaded" in body.lower():
        return OutageClass.MODEL_NOT_LOADED
    if status in (401, 403):
        return OutageClass.TOKEN_INVALID
    from_nginx = (server or "").lower().startswith("nginx")
    if status == 502 and not from_nginx:
        return OutageClass.NGINX_DOWN
    if status in (502, 504):
        return OutageClass.MODEL_SERVER_DOWN
    return None  # a 503 among them: an overloaded server sheds, the breaker counts it


def refine(
    outage: OutageClass | None,
    probe: Mapping[str, float] | None,
    probe_ever_seen: bool,
    *,
    failures: int,
) -> OutageClass | None:
    """Sharpen a diagnosis with the probe's heartbeat (None: no fresh snapshot). Unreachable
    while the probe has gone quiet too: the whole host is offline. Unreachable while the probe,
    alive, sees the model server down: that is the likelier cause."""
    if outage is not OutageClass.TUNNEL:
        return outage
    if probe is None:
        return OutageClass.HOST_OFFLINE if probe_ever_seen else outage
    return OutageClass.MODEL_SERVER_DOWN if probe_sees_server_down(probe, failures) else outage


def from_probe(probe: Mapping[str, float] | None, *, failures: int) -> OutageClass | None:
    """The outage a fresh probe reports by itself, seen from the model host."""
    if probe is None:
        return None
    if probe_sees_server_down(probe, failures):
        return OutageClass.MODEL_SERVER_DOWN
    if probe.get("model_available") == 0:  # not downloaded, or not an LLM: nothing wakes it
        return OutageClass.MODEL_MISSING
    return None  # model_loaded == 0 alone is a model asleep: the next chat wakes it


def probe_sees_server_down(probe: Mapping[str, float], failures: int) -> bool:
    """Whether the probe says the model server does not answer: refused or unreachable at
    once; only timed out or busy (`model_server_busy`, its checks in a row that were) from
    the `failures`-th such check on. A probe too old to tell says down at once."""
    if probe.get("model_server_up") != 0:
        return False
    busy = probe.get("model_server_busy", 0)
    return busy == 0 or busy >= failures


def probe_token_refused(probe: Mapping[str, float] | None) -> bool:
    """Whether a fresh probe says LM Studio refuses its token (an alert, not an outage: chats
    go through another door)."""
    return probe is not None and probe.get("model_token_ok") == 0
