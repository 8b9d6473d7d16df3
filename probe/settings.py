"""Probe configuration, read from `LLMGW_*` environment variables and validated at start."""

from __future__ import annotations

import pathlib
import socket
from typing import Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

GpuSource = Literal["auto", "macos", "nvidia", "sim", "none"]
# nvidia+rapl: a Linux host's GPUs and CPUs together (their totals add).
PowerSourceName = Literal[
    "auto", "macmon", "powermetrics", "nvidia", "rapl", "nvidia+rapl", "sim", "none"
]
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class ProbeSettings(BaseSettings):
    """Everything the probe agent reads from its environment (see infra/probe/README.md)."""

    # The gateway reads other LLMGW_* variables from the same environment: ignore them here.
    model_config = SettingsConfigDict(env_prefix="LLMGW_", frozen=True, extra="ignore")

    redis_url: SecretStr | None = None
    key_prefix: str = Field(default="llmgw", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # The blog's model, the same variable the gateway reads: the probe reports its state.
    model: str | None = Field(default=None, min_length=1, max_length=200)
    probe_model_url: str = "http://127.0.0.1:1234"
    probe_model: str | None = Field(default=None, min_length=1, max_length=200)
    probe_allow_other_model: bool = False
    probe_model_token: SecretStr | None = None
    probe_interval: float = Field(default=2.0, gt=0, le=3600)
    probe_timeout: float = Field(default=3.0, gt=0, le=60)
    probe_synthetic_interval: float = Field(default=30.0, ge=0, le=86_400)
    probe_gpu: GpuSource = "auto"
    probe_power_source: PowerSourceName = "auto"
    probe_rapl_root: pathlib.Path = pathlib.Path("/sys/class/powercap")
    # An interval counts towards the idle baseline when GPU use (else CPU use) is at most this.
    probe_idle_below: float = Field(default=0.05, ge=0, le=1)
    # Part of a Redis key: no braces (they would move the hash tag) and nothing exotic.
    probe_host: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    probe_metrics_host: str = "127.0.0.1"
    probe_metrics_port: int = Field(default=9464, ge=0, le=65_535)

    @property
    def synthetic_model(self) -> str | None:
        """The model the synthetic generation names (None: whichever LLM is loaded)."""
        return self.probe_model or self.model

    @model_validator(mode="after")
    def _synthetic_uses_the_served_model(self) -> Self:
        if self.probe_model in (None, self.model) or self.probe_allow_other_model:
            return self
        raise PydanticCustomError("other_model", other_model_refusal(self.probe_model, self.model))

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(REDIS_SCHEMES):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("probe_model_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


def other_model_refusal(probe_model: str | None, model: str | None) -> str:
    """Why the synthetic generation may not name a model other than the blog's."""
    served = f"LLMGW_MODEL ({model})" if model else "LLMGW_MODEL, which is unset,"
    # docs 1_developer/0_core/ttl-and-auto-evict.md: Auto-Evict "unloads previously JIT loaded
    # models before loading new ones" [Default: enabled].
    return (
        f"LLMGW_PROBE_MODEL ({probe_model}) is not {served}: with LM Studio's Auto-Evict (on by"
        " default) every synthetic request would unload the blog's model to load this one."
        " Set LLMGW_MODEL to the blog's model and unset LLMGW_PROBE_MODEL, or set"
        " LLMGW_PROBE_ALLOW_OTHER_MODEL=1 if Auto-Evict is off"
    )


def load_settings(**overrides: object) -> ProbeSettings:
    """Read the environment; raise SettingsError naming each bad variable."""
    try:
        return ProbeSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [_problem(error["loc"], error["msg"]) for error in exc.errors()]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None


def _problem(location: tuple[int | str, ...], message: str) -> str:
    # A check across fields has no location: its message names the variables itself.
    return f"LLMGW_{str(location[0]).upper()}: {message}" if location else message
