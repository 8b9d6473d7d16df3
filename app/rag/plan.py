"""How one answer reads the posts: the mode for its host, the request fields that carry the
tool or the passages, and the tokens its admission reserves for them.

`auto` follows the model: `tools` where the model server lists it `trained_for_tool_use`
(LM Studio: `capabilities.trained_for_tool_use` in `/api/v1/models`, "tool_use" in `/api/v0`),
`context` where it lists it untrained or does not say (the passages in the instructions work
with any model; a model not trained for tools writes calls LM Studio cannot parse: docs
`tools.mdx`); the hosted fallback gets `tools`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from app.chat.tokens import estimate, to_reserve
from app.rag import tool

if TYPE_CHECKING:
    from app.chat.request import ChatRequest
    from app.posts.index import PostsIndex
    from app.posts.records import Passage
    from app.settings import Settings
    from app.upstream.hosts import Host

Mode = Literal["off", "tools", "context"]
# A tool round's own output: the call and its arguments.
CALL_TOKENS = 64


def mode_for(settings: Settings, posts: PostsIndex | None, host: Host) -> Mode:
    """How an answer on `host` reads the posts; off while there is no index to read."""
    if posts is None or not posts.loaded or settings.rag == "off":
        return "off"
    if settings.rag in ("tools", "context"):
        return settings.rag
    return model_mode(host)


def model_mode(host: Host) -> Mode:
    """`auto` on `host`: tools where its model is trained for them (the fallback's is)."""
    return "tools" if host.fallback or host.monitor.tool_use() else "context"


def may_read(settings: Settings, posts: PostsIndex | None) -> bool:
    """Whether a chat's answer may read the posts (its host not yet known)."""
    return posts is not None and posts.loaded and settings.rag != "off"


def extra_tokens(request: ChatRequest, settings: Settings) -> int:
    """What reading the posts may add to a chat's reservation, refunded at its end: with
    tools, each round reads the input again with its passages, and writes a call; in context,
    the passages once. The conversation on record is counted once, by the admission script."""
    if settings.rag == "context":
        return settings.rag_max_tokens + estimate(len(tool.CONTEXT_INSTRUCTIONS))
    return posts_tokens(request.estimated_tokens(), settings)


def reserved_for_posts(request: ChatRequest, settings: Settings) -> int:
    """What a widget's chat reserves for reading the posts: `extra_tokens`, but never so much
    that the chat would not fit a token window it fits without them (it is settled to the
    model's usage at the stream's end anyway)."""
    extra = extra_tokens(request, settings)
    windows = [w for w in (settings.visitor_token_limit, settings.global_token_limit) if w > 0]
    if not windows:
        return extra
    return max(0, min(extra, min(windows) - to_reserve(request, settings)))


def posts_tokens(input_tokens: int, settings: Settings) -> int:
    """What an answer's tool rounds may add to its reservation, for an input this long."""
    instructions = estimate(len(settings.instructions or "") + len(tool.TOOLS_INSTRUCTIONS))
    per_round = (
        input_tokens + instructions + tool.DEFINITION_TOKENS + settings.rag_max_tokens + CALL_TOKENS
    )
    return settings.rag_max_rounds * per_round + tool.DEFINITION_TOKENS


def fields(own: str | None, mode: Mode, passages: list[Passage] | None = None) -> dict[str, Any]:
    """The request's fields for `mode`: the tool and its note, or the passages found, after
    the `own` instructions (the owner's, or a keyed client's)."""
    if mode == "tools":
        return {"tools": [tool.DEFINITION], "instructions": _joined(own, tool.TOOLS_INSTRUCTIONS)}
    if mode == "context" and passages:
        found = tool.CONTEXT_INSTRUCTIONS + tool.quoted(passages)
        return {"instructions": _joined(own, found)}
    return {}


def question(request: ChatRequest) -> str:
    """The visitor's last words: what `context` searches for."""
    words = request.input
    if isinstance(words, str):
        return words
    return next((m.content for m in reversed(words) if m.role == "user"), "")


def _joined(own: str | None, added: str) -> str:
    return f"{own}\n\n{added}" if own else added
