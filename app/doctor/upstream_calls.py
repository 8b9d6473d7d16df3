"""What the HTTP hops share: the token header, a GET that fails as a tunnel problem, and the
reading of an answer that is not the one asked for."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx

from app.doctor.findings import (
    PROVIDER_ADVICE,
    Clients,
    HopFailed,
    outage_advice,
    unreachable_advice,
)
from app.doctor.redaction import reason
from app.protection.outage import classify_response

if TYPE_CHECKING:
    from app.doctor.targets import Target

BODY_LIMIT = 4096
# LM Studio answers a path or method it lacks with this error, and status 200
# (lmstudio-bug-tracker #618, #1323, #2085): such an answer is no success.
UNEXPECTED_ENDPOINT = "Unexpected endpoint or method"


def auth_headers(target: Target) -> dict[str, str]:
    token = target.token
    return {} if token is None else {"Authorization": f"Bearer {token.get_secret_value()}"}


async def fetch(clients: Clients, path: str, headers: dict[str, str]) -> httpx.Response:
    """GET path; a transport failure fails the hop as a tunnel problem."""
    try:
        return await clients.http.get(path, headers=headers)
    except httpx.HTTPError as exc:
        advice = unreachable_advice(clients.target)
        raise HopFailed(f"GET {path}: no HTTP answer ({reason(exc)})", advice) from None


def from_nginx(response: httpx.Response) -> bool:
    """nginx sends its own `Server` header, on what it proxies too (proxy_hide_header's default)."""
    server: str = response.headers.get("server", "")
    return server.lower().startswith("nginx")


def answer_failure(response: httpx.Response, what: str, target: Target) -> HopFailed:
    """A non-2xx answer, diagnosed as the gateway would (app/protection/outage.py); a hosted
    provider's has none of the model host's doors to tell apart."""
    if target.fallback:
        return HopFailed(f"{what} answered {response.status_code}", PROVIDER_ADVICE)
    server = response.headers.get("server")
    outage = classify_response(response.status_code, server, response.content[:BODY_LIMIT])
    via = " (Server: nginx)" if from_nginx(response) else ""
    detail = f"{what} answered {response.status_code}{via}"
    if outage is None:
        return HopFailed(detail, "read the model server's log for this request")
    return HopFailed(f"{detail}: {outage}", outage_advice(outage, target))


def json_body(response: httpx.Response) -> object:
    """The answer's JSON, or None when it is none."""
    try:
        return response.json()
    except ValueError:
        return None


def unexpected_endpoint(response: httpx.Response) -> bool:
    """Whether this is LM Studio's answer to a path it does not serve, whatever its status."""
    body = json_body(response)
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, str) and error.startswith(UNEXPECTED_ENDPOINT)


def event_type(data: str) -> str:
    """The JSON `type` of a frame that came without an `event:` line; a bare `{"error": …}`
    frame is an error."""
    try:
        body = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    return str(body.get("type") or ("error" if "error" in body else ""))
