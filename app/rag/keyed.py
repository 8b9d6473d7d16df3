"""The owner's `/v1` clients read the posts only when they ask: `X-LLMGW-Posts: tools`,
`context` or `auto` on the request (the `openai` SDK's `extra_headers`, Open WebUI's and the
editors' custom headers).

- `tools`: `search_posts` offered and run by the gateway, as for the widget; for a streamed
  `/v1/responses` that brings no tools of its own (a call to the client's own function must
  reach the client, and would not through the gateway's rounds). Otherwise a 400 says so.
- `context`: the passages found for the last user message go in the instructions
  (`/v1/responses`) or a system message first (`/v1/chat/completions`).
- `auto`: `tools` where the model is trained for tool use and the request allows it, else
  `context`.

The stream stays OpenAI's: no `posts.*` events (the SDK's stream parser expects its own event
types); the model is told to cite the posts' URLs. The mode used comes back in the
`X-LLMGW-Posts` response header (`off` while no index is loaded)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import msgspec

from app.chat.openai_bodies import Api, ResponsesBody
from app.errors import BadRequest
from app.rag.plan import Mode, fields, model_mode
from app.rag.rounds import ToolLoop, search_posts

if TYPE_CHECKING:
    from app.chat.openai_bodies import KeyedRequest
    from app.server.routes.exchange import Exchange

HEADER = "x-llmgw-posts"
Wanted = Literal["tools", "context", "auto"]
_WANTED: dict[str, Wanted] = {"tools": "tools", "context": "context", "auto": "auto"}


def wanted(value: str | None, keyed: KeyedRequest) -> Wanted | None:
    """What the request asks of the posts; a 400 for a value or a use that cannot be."""
    if value is None:
        return None
    asked = _WANTED.get(value.strip().lower())
    if asked is None:
        raise BadRequest("X-LLMGW-Posts must be tools, context or auto", param="X-LLMGW-Posts")
    if asked == "tools" and not can_use_tools(keyed):
        raise BadRequest(
            "X-LLMGW-Posts: tools needs a streamed /v1/responses request without tools of its"
            " own; use context (or auto)",
            param="X-LLMGW-Posts",
        )
    return asked


def can_use_tools(keyed: KeyedRequest) -> bool:
    """Whether the gateway's tool rounds can run in this request's answer."""
    body = keyed.body
    return keyed.api is Api.RESPONSES and keyed.stream and not body.tools


def mode_of(asked: Wanted, exchange: Exchange, keyed: KeyedRequest) -> Mode:
    """The mode this answer reads the posts in, on its host."""
    services = exchange.services
    posts = services.posts
    if posts is None or not posts.loaded:
        return "off"
    if asked != "auto":
        return asked
    chosen = model_mode(exchange.host)
    return "tools" if chosen == "tools" and can_use_tools(keyed) else "context"


async def with_posts(exchange: Exchange, keyed: KeyedRequest, payload: bytes, mode: Mode) -> bytes:
    """The request to the model with the posts' tool or passages (the tool's rounds then run
    in the exchange's stream)."""
    services, posts = exchange.services, exchange.services.posts
    if mode == "off" or posts is None:
        return payload
    body: dict[str, Any] = msgspec.json.decode(payload)
    own = body.get("instructions") if isinstance(keyed.body, ResponsesBody) else None
    if mode == "tools":
        body |= fields(own, mode)
        exchange.rag = ToolLoop(exchange, posts, events=False)
        return msgspec.json.encode(body)
    query = last_user_text(keyed)
    passages = await search_posts(exchange, posts, query, mode) if query else []
    services.metrics.rag_answer(mode, 0, sourced=bool(passages))
    if not passages:
        return payload
    added = fields(own, mode, passages)["instructions"]
    if keyed.api is Api.RESPONSES:
        body["instructions"] = added
    else:
        body["messages"] = [{"role": "system", "content": added}, *body.get("messages", [])]
    return msgspec.json.encode(body)


def last_user_text(keyed: KeyedRequest) -> str:
    """The text of the request's last user message (its text parts joined)."""
    raw = msgspec.to_builtins(keyed.body)
    if keyed.api is Api.RESPONSES:
        words = raw.get("input")
        if isinstance(words, str):
            return words
        messages = [m for m in words or [] if isinstance(m, dict) and m.get("role") == "user"]
    else:
        messages = [m for m in raw.get("messages") or [] if m.get("role") == "user"]
    if not messages:
        return ""
    return _text_of(messages[-1].get("content"))


def _text_of(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return " ".join(part for part in parts if isinstance(part, str))
    return ""
