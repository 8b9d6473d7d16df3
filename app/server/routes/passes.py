"""GET /api/pass/challenge and POST /api/pass: a proof-of-work challenge priced for the load and
the visitor's network, and the signed pass a solution buys (app/server/pass_gate.py). Both
answer 404 while LLMGW_PASS is off, as an older gateway would: the widget then chats without."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotFoundException

from app.errors import BadRequest

if TYPE_CHECKING:
    from app.server.pass_gate import PassGate
    from app.server.services import Services

PAYLOAD_BYTES = 2048  # a solution is a few hundred bytes of base64


class _Solved(msgspec.Struct, forbid_unknown_fields=True):
    payload: str


@get("/api/pass/challenge", summary="A proof-of-work challenge for a visitor pass", cache=False)
async def pass_challenge(request: Request[Any, Any, Any]) -> dict[str, object]:
    """ALTCHA's challenge JSON: `algorithm`, `challenge`, `maxNumber`, `salt`, `signature`."""
    services, gate = _gate(request)
    return await gate.challenge(_address(request, services))


@post("/api/pass", status_code=200, summary="A visitor pass for a solved challenge")
async def visitor_pass(request: Request[Any, Any, Any]) -> dict[str, object]:
    """`{"pass", "expires_in", "chats"}` for a solution posted as `{"payload": "<base64>"}`;
    400 `pass_refused` with its `reason` otherwise (a solution is good once, on any replica)."""
    services, gate = _gate(request)
    body = await request.body()
    if len(body) > PAYLOAD_BYTES:
        raise BadRequest("the solution is too large")
    try:
        solved = msgspec.json.decode(body, type=_Solved)
    except msgspec.DecodeError:
        raise BadRequest('send JSON like {"payload": "<the solved challenge, base64>"}') from None
    token, seconds = await gate.grant(solved.payload, _address(request, services))
    return {"pass": token, "expires_in": seconds, "chats": services.settings.pass_chats}


def _gate(request: Request[Any, Any, Any]) -> tuple[Services, PassGate]:
    services: Services = request.app.state.services
    if not services.passes.on:
        raise NotFoundException("visitor passes are off here")
    return services, services.passes


def _address(request: Request[Any, Any, Any], services: Services) -> str:
    """The visitor's address, behind trusted proxies (the pass is bound to its network)."""
    peer = request.client.host if request.client else None
    address = services.identifier.client_address(peer, request.headers.get("x-forwarded-for"))
    return str(address) if address is not None else "0.0.0.0"
