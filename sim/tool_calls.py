"""What the simulated model does with the functions it is offered: call one, or answer in text.

LM Studio executes nothing itself (docs `1_developer/3_openai-compat/tools.mdx`: the model only
requests calls, "Your code executes those functions"); the model decides. The sim decides by
rule, so a test can steer it:

- It calls the first offered function when the last user message contains the trigger (any
  case; `?` by default: a question), or whenever `tool_choice` is "required". "none" stops it.
  "required" binds on llama.cpp only (docs `api-changelog.md`, 0.3.15: "Model must call tools
  (llama.cpp only)"): with `--engine mlx` it is "auto".
- The arguments are `{"query": <the user's last message>}`: the words go to the `query` string
  property, else the first required string property, else the first string one; `{}` if none.
- A follow-up carrying a `function_call_output` is answered in text that quotes it: "According
  to <its first URL>: <its first 24 words, URLs left out> —", then filler. It calls again only
  with `call_every_turn` (or "required"): bounding rounds is the caller's job.
- A model not trained for tool use writes its call as text LM Studio cannot parse, so it comes
  as a message (tools.mdx: such models "may output improperly formatted tool calls, resulting
  in LM Studio being unable to parse them"; the sim always does).
"""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from sim.config import BadToolCalls, Engine

if TYPE_CHECKING:
    from sim.state import SimState
    from sim.tool_requests import FunctionTool, ToolRequest

UNKNOWN_FUNCTION = "web_search"  # what `unknown_function` mode calls, offered or not
QUOTED_WORDS = 24
LONG_PIECE = 64  # characters per delta of over-long arguments, so a test does not wait minutes
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s]+)|\s+$")
_URL = re.compile(r"https?://[^\s\"'<>()\[\]]+")
_LINK = re.compile(r"[(<\[]?https?://[^\s\"'<>()\[\]]+[)>\]]?")  # a URL and its brackets


def _item_id() -> str:
    # LM Studio's ids, from a captured response (ahmedibrahim085/lmstudio-bridge-enhanced,
    # RESPONSES_API_IMPLEMENTATION_GUIDE.md): "fc_pwgru27yf7wblcrikupu8", "call_4261366467180000".
    return "fc_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(21))


def _call_id() -> str:
    return "call_" + "".join(secrets.choice(string.digits) for _ in range(16))


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """A call the model makes; its arguments stream as the generation's answer pieces."""

    name: str
    item_id: str = field(default_factory=_item_id)
    call_id: str = field(default_factory=_call_id)


@dataclass(frozen=True, slots=True)
class Reply:
    """What the model will say: a `call` whose arguments are `pieces`; fixed text `pieces`
    without a call; or (neither) filler opening with `opening` (None: the usual echo)."""

    call: FunctionCall | None = None
    pieces: tuple[str, ...] | None = None
    opening: tuple[str, ...] | None = None


PLAIN = Reply()


@dataclass(frozen=True, slots=True)
class Turn:
    """What the model reads this turn."""

    question: str  # the user's last words, or the conversation's when this turn has none
    outputs: tuple[str, ...] = ()  # texts of the function_call_output items sent back


def choose_reply(state: SimState, tools: ToolRequest, turn: Turn) -> Reply:
    """Call the first offered function, quote a function's output, or answer as usual."""
    if _calls(state, tools, turn):
        return _call(state, tools.functions[0], turn.question)
    if turn.outputs:
        return Reply(opening=quoting_opening(turn.outputs[0]))
    return PLAIN


def _calls(state: SimState, tools: ToolRequest, turn: Turn) -> bool:
    if not tools.functions or tools.choice == "none":
        return False
    if tools.choice == "required" and state.config.engine is not Engine.MLX:
        return True
    if turn.outputs:
        return state.tools.call_every_turn
    return state.tools.trigger.casefold() in turn.question.casefold()


def _call(state: SimState, function: FunctionTool, question: str) -> Reply:
    bad = state.tools.bad_calls
    if not state.config.trained_for_tool_use or bad is BadToolCalls.UNPARSED:
        # tools.mdx's example of a call LM Studio cannot parse: brackets wrong, no arguments.
        text = f'<tool_call>["name": "{function.name}", "query": "{question}"]</tool_call>'
        return Reply(pieces=tuple(_TOKEN.findall(text)))
    call = FunctionCall(UNKNOWN_FUNCTION if bad is BadToolCalls.UNKNOWN_FUNCTION else function.name)
    key = argument_key(function.parameters)
    if bad is BadToolCalls.LONG_ARGUMENTS:
        text = _json({key or "query": _padded(question, state.tools.long_arguments)})
        return Reply(call=call, pieces=_chunks(text, LONG_PIECE))
    text = _json({key: question} if key else {})
    if bad is BadToolCalls.INVALID_JSON:
        text = text[
            :-1
        ]  # cut before its closing brace, as models do (defeat-beta/defeatbeta-api#72)
    # Streamed token by token (api-changelog.md, 0.3.17: "Tool-call argument tokens are streamed
    # as they are generated"), in pieces like tools.mdx's example: `{"`, `location`, `":"`, ...
    return Reply(call=call, pieces=tuple(_TOKEN.findall(text)))


def argument_key(parameters: dict[str, Any] | None) -> str | None:
    """The string property the user's words go to: `query`, else the first required, else the
    first; None when the function takes no string."""
    properties = (parameters or {}).get("properties")
    if not isinstance(properties, dict):
        return None
    strings: list[str] = [
        str(key)
        for key, schema in properties.items()
        if isinstance(schema, dict) and schema.get("type", "string") == "string"
    ]
    if "query" in strings:
        return "query"
    required = (parameters or {}).get("required")
    first_required = [key for key in strings if isinstance(required, list) and key in required]
    chosen = first_required or strings
    return chosen[0] if chosen else None


def quoting_opening(output: str) -> tuple[str, ...]:
    """`According to <first URL>: <the output's first words, URLs left out> —`: what the
    function returned reached the model."""
    found = _URL.search(output)
    source = found.group(0).rstrip(".,;:!?") if found else "the search results"
    quote = _LINK.sub(" ", output).split()[:QUOTED_WORDS]
    words = ["According", "to", *source.split()]
    words[-1] += ":"
    return (*words, *quote, "—")


def _padded(question: str, length: int) -> str:
    words = (question.strip() or "query") + " "
    return (words * (length // len(words) + 1))[:length]


def _chunks(text: str, size: int) -> tuple[str, ...]:
    return tuple(text[start : start + size] for start in range(0, len(text), size))


def _json(arguments: dict[str, str]) -> str:
    return msgspec.json.encode(arguments).decode()
