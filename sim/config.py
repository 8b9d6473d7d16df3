"""The simulator's settings and the fault modes it can be switched into.

Every setting defaults to the well-behaved server the demo and the tests were written against;
the LM Studio behaviours (`sim/cli_options.py` names their sources) are opt-in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

EMBEDDING_MODEL = "text-embedding-nomic-embed-text-v1.5"


class FaultMode(enum.StrEnum):
    """How the simulated server misbehaves; switched at run time through `POST /_sim/fault`."""

    OK = "ok"
    NO_MODEL = "no_model"
    SLOW = "slow"
    ERROR = "error"
    STALL = "stall"


class Engine(enum.StrEnum):
    """How predictions share the GPU."""

    SIM = "sim"  # `slots` at once, a bounded queue behind them, 503 beyond it (not LM Studio)
    MLX = "mlx"  # one prediction at a time, the rest queue without limit
    LLAMA_CPP = "llama.cpp"  # `slots` at once (Max Concurrent Predictions), the rest queue


class Overflow(enum.StrEnum):
    """How a conversation longer than the loaded context is answered."""

    BAD_REQUEST = "400"  # refused before generation
    OK_WITH_ERROR = "200"  # a 200 whose body (or only SSE frame) is the error
    MID_GENERATION = "mid-generation"  # generation starts and fails when the context fills


class BadToolCalls(enum.StrEnum):
    """How the simulated model spoils the function calls it makes (`sim/tool_calls.py`)."""

    NONE = "none"
    INVALID_JSON = "invalid_json"  # arguments cut before the closing brace: not JSON
    UNKNOWN_FUNCTION = "unknown_function"  # a function no request offers
    LONG_ARGUMENTS = "long_arguments"  # valid JSON, `long_tool_arguments` characters long
    UNPARSED = "unparsed"  # the call as text LM Studio could not parse: a message, no call


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything `python -m sim` can be told on its command line."""

    host: str = "127.0.0.1"
    port: int = 1234
    model: str = "nvidia/nemotron-3-nano"
    slots: int = 4
    queue: int = 32
    decode_rate: float = 40.0
    prefill_rate: float = 1500.0
    output_tokens: int = 48
    reasoning_tokens: int = 12
    api_key: str | None = None
    no_model: bool = False
    error_share: float = 0.5
    seed: int = 0
    engine: Engine = Engine.SIM
    jit: bool = False
    load_seconds: float = 0.0
    idle_ttl: float = 3600.0
    duplicate_jit_loads: bool = False
    embedding_model: bool = False
    context_length: int | None = None
    overflow: Overflow = Overflow.BAD_REQUEST
    reasoning_done_only: bool = False
    incomplete_at_limit: bool = False
    reasoning_eats_budget: bool = False
    bare_error_frames: bool = False
    unknown_path_200: bool = False
    no_responses_api: bool = False
    no_rest_v1: bool = False
    prefill_survives_cancel: bool = False
    trained_for_tool_use: bool = True
    tool_trigger: str = "?"
    bad_tool_calls: BadToolCalls = BadToolCalls.NONE
    tool_call_every_turn: bool = False
    long_tool_arguments: int = 10_000
    # The simulated host's power curve (sim/power.py): idle draw plus this much per stream.
    idle_watts: float = 12.0
    watts_per_stream: float = 45.0

    def __post_init__(self) -> None:
        if self.slots < 1 or self.queue < 0:
            raise ValueError("slots must be at least 1 and queue at least 0")
        if self.decode_rate <= 0 or self.prefill_rate <= 0:
            raise ValueError("decode and prefill rates must be positive")
        if self.output_tokens < 1 or self.reasoning_tokens < 0:
            raise ValueError("output tokens must be at least 1, reasoning tokens at least 0")
        if not 0.0 <= self.error_share <= 1.0:
            raise ValueError("error share must be between 0 and 1")
        if self.load_seconds < 0 or self.idle_ttl <= 0:
            raise ValueError("load seconds must be at least 0 and the idle TTL positive")
        if self.context_length is not None and self.context_length < 1:
            raise ValueError("context length must be at least 1")
        if self.long_tool_arguments < 1:
            raise ValueError("long tool arguments must be at least 1 character")
        if self.idle_watts < 0 or self.watts_per_stream < 0:
            raise ValueError("idle watts and watts per stream must be at least 0")

    @property
    def parallel(self) -> int:
        """Predictions that run at once: MLX runs one."""
        return 1 if self.engine is Engine.MLX else self.slots

    @property
    def queue_limit(self) -> int | None:
        """Requests that may wait; None (no limit) on the LM Studio engines, which never refuse."""
        return self.queue if self.engine is Engine.SIM else None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolBehaviour:
    """How the simulated model uses function tools; `POST /_sim/tools` swaps it at run time."""

    trigger: str  # the last user message must contain it (any case) for the model to call
    bad_calls: BadToolCalls
    call_every_turn: bool  # a continuation calls again instead of answering
    long_arguments: int  # characters of arguments in `long_arguments` mode

    @classmethod
    def from_config(cls, config: SimConfig, **changes: Any) -> ToolBehaviour:
        """The behaviour the command line set, with `changes` on top."""
        started = cls(
            trigger=config.tool_trigger,
            bad_calls=config.bad_tool_calls,
            call_every_turn=config.tool_call_every_turn,
            long_arguments=config.long_tool_arguments,
        )
        return replace(started, **changes)
