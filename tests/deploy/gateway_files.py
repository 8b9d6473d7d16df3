"""Reading infra/gateway's files as Docker would: compose's `${...}` interpolation, and the
Dockerfile's instructions (continuation lines joined, comments dropped)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
GATEWAY = ROOT / "infra" / "gateway"
COMPOSE = GATEWAY / "docker-compose.yaml"
DOCKERFILE = GATEWAY / "Dockerfile"
ENV_EXAMPLE = GATEWAY / ".env.example"
PROMETHEUS = ROOT / "infra" / "prometheus"

# `$$`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?error}`, `${NAME?error}`,
# `${NAME:+other}` and `$NAME`: the forms the compose specification interpolates.
_REFERENCE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?+])([^}]*))?\}|\$(\w+)")


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def env_example() -> dict[str, str]:
    """NAME=value lines of .env.example."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def referenced_variables(text: str) -> set[str]:
    """Every variable a compose text interpolates."""
    return {m.group(1) or m.group(4) for m in _REFERENCE.finditer(text) if m.group(0) != "$$"}


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's interpolation of one string; a missing `:?` variable raises KeyError."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, argument = match.group(2) or "", match.group(3) or ""
        value = values.get(name)
        empty = value is None or (value == "" and operator.startswith(":"))
        if operator.endswith("-"):
            return argument if empty else str(value)
        if operator.endswith("?"):
            if empty:
                raise KeyError(f"{name}: {argument}")
            return str(value)
        if operator.endswith("+"):
            return "" if empty else argument
        return value or ""

    return _REFERENCE.sub(replace, text)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def dockerfile_instructions() -> list[Instruction]:
    """The Dockerfile's instructions in order, each on one logical line."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [Instruction(*[*text.split(None, 1), ""][:2]) for text in logical]


def final_stage() -> list[Instruction]:
    """The instructions of the last stage, the image that runs."""
    instructions = dockerfile_instructions()
    last_from = max(i for i, step in enumerate(instructions) if step.keyword == "FROM")
    return instructions[last_from:]
