"""Gateway configuration, read from `LLMGW_*` environment variables and validated at start."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
PositiveSeconds = Annotated[float, Field(gt=0, le=86_400)]
MIN_SECRET_CHARS = 32


class SettingsError(Exception):
    """A configuration value is invalid; the message names the variable."""


class Settings(BaseSettings):
    """Everything the gateway reads from its environment (see the README's table)."""

    model_config = SettingsConfigDict(env_prefix="LLMGW_", frozen=True, extra="ignore")

    upstream_url: str = "http://127.0.0.1:1234"
    upstream_token: SecretStr | None = None
    model: str = Field(default="nvidia/nemotron-3-nano", min_length=1, max_length=200)
    temperature: float = Field(default=0.7, ge=0, le=2)
    reasoning_effort: Literal["none", "low", "medium", "high"] = "medium"
    max_output_tokens: int = Field(default=1024, ge=1, le=131_072)
    instructions: str | None = None
    # LM Studio's `ttl`: idle seconds before it unloads a model it loaded just in time (its own
    # default is 60 minutes). Unset: not sent.
    model_ttl: int | None = Field(default=None, ge=1, le=31_536_000)
    # The first token of the one request that wakes a model asleep (LM Studio loads it first).
    model_load_timeout: PositiveSeconds = 180.0

    redis_url: SecretStr | None = None
    key_prefix: str = Field(default="llmgw", pattern=r"^[A-Za-z0-9_.:-]{1,32}$")
    global_limit: int = Field(default=30, ge=1)
    visitor_limit: int = Field(default=6, ge=1)
    window_seconds: int = Field(default=60, ge=1, le=86_400)
    # Tokens reserved per window (input estimate and answer cap, settled from the usage at the
    # stream's end); 0: no token window.
    global_token_limit: int = Field(default=0, ge=0)
    visitor_token_limit: int = Field(default=0, ge=0)
    trusted_proxies: Annotated[tuple[Network, ...], NoDecode] = ()
    visitor_hash_key: SecretStr | None = None
    # The HMAC key of API keys (app/access): Redis holds only HMAC-SHA256(key_secret, key), so
    # every replica needs the same one. Unset: no key is accepted.
    key_secret: SecretStr | None = None
    # What keyed clients (/v1) may ask: an answer's tokens (a larger max_tokens is lowered to
    # this, and an absent one is this), the input's characters, and a body's size.
    key_max_output_tokens: int = Field(default=4_096, ge=1, le=1_048_576)
    key_max_input_chars: int = Field(default=400_000, ge=1, le=100_000_000)
    key_max_body_bytes: int = Field(default=2_000_000, ge=1_024, le=200_000_000)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65_535)
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Both cap a request's head at max_header_bytes: h11 by itself, httptools (several times
    # faster) through app/server/http_protocol.py.
    http_parser: Literal["h11", "httptools"] = "httptools"
    max_header_bytes: int = Field(default=16_384, ge=1_024, le=1_048_576)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_content: bool = False

    max_body_bytes: int = Field(default=32_768, ge=256, le=10_000_000)
    max_input_chars: int = Field(default=8_000, ge=1)
    max_messages: int = Field(default=32, ge=1, le=1_000)

    max_inflight: int = Field(default=4, ge=1, le=1_000_000)
    # Of max_inflight, the places only the owner's keys may fill (app/protection/governor.py).
    owner_reserved_inflight: int = Field(default=1, ge=0)
    lease_seconds: float = Field(default=30.0, ge=3, le=3_600)
    fallback_share: float = Field(default=0.5, gt=0, le=1)
    queue_wait_seconds: float = Field(default=0.5, ge=0, le=60)  # 0: shed at once
    queue_size: int = Field(default=8, ge=0, le=10_000)

    governor_soft: float = Field(default=0.6, ge=0, lt=1)
    governor_hard: float = Field(default=0.9, gt=0, le=1)
    governor_floor: float = Field(default=0.25, gt=0, le=1)
    governor_relax_per_second: float = Field(default=0.02, gt=0, le=1)
    governor_ttft_limit_seconds: PositiveSeconds = 5.0
    governor_gpu_weight: float = Field(default=0.5, ge=0, le=1)
    probe_stale_factor: float = Field(default=0.5, gt=0, le=1)
    probe_stale_seconds: PositiveSeconds = 10.0
    probe_poll_seconds: PositiveSeconds = 5.0

    breaker_failures: int = Field(default=3, ge=1, le=100)
    breaker_cooldown: PositiveSeconds = 5.0
    breaker_max_cooldown: PositiveSeconds = 120.0
    breaker_trials: int = Field(default=2, ge=1, le=100)
    health_interval: float = Field(default=5.0, ge=0, le=3_600)  # 0: no active check

    connect_timeout: PositiveSeconds = 5.0
    first_token_timeout: PositiveSeconds = 60.0
    idle_timeout: PositiveSeconds = 30.0
    total_timeout: PositiveSeconds = 300.0

    @model_validator(mode="after")
    def _soft_below_hard(self) -> Settings:
        if self.governor_soft >= self.governor_hard:
            raise ValueError("LLMGW_GOVERNOR_SOFT must be below LLMGW_GOVERNOR_HARD")
        return self

    @model_validator(mode="after")
    def _reserved_below_inflight(self) -> Settings:
        if self.owner_reserved_inflight >= self.max_inflight:
            raise ValueError(
                "LLMGW_OWNER_RESERVED_INFLIGHT must be below LLMGW_MAX_INFLIGHT (0: none held"
                " back for the owner), or no place is left for the other lanes"
            )
        return self

    @field_validator("upstream_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")) or len(value) < 10:
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("redis_url", mode="before")
    @classmethod
    def _redis_url(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None  # LLMGW_REDIS_URL= (empty) is unset: the embedded Redis
        if isinstance(value, str) and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value

    @field_validator("key_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("key_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters")
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ipaddress.ip_network(part.strip()) for part in _split(value))
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _parse_origins(cls, value: object) -> object:
        return tuple(_split(value)) if isinstance(value, str) else value


def _problem(location: tuple[int | str, ...], message: str) -> str:
    if not location:  # a rule across fields names its variables in its message
        return message.removeprefix("Value error, ")
    return f"LLMGW_{str(location[0]).upper()}: {message}"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def load_settings(**overrides: object) -> Settings:
    """Read the environment; raise SettingsError naming each bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = [_problem(error["loc"], error["msg"]) for error in exc.errors()]
        raise SettingsError("invalid configuration: " + "; ".join(problems)) from None
