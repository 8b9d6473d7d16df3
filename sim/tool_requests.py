"""The `tools` and `tool_choice` of a Responses request, checked the way LM Studio checks them.

LM Studio's `/v1/responses` takes the Responses API's flat function tool,
`{"type": "function", "name", "description", "parameters"}`, and refuses the chat completions
shape nested under `function` (400, `param: tools.0.type`, `code: invalid_string`; routecodex's
LM Studio notes, https://cdn.jsdelivr.net/npm/routecodex@0.90.1327/docs/lmstudio-tool-calling.md).
`tool_choice` is one of "none", "auto", "required", not an object (same notes; docs
`1_developer/api-changelog.md`, 0.3.15). The tools are written into the model's prompt (docs
`1_developer/3_openai-compat/tools.mdx`: "This list will be injected into the system prompt"),
so their text is prefilled as input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from sim.errors import InvalidField
from sim.text import count_tokens

if TYPE_CHECKING:
    from sim.schemas import ResponsesBody

TOOL_CHOICES = ("none", "auto", "required")
TOOL_TYPES = ("function", "mcp")  # mcp: LM Studio's own remote MCP tools (docs responses.md)


@dataclass(frozen=True, slots=True)
class FunctionTool:
    """One offered function: its name and its JSON schema (None when it takes nothing)."""

    name: str
    parameters: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ToolRequest:
    """What a request offers: its functions, how the model may use them, their prompt tokens."""

    functions: tuple[FunctionTool, ...] = ()
    choice: str = "auto"
    echo: tuple[Any, ...] = ()  # the tools as the response object repeats them
    tokens: int = 0

    def names(self) -> set[str]:
        """The offered function names."""
        return {function.name for function in self.functions}


NO_TOOLS = ToolRequest()


def read_tools(body: ResponsesBody) -> ToolRequest:
    """The request's tools and tool choice; a 400 shaped like LM Studio's for a bad one."""
    if not body.tools and body.tool_choice is None:
        return NO_TOOLS  # most requests: nothing to check
    choice = _choice(body.tool_choice)
    if not body.tools:
        return ToolRequest(choice=choice)
    functions = tuple(
        function
        for index, tool in enumerate(body.tools)
        if (function := _tool(tool, f"tools.{index}")) is not None
    )
    tokens = count_tokens(len(msgspec.json.encode(body.tools)))
    return ToolRequest(functions=functions, choice=choice, echo=tuple(body.tools), tokens=tokens)


def _choice(choice: Any) -> str:
    if choice is None:
        return "auto"
    if not isinstance(choice, str):
        # The sim's wording in the shape of LM Studio's validation errors (pi#598).
        kind = "object" if isinstance(choice, dict) else type(choice).__name__
        raise InvalidField(f"Expected string, received {kind}", "tool_choice", "invalid_type")
    if choice not in TOOL_CHOICES:
        expected = " | ".join(f"'{option}'" for option in TOOL_CHOICES)
        message = f"Invalid enum value. Expected {expected}, received '{choice}'"
        raise InvalidField(message, "tool_choice", "invalid_enum_value")
    return choice


def _tool(tool: Any, param: str) -> FunctionTool | None:
    if not isinstance(tool, dict) or tool.get("type") not in TOOL_TYPES:
        raise InvalidField("Invalid input", f"{param}.type", "invalid_string")
    if tool["type"] != "function":
        return None  # an MCP server LM Studio would call itself; the sim calls none
    if "function" in tool and "name" not in tool:
        # The chat completions shape: refused, `param: tools.0.type` (routecodex's notes; the
        # message is the sim's, the notes quote only param and code).
        raise InvalidField("Invalid input", f"{param}.type", "invalid_string")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        # LM Studio's answer to a missing field (lmstudio-bug-tracker#1576: "Required").
        raise InvalidField("Required", f"{param}.name", "missing_required_parameter")
    _check_strict(tool, param)
    return FunctionTool(name=name, parameters=_parameters(tool, param))


def _check_strict(tool: dict[str, Any], param: str) -> None:
    # earendil-works/pi#598: `"strict": null` is "Expected boolean, received null".
    if "strict" in tool and not isinstance(tool["strict"], bool):
        received = "null" if tool["strict"] is None else type(tool["strict"]).__name__
        message = f"Expected boolean, received {received}"
        raise InvalidField(message, f"{param}.strict", "invalid_type")


def _parameters(tool: dict[str, Any], param: str) -> dict[str, Any] | None:
    # A tool may leave `parameters` out (docs api-changelog.md, 0.3.17: "correct handling of
    # tools that omit a `parameters` object"), but an empty schema `{}` is refused, while
    # `{"type": "object", "properties": {}}` is taken (lmstudio-bug-tracker#2254).
    parameters = tool.get("parameters")
    if parameters is None:
        return None
    if not isinstance(parameters, dict) or "type" not in parameters:
        raise InvalidField("Invalid input", param, "custom")
    return parameters
