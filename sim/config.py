"""The simulator's settings and the fault modes it can be switched into."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class FaultMode(enum.StrEnum):
    """How the simulated server misbehaves; switched at run time through `POST /_sim/fault`."""

    OK = "ok"
    NO_MODEL = "no_model"
    SLOW = "slow"
    ERROR = "error"
    STALL = "stall"


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

    def __post_init__(self) -> None:
        if self.slots < 1 or self.queue < 0:
            raise ValueError("slots must be at least 1 and queue at least 0")
        if self.decode_rate <= 0 or self.prefill_rate <= 0:
            raise ValueError("decode and prefill rates must be positive")
        if self.output_tokens < 1 or self.reasoning_tokens < 0:
            raise ValueError("output tokens must be at least 1, reasoning tokens at least 0")
        if not 0.0 <= self.error_share <= 1.0:
            raise ValueError("error share must be between 0 and 1")
